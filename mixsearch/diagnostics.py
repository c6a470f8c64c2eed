"""Modality diagnostics: the gap, similarity by modality, what the top-k shows, and scores by
the modality of the relevant document.

All inputs are L2-normalised (or calibrated-and-renormalised) vectors. The mean cosine over all
query-doc pairs equals the dot product of the query centroid and the doc centroid, so none of
these needs the full score matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mixsearch.data.benchmark import MODALITIES, DataError, Qrels
from mixsearch.fusion import l2_normalise


def centroid(rows: np.ndarray) -> np.ndarray | None:
    """Mean row, or ``None`` for an empty set."""
    return rows.mean(axis=0, dtype=np.float64) if len(rows) else None


#: Rows read at a time by the chunked centroids (their temporaries stay this size).
CENTROID_ROWS = 1 << 16


def masked_centroid(x: np.ndarray, mask: np.ndarray, *, normalise: bool = False) -> np.ndarray | None:
    """``centroid(x[mask])`` (of the L2-normalised rows when ``normalise``), summed a block of
    rows at a time in float64 instead of copying the selected rows; ``None`` when none is."""
    total, n = np.zeros(x.shape[1]), 0
    for lo in range(0, len(x), CENTROID_ROWS):
        keep = mask[lo:lo + CENTROID_ROWS]
        if keep.any():
            rows = x[lo:lo + CENTROID_ROWS][keep]
            total += (l2_normalise(rows) if normalise else rows).sum(axis=0, dtype=np.float64)
            n += int(keep.sum())
    return total / n if n else None


def centroid_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """L2 distance between the centroids of two sets of rows (``None`` if either is empty)."""
    ca, cb = centroid(a), centroid(b)
    return None if ca is None or cb is None else float(np.linalg.norm(ca - cb))


def modality_gap(
    *,
    doc_text: tuple[np.ndarray, np.ndarray],
    doc_image: tuple[np.ndarray, np.ndarray],
    queries: tuple[np.ndarray, np.ndarray],
) -> dict[str, float | None]:
    """Centroid distances before and after calibration.

    Each argument is a ``(before, after)`` pair of row sets: normalised embeddings, and the
    calibrated, renormalised ones. Docs contribute the parts they show (an image+text doc both).

    Returns:
        ``centroid_distance_before/after`` (doc text vs doc image),
        ``query_doc_image_distance_before/after`` and ``query_doc_text_distance_before/after``.
    """
    return gap_from_centroids(doc_text=(centroid(doc_text[0]), centroid(doc_text[1])),
                              doc_image=(centroid(doc_image[0]), centroid(doc_image[1])),
                              queries=(centroid(queries[0]), centroid(queries[1])))


def gap_from_centroids(
    *,
    doc_text: tuple[np.ndarray | None, np.ndarray | None],
    doc_image: tuple[np.ndarray | None, np.ndarray | None],
    queries: tuple[np.ndarray | None, np.ndarray | None],
) -> dict[str, float | None]:
    """:func:`modality_gap` from the ``(before, after)`` centroids of each row set."""
    out: dict[str, float | None] = {}
    pairs = {"centroid_distance": (doc_text, doc_image),
             "query_doc_image_distance": (queries, doc_image),
             "query_doc_text_distance": (queries, doc_text)}
    for name, (a, b) in pairs.items():
        for n, when in enumerate(("before", "after")):
            ca, cb = a[n], b[n]
            out[f"{name}_{when}"] = None if ca is None or cb is None else float(np.linalg.norm(ca - cb))
    return out


def mean_cosine(
    queries: np.ndarray,
    query_roles: Sequence[str],
    docs: np.ndarray,
    doc_modalities: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Mean score per (query role, doc modality) over all pairs: ``{role: {modality: cos}}``."""
    roles, mods = np.asarray(query_roles), np.asarray(doc_modalities)
    out: dict[str, dict[str, float]] = {}
    for role in sorted(set(roles.tolist())):
        q = centroid(queries[roles == role])
        out[role] = {m: float(q @ centroid(docs[mods == m])) for m in MODALITIES if (mods == m).any()}
    return out


def topk_modality_share(
    indices: np.ndarray, doc_modalities: Sequence[str], k: int = 10
) -> dict[str, object]:
    """Share of each doc modality among the top-k results vs its share of the corpus.

    Args:
        indices: ``(nq, >= k)`` ranked doc rows.
        doc_modalities: modality of each doc row.
        k: cut-off (clipped to the number of ranked docs).
    """
    mods = np.asarray(doc_modalities)
    top = mods[indices[:, :k]].ravel()
    return {
        "k": int(min(k, indices.shape[1])),
        "topk": {m: float((top == m).mean()) if top.size else 0.0 for m in MODALITIES},
        "corpus": {m: float((mods == m).mean()) if mods.size else 0.0 for m in MODALITIES},
    }


def target_modalities(qrels: Qrels, assignment: dict[str, str]) -> dict[str, str]:
    """Modality of each query's relevant docs (grade > 0); ``"several"`` when they differ.

    Raises:
        DataError: a judged relevant doc is not in the corpus (names the query and doc id).
    """
    out = {}
    for qid, judged in qrels.items():
        mods = set()
        for cid, grade in judged.items():
            if grade > 0:
                if cid not in assignment:
                    raise DataError(f"qrels: query {qid!r} judges doc {cid!r}, not in the corpus")
                mods.add(assignment[cid])
        out[qid] = mods.pop() if len(mods) == 1 else "several" if mods else "none"
    return out


def by_target_modality(per_query: pd.DataFrame, column: str = "target_modality") -> dict[str, dict]:
    """Mean of every numeric per-query measure, grouped by target modality, with counts."""
    numeric = [c for c in per_query.columns
               if c != column and c != "first_rel_rank" and pd.api.types.is_numeric_dtype(per_query[c])]
    out: dict[str, dict] = {}
    for mod, group in per_query.groupby(column, sort=True):
        out[str(mod)] = {"n_queries": int(len(group)),
                         **{c: float(group[c].mean()) for c in numeric}}
    return out


def task_breakdown(
    per_query: pd.DataFrame, query_task: dict[str, str], headline: dict[str, str] | None = None
) -> dict[str, dict]:
    """Metrics per task of a benchmark that pools several (M-BEIR ``task=all``), and their
    macro average: UniIR reports one figure per task and the mean of those, while the run's
    ``metrics`` average over all queries (a micro average that large tasks dominate).

    Args:
        per_query: the run's per-query table (``qid`` and the measure columns).
        query_task: query id -> task name, for every evaluated query.
        headline: task -> its headline measure (UniIR: Recall@5, Recall@10 for some datasets).

    Returns:
        ``{"by_task": {task: {"n_queries", measure: mean, ...}}, "task_macro": {measure: mean
        over tasks}}``, plus ``"task_headline_macro"`` (``{"value", "measures"}``: the mean of
        each task's own headline) when ``headline`` is given.

    Raises:
        KeyError: an evaluated query without a task (names it).
    """
    missing = [q for q in per_query["qid"] if q not in query_task]
    if missing:
        raise KeyError(f"query {missing[0]!r} has no task")
    table = per_query.assign(task=per_query["qid"].map(query_task))
    by_task = by_target_modality(table.drop(columns=["target_modality"], errors="ignore"), column="task")
    measures = [c for c in next(iter(by_task.values())) if c != "n_queries"]
    out: dict[str, dict] = {
        "by_task": by_task,
        "task_macro": {m: float(np.mean([v[m] for v in by_task.values()])) for m in measures},
    }
    if headline:
        chosen = {t: headline[t] for t in by_task}
        if all(m in measures for m in chosen.values()):
            out["task_headline_macro"] = {
                "value": float(np.mean([by_task[t][m] for t, m in chosen.items()])),
                "measures": chosen}
    return out
