"""Document merging: search each doc modality separately and merge the per-query lists
(``retrieval.merge``), information retrieval's classic answer to a heterogeneous collection.

* ``single`` (default): one index over every doc; raw cosines compete across modalities.
* ``zscore``: each modality's top-k list is z-normalised per query (zero mean, unit variance
  over the list's scores; ranx's ``zmuv`` normalisation), then the lists are merged by score.
* ``rrf``: reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009) of two lists per
  doc: its own modality's list and the *union list*, every candidate ranked by raw cosine (the
  order ``single`` gives them). A doc at rank r scores ``1 / (rrf_k + r)`` in each list it is
  in, ``rrf_k = 60`` by default, and the two are summed. The modalities' own lists are
  disjoint, so RRF over them alone would give every rank an exact tie across modalities: a
  round-robin decided by the tie order, on which ``rrf_k`` has no effect. The union list is
  what there is to fuse: a modality's best doc still ranks high (its own list), and a doc that
  also beats other modalities' docs on raw cosine ranks higher.

Remaining equal merged scores are ordered by the union list (raw cosine, then the tie order
for exactly equal cosines), never by doc id alone, so no modality is favoured by its ids.

The fused scores are computed with numpy instead of calling ``ranx.fuse`` at run time because
ranx compiles its kernels with numba on first use (about a minute per process);
``tests/test_merge.py`` checks both merges against ``ranx.fuse`` (RRF: the modality runs plus
the union run).

A merge is a function from the ``(n_queries, m)`` scores of one list (sorted, best first) to
their normalised scores; add one with :func:`register_merge` (``union=True``: the union list is
fused too, normalised by the same function).
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
#: Merges that fuse the union list (every candidate by raw cosine) with each modality's list.
_UNION = {"rrf"}


def register_merge(name: str, fn: MergeFn, *, union: bool = False, overwrite: bool = False) -> None:
    """Make ``retrieval.merge=<name>`` normalise each modality's list with ``fn``.

    Args:
        name: the option's value.
        fn: ``fn(scores, rrf_k)``: normalised scores of one sorted list.
        union: also fuse the union list (all candidates by raw cosine), normalised by ``fn``.
        overwrite: replace an existing merge of that name.

    Raises:
        ValueError: ``name`` is taken (or is ``single``) and ``overwrite`` is False.
    """
    _MERGES.register(name, fn, overwrite=overwrite)
    (_UNION.add if union else _UNION.discard)(name)


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
        tie_rank: ``tie_rank[row]`` = place of a doc in the tie order, used only among exactly
            equal raw cosines (equal merged scores are ordered by the union list).
        rrf_k: the constant of reciprocal rank fusion.

    Returns:
        ``(scores, rows)`` of the merged top-k, ``(n_queries, min(k, sum m_i))``.
    """
    check_merge(name)
    if name == SINGLE:
        raise ValueError("retrieval.merge=single searches one index; there is nothing to merge")
    fn = _MERGES.get(name)
    raw = np.concatenate([scores for scores, _ in lists], axis=1)
    r = np.concatenate([rows for _, rows in lists], axis=1)
    # the union list: the candidates by raw cosine (as merge=single ranks them)
    by_raw = np.lexsort((tie_rank[r], -raw), axis=-1)
    union_pos = np.empty_like(by_raw)
    np.put_along_axis(union_pos, by_raw, np.broadcast_to(np.arange(r.shape[1]), r.shape), axis=1)
    s = np.concatenate([fn(scores, rrf_k) for scores, _ in lists], axis=1)
    if name in _UNION:
        union_scores = fn(np.take_along_axis(raw, by_raw, 1), rrf_k)  # by union position
        s = s + np.take_along_axis(union_scores, union_pos, 1)
    order = np.lexsort((union_pos, -s), axis=-1)[:, :k]
    return np.take_along_axis(s, order, 1).astype(np.float32), np.take_along_axis(r, order, 1)
