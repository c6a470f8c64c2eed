"""Fusion sweeps at about the cost of one run: every α of a sweep from one pair of matmuls.

The plain path (:meth:`Evaluator.run <mixsearch.evaluation.Evaluator.run>`) fuses, searches and
scores once per α. Here, for the queries Q and the centred parts ``t_j``, ``i_j`` of the
image+text docs, the score matrices ``S_t = Q·Tᵀ`` and ``S_i = Q·Iᵀ`` are computed once, and
since ``‖α t + (1−α) i‖² = α²‖t‖² + (1−α)²‖i‖² + 2α(1−α)·t·i``, each α's scores are elementwise:

* ``weighted``: ``s_j(α) = (α S_t[:, j] + (1−α) S_i[:, j]) / ‖α t_j + (1−α) i_j‖``;
* ``score``: ``s_j(α) = α S_t[:, j] + (1−α) S_i[:, j]`` with ``T``, ``I`` normalised first.

Unimodal docs do not depend on α. Their top-k is searched once, and its k-th score τ is the bar
an image+text doc must reach to enter a query's top-k; each α keeps only the few docs at or
above τ (a row with more than k of them takes its exact top-k among them) and merges them with
the unimodal list by (score desc, tie order). Metrics come from the rank matrix through a sorted
lookup of the judged pairs and :func:`mixsearch.metrics.measure_columns`, the arithmetic of
:func:`~mixsearch.metrics.evaluate_ranking` itself.

Equality with the plain path: the rankings and metrics are the same, tie order included, except
where two different docs' scores agree to float32 rounding (≈1e-7): the two paths round the
same real score differently (a scaled dot product here, a dot product of scaled vectors there),
as two chunk sizes or devices of the plain path may. Docs with equal vectors tie in both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from mixsearch.data.benchmark import MODALITIES
from mixsearch.diagnostics import masked_centroid
from mixsearch.fusion import Views, l2_normalise
from mixsearch.metrics import check_options, judged_summary, measure_columns
from mixsearch.retrieval import IdOrder, block_topk

SWEEP_METHODS = ("weighted", "score")
# Score-matrix elements (per matrix, float32) of one query chunk: S_t, S_i and one α's scores.
_BLOCK_ELEMENTS = 1 << 23
_NO_KEY = np.iinfo(np.int64).max
# Margin under τ for the α-free bound (rounding of the two paths is ~1e-6 at most).
_MARGIN = 1e-3
# Above this share of (query, doc) pairs kept by the bound, score whole matrices per α.
_SPARSE_SHARE = 0.2
# A query with more than this many times k candidates takes its top-k from the full row.
_HEAVY_FACTOR = 4
# Largest evaluated-queries x docs grade table held densely (int8: 64 MiB).
_DENSE_GRADES = 1 << 26
# Rows of image+text parts copied to float64 at a time (norms, mean cosines).
_FLOAT64_ROWS = 1 << 15


def _weights(alpha: float) -> tuple[np.float32, np.float32]:
    # The plain path's float32 weights (fusion.fuse), so equal inputs round alike.
    return np.float32(alpha), np.float32(1.0 - alpha)


@dataclass
class MixedDocs:
    """α-independent parts of the image+text docs under one fusion method.

    Attributes:
        rows: their corpus rows, ascending.
        method: ``weighted`` or ``score``.
        parts: ``(2m, d)`` the centred text parts, then the centred image parts (``score``:
            normalised), in one array so that one matmul scores both.
        tt, ii, ti: ``(m,)`` float64 ``‖t‖²``, ``‖i‖²`` and ``t·i``.
        probes: ``(2, m, n_probes)`` float64 dot products of the text and image parts with
            the probe vectors given to :meth:`build` (for :meth:`mean_cosines`).
    """

    rows: np.ndarray
    method: str
    parts: np.ndarray
    tt: np.ndarray
    ii: np.ndarray
    ti: np.ndarray
    probes: np.ndarray

    @property
    def text(self) -> np.ndarray:
        return self.parts[: len(self.rows)]

    @property
    def image(self) -> np.ndarray:
        return self.parts[len(self.rows):]

    @classmethod
    def build(cls, centred: Views, method: str, probes: np.ndarray | None = None) -> MixedDocs:
        """From the (centred) doc parts of a run; ``probes``: ``(n_probes, d)`` vectors (query
        centroids) whose dot products with the parts :meth:`mean_cosines` needs."""
        if method not in SWEEP_METHODS:
            raise ValueError(f"fusion.method={method!r} has no sweep fast path ({SWEEP_METHODS})")
        rows = np.flatnonzero(centred.has_text & centred.has_image)
        m = len(rows)
        parts = np.concatenate([centred.text[rows], centred.image[rows]])
        if method == "score":
            parts = l2_normalise(parts)
        p64 = np.zeros((centred.text.shape[1], 0)) if probes is None else np.asarray(probes, np.float64).T
        tt, ii, ti = np.empty(m), np.empty(m), np.empty(m)
        dots = np.empty((2, m, p64.shape[1]))
        # float64 sums, as the plain path's norms and means, over a bounded number of rows at
        # once. (einsum, not numpy's BLAS: OpenBLAS threads left spinning after a call slow the
        # torch matmul that follows on a small machine by half.)
        for start in range(0, m, _FLOAT64_ROWS):
            r = slice(start, min(start + _FLOAT64_ROWS, m))
            t64 = parts[r].astype(np.float64)
            i64 = parts[m + r.start : m + r.stop].astype(np.float64)
            tt[r], ii[r] = np.einsum("ij,ij->i", t64, t64), np.einsum("ij,ij->i", i64, i64)
            ti[r] = np.einsum("ij,ij->i", t64, i64)
            dots[0, r], dots[1, r] = np.einsum("ij,jk->ik", t64, p64), np.einsum("ij,jk->ik", i64, p64)
        return cls(rows, method, parts, tt, ii, ti, dots)

    def inverse_norms(self, alpha: float) -> np.ndarray:
        """``1 / ‖α t + (1−α) i‖`` per doc (float32; ``weighted``), floored as l2_normalise."""
        a, b = (float(w) for w in _weights(alpha))
        sq = a * a * self.tt + b * b * self.ii + 2 * a * b * self.ti
        # Where the closed form cancels (t ≈ −i), take the norm of the vector itself.
        bad = sq < 1e-6 * (a * a * self.tt + b * b * self.ii)
        norms = np.sqrt(np.maximum(sq, 0.0))
        if bad.any():
            wa, wb = _weights(alpha)
            norms[bad] = np.linalg.norm(wa * self.text[bad] + wb * self.image[bad], axis=1)
        return (1.0 / np.maximum(norms.astype(np.float32), np.float32(1e-12))).astype(np.float32)

    def scores(self, s_t: np.ndarray, s_i: np.ndarray, alpha: float) -> np.ndarray:
        """Scores of these docs for one α from the two score matrices of a query chunk."""
        a, b = _weights(alpha)
        out = np.multiply(s_t, a)
        out += np.multiply(s_i, b, out=np.empty_like(s_i))
        if self.method == "weighted":
            out *= self.inverse_norms(alpha)
        return out

    def pair_scores(self, a: np.ndarray, b: np.ndarray, cols: np.ndarray, alpha: float) -> np.ndarray:
        """:meth:`scores` of single (query, doc) pairs, with the same float32 arithmetic."""
        wa, wb = _weights(alpha)
        out = np.multiply(a, wa)
        out += np.multiply(b, wb)
        if self.method == "weighted":
            out *= self.inverse_norms(alpha)[cols]
        return out

    def reachable(self, s_t: torch.Tensor, s_i: torch.Tensor, bar: torch.Tensor) -> torch.Tensor:
        """Mask of the (query, doc) pairs whose score can reach ``bar`` (per query) at some α
        in [0, 1], from an upper bound of the score over α (queries are unit vectors).

        ``score``: the score is linear in α, so its larger end. ``weighted``: the fused
        direction runs through the cone spanned by ``t`` and ``i``; its cosine with the query
        is at most the norm of the query's projection onto their plane when that projection
        falls inside the cone, else the larger cosine at the ends. Docs whose parts are
        (nearly) collinear or zero are always kept. In torch: elementwise work on the whole
        chunk, on all of torch's threads.
        """
        if self.method == "score":
            return torch.maximum(s_t, s_i) >= bar[:, None]
        nt, ni = np.sqrt(self.tt), np.sqrt(self.ii)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = self.ti / (nt * ni)
            unsafe = ~(np.abs(c) <= 0.99)
            det = np.where(unsafe, 1.0, 1.0 - c * c)
            rnt, rni = np.where(unsafe, 0.0, 1.0 / nt), np.where(unsafe, 0.0, 1.0 / ni)
        c32 = torch.from_numpy(np.where(unsafe, 0.0, c).astype(np.float32))
        ct = s_t * torch.from_numpy(rnt.astype(np.float32))  # cosines with the two ends
        ci = s_i * torch.from_numpy(rni.astype(np.float32))
        keep = torch.maximum(ct, ci) >= bar[:, None]
        # The projection's coordinates on (t, i), times det = 1 − c²: inside the cone when
        # both are >= 0; then its squared norm is (u·ct + v·ci) / det.
        u = torch.addcmul(ct, ci, c32, value=-1.0)
        v = torch.addcmul(ci, ct, c32, value=-1.0)
        inside = (u >= 0) & (v >= 0)
        # (Inside the cone ct + ci = (x + y)(1 + c) >= 0, so a bar at or below zero is met by
        # the ends already and the squared comparison only matters for positive bars.)
        sq = u.mul_(ct).add_(v.mul_(ci))
        keep |= inside & (sq >= (bar * bar)[:, None] * torch.from_numpy(det.astype(np.float32)))
        keep[:, torch.from_numpy(unsafe)] = True
        return keep

    def mean_cosines(self, alphas: list[float]) -> np.ndarray:
        """``(n_alphas, n_probes)`` dot products of each probe of :meth:`build` with the mean
        of the fused, normalised vectors at each α (float64), without forming the vectors or
        their mean: ``p · mean_j(w_j (a t_j + b i_j)) = a Σ_j w_j (p·t_j) + b Σ_j w_j (p·i_j)``
        with ``w_j`` the inverse fused norm over ``m`` (``weighted``) or ``1/m`` (``score``)."""
        m = len(self.rows)
        a = np.array([float(_weights(x)[0]) for x in alphas])[:, None]
        b = np.array([float(_weights(x)[1]) for x in alphas])[:, None]
        if self.method == "score":
            w = np.full((len(alphas), m), 1.0 / m)
        else:
            w = np.stack([self.inverse_norms(x).astype(np.float64) / m for x in alphas])
        sums = [np.einsum("am,mr->ar", w, self.probes[n]) for n in (0, 1)]
        return a * sums[0] + b * sums[1]


class ChunkSweep:
    """One query chunk's scores against the image+text docs, ready for any α.

    Most (query, doc) pairs cannot reach the bar τ at any α: a fused doc's score is the cosine
    between the query and a direction in the cone spanned by ``t`` and ``i``, at most the
    norm of the query's projection onto that cone. Pairs whose bound reaches τ (less a
    rounding margin) are kept as a list, and each α scores only those; when too many pairs
    qualify, each α scores the whole matrix instead. Both give the same candidates.
    """

    def __init__(self, mixed: MixedDocs, s_t: np.ndarray, s_i: np.ndarray, tau: np.ndarray) -> None:
        self.mixed, self.s_t, self.s_i, self.tau = mixed, s_t, s_i, tau
        t, i = torch.from_numpy(s_t), torch.from_numpy(s_i)
        keep = mixed.reachable(t, i, torch.from_numpy(tau - np.float32(_MARGIN)))
        self.sparse = int(keep.sum()) <= _SPARSE_SHARE * keep.numel()
        if self.sparse:
            r, j = torch.nonzero(keep).unbind(1)
            self.r, self.j = r.numpy(), j.numpy()
            self.a, self.b = t[r, j].numpy(), i[r, j].numpy()
            self.tau_r = tau[self.r]

    def candidates(self, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, doc columns, scores)`` of the pairs scoring at least τ, row-major."""
        if self.sparse:
            s = self.mixed.pair_scores(self.a, self.b, self.j, alpha)
            # one index array and three takes: three boolean masks cost several times more
            hit = np.flatnonzero(s >= self.tau_r)
            return self.r[hit], self.j[hit], s[hit]
        scores = self.mixed.scores(self.s_t, self.s_i, alpha)
        r, j = np.nonzero(scores >= self.tau[:, None])
        return r, j, scores[r, j]

    def row_scores(self, rows: np.ndarray, alpha: float) -> np.ndarray:
        """All image+text scores of some rows of the chunk."""
        return self.mixed.scores(self.s_t[rows], self.s_i[rows], alpha)


def merge_topk(
    uni_keys: np.ndarray,
    chunk: ChunkSweep,
    alpha: float,
    order: IdOrder,
    mixed_order: IdOrder,
    k: int,
) -> np.ndarray:
    """Packed keys of the top-k of (unimodal top-k) ∪ (image+text docs) per query of a chunk.

    Args:
        uni_keys: ``(n, ku)`` :meth:`IdOrder.pack` keys of the unimodal top-k, ascending.
        chunk: the chunk's image+text scores (its τ: the k-th unimodal score, or ``-inf``).
        alpha: the text weight.
        order: the tie order over corpus rows.
        mixed_order: the same order over the image+text docs alone.
        k: results per query (clipped to the corpus size by the caller).

    Returns:
        ``(n, k)`` keys, ascending (decode with ``order.unpack``).
    """
    n, ku = uni_keys.shape
    rows = chunk.mixed.rows
    r, j, s = chunk.candidates(alpha)
    counts = np.bincount(r, minlength=n)
    heavy = np.flatnonzero(counts > _HEAVY_FACTOR * k)
    if heavy.size:
        # Many image+text docs pass the bar: take their own exact top-k from the full row.
        light = counts[r] <= _HEAVY_FACTOR * k
        r, j, s = r[light], j[light], s[light]
        counts[heavy] = 0
    width = ku + max(int(counts.max(initial=0)), k if heavy.size else 0)
    keys = np.full((n, width), _NO_KEY, np.int64)
    keys[:, :ku] = uni_keys
    if r.size:
        starts = np.cumsum(counts) - counts
        keys[r, ku + np.arange(r.size) - starts[r]] = order.pack(s, rows[j])
    if heavy.size:
        block = torch.from_numpy(np.ascontiguousarray(chunk.row_scores(heavy, alpha)))
        hs, cols = block_topk(block, 0, k, mixed_order)
        keys[heavy, ku : ku + hs.shape[1]] = order.pack(hs, rows[cols])
    if width > ku:
        touched = np.flatnonzero(counts > 0) if not heavy.size else np.arange(n)
        keys[touched] = np.sort(keys[touched], axis=1)
    return keys[:, :k]


class RankScorer:
    """trec_eval measures of rank matrices (rows of ``query_ids``, entries corpus rows).

    Equal to :func:`~mixsearch.metrics.evaluate_ranking` on the same ranked lists: same
    evaluated queries (qrels order, at least one relevant doc), same columns, same arithmetic.
    """

    def __init__(
        self,
        qrels: dict[str, dict[str, int]],
        query_ids: list[str],
        doc_ids: list[str],
        *,
        ks: list[int],
        measures: list[str],
        gain: str,
    ) -> None:
        self.ks = check_options(ks, measures, gain, "trec")
        self.measures, self.gain = list(measures), gain
        self.qids = [q for q, j in qrels.items() if any(g > 0 for g in j.values())]
        if not self.qids:
            raise ValueError("qrels: no query has a relevant document (grade > 0); nothing to evaluate")
        qpos = {q: i for i, q in enumerate(query_ids)}
        self.query_rows = np.array([qpos[q] for q in self.qids], np.int64)
        self._all_rows = np.array_equal(self.query_rows, np.arange(len(query_ids)))
        self.judged = [qrels[q] for q in self.qids]
        dpos = {d: i for i, d in enumerate(doc_ids)}
        self.n_docs = len(doc_ids)
        pairs = [(e * self.n_docs + dpos[d], g) for e, j in enumerate(self.judged)
                 for d, g in j.items() if d in dpos]
        pairs.sort()
        self.keys = np.array([p for p, _ in pairs], np.int64)
        self.grades_of_key = np.array([g for _, g in pairs], np.int64)
        self.stats = judged_summary(self.judged, max(self.ks), gain)
        self._offsets = np.arange(len(self.qids), dtype=np.int64)[:, None] * self.n_docs
        # A dense (query, doc) grade table when small: a gather instead of a binary search.
        self.dense: np.ndarray | None = None
        if len(self.qids) * self.n_docs <= _DENSE_GRADES:
            small = self.grades_of_key.size == 0 or (
                -128 <= self.grades_of_key.min() and self.grades_of_key.max() <= 127)
            self.dense = np.zeros(len(self.qids) * self.n_docs, np.int8 if small else np.int64)
            self.dense[self.keys] = self.grades_of_key

    def grades(self, indices: np.ndarray) -> np.ndarray:
        """``(n_evaluated, k)`` grades of the ranked docs (unjudged: 0)."""
        idx = indices if self._all_rows else indices[self.query_rows]
        lookup = self._offsets + idx
        if self.dense is not None:
            return self.dense[lookup].astype(np.int64)
        if not self.keys.size:
            return np.zeros(lookup.shape, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, lookup), self.keys.size - 1)
        return np.where(self.keys[pos] == lookup, self.grades_of_key[pos], 0)

    def columns(self, indices: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Measure columns and ``first_rel_rank`` (NaN when no relevant doc is ranked).

        One rank matrix at a time: batching several α into one call is slower (its arrays
        leave the CPU cache), and every measure is row by row anyway.
        """
        full = self.grades(indices)
        width = max(self.ks)
        grades = np.zeros((full.shape[0], width), np.int64)
        grades[:, : min(width, full.shape[1])] = full[:, :width]
        rel = full > 0
        first = np.where(rel.any(axis=1), rel.argmax(axis=1) + 1.0, np.inf)
        cols = measure_columns(grades, first, self.judged, ks=self.ks, measures=self.measures,
                               gain=self.gain, judged_stats=self.stats)
        return cols, np.where(np.isinf(first), np.nan, first)


class ModalityShare:
    """:func:`mixsearch.diagnostics.topk_modality_share` of many rankings of one corpus: the
    modalities as integer codes and the corpus shares computed once (string comparisons per
    α cost more than the rest of an α's diagnostics). Same values: a share is a count over a
    size either way."""

    def __init__(self, doc_modalities: np.ndarray, k: int) -> None:
        mods = np.asarray(doc_modalities, dtype=str)
        self.codes = np.full(len(mods), len(MODALITIES), np.int64)
        for c, m in enumerate(MODALITIES):
            self.codes[mods == m] = c
        self.k = k
        self.corpus = {m: float((mods == m).mean()) if mods.size else 0.0 for m in MODALITIES}

    def __call__(self, indices: np.ndarray) -> dict[str, object]:
        top = self.codes[indices[:, : self.k]].ravel()
        counts = np.bincount(top, minlength=len(MODALITIES) + 1)
        return {"k": int(min(self.k, indices.shape[1])),
                "topk": {m: float(counts[c] / top.size) if top.size else 0.0
                         for c, m in enumerate(MODALITIES)},
                "corpus": dict(self.corpus)}


def modality_centroids(docs: Views) -> dict[str, np.ndarray]:
    """Centroids (float64) of the normalised parts of the unimodal docs, by modality."""
    out = {}
    only_text = docs.has_text & ~docs.has_image
    only_image = docs.has_image & ~docs.has_text
    for name, rows, part in (("text", only_text, docs.text), ("image", only_image, docs.image)):
        if rows.any():  # a block of rows at a time, as the plain path's diagnostics
            out[name] = masked_centroid(part, rows, normalise=True)
    return out


def role_centroids(queries: np.ndarray, roles: np.ndarray) -> dict[str, np.ndarray]:
    """Query centroids (float64) by role, in sorted role order."""
    return {r: queries[roles == r].mean(axis=0, dtype=np.float64) for r in sorted(set(roles.tolist()))}


def mean_cosine_from_centroids(
    query_centroids: dict[str, np.ndarray],
    doc_centroids: dict[str, np.ndarray],
    mixed: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`mixsearch.diagnostics.mean_cosine` from query and doc centroids; ``mixed``: the
    image+text docs' cosine per role, when given as numbers (:meth:`MixedDocs.mean_cosines`)."""
    out = {}
    for role, q in query_centroids.items():
        row = {m: float(q @ c) for m, c in doc_centroids.items()}
        if mixed is not None:
            row["image+text"] = float(mixed[role])
        out[role] = {m: row[m] for m in MODALITIES if m in row}
    return out


def group_means(groups: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, dict]:
    """:func:`mixsearch.diagnostics.by_target_modality` of a table given as columns: the mean
    of each column per group (sorted), with counts, summed as pandas sums a group."""
    out: dict[str, dict] = {}
    for g in sorted(set(groups.tolist())):
        rows = np.flatnonzero(groups == g)
        out[str(g)] = {"n_queries": int(rows.size),
                       **{c: float(v[rows].sum() / rows.size) for c, v in columns.items()}}
    return out


def query_chunks(n_queries: int, n_cols: int) -> list[slice]:
    """Query slices whose score matrices over ``n_cols`` docs fit the block budget."""
    size = max(1, _BLOCK_ELEMENTS // max(1, n_cols))
    return [slice(s, min(s + size, n_queries)) for s in range(0, n_queries, size)]


class RankedLists(Mapping):
    """``query id -> list`` view of one row per query (doc ids or scores of a rank matrix),
    made on access: a sweep's results would otherwise build millions of Python objects that
    only a run file reads."""

    def __init__(self, positions: dict[str, int], rows: np.ndarray, values: np.ndarray | None = None) -> None:
        self._positions, self._rows, self._values = positions, rows, values

    def __getitem__(self, qid: str) -> list:
        row = self._rows[self._positions[qid]]
        return (row if self._values is None else self._values[row]).tolist()

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)
