"""Encoder protocol and backends (open_clip, transformers, precomputed, toy)."""

from mixsearch.encoders.base import Encoder, EncoderError

__all__ = ["Encoder", "EncoderError"]
