"""Exact top-k search by inner product, with a deterministic tie-break.

Inputs are already L2-normalised, so the dot product is the cosine similarity. Results are
ordered by score descending, then by document id (``doc_ids`` when given, else the row index),
for both backends. The id order is ``ties``:

* ``"trec"`` (default): id DESCENDING, trec_eval's own order (``form_res_rels.c`` sorts by score
  and then by ``strcmp`` of the docnos, larger first), so a TREC run file of our results scored
  by trec_eval / pytrec_eval gives exactly our metrics, even on tied scores;
* ``"id_asc"``: id ascending (mixsearch's order before; some toolkits use it);
* ``"first"``: earlier corpus position first, whatever the ids: the seed's setting-2 script
  (``torch.argmax`` over the corpus in file order returns the first maximum);
* ``"numpy_desc"``: exactly the order of ``np.argsort(scores)[::-1]`` over the whole score
  vector of a query, as the seed's setting-1 script ranks. numpy's default sort is not stable
  and its order of equal scores depends on every score in the vector (and on the CPU's sort
  kernel), so it is not an order of the docs: each query's scores are sorted by that very call
  (exact backend, one index, :func:`search` only; float32 scores like the seed's).

* ``"exact"``: torch matmul in query chunks (and doc chunks when a block would exceed a memory
  budget), ``torch.topk`` per block, partial top-k's merged exactly.
* ``"faiss"``: ``faiss.IndexFlatIP`` (optional dependency, ``pip install mixsearch[faiss]``).

``torch.topk`` and FAISS do not define an order among equal scores, nor which of several equal
scores at the k-th place survive. Both backends therefore fetch a few extra candidates, re-sort
them by (-score, rank of id), and widen the candidate set for the rare rows whose ties at the
k-th place spill past it, so the result is exact, not approximate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch

from mixsearch.encoders.offline import resolve_device

BACKENDS = ("exact", "faiss")
INDEXES = ("flat", "ivf", "hnsw")
TIES = ("trec", "id_asc", "first", "numpy_desc")
#: The tie order that is numpy's own sort of each query's scores (see the module docstring).
NUMPY_DESC = "numpy_desc"
# Largest query-chunk x doc-chunk score block (float32 elements, 128 MiB) held at once.
_MAX_BLOCK_ELEMENTS = 1 << 25
# Most doc rows converted to float32 and scored at once (bounds memory for streamed docs).
_DOC_CHUNK = 1 << 16
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
    index: str = "flat",
    nlist: int | None = None,
    nprobe: int = 32,
    hnsw_m: int = 32,
    ef_search: int = 256,
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
        ties: ``"trec"`` (id descending, trec_eval's order), ``"id_asc"``, ``"first"`` (row
            order) or ``"numpy_desc"`` (``np.argsort(scores)[::-1]`` per query; exact backend).
        index: FAISS index (``backend="faiss"``): ``"flat"`` (exact, the default), ``"ivf"``
            (``IndexIVFFlat``: ``nlist`` k-means cells, default ``4·sqrt(nd)``, ``nprobe``
            searched) or ``"hnsw"`` (``IndexHNSWFlat`` with ``hnsw_m`` links, ``ef_search``).
            IVF and HNSW are approximate: a query may miss true top-k docs (measure recall with
            ``experiments/bench_scale.py``); their candidates are still ordered by (score, id).
        nlist, nprobe, hnsw_m, ef_search: the IVF / HNSW parameters.

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
    if index not in INDEXES:
        raise ValueError(f"retrieval.index: unknown index {index!r}; choose one of {INDEXES}")
    q = _as_matrix(queries, "queries")
    d = _as_matrix(docs, "docs") if backend == "faiss" else np.asarray(docs)
    if d.ndim != 2:
        raise ValueError(f"docs must be a 2-D (n, dim) array, got shape {d.shape}")
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"queries have dim {q.shape[1]} but docs have dim {d.shape[1]}")
    k = _check_k(k, chunk_size)
    k = min(k, d.shape[0])
    if ties == NUMPY_DESC:
        if backend != "exact":
            raise ValueError(f"retrieval.ties={NUMPY_DESC} sorts each query's full score vector; "
                             f"it needs retrieval.backend=exact (got {backend!r})")
        IdOrder(doc_ids, d.shape[0], "first")  # the id checks
        return _search_numpy_desc(q, d, k)
    order = IdOrder(doc_ids, d.shape[0], ties)
    if k == 0 or q.shape[0] == 0:
        return TopK(np.zeros((q.shape[0], k), np.float32), np.zeros((q.shape[0], k), np.int64))
    if backend == "faiss":
        return _search_faiss(q, d, k, order, index=index, nlist=nlist, nprobe=nprobe,
                             hnsw_m=hnsw_m, ef_search=ef_search)
    return _search_exact(q, [d], d.shape[0], k, order, chunk_size,
                         resolve_device(device, "retrieval.device"))


def _search_numpy_desc(q: np.ndarray, d: np.ndarray, k: int) -> TopK:
    """Top-k in the order of ``np.argsort(scores)[::-1]`` over each query's float32 scores."""
    d = _as_matrix(d, "docs")
    scores = np.empty((q.shape[0], k), np.float32)
    rows = np.empty((q.shape[0], k), np.int64)
    for i in range(q.shape[0]):
        # einsum's loop treats every row alike: identical docs get identical scores (a BLAS
        # kernel may round them differently by position, breaking exact ties)
        row = np.einsum("ij,j->i", d, q[i])
        top = np.argsort(row)[::-1][:k]  # the seed's call, verbatim, on that vector
        rows[i], scores[i] = top, row[top]
    return TopK(scores, rows)


def search_blocks(
    queries: np.ndarray,
    blocks: Iterable[np.ndarray],
    k: int,
    *,
    n_docs: int,
    doc_ids: Sequence[str] | None = None,
    chunk_size: int | None = None,
    device: str = "auto",
    ties: str = "trec",
) -> TopK:
    """Exact search over docs given as consecutive row blocks, read one at a time.

    The same results as :func:`search` on the stacked blocks, in bounded memory: each block
    (e.g. a memory-mapped cache part, float16 or float32) is converted to float32 in chunks
    and scored against every query chunk; no ``queries x docs`` matrix and no stacked copy
    of the docs is ever formed, and a generator of blocks is consumed once.

    Args:
        queries: ``(nq, d)`` normalised query embeddings.
        blocks: ``(n_i, d)`` arrays whose rows, in order, are the ``n_docs`` docs.
        k: results per query; clipped to ``n_docs``.
        n_docs: total number of doc rows (checked against the blocks).
        doc_ids, chunk_size, device, ties: as for :func:`search`.

    Raises:
        ValueError: as :func:`search`, or blocks whose rows do not add up to ``n_docs``.
    """
    q = _as_matrix(queries, "queries")
    k = min(_check_k(k, chunk_size), n_docs)
    if ties == NUMPY_DESC:
        raise ValueError(f"retrieval.ties={NUMPY_DESC} sorts a query's full score vector at once; "
                         "streamed doc blocks take the other tie orders")
    order = IdOrder(doc_ids, n_docs, ties)
    if k == 0 or q.shape[0] == 0:
        return TopK(np.zeros((q.shape[0], k), np.float32), np.zeros((q.shape[0], k), np.int64))
    return _search_exact(q, blocks, n_docs, k, order, chunk_size,
                         resolve_device(device, "retrieval.device"))


def _check_k(k: int, chunk_size: int | None) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"retrieval.k must be a positive integer, got {k!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"retrieval.chunk_size must be a positive integer, got {chunk_size!r}")
    return int(k)


def _as_matrix(x: np.ndarray, name: str, offset: int = 0) -> np.ndarray:
    """Validate a 2-D finite embedding matrix and return it as C-contiguous float32 (rows are
    named from ``offset`` on)."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, dim) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name} row {offset + bad} contains NaN or infinite values")
    return arr


class IdOrder:
    """The tie order of the doc rows (``ties``): the secondary sort key of every result.

    ``rank_of_row[r]`` is row r's place in that order; ``row_of_rank`` is its inverse.
    """

    def __init__(self, doc_ids: Sequence[str] | None, n: int, ties: str = "trec") -> None:
        if ties not in TIES:
            raise ValueError(f"retrieval.ties: unknown tie order {ties!r}; choose one of {TIES}")
        if ties == NUMPY_DESC:
            raise ValueError(f"retrieval.ties={NUMPY_DESC} depends on the scores, not only on the "
                             "docs: no fixed doc order gives it (search() sorts each query)")
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
        elif ties == "first":  # corpus position; the ids were still checked for repeats above
            self.row_of_rank = np.arange(n, dtype=np.int64)
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
    blocks: Iterable[np.ndarray],
    nd: int,
    k: int,
    order: IdOrder,
    chunk_size: int | None,
    device: torch.device,
) -> TopK:
    nq, dim = q.shape
    # Doc chunks of at most _DOC_CHUNK rows; query chunks filling the score-block budget.
    q_chunk = min(nq, chunk_size or max(1, _MAX_BLOCK_ELEMENTS // min(nd, _DOC_CHUNK)))
    d_chunk = max(1, _MAX_BLOCK_ELEMENTS // q_chunk)
    queries_t = torch.from_numpy(q)
    # One reused score buffer: a fresh large block per chunk costs page faults on the CPU.
    buffer = torch.empty(q_chunk * min(d_chunk, nd), dtype=torch.float32, device=device)
    # best[qs]: the exact top-k so far of query chunk qs over the docs scanned so far
    best: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    offset = 0
    with torch.inference_mode():
        for blk in blocks:
            if np.ndim(blk) != 2 or blk.shape[1] != dim:
                raise ValueError(f"docs block at row {offset} has shape {np.shape(blk)}; "
                                 f"expected (n, {dim})")
            if offset + blk.shape[0] > nd:
                raise ValueError(f"docs blocks hold more than the {nd} rows announced")
            for bs in range(0, blk.shape[0], d_chunk):
                ds = offset + bs
                chunk = _as_matrix(blk[bs : bs + d_chunk], "docs", ds)
                if not chunk.flags.writeable:  # a read-only memory map: torch wants a copy
                    chunk = chunk.copy()
                db = torch.from_numpy(chunk).to(device)
                for qs in range(0, nq, q_chunk):
                    qb = queries_t[qs : qs + q_chunk].to(device)
                    block = buffer[: qb.shape[0] * db.shape[0]].view(qb.shape[0], db.shape[0])
                    part = block_topk(torch.mm(qb, db.T, out=block), ds, k, order)
                    if qs in best:  # merging exact partial top-k's by the same rule is exact
                        prev = best[qs]
                        part = order.select(np.hstack([prev[0], part[0]]),
                                            np.hstack([prev[1], part[1]]), k)
                    best[qs] = part
            offset += blk.shape[0]
    if offset != nd:
        raise ValueError(f"docs blocks hold {offset} rows, but {nd} were announced")
    return TopK(np.concatenate([best[qs][0] for qs in sorted(best)]),
                np.concatenate([best[qs][1] for qs in sorted(best)]))


def _search_faiss(
    q: np.ndarray,
    d: np.ndarray,
    k: int,
    order: IdOrder,
    *,
    index: str = "flat",
    nlist: int | None = None,
    nprobe: int = 32,
    hnsw_m: int = 32,
    ef_search: int = 256,
) -> TopK:
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "retrieval.backend='faiss' needs faiss: pip install 'mixsearch[faiss]' (faiss-cpu)"
        ) from err
    nd = d.shape[0]
    if index != "flat":
        return _search_faiss_approx(q, d, k, order, index, nlist, nprobe, hnsw_m, ef_search)
    flat = faiss.IndexFlatIP(d.shape[1])
    flat.add(d)
    scores = np.empty((q.shape[0], k), np.float32)
    indices = np.empty((q.shape[0], k), np.int64)
    todo = np.arange(q.shape[0])
    m = min(k + _TIE_MARGIN, nd)
    # Rows whose ties at the k-th place reach the last candidate are searched again with twice
    # as many candidates; with all nd docs as candidates the selection is exact.
    while todo.size:
        vals, rows = flat.search(q[todo], m)
        s, r = order.select(vals, rows, k)
        done = np.ones(todo.size, bool) if m == nd else vals[:, m - 1] != vals[:, k - 1]
        scores[todo[done]], indices[todo[done]] = s[done], r[done]
        todo, m = todo[~done], min(2 * m, nd)
    return TopK(scores, indices)


def build_faiss_index(
    d: np.ndarray,
    index: str,
    *,
    nlist: int | None = None,
    nprobe: int = 32,
    hnsw_m: int = 32,
    ef_search: int = 256,
    seed: int = 0,
):
    """An inner-product FAISS ``ivf`` or ``hnsw`` index over ``d`` (float32, normalised).

    IVF trains its k-means on at most 64 points per cell (a seeded sample; FAISS asks for at
    least 39).

    Raises:
        ValueError: an unknown ``retrieval.index`` or a non-positive parameter (named).
    """
    import faiss

    nd, dim = d.shape
    for name, value in (("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_search", ef_search),
                        ("nlist", 1 if nlist is None else nlist)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"retrieval.{name} must be a positive integer, got {value!r}")
    if index == "hnsw":
        idx = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efSearch = int(ef_search)
        idx.add(d)
        return idx
    if index != "ivf":
        raise ValueError(f"retrieval.index: unknown index {index!r}; choose one of {INDEXES}")
    cells = int(nlist or max(1, round(4 * np.sqrt(nd))))
    cells = min(cells, nd)
    quantizer = faiss.IndexFlatIP(dim)
    idx = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
    sample = d
    if nd > 64 * cells:
        sample = d[np.sort(np.random.default_rng(seed).choice(nd, 64 * cells, replace=False))]
    idx.train(np.ascontiguousarray(sample))
    idx.add(d)
    idx.nprobe = min(int(nprobe), cells)
    return idx


def _search_faiss_approx(
    q: np.ndarray, d: np.ndarray, k: int, order: IdOrder, index: str, nlist: int | None,
    nprobe: int, hnsw_m: int, ef_search: int,
) -> TopK:
    idx = build_faiss_index(d, index, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m,
                            ef_search=ef_search)
    m = min(k + _TIE_MARGIN, d.shape[0])
    vals, rows = idx.search(q, m)
    short = (rows >= 0).sum(axis=1) < k
    vals = np.where(rows < 0, -np.inf, vals).astype(np.float32)
    s, r = order.select(vals, np.maximum(rows, 0), k)
    if short.any():  # too few candidates in the probed cells: search those queries exactly
        ex = _search_exact(q[short], [d], d.shape[0], k, order, None, torch.device("cpu"))
        s[short], r[short] = ex.scores, ex.indices
    return TopK(s, r)
