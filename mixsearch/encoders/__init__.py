"""Encoder protocol and backends (open_clip, transformers, precomputed, toy, mteb, Sentence
Transformers, VLM2Vec)."""

from mixsearch.encoders.base import Encoder, EncoderError
from mixsearch.encoders.registry import available_encoders, build_encoder, register_encoder

__all__ = ["Encoder", "EncoderError", "available_encoders", "build_encoder", "register_encoder"]
