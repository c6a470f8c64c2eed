"""One evaluation from cached embeddings: mix → calibrate → fuse → search → score → diagnose.

:func:`evaluate` is the entry point. :class:`Evaluator` splits it in two so that sweeps are
cheap: the constructor does everything that does not depend on the fusion options (corpus mix,
normalisation, calibration, centring, the gap), and :meth:`Evaluator.run` only fuses, searches
and scores. An α sweep is one ``Evaluator`` and one ``run`` per α.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mixsearch.calibration import Calibration, Means, resolve
from mixsearch.corpus import doc_image_key, mix_corpus, modality_counts
from mixsearch.data.benchmark import Benchmark, DataError
from mixsearch.diagnostics import (
    by_target_modality,
    mean_cosine,
    modality_gap,
    target_modalities,
    topk_modality_share,
)
from mixsearch.embed.embeddings import Embeddings
from mixsearch.fusion import Views, build_query_matrix, centre, fuse, l2_normalise, make_views
from mixsearch.metrics import evaluate_ranking
from mixsearch.retrieval import TopK, search
from mixsearch.schema import section_options as options

_POOL_KEYS = {"calibration/queries/text": "query_text", "calibration/queries/image": "query_image",
              "calibration/corpus/text": "doc_text", "calibration/corpus/image": "doc_image"}
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
            ``corpus/image``, ``corpus/screenshot`` (replace mode) and optionally
            ``calibration/{queries,corpus}/{text,image}``.
        corpus: the ``corpus`` section (see :data:`DEFAULTS`).
        calibration: the ``calibration`` section.
        retrieval: the ``retrieval`` section.
        metrics: the ``metrics`` section.
        pools: raw calibration embeddings by role; default: the ``calibration/...`` embeddings.
        means: precomputed :class:`Means` (``source`` train / files).
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
    ) -> None:
        self.bench = bench
        self.corpus_cfg = options("corpus", corpus)
        self.retrieval_cfg = options("retrieval", retrieval)
        self.metrics_cfg = options("metrics", metrics)
        self.assignment = mix_corpus(bench, **self.corpus_cfg)
        self.docs = self._doc_views(embs)
        self.queries, self._query_images_missing = self._query_views(embs)
        if pools is None:
            pools = {role: embs[key].vectors for key, role in _POOL_KEYS.items() if key in embs}
        self.calibration: Calibration = resolve(
            options("calibration", calibration), self.queries, self.docs, pools=pools, means=means)
        m = self.calibration.means
        self.centred_docs = centre(self.docs, m.get("doc_text"), m.get("doc_image"))
        self.target = target_modalities(bench.qrels, self.assignment)
        query_ids = set(self.queries.ids)
        unknown = [q for q in bench.qrels if q not in query_ids]
        if unknown:
            raise DataError(f"{bench.name}: qrels query {unknown[0]!r} is not among the queries")
        self._query_cache: dict[tuple[str, float], _QueryState] = {}
        # Rank of each doc id in ascending string order: the tie-break of search().
        self._id_rank = np.empty(len(self.docs.ids), np.int64)
        self._id_rank[np.argsort(np.array(self.docs.ids, dtype=object), kind="stable")] = (
            np.arange(len(self.docs.ids)))

    # ---- preparation -------------------------------------------------------------------------
    def _doc_views(self, embs: dict[str, Embeddings]) -> Views:
        records = self.bench.corpus
        shown = [self.assignment[r.id] for r in records]
        has_text = np.array([s != "image" for s in shown])
        has_image = np.array([s != "text" for s in shown])
        text = _rows(embs, "corpus/text", [r.id for r, t in zip(records, has_text, strict=True) if t])
        image_keys = [doc_image_key(r, self.corpus_cfg["mode"], self.corpus_cfg["replace_with"])
                      if i else None for r, i in zip(records, has_image, strict=True)]
        dim = _dim(embs)
        image = np.zeros((len(records), dim), np.float32)
        for key in ("corpus/image", "corpus/screenshot"):
            rows = [n for n, k in enumerate(image_keys) if k == key]
            if rows:
                image[rows] = _rows(embs, key, [records[n].id for n in rows])
        full_text = np.zeros((len(records), dim), np.float32)
        full_text[has_text] = text
        return make_views([r.id for r in records], full_text, image, has_text, has_image)

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
        return make_views([r.id for r in records], parts[0], parts[1], has_text, has_image), images_missing

    def _query_state(self, mode: str, alpha: float) -> _QueryState:
        """Everything that depends only on the query options, computed once per option."""
        key = (mode, alpha)
        if key in self._query_cache:
            return self._query_cache[key]
        if self._query_images_missing and mode != "text":
            raise DataError(f"fusion.query={mode}: queries have images but embs has no "
                            "'queries/image'; embed them or set fusion.query=text")
        m, notes = self.calibration.means, []
        image_mean = m.get("query_image")
        uses_images = mode != "text" and self.queries.has_image.any()
        if self.calibration.method == "gr" and image_mean is None and uses_images:
            # No query-image pool: the doc-image mean is the closest stand-in (recorded).
            image_mean = m.get("doc_image")
            notes.append("query_image: doc_image mean used (no query_image mean)")
            if image_mean is None:
                raise ValueError("calibration: image queries need a query_image or doc_image mean")
        before, _ = build_query_matrix(self.queries, mode=mode, alpha=alpha)
        after, _ = build_query_matrix(self.queries, mode=mode, alpha=alpha,
                                      text_mean=m.get("query_text"), image_mean=image_mean)
        d, c = self.docs, self.centred_docs
        gap = modality_gap(
            doc_text=(d.text[d.has_text], l2_normalise(c.text[d.has_text])),
            doc_image=(d.image[d.has_image], l2_normalise(c.image[d.has_image])),
            queries=(before, after),
        )
        state = _QueryState(before, after, self.queries.select(mode).modalities, notes, gap)
        self._query_cache[key] = state
        return state

    # ---- one run -----------------------------------------------------------------------------
    def run(self, fusion: dict[str, Any] | None = None) -> EvalResult:
        """Fuse, search, score and diagnose under the ``fusion`` section's options."""
        f = options("fusion", fusion)
        qs, d_after, top = self._retrieve(f)
        d_before = fuse(self.docs, method=f["method"], alpha=float(f["alpha"]))

        ids = np.array(self.docs.ids, dtype=object)
        qids = self.queries.ids
        ranked = dict(zip(qids, ids[top.indices].tolist(), strict=True))
        scores = dict(zip(qids, top.scores.tolist(), strict=True))
        mc = self.metrics_cfg
        aggregate, per_query = evaluate_ranking(
            ranked, self.bench.qrels, ks=mc["ks"], measures=mc["measures"], gain=mc["gain"],
            ndcg_variant=mc["ndcg_variant"], scores=scores)

        roles = dict(zip(qids, qs.roles, strict=True))
        table = pd.DataFrame([{"qid": q, "target_modality": self.target[q], "query_role": roles[q],
                               **v} for q, v in per_query.items()])
        mods = self.docs.modalities
        gap = {**qs.gap, "query_role": sorted(set(qs.roles.tolist())),
               "mean_cosine_before": mean_cosine(qs.before, qs.roles, d_before, mods),
               "mean_cosine_after": mean_cosine(qs.after, qs.roles, d_after, mods)}
        return EvalResult(
            metrics=aggregate,
            per_query=table,
            by_target_modality=by_target_modality(table),
            topk_modality_share=topk_modality_share(top.indices, mods, TOPK_SHARE_K),
            gap=gap,
            calibration={**self.calibration.summary(), "notes": list(qs.notes)},
            corpus=self._corpus_summary(),
            ranked=ranked,
            scores=scores,
        )

    def retrieve(self, fusion: dict[str, Any] | None = None) -> TopK:
        """The ranked top-k (rows of ``bench.corpus``) under the ``fusion`` options."""
        return self._retrieve(options("fusion", fusion))[2]

    def _retrieve(self, f: dict[str, Any]) -> tuple[_QueryState, np.ndarray, TopK]:
        qs = self._query_state(f["query"], float(f["query_alpha"]))
        docs = fuse(self.centred_docs, method=f["method"], alpha=float(f["alpha"]))
        return qs, docs, self._search(qs, docs)

    def _search(self, qs: _QueryState, docs: np.ndarray) -> TopK:
        k = int(self.retrieval_cfg["k"])
        if k < min(max(self.metrics_cfg["ks"]), len(self.docs.ids)):
            raise ValueError(f"retrieval.k={k} is below the largest metrics.ks "
                             f"({max(self.metrics_cfg['ks'])}); those metrics would be truncated")
        unimodal = ~(self.docs.has_text & self.docs.has_image)
        if self.calibration.method == "pushdown":
            # Push-down (seed): all text docs by cosine, then every other doc by its own
            # cosine; scores 1 - i/100 by rank, as the seed writes them.
            parts = [self._search_rows(qs.after, docs, rows, k)[1]
                     for rows in (~self.docs.has_image, self.docs.has_image) if rows.any()]
            indices = np.concatenate(parts, axis=1)[:, :k]
            ranks = np.arange(indices.shape[1], dtype=np.float32)
            return TopK(np.broadcast_to(1 - ranks / 100, indices.shape).copy(), indices)
        if unimodal.all() or not unimodal.any():
            return TopK(*self._search_rows(qs.after, docs, np.ones(len(docs), bool), k))
        # Unimodal docs do not depend on the fusion options: search them once per query option,
        # then merge with the image+text docs' top-k. Both lists are exact under the order
        # (score desc, id asc), so the top-k of their union is the top-k of the whole corpus.
        if qs.unimodal_topk is None:
            qs.unimodal_topk = self._search_rows(qs.after, docs, unimodal, k)
        s_uni, r_uni = qs.unimodal_topk
        s_mix, r_mix = self._search_rows(qs.after, docs, ~unimodal, k)
        s, r = np.concatenate([s_uni, s_mix], axis=1), np.concatenate([r_uni, r_mix], axis=1)
        order = np.lexsort((self._id_rank[r], -s), axis=-1)[:, :k]
        return TopK(np.take_along_axis(s, order, 1), np.take_along_axis(r, order, 1))

    def _search_rows(
        self, queries: np.ndarray, docs: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among the doc rows selected by the mask ``rows``: (scores, corpus row indices)."""
        r = self.retrieval_cfg
        idx = np.flatnonzero(rows)
        hit = search(queries, docs[idx], k, doc_ids=[self.docs.ids[i] for i in idx],
                     backend=r["backend"], chunk_size=r["chunk_size"], device=r["device"])
        return hit.scores, idx[hit.indices]

    def _corpus_summary(self) -> dict[str, Any]:
        cfg = self.corpus_cfg
        out: dict[str, Any] = {"mode": cfg["mode"], "n_docs": len(self.assignment),
                               "counts": modality_counts(self.assignment)}
        if cfg["mode"] == "remix":
            out.update(seed=cfg["seed"], ratio=list(cfg["ratio"]))
        if cfg["mode"] == "replace":
            shots = sum(doc_image_key(r, "replace", cfg["replace_with"]) == "corpus/screenshot"
                        for r in self.bench.corpus if self.assignment[r.id] == "image")
            out.update(seed=cfg["seed"], p=cfg["p"], replace_with=cfg["replace_with"],
                       n_screenshots=int(shots))
        return out


def _dim(embs: dict[str, Embeddings]) -> int:
    dims = {key: e.dim for key, e in embs.items()}
    if not dims:
        raise DataError("embs: no embeddings given")
    first = next(iter(dims))
    for key, dim in dims.items():
        if dim != dims[first]:
            raise DataError(f"embs[{key!r}] has dim {dim} but embs[{first!r}] has dim {dims[first]}")
    return dims[first]


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
