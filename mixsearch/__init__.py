"""mixsearch: mixed-modality search with modality-gap calibration (GR-CLIP, MixBench).

From a notebook::

    import mixsearch
    bench = mixsearch.load_benchmark("mixbench", root="/data/MixBench25", subset="OVEN")
    enc = mixsearch.build_encoder("hf", model_id_or_path="openai/clip-vit-base-patch16")
    result = mixsearch.evaluate(enc, bench, calibration="gr")
"""

__version__ = "0.1.0"

from mixsearch.api import evaluate  # noqa: E402
from mixsearch.data.registry import load_benchmark  # noqa: E402
from mixsearch.encoders.registry import build_encoder  # noqa: E402

__all__ = ["__version__", "build_encoder", "evaluate", "load_benchmark"]
