"""One evaluation from cached embeddings: mix → calibrate → fuse → search → score → diagnose.

:func:`evaluate` is the entry point. :class:`Evaluator` splits it in two so that sweeps are
cheap: the constructor does everything that does not depend on the fusion options (corpus mix,
normalisation, calibration, centring, the gap), and :meth:`Evaluator.run` only fuses, searches
and scores. :meth:`Evaluator.sweep` evaluates many fusion sections at once: an α sweep costs
about one run (:mod:`mixsearch.sweep`), with the results ``run`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from mixsearch.calibration import Calibration, Means, calibration_pairs, resolve
from mixsearch.corpus import doc_image_key, drop_unshowable, mix_corpus, modality_counts
from mixsearch.data.benchmark import MODALITIES, Benchmark, DataError
from mixsearch.diagnostics import (
    by_target_modality,
    centroid,
    gap_from_centroids,
    masked_centroid,
    target_modalities,
    topk_modality_share,
)
from mixsearch.embed.embeddings import Embeddings
from mixsearch.encoders.offline import resolve_device
from mixsearch.fusion import (
    FUSE_ROWS,
    Views,
    build_query_matrix,
    fuse,
    l2_normalise,
    make_views,
    row_wise,
)
from mixsearch.merge import SINGLE, check_merge, merge_lists
from mixsearch.metrics import evaluate_ranking
from mixsearch.retrieval import NUMPY_DESC, IdOrder, TopK, search
from mixsearch.schema import section_options as options
from mixsearch.sweep import (
    SWEEP_METHODS,
    ChunkSweep,
    MixedDocs,
    ModalityShare,
    RankedLists,
    RankScorer,
    group_means,
    mean_cosine_from_centroids,
    merge_topk,
    modality_centroids,
    query_chunks,
    role_centroids,
)

_POOL_KEYS = {"calibration/queries/text": "query_text", "calibration/queries/image": "query_image",
              "calibration/corpus/text": "doc_text", "calibration/corpus/image": "doc_image",
              "calibration/queries/joint": "query_joint", "calibration/corpus/joint": "doc_joint"}
TOPK_SHARE_K = 10


@dataclass
class EvalResult:
    """Scores and diagnostics of one run. :meth:`to_json` is the results contract."""

    metrics: dict[str, float]
    per_query: pd.DataFrame
    by_target_modality: dict[str, dict[str, float]]
    topk_modality_share: dict[str, Any]
    gap: dict[str, Any]
    calibration: dict[str, Any]
    corpus: dict[str, Any]
    #: the ranking that was scored: query id -> top-k doc ids, best first (ties broken)
    ranked: dict[str, list[str]] = field(default_factory=dict)
    #: query id -> the scores of ``ranked[qid]``
    scores: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics), "by_target_modality": self.by_target_modality,
                "topk_modality_share": self.topk_modality_share, "gap": self.gap,
                "calibration": self.calibration, "corpus": self.corpus}


@dataclass
class _QueryState:
    """Per query option: query matrices, roles, calibration notes, the gap, and the top-k among
    unimodal docs (filled by the first search)."""

    before: np.ndarray
    after: np.ndarray
    roles: np.ndarray
    notes: list[str]
    gap: dict[str, Any]
    unimodal_topk: tuple[np.ndarray, np.ndarray] | None = None


class Evaluator:
    """Prepared evaluation of one benchmark under one corpus mix and calibration.

    Args:
        bench: the benchmark.
        embs: raw embeddings by key: ``queries/text``, ``queries/image``, ``corpus/text``,
            ``corpus/image``, ``corpus/screenshot`` (replace mode), ``corpus/joint`` and
            ``queries/joint`` (joint image+text embeddings, ``fusion=joint``) and optionally
            ``calibration/{queries,corpus}/{text,image,joint}``.
        corpus: the ``corpus`` section (options and defaults: :mod:`mixsearch.schema`).
        calibration: the ``calibration`` section.
        retrieval: the ``retrieval`` section.
        metrics: the ``metrics`` section.
        pools: raw calibration embeddings by role; default: the ``calibration/...`` embeddings.
        means: precomputed :class:`Means` (``source`` train / files).
        pairs: raw paired ``(text, image)`` calibration rows for paired methods (``procrustes``);
            default: the calibration items embedded both as text and as image.
        skipped_docs: docs whose image could not be read (id -> reason, from
            ``embed.on_missing=skip``): those the mix shows with an image are dropped from the
            evaluated corpus (:attr:`dropped`); their qrels still count.
    """

    def __init__(
        self,
        bench: Benchmark,
        embs: dict[str, Embeddings],
        *,
        corpus: dict[str, Any] | None = None,
        calibration: dict[str, Any] | None = None,
        retrieval: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        pools: dict[str, np.ndarray] | None = None,
        means: Means | None = None,
        pairs: tuple[np.ndarray, np.ndarray] | None = None,
        skipped_docs: dict[str, str] | None = None,
    ) -> None:
        self.corpus_cfg = options("corpus", corpus)
        self.retrieval_cfg = options("retrieval", retrieval)
        check_merge(self.retrieval_cfg["merge"])
        self.metrics_cfg = options("metrics", metrics)
        assignment = mix_corpus(bench, **self.corpus_cfg, embedding_order=_embedding_order(embs))
        # Target modalities come from the full mix: a query whose doc was dropped keeps its own.
        # What the metrics score: qrels, plus (metrics.absent_qrels=count) the judgements of
        # docs the release's corpus lacks; a query judging only those has no target modality.
        self.qrels = bench.scoring_qrels(self.metrics_cfg["absent_qrels"])
        self.target = {q: "none" for q in self.qrels} | target_modalities(bench.qrels, assignment)
        self.bench, self.assignment, self.dropped = drop_unshowable(
            bench, assignment, skipped_docs or {})
        bench = self.bench
        self.docs = self._doc_views(embs)
        self.queries, self._query_images_missing = self._query_views(embs)
        if pools is None:
            pools = {role: embs[key].vectors for key, role in _POOL_KEYS.items() if key in embs}
        if pairs is None:
            pairs = calibration_pairs(embs)
        self.calibration: Calibration = resolve(
            options("calibration", calibration), self.queries, self.docs, pools=pools, means=means,
            pairs=pairs)
        self._doc_notes: list[str] = []  # e.g. docs that calibration leaves zero
        self.centred_docs = self.calibration.apply(self.docs, "doc", self._doc_notes)
        query_ids = set(self.queries.ids)
        unknown = [q for q in self.qrels if q not in query_ids]
        if unknown:
            raise DataError(f"{bench.name}: qrels query {unknown[0]!r} is not among the queries")
        self._query_cache: dict[tuple[str, float], _QueryState] = {}
        # Place of each doc in the tie order of search() (retrieval.ties).
        # (numpy_desc is no doc order: search() sorts each query's scores; merges refuse it, and
        # the sweep falls back to run(), so this order is only used for ids' checks then)
        ties = self.retrieval_cfg["ties"]
        self._order = IdOrder(self.docs.ids, len(self.docs.ids), "first" if ties == NUMPY_DESC else ties)
        self._id_rank = self._order.rank_of_row
        self._scorer: RankScorer | None = None  # built by the first sweep

    # ---- preparation -------------------------------------------------------------------------
    def _doc_views(self, embs: dict[str, Embeddings]) -> Views:
        records = self.bench.corpus
        shown = [self.assignment[r.id] for r in records]
        has_text = np.array([s != "image" for s in shown])
        has_image = np.array([s != "text" for s in shown])
        image_keys = [doc_image_key(r, self.corpus_cfg["mode"], self.corpus_cfg["replace_with"])
                      if i else None for r, i in zip(records, has_image, strict=True)]
        dim = _dim(embs)
        full_text = np.zeros((len(records), dim), np.float32)
        if has_text.any():  # an image-only corpus (text-to-image tasks) has no text embeddings
            full_text[has_text] = _rows(
                embs, "corpus/text", [r.id for r, t in zip(records, has_text, strict=True) if t])
        image = np.zeros((len(records), dim), np.float32)
        for key in ("corpus/image", "corpus/screenshot"):
            rows = [n for n, k in enumerate(image_keys) if k == key]
            if rows:
                image[rows] = _rows(embs, key, [records[n].id for n in rows])
        joint = _joint_rows(embs, "corpus/joint", records, has_text & has_image, dim)
        return make_views([r.id for r in records], full_text, image, has_text, has_image, joint)

    def _query_views(self, embs: dict[str, Embeddings]) -> tuple[Views, bool]:
        records = self.bench.queries
        has_text = np.array([r.text is not None for r in records])
        has_image = np.array([r.image is not None for r in records])
        images_missing = bool(has_image.any()) and "queries/image" not in embs
        if images_missing:
            has_image = np.zeros_like(has_image)
        dim = _dim(embs)
        parts = []
        for key, mask in (("queries/text", has_text), ("queries/image", has_image)):
            out = np.zeros((len(records), dim), np.float32)
            if mask.any():
                out[mask] = _rows(embs, key, [r.id for r, m in zip(records, mask, strict=True) if m])
            parts.append(out)
        joint = _joint_rows(embs, "queries/joint", records, has_text & has_image, dim)
        views = make_views([r.id for r in records], parts[0], parts[1], has_text, has_image, joint)
        return views, images_missing

    def _query_state(self, mode: str, alpha: float) -> _QueryState:
        """Everything that depends only on the query options, computed once per option."""
        key = (mode, alpha)
        if key in self._query_cache:
            return self._query_cache[key]
        if self._query_images_missing and mode != "text":
            raise DataError(f"fusion.query={mode}: queries have images but embs has no "
                            "'queries/image'; embed them or set fusion.query=text")
        notes: list[str] = []
        before, _ = build_query_matrix(self.queries, mode=mode, alpha=alpha)
        # a query role without its own state borrows the doc role's (recorded in the notes)
        used = self.calibration.apply(self.queries.select(mode), "query", notes)
        after = fuse(used, method="joint" if mode == "joint" else "weighted", alpha=alpha)
        d, c = self.docs, self.centred_docs
        # the docs' centroids a block of rows at a time (no copies of the corpus)
        gap = gap_from_centroids(
            doc_text=(masked_centroid(d.text, d.has_text),
                      masked_centroid(c.text, d.has_text, normalise=True)),
            doc_image=(masked_centroid(d.image, d.has_image),
                       masked_centroid(c.image, d.has_image, normalise=True)),
            queries=(centroid(before), centroid(after)),
        )
        state = _QueryState(before, after, self.queries.select(mode).modalities, notes, gap)
        self._query_cache[key] = state
        return state

    # ---- one run -----------------------------------------------------------------------------
    def run(self, fusion: dict[str, Any] | None = None) -> EvalResult:
        """Fuse, search, score and diagnose under the ``fusion`` section's options."""
        f = options("fusion", fusion)
        qs, d_after, top = self._retrieve(f)

        ids = np.array(self.docs.ids, dtype=object)
        qids = self.queries.ids
        ranked = dict(zip(qids, ids[top.indices].tolist(), strict=True))
        scores = dict(zip(qids, top.scores.tolist(), strict=True))
        mc = self.metrics_cfg
        aggregate, per_query = evaluate_ranking(
            ranked, self.qrels, ks=mc["ks"], measures=mc["measures"], gain=mc["gain"],
            ndcg_variant=mc["ndcg_variant"], scores=scores)

        roles = dict(zip(qids, qs.roles, strict=True))
        table = pd.DataFrame([{"qid": q, "target_modality": self.target[q], "query_role": roles[q],
                               **v} for q, v in per_query.items()])
        mods = self.docs.modalities
        # mean cosines from centroids (equal to diagnostics.mean_cosine); the raw docs' fused
        # vectors are never formed whole, only a block of rows at a time
        gap = {**qs.gap, "query_role": sorted(set(qs.roles.tolist())),
               "mean_cosine_before": mean_cosine_from_centroids(
                   role_centroids(qs.before, qs.roles),
                   self._fused_centroids(self.docs, f["method"], float(f["alpha"]), mods)),
               "mean_cosine_after": mean_cosine_from_centroids(
                   role_centroids(qs.after, qs.roles),
                   {m: masked_centroid(d_after, mods == m) for m in MODALITIES if (mods == m).any()})}
        return EvalResult(
            metrics=aggregate,
            per_query=table,
            by_target_modality=by_target_modality(table),
            topk_modality_share=topk_modality_share(top.indices, mods, TOPK_SHARE_K),
            gap=gap,
            calibration={**self.calibration.summary(), "notes": [*self._doc_notes, *qs.notes]},
            corpus=self._corpus_summary(),
            ranked=ranked,
            scores=scores,
        )

    @staticmethod
    def _fused_centroids(views: Views, method: str, alpha: float, mods: np.ndarray) -> dict[str, np.ndarray]:
        """Per doc modality, the centroid of ``fuse(views)``'s rows, fused a block at a time
        (float64 sums, in MODALITIES order)."""
        sums: dict[str, np.ndarray] = {}
        step = FUSE_ROWS if row_wise(method) else max(1, len(views.ids))  # a plug-in sees all rows
        for lo in range(0, len(views.ids), step):
            block = fuse(views.rows(lo, lo + step), method=method, alpha=alpha)
            for m in MODALITIES:
                keep = mods[lo:lo + step] == m
                if keep.any():
                    sums[m] = sums.get(m, 0.0) + block[keep].sum(axis=0, dtype=np.float64)
        counts = {m: int((mods == m).sum()) for m in sums}
        return {m: sums[m] / counts[m] for m in MODALITIES if m in sums}

    def retrieve(self, fusion: dict[str, Any] | None = None) -> TopK:
        """The ranked top-k (rows of ``bench.corpus``) under the ``fusion`` options."""
        return self._retrieve(options("fusion", fusion))[2]

    def _retrieve(self, f: dict[str, Any]) -> tuple[_QueryState, np.ndarray, TopK]:
        qs = self._query_state(f["query"], float(f["query_alpha"]))
        docs = fuse(self.centred_docs, method=f["method"], alpha=float(f["alpha"]))
        return qs, docs, self._search(qs, docs)

    def _k(self) -> int:
        k = int(self.retrieval_cfg["k"])
        if k < min(max(self.metrics_cfg["ks"]), len(self.docs.ids)):
            raise ValueError(f"retrieval.k={k} is below the largest metrics.ks "
                             f"({max(self.metrics_cfg['ks'])}); those metrics would be truncated")
        return k

    def _search(self, qs: _QueryState, docs: np.ndarray) -> TopK:
        k = self._k()
        unimodal = ~(self.docs.has_text & self.docs.has_image)
        if self.calibration.calibrator.push_down:
            if self.retrieval_cfg["merge"] != SINGLE:
                raise ValueError("calibration=pushdown ranks by its own rule; it takes no "
                                 f"retrieval.merge (got {self.retrieval_cfg['merge']!r})")
            # Push-down (seed): all text docs by cosine, then every other doc by its own
            # cosine; scores 1 - i/100 by rank, as the seed writes them.
            parts = [self._search_rows(qs.after, docs, rows, k)[1]
                     for rows in (~self.docs.has_image, self.docs.has_image) if rows.any()]
            indices = np.concatenate(parts, axis=1)[:, :k]
            ranks = np.arange(indices.shape[1], dtype=np.float32)
            return TopK(np.broadcast_to(1 - ranks / 100, indices.shape).copy(), indices)
        merge = self.retrieval_cfg["merge"]
        if self.retrieval_cfg["ties"] == NUMPY_DESC:
            if merge != SINGLE:
                raise ValueError(f"retrieval.ties={NUMPY_DESC} orders one score vector per query; "
                                 f"it takes no retrieval.merge (got {merge!r})")
            # numpy's order of equal scores depends on the whole vector: one search over all
            return TopK(*self._search_rows(qs.after, docs, np.ones(len(docs), bool), k))
        if merge != SINGLE:
            # each doc modality is its own index; their lists are merged (mixsearch.merge)
            lists = [self._search_rows(qs.after, docs, self.docs.modalities == mod, k)
                     for mod in sorted(set(self.docs.modalities.tolist()))]
            return TopK(*merge_lists(lists, merge, k, self._id_rank, int(self.retrieval_cfg["rrf_k"])))
        if unimodal.all() or not unimodal.any():
            return TopK(*self._search_rows(qs.after, docs, np.ones(len(docs), bool), k))
        # Unimodal docs do not depend on the fusion options: search them once per query option,
        # then merge with the image+text docs' top-k. Both lists are exact under the order
        # (score desc, tie order), so the top-k of their union is the top-k of the whole corpus.
        s_uni, r_uni = self._unimodal_topk(qs, docs, k)
        s_mix, r_mix = self._search_rows(qs.after, docs, ~unimodal, k)
        s, r = np.concatenate([s_uni, s_mix], axis=1), np.concatenate([r_uni, r_mix], axis=1)
        order = np.lexsort((self._id_rank[r], -s), axis=-1)[:, :k]
        return TopK(np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1))

    def _unimodal_topk(self, qs: _QueryState, docs: np.ndarray | None, k: int):
        """Top-k among the unimodal docs, once per query option. ``docs``: the searched doc
        vectors, or None to build those of the unimodal rows only (a unimodal doc's vector is
        ``normalise(its one part)`` under every fusion method)."""
        if qs.unimodal_topk is None:
            uni = ~(self.docs.has_text & self.docs.has_image)
            if docs is None:
                c, idx = self.centred_docs, np.flatnonzero(uni)
                vectors = l2_normalise(c.text[idx] + c.image[idx])  # the absent part is zero
                qs.unimodal_topk = self._search_rows(qs.after, vectors, uni, k, selected=True)
            else:
                qs.unimodal_topk = self._search_rows(qs.after, docs, uni, k)
        return qs.unimodal_topk

    # ---- many fusion options at once -----------------------------------------------------------
    def sweep(self, fusions: Sequence[dict[str, Any] | None]) -> list[EvalResult]:
        """Results of several ``fusion`` sections: what ``[self.run(f) for f in fusions]`` gives.

        Sections that differ only in ``alpha`` (methods ``weighted`` / ``score``, exact search on
        the CPU, trec metrics, no push-down) are evaluated together: two matmuls for all of
        them, then elementwise work per α (see :mod:`mixsearch.sweep`, which also states the
        equality with ``run``). Any other section is evaluated by :meth:`run`.
        """
        opts = [options("fusion", f) for f in fusions]
        out: list[EvalResult | None] = [None] * len(opts)
        groups: dict[tuple[str, str, float], list[int]] = {}
        for n, f in enumerate(opts):
            if self._sweepable(f):
                groups.setdefault((f["method"], f["query"], float(f["query_alpha"])), []).append(n)
            else:
                out[n] = self.run(f)
        for (method, mode, query_alpha), members in groups.items():
            alphas = [float(opts[n]["alpha"]) for n in members]
            for n, result in zip(members, self._sweep(method, mode, query_alpha, alphas), strict=True):
                out[n] = result
        return out  # type: ignore[return-value]

    def _sweepable(self, f: dict[str, Any]) -> bool:
        r = self.retrieval_cfg
        return (f["method"] in SWEEP_METHODS and 0.0 <= float(f["alpha"]) <= 1.0
                and r["backend"] == "exact" and r.get("merge", "single") == "single"
                and r["ties"] != NUMPY_DESC
                and resolve_device(r["device"], "retrieval.device").type == "cpu"
                and not self.calibration.calibrator.push_down
                and self.metrics_cfg["ndcg_variant"] == "trec"
                and bool((self.docs.has_text & self.docs.has_image).any()))

    def _sweep(self, method: str, mode: str, query_alpha: float, alphas: list[float]) -> list[EvalResult]:
        qs = self._query_state(mode, query_alpha)
        q_before, q_after = role_centroids(qs.before, qs.roles), role_centroids(qs.after, qs.roles)
        qs, mixed, tops = self._sweep_topk(method, mode, query_alpha, alphas,
                                           probes=np.stack(list(q_after.values())))
        if self._scorer is None:
            mc = self.metrics_cfg
            self._scorer = RankScorer(self.qrels, self.queries.ids, self.docs.ids,
                                      ks=list(mc["ks"]), measures=list(mc["measures"]),
                                      gain=mc["gain"])
        scorer = self._scorer
        # the raw parts, for the diagnostics
        before_mixed = MixedDocs.build(self.docs, method, probes=np.stack(list(q_before.values())))
        centroids_before = modality_centroids(self.docs)
        centroids_after = modality_centroids(self.centred_docs)
        qids = scorer.qids
        targets = np.array([self.target[q] for q in qids], dtype=object)
        # The columns every α shares, built once (pandas' string columns are slow to make).
        fixed = pd.DataFrame({"qid": qids, "target_modality": targets,
                              "query_role": qs.roles[scorer.query_rows]})
        corpus, share = self._corpus_summary(), ModalityShare(self.docs.modalities, TOPK_SHARE_K)
        cos_before, cos_after = before_mixed.mean_cosines(alphas), mixed.mean_cosines(alphas)
        doc_ids = np.array(self.docs.ids, dtype=object)
        positions = {q: n for n, q in enumerate(self.queries.ids)}
        query_roles = sorted(set(qs.roles.tolist()))
        results = []
        for n, top in enumerate(tops):
            columns, first = scorer.columns(top.indices)
            table = pd.concat([fixed, pd.DataFrame({**columns, "first_rel_rank": first})], axis=1)
            gap = {**qs.gap, "query_role": list(query_roles),
                   "mean_cosine_before": mean_cosine_from_centroids(
                       q_before, centroids_before, dict(zip(q_before, cos_before[n], strict=True))),
                   "mean_cosine_after": mean_cosine_from_centroids(
                       q_after, centroids_after, dict(zip(q_after, cos_after[n], strict=True)))}
            results.append(EvalResult(
                metrics={name: float(col.mean()) for name, col in columns.items()},
                per_query=table,
                by_target_modality=group_means(targets, columns),
                topk_modality_share=share(top.indices),
                gap=gap,
                calibration={**self.calibration.summary(), "notes": [*self._doc_notes, *qs.notes]},
                corpus=dict(corpus),
                ranked=RankedLists(positions, top.indices, doc_ids),  # type: ignore[arg-type]
                scores=RankedLists(positions, top.scores),  # type: ignore[arg-type]
            ))
        return results

    def _sweep_topk(
        self, method: str, mode: str, query_alpha: float, alphas: list[float],
        probes: np.ndarray | None = None,
    ) -> tuple[_QueryState, MixedDocs, list[TopK]]:
        """The top-k of each α (what :meth:`retrieve` gives), from two matmuls in all;
        ``probes``: passed to :meth:`MixedDocs.build`."""
        qs = self._query_state(mode, query_alpha)
        k_opt = self._k()
        n_q, k = len(self.queries.ids), min(k_opt, len(self.docs.ids))
        mixed = MixedDocs.build(self.centred_docs, method, probes)
        if (~(self.docs.has_text & self.docs.has_image)).any():
            s_uni, r_uni = self._unimodal_topk(qs, None, k_opt)
            uni_keys = self._order.pack(s_uni, r_uni)
            tau = s_uni[:, k - 1] if s_uni.shape[1] >= k else np.full(n_q, -np.inf, np.float32)
        else:
            uni_keys, tau = np.zeros((n_q, 0), np.int64), np.full(n_q, -np.inf, np.float32)
        ids = self.docs.ids
        mixed_order = IdOrder([ids[r] for r in mixed.rows], len(mixed.rows),
                              self.retrieval_cfg["ties"])
        keys = np.empty((len(alphas), n_q, k), np.int64)
        m = len(mixed.rows)
        parts = torch.from_numpy(mixed.parts)  # one matmul for both
        with torch.inference_mode():
            for c in query_chunks(n_q, 2 * m):
                q = torch.from_numpy(np.ascontiguousarray(qs.after[c]))
                both = torch.mm(q, parts.T).numpy()
                s_t, s_i = both[:, :m], both[:, m:]
                chunk = ChunkSweep(mixed, s_t, s_i, tau[c])
                for n, alpha in enumerate(alphas):
                    keys[n, c] = merge_topk(uni_keys[c], chunk, alpha, self._order, mixed_order, k)
        return qs, mixed, [TopK(*self._order.unpack(keys[n])) for n in range(len(alphas))]

    def _search_rows(
        self, queries: np.ndarray, docs: np.ndarray, rows: np.ndarray, k: int,
        selected: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among the doc rows selected by the mask ``rows``: (scores, corpus row indices).
        ``selected``: ``docs`` holds those rows only (in corpus order), not the whole corpus."""
        r = self.retrieval_cfg
        idx = np.flatnonzero(rows)
        hit = search(queries, docs if selected else docs[idx], k, doc_ids=[self.docs.ids[i] for i in idx],
                     backend=r["backend"], chunk_size=r["chunk_size"], device=r["device"],
                     ties=r["ties"], index=r["index"], nlist=r["nlist"], nprobe=r["nprobe"],
                     hnsw_m=r["hnsw_m"], ef_search=r["ef_search"])
        return hit.scores, idx[hit.indices]

    def _corpus_summary(self) -> dict[str, Any]:
        cfg = self.corpus_cfg
        out: dict[str, Any] = {"mode": cfg["mode"], "n_docs": len(self.assignment),
                               "counts": modality_counts(self.assignment)}
        if self.dropped:
            out["n_dropped"] = len(self.dropped)
        if self.bench.absent_qrels:
            out["absent_judgements"] = {
                "n": sum(map(len, self.bench.absent_qrels.values())),
                "n_queries": len(self.bench.absent_qrels),
                "scored": self.metrics_cfg["absent_qrels"]}
        if cfg["mode"] == "remix":
            out.update(seed=cfg["seed"], ratio=list(cfg["ratio"]), order=cfg["order"])
        if cfg["mode"] == "replace":
            shots = sum(doc_image_key(r, "replace", cfg["replace_with"]) == "corpus/screenshot"
                        for r in self.bench.corpus if self.assignment[r.id] == "image")
            out.update(seed=cfg["seed"], p=cfg["p"], replace_with=cfg["replace_with"], order=cfg["order"],
                       n_screenshots=int(shots))
        return out


def _embedding_order(embs: dict[str, Embeddings]) -> list[str]:
    """Doc ids in the row order of the corpus embeddings (text rows first, then image rows of
    docs without text): the order precomputed files list them in."""
    seen: dict[str, None] = {}
    for key in ("corpus/text", "corpus/image"):
        if key in embs:
            seen.update(dict.fromkeys(embs[key].ids))
    return list(seen)


def _dim(embs: dict[str, Embeddings]) -> int:
    dims = {key: e.dim for key, e in embs.items()}
    if not dims:
        raise DataError("embs: no embeddings given")
    first = next(iter(dims))
    for key, dim in dims.items():
        if dim != dims[first]:
            raise DataError(f"embs[{key!r}] has dim {dim} but embs[{first!r}] has dim {dims[first]}")
    return dims[first]


def _joint_rows(
    embs: dict[str, Embeddings], key: str, records: list, both: np.ndarray, dim: int
) -> np.ndarray | None:
    """Joint embeddings of the image+text rows (``None`` when ``key`` was not embedded)."""
    if key not in embs:
        return None
    out = np.zeros((len(records), dim), np.float32)
    if both.any():
        out[both] = _rows(embs, key, [r.id for r, b in zip(records, both, strict=True) if b])
    return out


def _rows(embs: dict[str, Embeddings], key: str, ids: list[str]) -> np.ndarray:
    if key not in embs:
        raise DataError(f"embs: no {key!r} embeddings, but {len(ids)} items need them (e.g. {ids[0]!r})")
    try:
        return embs[key].take(ids)
    except KeyError as e:
        raise DataError(f"embs[{key!r}]: {e.args[0]}") from e


def evaluate(
    bench: Benchmark,
    embs: dict[str, Embeddings],
    *,
    corpus: dict[str, Any],
    calibration: dict[str, Any],
    fusion: dict[str, Any],
    retrieval: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    pools: dict[str, np.ndarray] | None = None,
    means: Means | None = None,
) -> EvalResult:
    """Evaluate one configuration on cached embeddings (see :class:`Evaluator`).

    Config sections are plain dicts; missing keys take the defaults of
    :mod:`mixsearch.schema`, unknown keys and wrong values raise
    :class:`~mixsearch.config.ConfigError` (a ``ValueError``) naming the option
    (e.g. ``calibration.method``).
    """
    return Evaluator(bench, embs, corpus=corpus, calibration=calibration, retrieval=retrieval,
                     metrics=metrics, pools=pools, means=means).run(fusion)
