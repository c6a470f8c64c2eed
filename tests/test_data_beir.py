"""BEIR loader and the shared qrels / jsonl readers (docs/formats.md §7-8, replica C of §9)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from mixsearch.data.beir import doc_text, load_beir
from mixsearch.data.benchmark import DataError
from mixsearch.data.io import read_jsonl, read_qrels
from mixsearch.data.registry import load_benchmark

CORPUS = [
    {"_id": "d1", "title": "Vitamin D", "text": "Vitamin D lowers fracture risk.", "metadata": {}},
    {"_id": "d2", "title": "", "text": "Statins reduce LDL cholesterol."},
    {"_id": "d3", "title": "Does sleep matter?", "text": "Short sleep raises blood pressure."},
    {"_id": 4, "title": "Only a title"},
    {"_id": "d5", "title": "Exercise", "text": "Running improves mood."},
]
QUERIES = [
    {"_id": "q1", "text": "vitamin d and bones"},
    {"_id": "q2", "text": "heart risk factors"},
    {"_id": "q3", "text": "a training-split query"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t1\nq2\t4\t0\n"


def _write_beir(root: Path, qrels: str = QRELS, split: str = "test") -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QUERIES))
    (root / "qrels" / f"{split}.tsv").write_text(qrels)
    return root


def test_beir_round_trip(tmp_path, caplog):
    root = _write_beir(tmp_path / "scifact")
    with caplog.at_level(logging.WARNING):
        bench = load_beir(str(root))
    assert bench.name == "beir/scifact" and bench.mixed_corpus is None
    assert [(r.id, r.text) for r in bench.corpus] == [
        ("d1", "Vitamin D. Vitamin D lowers fracture risk."),
        ("d2", "Statins reduce LDL cholesterol."),
        ("d3", "Does sleep matter? Short sleep raises blood pressure."),
        ("4", "Only a title"),
        ("d5", "Exercise. Running improves mood."),
    ]
    assert {r.modality for r in bench.corpus + bench.queries} == {"text"}
    # graded score 2 kept, a 2-positive query, a judged non-relevant (0) kept
    assert bench.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1, "4": 0}}
    assert [q.id for q in bench.queries] == ["q1", "q2"]  # q3 has no test qrels
    assert bench.meta["queries_without_qrels"] == 1
    assert any("dropped 1 of 3 queries without qrels" in r.getMessage() for r in caplog.records)
    assert load_benchmark("beir", root=str(root), name="sf").name == "beir/sf"


def test_beir_errors(tmp_path):
    root = _write_beir(tmp_path / "b")
    with pytest.raises(
        DataError,
        match=r"BEIR qrels file not found: .*dev\.tsv \(split='dev'; splits present: \['test'\]\)",
    ):
        load_beir(str(root), split="dev")
    (root / "qrels" / "test.tsv").write_text(QRELS + "q1\td9\t1\n")
    with pytest.raises(
        DataError, match="qrels of query 'q1' name doc 'd9', which is not in the corpus"
    ):
        load_beir(str(root))
    (root / "qrels" / "test.tsv").write_text(QRELS)
    (root / "corpus.jsonl").write_text(
        (root / "corpus.jsonl").read_text() + '{"_id": "d6", "title": "", "text": ""}\n'
    )
    with pytest.raises(DataError, match=r"corpus\.jsonl: record 'd6' has neither text nor image"):
        load_beir(str(root))


@pytest.mark.parametrize(
    ("title", "text", "expected"),
    [
        ("T", "body", "T. body"),
        ("Why?", "body", "Why? body"),
        ("", "body", "body"),
        ("T", None, "T"),
        (" ", "", None),
    ],
)
def test_doc_text_rule(title, text, expected):
    assert doc_text(title, text) == expected


@pytest.mark.parametrize(
    "content",
    [
        "query_id\tcorpus_id\tscore\n1\t10\t1\n1\t11\t2\n2\t10\t1\n",  # MixBench25 header
        "qid\tQ0\tdoc_id\trelevance\n1\tQ0\t10\t1\n1\tQ0\t11\t2\n2\tQ0\t10\t1.0\n",  # named Q0 column
        "1 10 1\n1   11 2\n\n2 10 1\n",  # headerless, any whitespace, blank line
        "1 0 10 1\n1 0 11 2\n2 0 10 1\n",  # headerless TREC qid iteration did rel
    ],
)
def test_read_qrels_formats(tmp_path, content):
    path = tmp_path / "q.tsv"
    path.write_text(content)
    assert read_qrels(path) == {"1": {"10": 1, "11": 2}, "2": {"10": 1}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "query-id\tcorpus-id\tscore\nq\td\t1\nq\td\t2\n",
            ":3: duplicate qrels pair (query 'q', doc 'd')",
        ),
        ("query-id\tcorpus-id\tscore\nq\td\thigh\n", ":2: score 'high' is not an integer"),
        ("query-id\tcorpus-id\tscore\nq\td\n", ":2: expected 3 qrels columns, got 2"),
        ("query-id\tcorpus-id\tgrade\n", ":1: unknown qrels column(s) ['grade']"),
        ("q d\n", ":1: cannot tell the qrels columns"),
        ("query-id\tcorpus-id\tscore\n", ": qrels file has no judgement rows"),
    ],
)
def test_read_qrels_errors_name_file_line(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(f"{path}{message}")):
        read_qrels(path)


def test_read_jsonl_errors(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"_id": "a"}\n\n{"_id": "b",}\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:3: invalid JSON")):
        list(read_jsonl(path))
    path.write_text('["not", "an", "object"]\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:1: expected a JSON object, got list")):
        list(read_jsonl(path))
    with pytest.raises(DataError, match="file not found: .*missing.jsonl"):
        list(read_jsonl(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("bad", ["d 5", "d\t5", "d5\n"])
def test_ids_a_run_file_cannot_hold_are_refused_when_loading(tmp_path, bad):
    root = _write_beir(tmp_path / "b")
    corpus = [dict(r, _id=bad) if r["_id"] == "d5" else r for r in CORPUS]  # d5 is unjudged
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    with pytest.raises(DataError, match=rf"corpus\.jsonl: id {re.escape(repr(bad))} in corpus "
                                        r"(contains whitespace|is empty); run\.trec"):
        load_beir(str(root))


def test_whitespace_ids_of_a_hand_built_benchmark_are_refused_before_extraction():
    from fake_encoder import FakeEncoder

    import mixsearch
    from mixsearch.data.benchmark import Benchmark, Record

    bench = Benchmark("hand", [Record("q 1", text="a query")], [Record("d1", text="a doc")],
                      {"q 1": {"d1": 1}})
    enc = FakeEncoder()
    with pytest.raises(DataError, match=r"hand queries: id 'q 1' in queries contains whitespace"):
        mixsearch.evaluate(enc, bench)
    assert enc.batches == 0  # refused before anything was embedded
