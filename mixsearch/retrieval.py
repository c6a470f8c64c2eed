"""Exact top-k search by inner product, with a deterministic tie-break.

Inputs are already L2-normalised, so the dot product is the cosine similarity. Results are
ordered by score descending, then by document id ascending (``doc_ids`` when given, else the row
index), for both backends:

* ``"exact"``: torch matmul in query chunks (and doc chunks when a block would exceed a memory
  budget), ``torch.topk`` per block, partial top-k's merged exactly.
* ``"faiss"``: ``faiss.IndexFlatIP`` (optional dependency, ``pip install mixsearch[faiss]``).

``torch.topk`` and FAISS do not define an order among equal scores, nor which of several equal
scores at the k-th place survive. Both backends therefore fetch a few extra candidates, re-sort
them by (-score, rank of id), and widen the candidate set for the rare rows whose ties at the
k-th place spill past it, so the result is exact, not approximate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

BACKENDS = ("exact", "faiss")
# Largest query-chunk x doc-chunk score block (float32 elements, 128 MiB) held at once.
_MAX_BLOCK_ELEMENTS = 1 << 25
# Extra candidates fetched beyond k so that boundary ties rarely need the slow path.
_TIE_MARGIN = 16


@dataclass
class TopK:
    """Top-k search result.

    Attributes:
        scores: ``(nq, k)`` float32 scores, best first.
        indices: ``(nq, k)`` int64 row indices into ``docs``.
    """

    scores: np.ndarray
    indices: np.ndarray


def search(
    queries: np.ndarray,
    docs: np.ndarray,
    k: int,
    *,
    doc_ids: Sequence[str] | None = None,
    backend: str = "exact",
    chunk_size: int | None = None,
    device: str = "auto",
) -> TopK:
    """Return the k highest-scoring docs per query, ties broken by doc id.

    Args:
        queries: ``(nq, d)`` normalised query embeddings.
        docs: ``(nd, d)`` normalised doc embeddings.
        k: number of results per query; clipped to ``nd``.
        doc_ids: ids of the doc rows; equal scores are ordered by id ascending (string order).
            Without ids, by row index ascending.
        backend: ``"exact"`` (torch) or ``"faiss"`` (``IndexFlatIP``).
        chunk_size: queries per matmul block (exact backend; default from the memory budget).
        device: ``"auto"`` (cuda if available, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
            (exact backend; FAISS runs on the CPU).

    Returns:
        TopK with ``(nq, min(k, nd))`` float32 scores and int64 row indices.

    Raises:
        ValueError: bad shapes, non-finite values, ``k < 1``, ``chunk_size < 1``, ids that do not
            match the rows or repeat, or an unknown ``retrieval.backend``.
        ImportError: ``backend="faiss"`` without faiss installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"retrieval.backend: unknown backend {backend!r}; choose one of {BACKENDS}")
    q = _as_matrix(queries, "queries")
    d = _as_matrix(docs, "docs")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"queries have dim {q.shape[1]} but docs have dim {d.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"retrieval.k must be a positive integer, got {k!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"retrieval.chunk_size must be a positive integer, got {chunk_size!r}")
    k = min(int(k), d.shape[0])
    id_rank = _id_ranks(doc_ids, d.shape[0])
    if k == 0 or q.shape[0] == 0:
        return TopK(np.zeros((q.shape[0], k), np.float32), np.zeros((q.shape[0], k), np.int64))
    if backend == "faiss":
        return _search_faiss(q, d, k, id_rank)
    return _search_exact(q, d, k, id_rank, chunk_size, _resolve_device(device))


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Validate a 2-D finite embedding matrix and return it as C-contiguous float32."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, dim) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name} row {bad} contains NaN or infinite values")
    return arr


def _id_ranks(doc_ids: Sequence[str] | None, n: int) -> torch.Tensor:
    """Rank of each doc row in ascending id order: the secondary sort key."""
    if doc_ids is None:
        return torch.arange(n, dtype=torch.int64)
    if len(doc_ids) != n:
        raise ValueError(f"doc_ids has {len(doc_ids)} ids but docs has {n} rows")
    order = sorted(range(n), key=doc_ids.__getitem__)
    for a, b in zip(order, order[1:]):
        if doc_ids[a] == doc_ids[b]:
            raise ValueError(f"doc_ids: duplicate id {doc_ids[a]!r} (rows {a} and {b})")
    ranks = torch.empty(n, dtype=torch.int64)
    ranks[torch.tensor(order, dtype=torch.int64)] = torch.arange(n, dtype=torch.int64)
    return ranks


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"retrieval.device: invalid device {device!r} ({err})") from err


def _select(scores: torch.Tensor, rows: torch.Tensor, id_rank: torch.Tensor, k: int):
    """Exact top-k of candidate sets by (-score, id rank); each input row holds its candidates.

    Args:
        scores: ``(n, m)`` candidate scores, ``m >= k``.
        rows: ``(n, m)`` doc rows of the candidates.
        id_rank: ``(nd,)`` rank of each doc row's id, on the same device.
        k: results to keep.
    """
    # Sort by id rank, then a stable sort by score keeps id order within equal scores.
    by_id = torch.argsort(id_rank[rows], dim=1)
    scores, rows = scores.gather(1, by_id), rows.gather(1, by_id)
    by_score = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, by_score), rows.gather(1, by_score)


def _block_topk(block: torch.Tensor, offset: int, k: int, id_rank: torch.Tensor):
    """Exact tie-broken top-k of one score block whose columns are doc rows ``offset...``."""
    n_cols = block.shape[1]
    k = min(k, n_cols)
    m = min(k + _TIE_MARGIN, n_cols)
    vals, cols = torch.topk(block, m, dim=1, sorted=True)
    out_s, out_r = _select(vals, cols + offset, id_rank, k)
    if m == n_cols:
        return out_s, out_r
    # A row is exact unless scores equal to its k-th score reach the last candidate: then some
    # tied docs may have been left out, so rescan that whole row.
    spilled = torch.nonzero(vals[:, m - 1] == vals[:, k - 1]).flatten().tolist()
    for r in spilled:
        cand = torch.nonzero(block[r] >= vals[r, k - 1]).flatten()
        s, rr = _select(block[r, cand][None], cand[None] + offset, id_rank, k)
        out_s[r], out_r[r] = s[0], rr[0]
    return out_s, out_r


def _search_exact(
    q: np.ndarray,
    d: np.ndarray,
    k: int,
    id_rank: torch.Tensor,
    chunk_size: int | None,
    device: torch.device,
) -> TopK:
    nq, nd = q.shape[0], d.shape[0]
    q_chunk = chunk_size or max(1, _MAX_BLOCK_ELEMENTS // nd)
    q_chunk = min(q_chunk, nq)
    d_chunk = min(nd, max(1, _MAX_BLOCK_ELEMENTS // q_chunk))
    docs_t = torch.from_numpy(d).to(device)
    queries_t = torch.from_numpy(q)
    id_rank = id_rank.to(device)
    scores = np.empty((nq, k), np.float32)
    indices = np.empty((nq, k), np.int64)
    with torch.inference_mode():
        for qs in range(0, nq, q_chunk):
            qb = queries_t[qs : qs + q_chunk].to(device)
            best_s, best_r = None, None
            for ds in range(0, nd, d_chunk):
                s, r = _block_topk(qb @ docs_t[ds : ds + d_chunk].T, ds, k, id_rank)
                if best_s is not None:
                    # Merging exact partial top-k's by the same rule is exact.
                    s, r = _select(torch.cat([best_s, s], 1), torch.cat([best_r, r], 1), id_rank, k)
                best_s, best_r = s, r
            scores[qs : qs + q_chunk] = best_s.cpu().numpy()
            indices[qs : qs + q_chunk] = best_r.cpu().numpy()
    return TopK(scores, indices)


def _search_faiss(q: np.ndarray, d: np.ndarray, k: int, id_rank: torch.Tensor) -> TopK:
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "retrieval.backend='faiss' needs faiss: pip install 'mixsearch[faiss]' (faiss-cpu)"
        ) from err
    nd = d.shape[0]
    index = faiss.IndexFlatIP(d.shape[1])
    index.add(d)
    scores = np.empty((q.shape[0], k), np.float32)
    indices = np.empty((q.shape[0], k), np.int64)
    todo = np.arange(q.shape[0])
    m = min(k + _TIE_MARGIN, nd)
    # Rows whose ties at the k-th place reach the last candidate are searched again with twice
    # as many candidates; with all nd docs as candidates the selection is exact.
    while todo.size:
        vals, rows = index.search(q[todo], m)
        s, r = _select(torch.from_numpy(vals), torch.from_numpy(rows), id_rank, k)
        done = np.ones(todo.size, bool) if m == nd else vals[:, m - 1] != vals[:, k - 1]
        scores[todo[done]], indices[todo[done]] = s.numpy()[done], r.numpy()[done]
        todo, m = todo[~done], min(2 * m, nd)
    return TopK(scores, indices)
