"""The encoder protocol every backend implements.

Two kinds of encoder share it. *Dual encoders* (CLIP, OpenCLIP, SigLIP) embed a text or an
image. *Universal embedders* (VLM2Vec, Qwen3-VL-Embedding, GME, mteb and Sentence Transformers
models) also embed an image+text item as one input (:meth:`Encoder.encode_joint`, with
``supports_joint = True``) and shape their inputs with role-specific instructions: every call
says whether it embeds queries or documents (``role``).

Extraction (``mixsearch.embed``) drives encoders in two halves so that image decoding and
preprocessing run in DataLoader worker processes:

* ``image_transform()`` returns a picklable callable run in workers on each RGB PIL image (a
  CHW tensor for CLIP-style models; a resized PIL image for VLMs whose processor batches
  variable-size images); ``collate_images(items)`` makes the batch (default: ``torch.stack``)
  and ``encode_image(batch, role)`` runs the model on it in the main process.
* ``encode_text(texts, role)`` tokenises and encodes a list of strings (tokenising is cheap).
* ``encode_joint(texts, images, role)`` embeds image+text items jointly (universal embedders).

All return **raw** (not L2-normalised) float32 CPU tensors of shape ``(n, dim)``; the
evaluation normalises, so the cache keeps what the model produced. Everything that shapes the
inputs (instructions per role and modality, image size, pooling, tokenizer limits) belongs in
:meth:`Encoder.fingerprint`, so the embedding cache keys cover it.
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


#: Who an embedding is for: universal embedders instruct queries and documents differently.
ROLES = ("query", "document")


def check_role(role: str) -> str:
    """``role`` itself, or a ValueError naming the allowed roles."""
    if role not in ROLES:
        raise ValueError(f"role={role!r}: expected one of {ROLES}")
    return role


class Encoder(abc.ABC):
    """A text and image encoder; universal embedders also embed image+text items jointly."""

    #: short name used in logs and results, e.g. ``"openclip:ViT-B-16/laion2b_s34b_b88k"``
    name: str = "encoder"
    #: device the model runs on
    device: torch.device = torch.device("cpu")
    #: True when :meth:`encode_joint` embeds an image+text item as one input
    supports_joint: bool = False

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @abc.abstractmethod
    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        """Encode texts as ``role`` items to raw float32 CPU embeddings ``(len(texts), dim)``."""

    @abc.abstractmethod
    def image_transform(self) -> Callable[[Image.Image], Any]:
        """The picklable per-image preprocessing run in DataLoader workers (RGB PIL image ->
        CHW tensor for CLIP-style models)."""

    def collate_images(self, items: list[Any]) -> Any:
        """The batch :meth:`encode_image` takes, from ``image_transform`` outputs."""
        return torch.stack(items)

    @abc.abstractmethod
    def encode_image(self, pixels: Any, role: str = "document") -> torch.Tensor:
        """Encode a preprocessed batch (``(n, C, H, W)`` for CLIP-style models) to raw float32
        CPU embeddings."""

    def encode_joint(self, texts: list[str], images: Any, role: str = "document") -> torch.Tensor:
        """Embed image+text items as one input each: ``texts[i]`` with image ``i`` of the
        collated ``images`` batch. Dual encoders cannot.

        Raises:
            EncoderError: this encoder has no joint embedding (names it).
        """
        raise EncoderError(joint_unsupported_message(self.name))

    def parameter_count(self) -> int | None:
        """Number of model parameters (``None`` when there is no torch model to count)."""
        modules = [m for m in vars(self).values() if isinstance(m, torch.nn.Module)]
        if not modules:
            return None
        seen: set[int] = set()
        total = 0
        for module in modules:
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
        return total

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


def joint_unsupported_message(name: str) -> str:
    """The error for ``fusion=joint`` with an encoder that cannot embed image+text items."""
    return (f"fusion=joint: encoder {name!r} cannot embed image+text items jointly (a dual "
            "text/image encoder); use fusion=weighted (or fusion=score), or a universal "
            "embedder (model=mteb, model=st, model=vlm2vec_qwen2vl_7b, ...)")
