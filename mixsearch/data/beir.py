"""Loader for BEIR-format text retrieval folders (paper setting 1: NFCorpus, SciFact).

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id  corpus-id  score``). All records are
text-only; there is no mixed corpus (setting 1 builds one by rendering texts as images).
"""

from __future__ import annotations

import os
from pathlib import Path

from mixsearch.data.benchmark import Benchmark, DataError, Record
from mixsearch.data.io import read_jsonl, read_qrels, record_id, text_value
from mixsearch.data.validate import validate_benchmark

_SENTENCE_END = (".", "!", "?", ":")


def doc_text(title: str | None, text: str | None) -> str | None:
    """A document's text from its BEIR title and body.

    Rule: ``"title. text"`` when both are non-empty (one space instead of ``". "`` when the
    title already ends a sentence with ``.!?:``), otherwise whichever is non-empty, otherwise
    None. Titles carry much of the topic in SciFact/NFCorpus, so they are kept.
    """
    title = (title or "").strip()
    text = (text or "").strip()
    if title and text:
        return f"{title} {text}" if title.endswith(_SENTENCE_END) else f"{title}. {text}"
    return title or text or None


def load_beir(
    root: str, *, split: str = "test", name: str | None = None, on_missing: str = "error"
) -> Benchmark:
    """Load a BEIR dataset folder.

    Args:
        root: folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: qrels split (``test``, ``dev``, ``train``).
        name: benchmark name suffix; default the folder name (``beir/<name>``).
        on_missing: ``error`` or ``skip``, as every loader takes it; BEIR is text-only, so no
            image file can be missing (rendered screenshots are made, not read).

    Returns:
        A text-only benchmark without ``mixed_corpus``. Graded scores are kept. Queries with
        no judgement in ``split`` are dropped (count in ``meta["queries_without_qrels"]``).

    Raises:
        DataError: missing files (the qrels error lists the splits present), malformed rows,
            duplicate ids, qrels naming unknown ids, or a query without a positive.
    """
    if on_missing not in ("error", "skip"):
        raise DataError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    base = Path(root)
    files = {
        "corpus": base / "corpus.jsonl",
        "queries": base / "queries.jsonl",
        "qrels": base / "qrels" / f"{split}.tsv",
    }
    if not files["qrels"].is_file():
        have = sorted(p.stem for p in (base / "qrels").glob("*.tsv"))
        raise DataError(
            f"BEIR qrels file not found: {files['qrels']} (split={split!r}; splits present: {have})"
        )
    corpus = []
    for where, row in read_jsonl(files["corpus"]):
        rid = record_id(row, where)
        origin = f"{where}#{rid}"
        corpus.append(
            Record(
                rid,
                doc_text(text_value(row.get("title"), origin), text_value(row.get("text"), origin)),
            )
        )
    queries = []
    for where, row in read_jsonl(files["queries"]):
        rid = record_id(row, where)
        queries.append(Record(rid, text_value(row.get("text"), f"{where}#{rid}")))
    bench = Benchmark(
        name=f"beir/{name or os.path.basename(os.path.normpath(root))}",
        queries=queries,
        corpus=corpus,
        qrels=read_qrels(files["qrels"]),
        meta={
            "loader": "beir",
            "root": str(root),
            "split": split,
            "files": {k: str(v) for k, v in files.items()},
        },
    )
    bench.meta["warnings"] = validate_benchmark(bench)
    return bench
