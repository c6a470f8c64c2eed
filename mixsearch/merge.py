"""Document merging: search each doc modality separately and merge the per-query lists
(``retrieval.merge``), information retrieval's classic answer to a heterogeneous collection.

* ``single`` (default): one index over every doc; raw cosines compete across modalities.
* ``zscore``: each modality's top-k list is z-normalised per query (zero mean, unit variance
  over the list's scores; ranx's ``zmuv`` normalisation), then the lists are merged by score.
* ``rrf``: reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): a doc at rank r
  of its modality's list scores ``1 / (rrf_k + r)``, ``rrf_k = 60`` by default.

The modalities' lists are disjoint, so CombSUM over them (what ranx's ``fuse`` does after
normalising) is each doc's own normalised score; the merge is a sort. We compute it with
numpy instead of calling ``ranx.fuse`` at run time because ranx compiles its kernels with
numba on first use (about a minute per process); ``tests/test_merge.py`` checks both merges
against ``ranx.fuse``.

A merge is a function from the ``(n_queries, m)`` scores of one list (sorted, best first) to
their normalised scores; add one with :func:`register_merge`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mixsearch.registry import Registry

#: ``normalise(scores, rrf_k) -> scores`` of one modality's top-k lists (rows = queries).
MergeFn = Callable[[np.ndarray, int], np.ndarray]


def zscore(scores: np.ndarray, rrf_k: int) -> np.ndarray:
    """Per-query z-scores of a list (0 where all scores are equal)."""
    s = scores.astype(np.float64)
    sd = s.std(axis=1, keepdims=True)
    return np.where(sd > 0, (s - s.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0), 0.0)


def rrf(scores: np.ndarray, rrf_k: int) -> np.ndarray:
    """Reciprocal rank scores ``1 / (rrf_k + rank)``, ranks from 1 (lists are sorted)."""
    ranks = np.arange(1, scores.shape[1] + 1, dtype=np.float64)
    return np.broadcast_to(1.0 / (rrf_k + ranks), scores.shape).copy()


#: Every choice of ``retrieval.merge``.
SINGLE = "single"
_MERGES = Registry("retrieval.merge", {"zscore": zscore, "rrf": rrf}, reserved=(SINGLE,))


def register_merge(name: str, fn: MergeFn, *, overwrite: bool = False) -> None:
    """Make ``retrieval.merge=<name>`` normalise each modality's list with ``fn``.

    Raises:
        ValueError: ``name`` is taken (or is ``single``) and ``overwrite`` is False.
    """
    _MERGES.register(name, fn, overwrite=overwrite)


def available_merges() -> list[str]:
    """Every value ``retrieval.merge`` takes."""
    return [SINGLE, *_MERGES.names()]


def check_merge(name: str) -> None:
    """Raises ValueError naming ``retrieval.merge`` for an unknown merge."""
    if name != SINGLE and name not in _MERGES:
        raise ValueError(f"retrieval.merge: unknown merge {name!r}; choose one of {available_merges()}")


def merge_lists(
    lists: list[tuple[np.ndarray, np.ndarray]],
    name: str,
    k: int,
    tie_rank: np.ndarray,
    rrf_k: int = 60,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-modality top-k lists into one top-k per query.

    Args:
        lists: per modality ``(scores, rows)``, each ``(n_queries, m_i)`` sorted best first.
        name: a registered merge (``zscore``, ``rrf``, ...).
        k: length of the merged lists.
        tie_rank: ``tie_rank[row]`` = place of a doc in the tie order (equal merged scores).
        rrf_k: the constant of reciprocal rank fusion.

    Returns:
        ``(scores, rows)`` of the merged top-k, ``(n_queries, min(k, sum m_i))``.
    """
    check_merge(name)
    if name == SINGLE:
        raise ValueError("retrieval.merge=single searches one index; there is nothing to merge")
    fn = _MERGES.get(name)
    s = np.concatenate([fn(scores, rrf_k) for scores, _ in lists], axis=1)
    r = np.concatenate([rows for _, rows in lists], axis=1)
    order = np.lexsort((tie_rank[r], -s), axis=-1)[:, :k]
    return np.take_along_axis(s, order, 1).astype(np.float32), np.take_along_axis(r, order, 1)
