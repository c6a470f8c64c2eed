"""Benchmark data model and loaders."""

from mixsearch.data.beir import load_beir
from mixsearch.data.benchmark import (
    MODALITIES,
    Benchmark,
    DataError,
    ImageRef,
    Modality,
    Qrels,
    Record,
)
from mixsearch.data.mixbench import load_mixbench
from mixsearch.data.registry import load_benchmark, register_loader
from mixsearch.data.validate import validate_benchmark

__all__ = ["MODALITIES", "Benchmark", "DataError", "ImageRef", "Modality", "Qrels", "Record"]
__all__ += ["load_beir", "load_benchmark", "load_mixbench", "register_loader", "validate_benchmark"]
