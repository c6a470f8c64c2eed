"""``mixsearch search``: rank an index's items for a text (and/or image) query, with GR
calibration (normalise, subtract the role means, fuse, normalise) or without."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixsearch.calibration import Means, resolve
from mixsearch.collection.index import INDEX_FILE
from mixsearch.data.benchmark import DataError, ImageRef
from mixsearch.encoders.base import Encoder
from mixsearch.fusion import fuse, l2_normalise, make_views


class CollectionIndexError(DataError):
    """An index that cannot answer this query (missing, another model, no means)."""


@dataclass
class Index:
    """A loaded index folder (see :mod:`mixsearch.collection.index`)."""

    path: Path
    meta: dict[str, Any]
    text: np.ndarray
    image: np.ndarray
    means: Means | None

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.meta["items"]


def read_index(path: str | Path) -> Index:
    """Load an index folder.

    Raises:
        CollectionIndexError: no ``index.json`` there (names the folder).
    """
    path = Path(path)
    try:
        meta = json.loads((path / INDEX_FILE).read_text())
    except FileNotFoundError as e:
        raise CollectionIndexError(f"{path}: no {INDEX_FILE} (build one with `python -m mixsearch index DIR "
                          f"--out {path}`)") from e
    means = Means.load(path / "means.npz") if (path / "means.npz").is_file() else None
    return Index(path, meta, np.load(path / "text.npy"), np.load(path / "image.npy"), means)


def check_encoder(index: Index, encoder: Encoder) -> None:
    """Refuse a query encoder whose fingerprint differs from the index's.

    Raises:
        CollectionIndexError: names both models and fingerprints.
    """
    m = index.meta["model"]
    if encoder.fingerprint_hash() != m["fingerprint_hash"]:
        raise CollectionIndexError(
            f"{index.path} was built with {m['name']} (fingerprint {m['fingerprint_hash']}), but "
            f"the query encoder is {encoder.name} (fingerprint {encoder.fingerprint_hash()}): "
            "re-index the folder with this model or search with the index's model")


def embed_query(encoder: Encoder, text: str | None, image: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(1, d)`` text and image rows of a query (zero rows for a missing part)."""
    import torch

    dim = encoder.dim
    t, i = np.zeros((1, dim), np.float32), np.zeros((1, dim), np.float32)
    with torch.inference_mode():
        if text:
            t = encoder.encode_text([text], role="query").float().cpu().numpy()
        if image:
            pixels = encoder.image_transform()(ImageRef(path=image).load())
            batch = encoder.collate_images([pixels])
            if isinstance(batch, torch.Tensor):
                batch = batch.to(encoder.device)
            i = encoder.encode_image(batch, role="query").float().cpu().numpy()
    return t, i


def search(index: Index, qtext: np.ndarray, qimage: np.ndarray, *, k: int = 10,
           calibration: str = "gr", alpha: float = 0.5) -> list[tuple[int, float]]:
    """``(item row, score)`` of the top ``k`` items, best first (ties: index order).

    Raises:
        CollectionIndexError: ``calibration="gr"`` on an index built without means.
    """
    items = index.items
    has_t = np.array([it["text"] is not None for it in items], bool)
    has_i = np.array([it["image"] is not None for it in items], bool)
    docs = make_views([it["id"] for it in items], index.text, index.image, has_t, has_i)
    q_t, q_i = np.array([qtext.any()]), np.array([qimage.any()])
    queries = make_views(["query"], qtext, qimage, q_t, q_i)
    if calibration == "gr":
        if index.means is None:
            raise CollectionIndexError(f"{index.path} holds no calibration means: search with "
                              "--calibration none, or re-index with --calibration gr")
        cal = resolve({"method": "gr", "source": index.means.source}, queries, docs, means=index.means)
        docs, queries = cal.apply(docs, "doc"), cal.apply(queries, "query")
    elif calibration != "none":
        raise ValueError(f"--calibration {calibration!r}: choose gr or none")
    d = l2_normalise(fuse(docs, method="weighted", alpha=alpha))
    q = l2_normalise(fuse(queries, method="weighted", alpha=alpha))[0]
    scores = d @ q
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [(int(r), float(scores[r])) for r in order]
