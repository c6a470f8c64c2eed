"""Checks every loader runs on a freshly built :class:`Benchmark` (docs/formats.md §8.7-8.8).

Structural problems (duplicate ids, dangling qrels, queries without a positive, empty
records) are errors. Queries without any judgement are dropped with a warning, and counts that
differ from the published ones are warnings: a partial download should be noticed, not fatal.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

from mixsearch.data.benchmark import MODALITIES, Benchmark, DataError, Record

logger = logging.getLogger(__name__)

# docs/formats.md §4, verified on the released files. "qrels" counts judgement pairs;
# "<split>_modalities" counts text / image / image+text records of that split.
EXPECTED_COUNTS: dict[str, dict] = {
    "MSCOCO": {
        "queries": 984, "corpus": 984, "mixed_corpus": 984, "qrels": 984,
        "mixed_corpus_modalities": {"text": 328, "image": 328, "image+text": 328},
    },
    "Google_WIT": {
        "queries": 1000, "corpus": 4421, "mixed_corpus": 4421, "qrels": 1000,
        "mixed_corpus_modalities": {"text": 1473, "image": 1473, "image+text": 1475},
    },
    "VisualNews": {
        "queries": 981, "corpus": 981, "mixed_corpus": 981, "qrels": 981,
        "mixed_corpus_modalities": {"text": 327, "image": 327, "image+text": 327},
    },
    "OVEN": {
        "queries": 1000, "corpus": 1000, "mixed_corpus": 1000, "qrels": 1000,
        "mixed_corpus_modalities": {"text": 333, "image": 333, "image+text": 334},
    },
}  # fmt: skip


def _splits(bench: Benchmark) -> dict[str, list[Record]]:
    splits = {"queries": bench.queries, "corpus": bench.corpus}
    if bench.mixed_corpus is not None:
        splits["mixed_corpus"] = bench.mixed_corpus
    splits.update({f"calibration/{k}": v for k, v in bench.calibration.items()})
    return splits


def _source(bench: Benchmark, split: str) -> str:
    """The file a split came from (``meta["files"]``), or the split name."""
    return str(bench.meta.get("files", {}).get(split, f"{bench.name} {split}"))


def modality_counts(records: list[Record]) -> dict[str, int]:
    """Records per modality, every modality present as a key."""
    counts = Counter(r.modality for r in records)
    return {m: counts.get(m, 0) for m in MODALITIES}


def id_problem(item_id: str) -> str | None:
    """Why ``item_id`` cannot be written to a TREC run file (``run.trec`` splits its lines on
    whitespace), or None when it can."""
    if not item_id:
        return "is empty"
    if any(c.isspace() for c in item_id):
        return "contains whitespace"
    return None


def check_ids(bench: Benchmark) -> None:
    """Refuse ids that ``run.trec`` cannot hold, before any extraction (a whitespace id would
    otherwise fail only when the run file is written, after all the work).

    Raises:
        DataError: names the id, its split and the file it came from.
    """
    for split, records in _splits(bench).items():
        for r in records:
            _check_id(bench, split, r.id)


def _check_id(bench: Benchmark, split: str, item_id: str) -> None:
    problem = id_problem(item_id)
    if problem:
        raise DataError(f"{_source(bench, split)}: id {item_id!r} in {split} {problem}; run.trec "
                        "separates its fields by whitespace, so rename the item (docs/formats.md §8)")


def _check_records(bench: Benchmark, split: str, records: list[Record]) -> list[Record]:
    """Unique ids that a run file can hold and non-empty records; ``""`` text becomes ``None``
    (absent)."""
    seen: set[str] = set()
    out = []
    for r in records:
        _check_id(bench, split, r.id)
        if r.text == "":
            r = dataclasses.replace(r, text=None)
        if r.text is None and r.image is None:
            raise DataError(f"{_source(bench, split)}: record {r.id!r} has neither text nor image")
        if r.id in seen:
            raise DataError(f"{_source(bench, split)}: duplicate id {r.id!r} in {split}")
        seen.add(r.id)
        out.append(r)
    return out


def _check_qrels(bench: Benchmark) -> None:
    where = _source(bench, "qrels")
    query_ids = {r.id for r in bench.queries}
    doc_ids = {r.id for r in bench.corpus}
    for qid, judged in bench.qrels.items():
        if qid not in query_ids:
            raise DataError(f"{where}: qrels name query {qid!r}, which is not among the queries")
        for cid in judged:
            if cid not in doc_ids:
                raise DataError(
                    f"{where}: qrels of query {qid!r} name doc {cid!r}, which is not in the corpus"
                )
        if not any(score > 0 for score in judged.values()):
            raise DataError(f"{where}: query {qid!r} has no positive judgement (score > 0)")
    for qid, judged in bench.absent_qrels.items():
        if qid not in query_ids:
            raise DataError(f"{where}: qrels name query {qid!r}, which is not among the queries")
        present = [cid for cid in judged if cid in doc_ids]
        if present:
            raise DataError(f"{where}: absent_qrels of query {qid!r} name doc {present[0]!r}, "
                            "which is in the corpus")


def _compare_counts(bench: Benchmark, expected: dict) -> list[str]:
    got: dict[str, object] = {name: len(recs) for name, recs in _splits(bench).items()}
    got["qrels"] = sum(len(j) for j in bench.qrels.values())
    for name, recs in _splits(bench).items():
        got[f"{name}_modalities"] = modality_counts(recs)
    return [
        f"{bench.name}: {key} is {got.get(key)}, expected {value} (docs/formats.md §4)"
        for key, value in expected.items()
        if got.get(key) != value
    ]


def validate_benchmark(bench: Benchmark, expected: dict | None = None) -> list[str]:
    """Check a benchmark and normalise it in place; return the warnings it logged.

    Errors: duplicate ids within a split, an empty id or one with whitespace (run.trec cannot
    hold it), a record with neither text nor image (``""`` text
    counts as absent), a qrels query id that is not a query, a qrels doc id that is not in the
    corpus, a judged query without a positive (score > 0). Each names the file and id.

    In place: ``""`` texts become ``None``; queries without any judgement are dropped, with a
    warning and their count in ``meta["queries_without_qrels"]``; ``meta["counts"]`` gets
    the per-split totals and modality counts.

    Args:
        bench: the benchmark; ``meta["files"]`` (split -> path) is used in messages.
        expected: counts to compare against (see :data:`EXPECTED_COUNTS` for the keys);
            differences are warnings, not errors.

    Returns:
        The warning messages, also logged with :mod:`logging`.
    """
    bench.queries = _check_records(bench, "queries", bench.queries)
    bench.corpus = _check_records(bench, "corpus", bench.corpus)
    if bench.mixed_corpus is not None:
        bench.mixed_corpus = _check_records(bench, "mixed_corpus", bench.mixed_corpus)
    for key, records in bench.calibration.items():
        bench.calibration[key] = _check_records(bench, f"calibration/{key}", records)
    _check_qrels(bench)

    warnings = []
    # a query judging only docs the corpus lacks is still scored (absent_qrels, counted as misses)
    judged = bench.qrels.keys() | bench.absent_qrels.keys()
    unjudged = [r.id for r in bench.queries if r.id not in judged]
    bench.meta["queries_without_qrels"] = len(unjudged)
    if unjudged:
        bench.queries = [r for r in bench.queries if r.id in judged]
        warnings.append(
            f"{bench.name}: dropped {len(unjudged)} of {len(unjudged) + len(bench.queries)} "
            f"queries without qrels (first ids: {unjudged[:5]})"
        )
    if expected:
        warnings += _compare_counts(bench, expected)
    bench.meta["counts"] = {
        name: {"total": len(recs), **modality_counts(recs)} for name, recs in _splits(bench).items()
    }
    for message in warnings:
        logger.warning(message)
    return warnings
