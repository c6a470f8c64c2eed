"""Exact top-k search by inner product, with a deterministic tie-break.

Inputs are already L2-normalised, so the dot product is the cosine similarity. Results are
ordered by score descending, then by document id (``doc_ids`` when given, else the row index),
for both backends. The id order is ``ties``:

* ``"trec"`` (default): id DESCENDING, trec_eval's own order (``form_res_rels.c`` sorts by score
  and then by ``strcmp`` of the docnos, larger first), so a TREC run file of our results scored
  by trec_eval / pytrec_eval gives exactly our metrics, even on tied scores;
* ``"id_asc"``: id ascending (mixsearch's order before; some toolkits use it).

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
from itertools import pairwise

import numpy as np
import torch

from mixsearch.encoders.offline import resolve_device

BACKENDS = ("exact", "faiss")
TIES = ("trec", "id_asc")
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
    ties: str = "trec",
) -> TopK:
    """Return the k highest-scoring docs per query, ties broken by doc id.

    Args:
        queries: ``(nq, d)`` normalised query embeddings.
        docs: ``(nd, d)`` normalised doc embeddings.
        k: number of results per query; clipped to ``nd``.
        doc_ids: ids of the doc rows; equal scores are ordered by id (string order, see
            ``ties``). Without ids, by row index.
        backend: ``"exact"`` (torch) or ``"faiss"`` (``IndexFlatIP``).
        chunk_size: queries per matmul block (exact backend; default from the memory budget).
        device: ``"auto"`` (cuda if available, else cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
            (exact backend; FAISS runs on the CPU).
        ties: ``"trec"`` (id descending, trec_eval's order) or ``"id_asc"``.

    Returns:
        TopK with ``(nq, min(k, nd))`` float32 scores and int64 row indices.

    Raises:
        ValueError: bad shapes, non-finite values, ``k < 1``, ``chunk_size < 1``, ids that do not
            match the rows or repeat, or an unknown ``retrieval.backend`` / ``retrieval.ties``.
        ImportError: ``backend="faiss"`` without faiss installed.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"retrieval.backend: unknown backend {backend!r}; choose one of {BACKENDS}"
        )
    q = _as_matrix(queries, "queries")
    d = _as_matrix(docs, "docs")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"queries have dim {q.shape[1]} but docs have dim {d.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"retrieval.k must be a positive integer, got {k!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"retrieval.chunk_size must be a positive integer, got {chunk_size!r}")
    k = min(int(k), d.shape[0])
    order = IdOrder(doc_ids, d.shape[0], ties)
    if k == 0 or q.shape[0] == 0:
        return TopK(np.zeros((q.shape[0], k), np.float32), np.zeros((q.shape[0], k), np.int64))
    if backend == "faiss":
        return _search_faiss(q, d, k, order)
    return _search_exact(q, d, k, order, chunk_size, resolve_device(device, "retrieval.device"))


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Validate a 2-D finite embedding matrix and return it as C-contiguous float32."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, dim) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name} row {bad} contains NaN or infinite values")
    return arr


class IdOrder:
    """The tie order of the doc rows (``ties``): the secondary sort key of every result.

    ``rank_of_row[r]`` is row r's place in that order; ``row_of_rank`` is its inverse.
    """

    def __init__(self, doc_ids: Sequence[str] | None, n: int, ties: str = "trec") -> None:
        if ties not in TIES:
            raise ValueError(f"retrieval.ties: unknown tie order {ties!r}; choose one of {TIES}")
        if doc_ids is None:
            self.row_of_rank = np.arange(n, dtype=np.int64)
        else:
            if len(doc_ids) != n:
                raise ValueError(f"doc_ids has {len(doc_ids)} ids but docs has {n} rows")
            self.row_of_rank = np.array(sorted(range(n), key=doc_ids.__getitem__), np.int64)
            for a, b in pairwise(self.row_of_rank.tolist()):
                if doc_ids[a] == doc_ids[b]:
                    raise ValueError(f"doc_ids: duplicate id {doc_ids[a]!r} (rows {a} and {b})")
        if ties == "trec":
            self.row_of_rank = self.row_of_rank[::-1].copy()
        self.rank_of_row = np.empty(n, np.int64)
        self.rank_of_row[self.row_of_rank] = np.arange(n, dtype=np.int64)

    def select(self, scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by (-score, id) of the candidates in each row of ``scores``/``rows``.

        Each (score, id rank) pair is packed into one int64 whose ascending order is the result
        order, so one plain sort does the lexicographic sort and the scores decode back exactly.
        """
        return self.unpack(np.sort(self.pack(scores, rows), axis=1)[:, :k])

    def pack(self, scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """int64 sort keys of (score, doc row) pairs: ascending key = result order."""
        sortable = _sortable_int32(np.asarray(scores, np.float32) + np.float32(0))  # -0.0 -> +0.0
        return (~sortable).astype(np.int64) << 32 | self.rank_of_row[rows]

    def unpack(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float32 scores, int64 doc rows) of keys made by :meth:`pack`."""
        scores = _sortable_int32(~(keys >> 32).astype(np.int32)).view(np.float32)
        return scores, self.row_of_rank[keys & 0xFFFFFFFF]


def _sortable_int32(x: np.ndarray) -> np.ndarray:
    """Map float32 bits to int32 with the same order (and back: the map is its own inverse)."""
    bits = x.view(np.int32)
    # Negative floats order by decreasing magnitude: flip their magnitude bits.
    return np.where(bits >= 0, bits, bits ^ np.int32(0x7FFFFFFF))


def block_topk(
    block: torch.Tensor, offset: int, k: int, order: IdOrder
) -> tuple[np.ndarray, np.ndarray]:
    """Exact tie-broken top-k of one score block whose columns are doc rows ``offset...``:
    ``(scores, rows)``, each ``(n, min(k, n_cols))``."""
    n_cols = block.shape[1]
    k = min(k, n_cols)
    m = min(k + _TIE_MARGIN, n_cols)
    vals, cols = torch.topk(block, m, dim=1, sorted=True)
    vals, rows = vals.cpu().numpy(), cols.cpu().numpy() + offset
    out_s, out_r = order.select(vals, rows, k)
    if m == n_cols:
        return out_s, out_r
    # A row is exact unless scores equal to its k-th score reach the last candidate: then some
    # tied docs may have been left out, so rescan that whole row.
    for r in np.flatnonzero(vals[:, m - 1] == vals[:, k - 1]):
        cand = torch.nonzero(block[r] >= float(vals[r, k - 1])).flatten()
        s, rr = order.select(
            block[r, cand].cpu().numpy()[None], cand.cpu().numpy()[None] + offset, k
        )
        out_s[r], out_r[r] = s[0], rr[0]
    return out_s, out_r


def _search_exact(
    q: np.ndarray,
    d: np.ndarray,
    k: int,
    order: IdOrder,
    chunk_size: int | None,
    device: torch.device,
) -> TopK:
    nq, nd = q.shape[0], d.shape[0]
    q_chunk = chunk_size or max(1, _MAX_BLOCK_ELEMENTS // nd)
    q_chunk = min(q_chunk, nq)
    d_chunk = min(nd, max(1, _MAX_BLOCK_ELEMENTS // q_chunk))
    docs_t = torch.from_numpy(d).to(device)
    queries_t = torch.from_numpy(q)
    # One reused score buffer: a fresh large block per chunk costs page faults on the CPU.
    buffer = torch.empty(q_chunk * d_chunk, dtype=torch.float32, device=device)
    scores = np.empty((nq, k), np.float32)
    indices = np.empty((nq, k), np.int64)
    with torch.inference_mode():
        for qs in range(0, nq, q_chunk):
            qb = queries_t[qs : qs + q_chunk].to(device)
            best = None
            for ds in range(0, nd, d_chunk):
                db = docs_t[ds : ds + d_chunk]
                block = buffer[: qb.shape[0] * db.shape[0]].view(qb.shape[0], db.shape[0])
                part = block_topk(torch.mm(qb, db.T, out=block), ds, k, order)
                if best is not None:  # merging exact partial top-k's by the same rule is exact
                    part = order.select(
                        np.hstack([best[0], part[0]]), np.hstack([best[1], part[1]]), k
                    )
                best = part
            scores[qs : qs + q_chunk], indices[qs : qs + q_chunk] = best
    return TopK(scores, indices)


def _search_faiss(q: np.ndarray, d: np.ndarray, k: int, order: IdOrder) -> TopK:
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
        s, r = order.select(vals, rows, k)
        done = np.ones(todo.size, bool) if m == nd else vals[:, m - 1] != vals[:, k - 1]
        scores[todo[done]], indices[todo[done]] = s[done], r[done]
        todo, m = todo[~done], min(2 * m, nd)
    return TopK(scores, indices)
