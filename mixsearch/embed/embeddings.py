"""Embeddings: ids with a float matrix of raw encoder outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from mixsearch.data.benchmark import DataError


@dataclass
class Embeddings:
    """Raw (not normalised) encoder outputs for a list of items.

    Attributes:
        ids: item ids, unique, in row order.
        vectors: float32 array of shape ``(len(ids), dim)``.
    """

    ids: list[str]
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.ids):
            raise ValueError(
                f"Embeddings: {len(self.ids)} ids but vectors of shape {self.vectors.shape}"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> dict[str, int]:
        return {i: n for n, i in enumerate(self.ids)}

    def take(self, ids: list[str]) -> np.ndarray:
        """Rows for ``ids`` in that order; a KeyError names the first missing id."""
        pos = self.index()
        missing = [i for i in ids if i not in pos]
        if missing:
            raise KeyError(f"no embedding for id {missing[0]!r} ({len(missing)} missing)")
        return self.vectors[[pos[i] for i in ids]]


def digest(emb: Embeddings | np.ndarray) -> str:
    """``"xxh3_64:<hex>"`` of exactly these inputs: the ids (in row order) and the vectors'
    float32 bytes (C order). Two runs with equal digests used the same vectors for the same
    items; any changed value, row order or id changes it. One pass over memory (GB/s)."""
    h = xxhash.xxh3_64()
    if isinstance(emb, Embeddings):
        h.update("\n".join(emb.ids).encode("utf-8"))
        h.update(b"\0")
        vectors = emb.vectors
    else:
        vectors = emb
    h.update(np.ascontiguousarray(vectors, dtype=np.float32))
    h.update(repr(vectors.shape).encode())
    return "xxh3_64:" + h.hexdigest()


def check_vectors(emb: Embeddings, what: str) -> None:
    """Refuse embeddings that no encoder should return for a real input.

    Args:
        emb: the embeddings.
        what: where they come from, for the message.

    Raises:
        DataError: rows with NaN/Inf, or all-zero rows (a zero vector has no direction: after
            normalisation it stays zero, and under GR it becomes minus the mean). Names the
            first ids.
    """
    v = emb.vectors
    for problem, rows in (("non-finite values", ~np.isfinite(v).all(axis=1)),
                          ("all-zero vectors", ~v.any(axis=1))):
        bad = [emb.ids[i] for i in np.flatnonzero(rows)]
        if bad:
            raise DataError(f"{what}: {problem} for {len(bad)} id(s): "
                            f"{', '.join(map(repr, bad[:5]))}{' ...' if len(bad) > 5 else ''}")
