"""Ranking metrics with trec_eval semantics, plus the seed code's NDCG as a named variant.

trec_eval semantics (``ndcg_variant="trec"``, the default):

* relevant = grade > 0; negative grades count as 0, as in trec_eval;
* NDCG@k = DCG@k / IDCG@k with discount 1/log2(rank + 1), gain ``grade`` (``gain="linear"``,
  trec_eval's) or 2^grade - 1 (``gain="exponential"``, the paper's formula); the ideal DCG
  ranks ALL judged docs of the query by grade, cut at k (``ndcg_cut_k``);
* Recall@k = |relevant in top k| / |relevant| (``recall_k``);
* MRR@k = 1 / rank of the first relevant doc if it is within k, else 0 (``recip_rank`` on the
  run cut at k).
* Hit@k = 1 if any relevant doc is within the top k, else 0 (trec_eval's ``success_k``).
  This is what M-BEIR/UniIR report as "Recall@k" (``compute_recall_at_k`` in UniIR's
  ``src/common/mbeir_retriever.py``: 1.0 when the top k and the relevant set intersect); it
  equals recall@k only for queries with one relevant doc. Tables label it "Recall@k (hit)"
  (:data:`DISPLAY_NAMES`).

``ndcg_variant="seed_topk"`` reproduces the seed code: sklearn's
``ndcg_score([rel_window], [scores_window], k=k)`` per query, where the window is the ranked
list as passed (the retrieved list: the seed retrieved top-10 for MixBench, top-100 for setting 1).
The ideal DCG then comes from the window only, and equal scores share their average gain
(sklearn's ``ignore_ties=False``). A window without a relevant doc scores 0. The same gain
function applies to the window's grades.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat

import numpy as np

MEASURES = ("ndcg", "recall", "mrr", "hit")
GAINS = ("linear", "exponential")
NDCG_VARIANTS = ("trec", "seed_topk")

#: How tables head a metric column: M-BEIR's name for hit@k, marked as a hit rate.
DISPLAY_NAMES = {f"hit@{k}": f"Recall@{k} (hit)" for k in (1, 5, 10, 20, 50, 100)}
HIT_NOTE = ("Recall@k (hit) is M-BEIR's Recall@k: the share of queries with at least one "
            "relevant document in the top k (trec_eval success@k), not the fraction of relevant "
            "documents found (recall@k).")


def display_name(metric: str) -> str:
    """The column heading of ``metric`` (``hit@5`` -> ``Recall@5 (hit)``; others unchanged)."""
    return DISPLAY_NAMES.get(metric, metric)


def evaluate_ranking(
    ranked: dict[str, list[str]],
    qrels: dict[str, dict[str, int]],
    *,
    ks: Sequence[int] = (1, 5, 10, 100),
    measures: Sequence[str] = ("ndcg", "recall", "mrr"),
    gain: str = "linear",
    ndcg_variant: str = "trec",
    scores: dict[str, list[float]] | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score ranked lists against graded qrels.

    Evaluated queries are the qrels queries with at least one relevant doc (grade > 0). A
    query missing from ``ranked`` scores 0 on every measure. Queries in ``ranked`` but not in
    ``qrels``, and qrels queries without a relevant doc, are not evaluated (as in trec_eval,
    which has nothing to score them against); they appear in neither output.

    Args:
        ranked: query id -> doc ids, best first, already tie-broken; no repeated doc ids.
        qrels: query id -> {doc id: integer grade}.
        ks: cut-offs; each measure is reported at each k.
        measures: any of ``"ndcg"``, ``"recall"``, ``"mrr"``, ``"hit"``.
        gain: ``"linear"`` (grade) or ``"exponential"`` (2^grade - 1).
        ndcg_variant: ``"trec"`` or ``"seed_topk"`` (see the module docstring).
        scores: query id -> scores aligned with ``ranked[qid]``; required by ``"seed_topk"``
            (which orders and tie-averages by score, as sklearn does), unused otherwise.

    Returns:
        ``(aggregate, per_query)``. ``aggregate`` maps names like ``"ndcg@10"``, ``"recall@1"``,
        ``"mrr@10"`` to the mean over evaluated queries. ``per_query[qid]`` holds the same names
        plus ``"first_rel_rank"``: the 1-based rank of the first relevant doc anywhere in
        ``ranked[qid]``, or NaN when none is retrieved.

    Raises:
        ValueError: unknown ``metrics.measures`` / ``metrics.gain`` / ``metrics.ndcg_variant``,
            bad ``metrics.ks``, no evaluable query, repeated doc ids in a ranked list, or
            missing / misaligned / non-finite ``scores`` for ``"seed_topk"``.
    """
    ks = _check_options(ks, measures, gain, ndcg_variant)
    qids = [qid for qid, judged in qrels.items() if any(g > 0 for g in judged.values())]
    if not qids:
        raise ValueError("qrels: no query has a relevant document (grade > 0); nothing to evaluate")
    lists = [ranked.get(qid, []) for qid in qids]
    for qid, docs in zip(qids, lists, strict=True):
        if len(set(docs)) != len(docs):
            raise ValueError(f"ranked[{qid!r}] lists a doc id more than once")
    judged = [qrels[qid] for qid in qids]
    width = max(ks)
    grades = _grade_matrix(lists, judged, width)
    first = _first_relevant(grades, lists, judged)
    seed_ndcg = None
    if "ndcg" in measures and ndcg_variant == "seed_topk":
        gain_fn = _linear_gain if gain == "linear" else _exponential_gain
        seed_ndcg = _seed_ndcg(qids, lists, judged, scores, gain_fn, ks)
    columns = measure_columns(grades, first, judged, ks=ks, measures=measures, gain=gain,
                              ndcg=seed_ndcg)

    names = list(columns)
    aggregate = {name: float(columns[name].mean()) for name in names}
    table = np.column_stack(
        [columns[n] for n in names] + [np.where(np.isinf(first), np.nan, first)]
    )
    names.append("first_rel_rank")
    per_query = {
        qid: dict(zip(names, row, strict=True))
        for qid, row in zip(qids, table.tolist(), strict=True)
    }
    return aggregate, per_query


def measure_columns(
    grades: np.ndarray,
    first: np.ndarray,
    judged: list[dict[str, int]],
    *,
    ks: Sequence[int],
    measures: Sequence[str],
    gain: str = "linear",
    ndcg: np.ndarray | None = None,
    judged_stats: JudgedStats | None = None,
) -> dict[str, np.ndarray]:
    """Per-query measure columns from the grades of the ranked docs (trec_eval semantics).

    The core of :func:`evaluate_ranking`, public so that callers holding ranks as a matrix
    (fusion sweeps) score them with the very same arithmetic.

    Args:
        grades: ``(n_queries, max(ks))`` grade of the doc at each rank (unjudged, padding: 0).
        first: ``(n_queries,)`` 1-based rank of the first relevant doc, ``inf`` if none.
        judged: each query's qrels (all judged docs, for the ideal DCG and recall base).
        ks: distinct cut-offs (as validated by :func:`evaluate_ranking`).
        measures: any of ``"ndcg"``, ``"recall"``, ``"mrr"``, ``"hit"``.
        gain: ``"linear"`` or ``"exponential"``.
        ndcg: a precomputed ``(n_queries, len(ks))`` NDCG (the ``seed_topk`` variant); default:
            trec_eval's ``ndcg_cut``.
        judged_stats: :func:`judged_stats` of ``judged`` for this width and gain, to reuse
            across many rankings of the same queries (computed here when None).

    Returns:
        ``{"ndcg@k": ..., "recall@k": ..., "mrr@k": ..., "hit@k": ...}`` float64 columns, in
        that order.
    """
    gain_fn = _linear_gain if gain == "linear" else _exponential_gain
    stats = judged_stats or judged_summary(judged, grades.shape[1], gain)
    columns: dict[str, np.ndarray] = {}
    if "ndcg" in measures:
        if ndcg is None:
            ndcg = _trec_ndcg(gain_fn(grades), stats.ideal, list(ks))
        columns.update({f"ndcg@{k}": ndcg[:, i] for i, k in enumerate(ks)})
    if "recall" in measures:
        hits = np.cumsum(grades > 0, axis=1)
        columns.update({f"recall@{k}": hits[:, k - 1] / stats.n_rel for k in ks})
    if "mrr" in measures:
        columns.update({f"mrr@{k}": np.where(first <= k, 1.0 / first, 0.0) for k in ks})
    if "hit" in measures:
        columns.update({f"hit@{k}": (first <= k).astype(np.float64) for k in ks})
    return columns


@dataclass
class JudgedStats:
    """What the measures need from the qrels alone: relevant counts and the ideal DCG."""

    n_rel: np.ndarray
    ideal: np.ndarray


def judged_summary(judged: list[dict[str, int]], width: int, gain: str = "linear") -> JudgedStats:
    """:class:`JudgedStats` of each query's qrels for rankings ``width`` long."""
    gain_fn = _linear_gain if gain == "linear" else _exponential_gain
    n_rel = np.array([sum(g > 0 for g in j.values()) for j in judged], dtype=np.float64)
    return JudgedStats(n_rel, _ideal_dcg(judged, gain_fn, width))


def check_options(
    ks: Sequence[int], measures: Sequence[str], gain: str, ndcg_variant: str
) -> list[int]:
    """Validate the metric options; returns the distinct ks (first occurrence order)."""
    return _check_options(ks, measures, gain, ndcg_variant)


def _check_options(
    ks: Sequence[int], measures: Sequence[str], gain: str, ndcg_variant: str
) -> list[int]:
    unknown = [m for m in measures if m not in MEASURES]
    if unknown or not measures:
        raise ValueError(f"metrics.measures: unknown {unknown or 'empty'} (choose from {MEASURES})")
    if gain not in GAINS:
        raise ValueError(f"metrics.gain: unknown gain {gain!r}; choose one of {GAINS}")
    if ndcg_variant not in NDCG_VARIANTS:
        raise ValueError(
            f"metrics.ndcg_variant: unknown variant {ndcg_variant!r}; choose one of {NDCG_VARIANTS}"
        )
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1]
    if bad or not ks:
        raise ValueError(f"metrics.ks must be positive integers, got {list(ks)}")
    return list(dict.fromkeys(int(k) for k in ks))


def _linear_gain(grades: np.ndarray) -> np.ndarray:
    return np.maximum(grades, 0).astype(np.float64)


def _exponential_gain(grades: np.ndarray) -> np.ndarray:
    return np.exp2(np.maximum(grades, 0).astype(np.float64)) - 1.0


def _discount(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(n) + 2.0)


def _padded(rows: list[list], width: int, fill: float, dtype) -> np.ndarray:
    """Stack ragged rows (each at most ``width`` long) into a ``fill``-padded matrix."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    out = np.full((len(rows), width), fill, dtype=dtype)
    flat = np.fromiter(chain.from_iterable(rows), dtype=dtype, count=int(lengths.sum()))
    out[np.arange(width) < lengths[:, None]] = flat
    return out


def _grade_matrix(lists: list[list[str]], judged: list[dict[str, int]], width: int) -> np.ndarray:
    """Grades of the first ``width`` ranked docs per query (unjudged and padding: 0)."""
    rows = [
        list(map(j.get, docs[:width], repeat(0))) for docs, j in zip(lists, judged, strict=True)
    ]
    return _padded(rows, width, 0, np.int64)


def _first_relevant(
    grades: np.ndarray, lists: list[list[str]], judged: list[dict[str, int]]
) -> np.ndarray:
    """1-based rank of the first relevant doc per query (inf if none), beyond the cut too."""
    rel = grades > 0
    first = np.where(rel.any(axis=1), rel.argmax(axis=1) + 1.0, np.inf)
    width = grades.shape[1]
    for i in np.flatnonzero(np.isinf(first)):
        tail = (r for r, doc in enumerate(lists[i][width:], width + 1) if judged[i].get(doc, 0) > 0)
        first[i] = next(tail, math.inf)
    return first


def _ideal_dcg(judged: list[dict[str, int]], gain_fn, width: int) -> np.ndarray:
    """Cumulative DCG of each query's ideal ranking of ALL its judged docs, ``(n, width)``."""
    ideal_rows = [sorted((g for g in j.values() if g > 0), reverse=True)[:width] for j in judged]
    return np.cumsum(gain_fn(_padded(ideal_rows, width, 0, np.int64)) * _discount(width), axis=1)


def _trec_ndcg(gains: np.ndarray, ideal: np.ndarray, ks: list[int]) -> np.ndarray:
    """trec_eval ``ndcg_cut``: DCG over the ideal DCG of all judged docs (:func:`_ideal_dcg`)."""
    dcg = np.cumsum(gains * _discount(gains.shape[1]), axis=1)
    cols = [k - 1 for k in ks]
    return dcg[:, cols] / ideal[:, cols]


def _seed_ndcg(
    qids: list[str],
    lists: list[list[str]],
    judged: list[dict[str, int]],
    scores: dict[str, list[float]] | None,
    gain_fn,
    ks: list[int],
) -> np.ndarray:
    """sklearn ``ndcg_score([rel], [score], k=k)`` over each query's retrieved window, batched."""
    if scores is None:
        raise ValueError("metrics.ndcg_variant='seed_topk' needs the retrieval scores (scores=...)")
    windows = []
    for qid, docs in zip(qids, lists, strict=True):
        s = scores.get(qid, []) if docs else []
        if len(s) != len(docs):
            raise ValueError(f"scores[{qid!r}] has {len(s)} scores for {len(docs)} ranked docs")
        windows.append(s)
    width = max(1, max(map(len, lists)))
    sc = _padded(windows, width, -np.inf, np.float64)
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    if not np.isfinite(sc[np.arange(width) < lengths[:, None]]).all():
        raise ValueError("scores: seed_topk needs finite scores")
    gains = gain_fn(_grade_matrix(lists, judged, width))
    # Order each window by score (stable), then give tied scores their group's mean gain over
    # the group's summed discounts: sklearn's tie-averaged DCG.
    order = np.argsort(-sc, axis=1, kind="stable")
    sc, gains = np.take_along_axis(sc, order, 1), np.take_along_axis(gains, order, 1)
    new_group = np.ones_like(sc, dtype=bool)
    new_group[:, 1:] = sc[:, 1:] != sc[:, :-1]
    group = np.cumsum(new_group.ravel()) - 1
    n_groups = int(group[-1]) + 1
    count = np.bincount(group, minlength=n_groups)
    mean_gain = np.bincount(group, weights=gains.ravel(), minlength=n_groups) / count
    group_row = np.repeat(np.arange(len(lists)), new_group.sum(axis=1))
    ideal_sorted = -np.sort(-gains, axis=1)
    out = np.empty((len(lists), len(ks)))
    for i, k in enumerate(ks):
        disc = _discount(width)
        disc[k:] = 0.0
        disc_sum = np.bincount(group, weights=np.tile(disc, len(lists)), minlength=n_groups)
        dcg = np.bincount(group_row, weights=mean_gain * disc_sum, minlength=len(lists))
        idcg = ideal_sorted @ disc
        out[:, i] = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
    return out
