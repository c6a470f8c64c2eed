"""The encoder protocol every backend implements.

Extraction (``mixsearch.embed``) drives encoders in two halves so that image decoding and
preprocessing run in DataLoader worker processes:

* ``image_transform()`` returns a picklable callable ``PIL.Image -> Tensor`` run in workers;
  ``encode_image(batch)`` runs the model on a stacked batch in the main process.
* ``encode_text(texts)`` tokenises and encodes a list of strings (tokenising is cheap).

Both return **raw** (not L2-normalised) float32 CPU tensors of shape ``(n, dim)``; the
evaluation normalises, so the cache keeps what the model produced.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image


class EncoderError(RuntimeError):
    """An encoder cannot be built or used. The message names the model or file at fault."""


class Encoder(abc.ABC):
    """A dual (text, image) encoder."""

    #: short name used in logs and results, e.g. ``"openclip:ViT-B-16/laion2b_s34b_b88k"``
    name: str = "encoder"
    #: device the model runs on
    device: torch.device = torch.device("cpu")

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @abc.abstractmethod
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Encode texts to raw float32 CPU embeddings ``(len(texts), dim)``."""

    @abc.abstractmethod
    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """The picklable per-image preprocessing (RGB PIL image -> CHW tensor)."""

    @abc.abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode a preprocessed batch ``(n, C, H, W)`` to raw float32 CPU embeddings."""

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the embeddings: backend, checkpoint, revision, image
        preprocessing, tokenizer settings (context length, padding, truncation), dtype.
        JSON-serialisable and stable across processes."""

    def describe(self) -> dict[str, Any]:
        """Facts recorded with results: the fingerprint plus name, dimension and device."""
        return {**self.fingerprint(), "name": self.name, "dim": self.dim, "device": str(self.device)}

    def text_stats(self) -> dict[str, int]:
        """Counters since construction, e.g. ``{"texts": n, "truncated": m}``."""
        return {}

    def fingerprint_hash(self) -> str:
        """Short stable hash of :meth:`fingerprint` used in cache keys."""
        blob = json.dumps(self.fingerprint(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
