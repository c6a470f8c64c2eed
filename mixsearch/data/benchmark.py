"""The benchmark data model shared by every loader, encoder and evaluation step.

A benchmark is a set of queries, a corpus of documents and graded relevance judgements
(qrels). Queries and documents are :class:`Record` objects: an id plus optional text and an
optional lazily decoded image. The modality of a record follows from which of the two it has.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

Modality = Literal["text", "image", "image+text"]
MODALITIES: tuple[Modality, ...] = ("text", "image", "image+text")

# Decompression bombs: a tiny file (a 60 KB PNG of 20100 x 20100) can decode to gigabytes. PIL
# only raises above twice this limit (and merely warns between 1x and 2x), so ImageRef.load
# checks the header's size against the limit itself and refuses anything above it.
Image.MAX_IMAGE_PIXELS = 400_000_000  # WIT's largest images are far below this

#: Modes whose samples exceed 8 bits: ``convert("RGB")`` clips them (16-bit greyscale turns
#: white), so they are rescaled by their bit depth instead (see :func:`to_rgb`).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

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

    def load(self, max_side: int | None = None) -> Image.Image:
        """Decode to an 8-bit RGB PIL image.

        Args:
            max_side: if set, shrink the image so that its longer side is at most this many
                pixels while decoding (``dataset.max_image_side``; JPEGs are decoded at a
                reduced scale, so a 13k-pixel image never exists at full size). None (the
                default): full size; the encoder's processor does its own resize, as in mteb
                and the paper's seed code.

        Raises:
            DataError: the file is missing, cannot be decoded, is larger than
                ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb) or has a pixel format
                that has no faithful 8-bit RGB form (names the file).
        """
        where = self.path or self.origin or "<embedded bytes>"
        try:
            src = self.path if self.path is not None else io.BytesIO(self.data)  # type: ignore[arg-type]
            with warnings.catch_warnings():  # the 1x..2x bomb warning: refused just below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(src)  # reads the header only
            with img:
                pixels = img.size[0] * img.size[1]
                if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
                    raise DataError(
                        f"image {where}: {img.size[0]}x{img.size[1]} = {pixels} pixels is above "
                        f"the decoding limit of {Image.MAX_IMAGE_PIXELS} (PIL.Image.MAX_IMAGE_PIXELS; "
                        "a decompression bomb?); refused")
                if max_side is not None and img.format == "JPEG" and max(img.size) > max_side:
                    img.draft("RGB", (max_side, max_side))
                rgb = to_rgb(img, where)
                if max_side is not None and max(rgb.size) > max_side:
                    rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
                return rgb
        except FileNotFoundError as e:
            raise DataError(f"image file not found: {where}") from e
        except DataError:
            raise
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


def to_rgb(img: Image.Image, where: str) -> Image.Image:
    """``img`` as 8-bit RGB, without the silent damage of a bare ``convert("RGB")``.

    16-bit greyscale (``I;16*``, and ``I`` whose values fit in 16 bits, as 16-bit PNGs and
    TIFFs decode) is scaled by 255/65535; ``convert`` would clip every value above 255 to
    white. Other modes convert as ``convert("RGB")`` does, as the seed code and the Hugging
    Face processors do: alpha (``RGBA``, ``LA``, ``PA``, ``P`` with transparency) is dropped,
    keeping the colour under it; ``CMYK`` and ``YCbCr`` use PIL's conversions.

    Raises:
        DataError: a 32-bit float (``F``) image, or an ``I`` image with values outside
            0..65535: no defined white point (names the file and the mode).
    """
    if img.mode in SIXTEEN_BIT_MODES or img.mode == "I":
        import numpy as np

        a = np.asarray(img)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise DataError(f"image {where}: mode {img.mode} with values {int(a.min())}..{int(a.max())} "
                            "has no defined 8-bit scale; convert it to 8- or 16-bit first")
        # round(v * 255 / 65535): 65535 -> 255, 257 -> 1, exact for 8-bit data stored as 16-bit
        eight = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(eight).convert("RGB")
    if img.mode == "F":
        raise DataError(f"image {where}: mode F (32-bit float samples) has no defined 8-bit scale; "
                        "convert it to 8- or 16-bit first")
    return img.convert("RGB")


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
        absent_qrels: judgements the release makes of docs its corpus does not hold
            (``absent_qrels[qid][cid] = grade``; mteb tasks have them). They are kept out of
            ``qrels`` (whose docs all exist) and scored as relevant docs never retrieved, as
            trec_eval and mteb score them, unless ``metrics.absent_qrels=drop``.
    """

    name: str
    queries: list[Record]
    corpus: list[Record]
    qrels: Qrels
    mixed_corpus: list[Record] | None = None
    calibration: dict[str, list[Record]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    absent_qrels: Qrels = field(default_factory=dict)

    def scoring_qrels(self, absent: str = "count") -> Qrels:
        """The qrels the metrics score against: ``qrels`` plus, under ``absent="count"``, the
        judgements of absent docs (a query judging only absent docs is scored, and scores 0)."""
        if absent == "drop" or not self.absent_qrels:
            return self.qrels
        if absent != "count":
            raise ValueError(f"metrics.absent_qrels must be 'count' or 'drop', got {absent!r}")
        out = {q: dict(j) for q, j in self.qrels.items()}
        for q, judged in self.absent_qrels.items():
            out.setdefault(q, {}).update(judged)
        return out

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
