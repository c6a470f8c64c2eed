"""The benchmark data model shared by every loader, encoder and evaluation step.

A benchmark is a set of queries, a corpus of documents and graded relevance judgements
(qrels). Queries and documents are :class:`Record` objects: an id plus optional text and an
optional lazily decoded image. The modality of a record follows from which of the two it has.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

Modality = Literal["text", "image", "image+text"]
MODALITIES: tuple[Modality, ...] = ("text", "image", "image+text")

# Largest side an image is decoded at. CLIP-style models see at most a few hundred pixels, and
# Google WIT has images 13k pixels wide: decoding those at full size wastes memory and time.
MAX_DECODE_SIDE = 2048
Image.MAX_IMAGE_PIXELS = 400_000_000  # WIT's largest images are far below this; bombs are above


class DataError(ValueError):
    """Bad benchmark input. The message names the file, id or option at fault."""


@dataclass(frozen=True)
class ImageRef:
    """An image that is decoded only when needed.

    Exactly one of ``path`` (a resolved file on disk) or ``data`` (encoded bytes, e.g. from a
    parquet ``{bytes, path}`` struct) is set. ``origin`` says where it came from for messages.
    """

    path: str | None = None
    data: bytes | None = field(default=None, repr=False)
    origin: str = ""

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("ImageRef needs exactly one of path or data")

    def load(self, max_side: int = MAX_DECODE_SIDE) -> Image.Image:
        """Decode to an RGB PIL image whose longer side is at most ``max_side``.

        Raises:
            DataError: the file is missing or cannot be decoded (names the file).
        """
        where = self.path or self.origin or "<embedded bytes>"
        try:
            src = self.path if self.path is not None else io.BytesIO(self.data)  # type: ignore[arg-type]
            with Image.open(src) as img:
                # draft() lets the JPEG decoder downscale by 1/2..1/8 while decoding, so a
                # 13k-pixel image never exists at full size in memory.
                if img.format == "JPEG" and max(img.size) > max_side:
                    img.draft("RGB", (max_side, max_side))
                img = img.convert("RGB")
                if max(img.size) > max_side:
                    img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
                return img
        except FileNotFoundError as e:
            raise DataError(f"image file not found: {where}") from e
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot decode image {where}: {e}") from e

    def content_key(self) -> str:
        """A cheap identity of the image content for cache keys.

        Files: resolved path, size and modification time (hashing every file on every run
        would cost more than a cache hit saves). Bytes: SHA-1 of the bytes.
        """
        if self.data is not None:
            return "sha1:" + hashlib.sha1(self.data).hexdigest()
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except FileNotFoundError as e:
            raise DataError(f"image file not found: {self.path}") from e
        return f"file:{os.path.abspath(self.path)}:{st.st_size}:{st.st_mtime_ns}"  # type: ignore[arg-type]


@dataclass(frozen=True)
class Record:
    """A query or a document: an id with text, an image, or both."""

    id: str
    text: str | None = None
    image: ImageRef | None = None

    @property
    def modality(self) -> Modality:
        if self.text is not None and self.image is not None:
            return "image+text"
        if self.image is not None:
            return "image"
        if self.text is not None:
            return "text"
        raise DataError(f"record {self.id!r} has neither text nor image")


Qrels = dict[str, dict[str, int]]


@dataclass
class Benchmark:
    """One evaluation set.

    Attributes:
        name: short name, e.g. ``"mixbench/MSCOCO"`` or ``"toy/ToyCOCO"``.
        queries: query records (text, or image+text for OVEN-style subsets).
        corpus: every document with all the content the release has (text and image where
            available). Corpus mixing chooses which of them a run shows.
        mixed_corpus: the released mixed corpus (same ids and content as ``corpus`` with
            modalities dropped), or None when the release ships none.
        qrels: ``qrels[qid][cid] = grade``; only queries with at least one judgement.
        calibration: optional calibration items by split: ``"queries"`` and ``"corpus"``.
        meta: provenance: loader, layout, root, revision, subset, image resolution counts.
    """

    name: str
    queries: list[Record]
    corpus: list[Record]
    qrels: Qrels
    mixed_corpus: list[Record] | None = None
    calibration: dict[str, list[Record]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def cache_key(self) -> str:
        """The dataset part of embedding-cache keys: ``meta["cache_name"]`` when the loader
        sets one (M-BEIR's tasks share their pool's, so the pool is embedded once for all of
        them; entries still differ by content), else the name; plus ``@revision`` if known."""
        name = self.meta.get("cache_name") or self.name
        rev = self.meta.get("revision")
        return f"{name}@{rev}" if rev else name

    def __repr__(self) -> str:
        """One line: name, counts and where it came from (the records would fill a screen)."""
        mixed = "" if self.mixed_corpus is None else f", mixed_corpus={len(self.mixed_corpus)}"
        calibration = "".join(f", calibration/{k}={len(v)}" for k, v in sorted(self.calibration.items()))
        source = self.meta.get("root") or self.meta.get("repo") or self.meta.get("loader")
        return (f"Benchmark({self.name!r}: queries={len(self.queries)}, corpus={len(self.corpus)}"
                f"{mixed}, qrels={sum(map(len, self.qrels.values()))} for {len(self.qrels)} queries"
                f"{calibration}" + (f", from {source}" if source else "") + ")")

    def split(self, name: str) -> list[Record]:
        """Records of a split by name: ``queries``, ``corpus``, ``mixed_corpus``,
        ``calibration/queries`` or ``calibration/corpus``."""
        if name == "queries":
            return self.queries
        if name == "corpus":
            return self.corpus
        if name == "mixed_corpus":
            if self.mixed_corpus is None:
                raise DataError(f"benchmark {self.name} ships no mixed_corpus")
            return self.mixed_corpus
        if name.startswith("calibration/"):
            key = name.split("/", 1)[1]
            if key not in self.calibration:
                raise DataError(f"benchmark {self.name} has no calibration split {key!r}")
            return self.calibration[key]
        raise DataError(f"unknown split {name!r}")
