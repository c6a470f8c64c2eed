"""MixBench loaders, validation and registry on the synthetic replica (docs/formats.md §9)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from replica import write_replica

from mixsearch.data.benchmark import Benchmark, DataError, ImageRef, Record
from mixsearch.data.mixbench import load_mixbench
from mixsearch.data.registry import load_benchmark, register_loader
from mixsearch.data.validate import validate_benchmark

SUBSETS = ("MSCOCO", "Google_WIT", "VisualNews", "OVEN")
SPLITS = ("queries", "corpus", "mixed_corpus")


@pytest.fixture(scope="module")
def mb25(tmp_path_factory):
    root = tmp_path_factory.mktemp("mb25")
    return root, write_replica(root)


@pytest.fixture(scope="module")
def parquet_int_ids(tmp_path_factory):
    root = tmp_path_factory.mktemp("parquet")
    return root, write_replica(root, layout="parquet", identity_qrels=False, int_ids=True)


@pytest.fixture
def fresh(tmp_path):
    """A replica the test may damage."""
    return tmp_path, write_replica(tmp_path)


def _colour(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(axis=0)


def _assert_records(got: list[Record], want: list[dict]) -> None:
    assert [r.id for r in got] == [w["id"] for w in want]
    for r, w in zip(got, want, strict=True):
        assert r.text == w["text"], r.id
        assert (r.image is None) == (w["image"] is None), r.id
        if w["image"] is not None:
            img = r.image.load()
            assert img.mode == "RGB" and img.size == tuple(w["image"]["size"]), r.id
            assert np.abs(_colour(img) - w["image"]["colour"]).max() <= 6, r.id


def _assert_round_trip(bench: Benchmark, sub: dict) -> None:
    for split in SPLITS:
        _assert_records(bench.split(split), sub[split])
    assert bench.qrels == sub["qrels"]
    mixed = {m: n for m, n in bench.meta["counts"]["mixed_corpus"].items() if m != "total"}
    assert mixed == dict(sub["mixed_modalities"])


@pytest.mark.parametrize("subset", SUBSETS)
def test_mixbench25_round_trip(mb25, subset, caplog):
    root, written = mb25
    with caplog.at_level(logging.WARNING):
        bench = load_mixbench(str(root), subset)
    _assert_round_trip(bench, written["subsets"][subset])
    assert bench.name == f"mixbench/{subset}"
    assert bench.meta["layout"] == "mixbench25" and bench.meta["subset"] == subset
    assert bench.meta["image_resolution"] == dict(written["subsets"][subset]["image_resolution"])
    # replica counts differ from the published ones: warned and logged, never an error
    assert any("expected" in w and "docs/formats.md §4" in w for w in bench.meta["warnings"])
    assert any("docs/formats.md §4" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("subset", SUBSETS)
def test_parquet_round_trip_int64_ids_non_identity(parquet_int_ids, subset):
    root, written = parquet_int_ids
    assert str(pq.read_schema(root / subset / "queries.parquet").field("id").type) == "int64"
    bench = load_mixbench(str(root), subset, check_counts=False)
    sub = written["subsets"][subset]
    _assert_round_trip(bench, sub)
    assert all(isinstance(r.id, str) for s in SPLITS for r in bench.split(s))
    assert any(qid != cid for qid, judged in bench.qrels.items() for cid in judged)
    assert bench.meta["layout"] == "parquet" and bench.meta["warnings"] == []
    image_doc = next(r for r in bench.mixed_corpus if r.image is not None)
    assert image_doc.image.data is not None and image_doc.image.path is None
    assert image_doc.image.origin == f"{root / subset / 'mixed_corpus.parquet'}#{image_doc.id}"


def test_non_identity_qrels_mixbench25(tmp_path):
    written = write_replica(tmp_path, identity_qrels=False)
    for subset in SUBSETS:
        bench = load_mixbench(str(tmp_path), subset, check_counts=False)
        _assert_round_trip(bench, written["subsets"][subset])
        assert bench.queries[0].id == "3" and bench.corpus[1].id == "1007"
        assert all(cid != qid for qid, judged in bench.qrels.items() for cid in judged)


def test_absent_encodings_null_empty_missing(mb25):
    root, _ = mb25
    lines = (root / "Google_WIT" / "mixed_corpus.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]

    def encoding(row, key):
        return "missing" if key not in row else ("null" if row[key] is None else repr(row[key])[:2])

    image_only = [r for r in rows if not r.get("text")]
    text_only = [r for r in rows if not r.get("image")]
    assert {encoding(r, "text") for r in image_only} == {"missing", "null", "''"}
    assert {encoding(r, "image") for r in text_only} == {"missing", "null", "''"}
    bench = load_mixbench(str(root), "Google_WIT", check_counts=False)
    by_id = {r.id: r for r in bench.mixed_corpus}
    assert all(by_id[r["corpus_id"]].modality == "image" for r in image_only)
    assert all(by_id[r["corpus_id"]].modality == "text" for r in text_only)


def test_oven_image_text_queries_and_duplicate_docs(mb25):
    root, _ = mb25
    bench = load_mixbench(str(root), "OVEN", check_counts=False)
    assert {q.modality for q in bench.queries} == {"image+text"}
    assert len({q.text for q in bench.queries}) == 2
    q0 = json.loads((root / "OVEN" / "queries.jsonl").read_text().splitlines()[0])
    assert q0 == {"query_id": "0", "text": "What is this building?", "image": "images/q_0.jpg"}
    d3, d4 = bench.corpus[3], bench.corpus[4]
    assert d3.id != d4.id and d3.text == d4.text
    assert d3.image.content_key() == d4.image.content_key()
    assert bench.qrels["3"] == {"3": 1} and bench.qrels["4"] == {"4": 1}


def test_png_wide_and_oversized_images(fresh):
    root, written = fresh
    vn = written["subsets"]["VisualNews"]["corpus"][1]["image"]
    assert vn["file"].endswith(".png")
    bench = load_mixbench(str(root), "Google_WIT", check_counts=False)
    assert bench.corpus[10].image.load().size == (2000, 50)
    # replace one image by a 5000 px wide JPEG: full size by default (dataset.max_image_side
    # null), downscaled while decoding when a cap is set, colour kept
    doc = written["subsets"]["MSCOCO"]["corpus"][0]
    Image.new("RGB", (5000, 60), doc["image"]["colour"]).save(
        root / "MSCOCO" / "images" / doc["image"]["file"], quality=95
    )
    ref = load_mixbench(str(root), "MSCOCO", check_counts=False).corpus[0].image
    assert ref.load().size == (5000, 60)
    img = ref.load(2048)
    assert max(img.size) <= 2048 and img.size[0] > img.size[1]
    assert np.abs(_colour(img) - doc["image"]["colour"]).max() <= 6


def test_calibration_split(mb25):
    root, written = mb25
    bench = load_mixbench(str(root), "MSCOCO", check_counts=False)
    for split in ("queries", "corpus"):
        _assert_records(bench.split(f"calibration/{split}"), written["calibration"][split])
    assert bench.meta["image_resolution"]["root"] == 3


def test_image_root_rules_take_precedence(mb25):
    root, written = mb25
    bench = load_mixbench(
        str(root), "VisualNews", image_root=str(root / "VisualNews" / "images"), check_counts=False
    )
    hits = written["subsets"]["VisualNews"]["image_resolution"]
    # "images/<f>" paths miss image_root/p and hit image_root/basename; bare names hit image_root/p
    assert bench.meta["image_resolution"] == {
        "image_root/basename": hits["subset_dir"],
        "image_root": hits["subset_dir/images/basename"],
    }


def test_corpus_absent_uses_mixed_corpus(fresh):
    root, written = fresh
    (root / "MSCOCO" / "corpus.jsonl").unlink()
    bench = load_mixbench(str(root), "MSCOCO", check_counts=False)
    _assert_records(bench.corpus, written["subsets"]["MSCOCO"]["mixed_corpus"])
    assert bench.mixed_corpus == bench.corpus


def _rewrite_line(path: Path, index: int, edit) -> dict:
    lines = path.read_text().splitlines()
    row = json.loads(lines[index])
    lines[index] = json.dumps(edit(row))
    path.write_text("\n".join(lines) + "\n")
    return row


def test_missing_image_names_file_and_id(fresh):
    root, written = fresh
    doc = written["subsets"]["MSCOCO"]["corpus"][2]
    (root / "MSCOCO" / "images" / doc["image"]["file"]).unlink()
    with pytest.raises(
        DataError, match=r"image file not found: '.*d_2\.jpg' for .*MSCOCO/corpus\.jsonl:3#2"
    ):
        load_mixbench(str(root), "MSCOCO")


def test_on_missing_skip_logs_and_records_ids(fresh, caplog):
    """The record stays as released (its image pointing at the missing file), so the corpus and
    the mixed corpus still match and the qrels keep the doc; the pipeline leaves it out."""
    root, written = fresh
    modes = [r["text"] is None for r in written["subsets"]["MSCOCO"]["mixed_corpus"]]
    image_only = written["subsets"]["MSCOCO"]["mixed_corpus"][modes.index(True)]
    missing = root / "MSCOCO" / "images" / image_only["image"]["file"]
    missing.unlink()
    clean = load_mixbench(str(write_replica(root / "clean") and root / "clean"), "MSCOCO",
                          check_counts=False)
    with caplog.at_level(logging.WARNING):
        bench = load_mixbench(str(root), "MSCOCO", on_missing="skip", check_counts=False)
    rid = image_only["id"]
    assert bench.meta["skipped"] == {"corpus": [rid], "mixed_corpus": [rid]}
    # where the release's path should resolve (the replica mixes conventions: a candidate)
    [(got_id, got_file)] = bench.meta["missing_files"].items()
    assert got_id == rid and Path(got_file).name == missing.name and not Path(got_file).exists()
    assert [r.id for r in bench.mixed_corpus] == [r.id for r in clean.mixed_corpus]
    assert bench.qrels == clean.qrels
    with pytest.raises(DataError, match=f"image file not found: {re.escape(got_file)}"):
        next(r for r in bench.corpus if r.id == rid).image.load()
    assert any("1 item(s) whose image file is missing" in rec.getMessage() and got_file in rec.getMessage()
               for rec in caplog.records)


def test_corrupt_image_fails_at_load_naming_file(fresh):
    root, written = fresh
    path = root / "OVEN" / "images" / written["subsets"]["OVEN"]["corpus"][0]["image"]["file"]
    path.write_bytes(b"\xff\xd8 not really a jpeg")
    bench = load_mixbench(str(root), "OVEN", check_counts=False)  # lazy: loading still works
    with pytest.raises(DataError, match=rf"cannot decode image {re.escape(str(path))}"):
        bench.corpus[0].image.load()


def test_duplicate_id(fresh):
    root, _ = fresh
    path = root / "VisualNews" / "corpus.jsonl"
    path.write_text(path.read_text() + path.read_text().splitlines()[1] + "\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: duplicate id '1' in corpus"):
        load_mixbench(str(root), "VisualNews")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("0\t999\t1", "qrels of query '0' name doc '999', which is not in the corpus"),
        ("77\t0\t1", "qrels name query '77', which is not among the queries"),
    ],
)
def test_qrels_unknown_ids(fresh, row, message):
    root, _ = fresh
    path = root / "MSCOCO" / "qrels" / "qrels.tsv"
    path.write_text(path.read_text() + row + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
        load_mixbench(str(root), "MSCOCO")


def test_query_without_positive(fresh):
    root, _ = fresh
    path = root / "MSCOCO" / "qrels" / "qrels.tsv"
    path.write_text(path.read_text().replace("0\t0\t1", "0\t0\t0"))
    with pytest.raises(DataError, match="query '0' has no positive judgement"):
        load_mixbench(str(root), "MSCOCO")


def test_query_without_qrels_dropped_with_warning(fresh):
    root, _ = fresh
    path = root / "MSCOCO" / "qrels" / "qrels.tsv"
    path.write_text(path.read_text().replace("5\t5\t1\n", ""))
    bench = load_mixbench(str(root), "MSCOCO", check_counts=False)
    assert [q.id for q in bench.queries] == ["0", "1", "2", "3", "4"]
    assert bench.meta["queries_without_qrels"] == 1
    assert "dropped 1 of 6 queries without qrels" in bench.meta["warnings"][0]


def test_jsonl_syntax_error_names_file_line(fresh):
    root, _ = fresh
    path = root / "OVEN" / "queries.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-1]  # drop the closing brace
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: invalid JSON"):
        load_mixbench(str(root), "OVEN")


def test_mixed_corpus_mismatch(fresh):
    root, _ = fresh
    path = root / "MSCOCO" / "mixed_corpus.jsonl"
    _rewrite_line(path, 0, lambda r: {**r, "text": "something else"})
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: text of id '0' differs"):
        load_mixbench(str(root), "MSCOCO")
    _rewrite_line(path, 0, lambda r: {**r, "text": None, "image": "images/d_5.jpg"})
    with pytest.raises(DataError, match="image of id '0' differs"):
        load_mixbench(str(root), "MSCOCO")


def test_layout_and_location_errors(fresh):
    root, _ = fresh
    with pytest.raises(DataError, match=r"subset folder not found: .*Nope .*'Google_WIT'"):
        load_mixbench(str(root), "Nope")
    with pytest.raises(DataError, match=r"the parquet layout needs queries\.parquet"):
        load_mixbench(str(root), "MSCOCO", layout="parquet")
    with pytest.raises(DataError, match="on_missing must be 'error' or 'skip', got 'ignore'"):
        load_mixbench(str(root), "MSCOCO", on_missing="ignore")


def test_parquet_qrels_locations(parquet_int_ids, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(parquet_int_ids[0], root)
    (root / "OVEN" / "qrels").mkdir()
    (root / "qrels" / "OVEN.tsv").rename(root / "OVEN" / "qrels" / "qrels.tsv")
    bench = load_mixbench(str(root), "OVEN", check_counts=False)
    assert bench.meta["files"]["qrels"] == str(root / "OVEN" / "qrels" / "qrels.tsv")
    (root / "OVEN" / "qrels" / "qrels.tsv").unlink()
    with pytest.raises(
        DataError,
        match=r"no qrels for subset 'OVEN': looked for .*OVEN\.tsv\. .*MixBench25 qrels TSV is needed: `hf download q/MixBench25 --repo-type dataset --revision abc",
    ):
        load_mixbench(str(root), "OVEN", qrels_repo="q/MixBench25", qrels_revision="abc")


def test_hub_path_with_local_parquet(parquet_int_ids, tmp_path, monkeypatch):
    """The hub code path end to end, with load_dataset served from the replica's parquet."""
    import datasets
    import huggingface_hub

    root, written = parquet_int_ids
    real_load, calls = datasets.load_dataset, []

    def fake_load_dataset(repo, name, revision, cache_dir):
        calls.append((repo, name, revision))
        files = {s: str(root / name / f"{s}.parquet") for s in ("queries", "mixed_corpus")}
        return real_load("parquet", data_files=files, cache_dir=cache_dir)

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs["revision"]))
        return str(root / "qrels" / f"{filename.split('/')[0]}.tsv")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    bench = load_mixbench(
        None, "OVEN", repo="o/MB", revision="r1", cache_dir=str(tmp_path), check_counts=False
    )
    assert calls == [
        ("o/MB", "OVEN", "r1"),
        (
            "mixed-modality-search/MixBench25",
            "OVEN/qrels/qrels.tsv",
            "88e3916036ea0bdb205f4da885d6e947a565c1a0",
        ),
    ]
    sub = written["subsets"]["OVEN"]
    _assert_records(bench.queries, sub["queries"])
    _assert_records(bench.corpus, sub["mixed_corpus"])  # no corpus split: corpus = mixed corpus
    assert bench.qrels == sub["qrels"] and bench.meta["layout"] == "hub"
    assert bench.queries[0].image.origin == f"o/MB:OVEN/queries#{bench.queries[0].id}"


_HUB_SCRIPT = textwrap.dedent(
    """
    import time
    from mixsearch.data.benchmark import DataError
    from mixsearch.data.mixbench import load_mixbench
    start = time.perf_counter()
    try:
        load_mixbench(None, "MSCOCO")
    except DataError as e:
        print(f"{time.perf_counter() - start:.3f}")
        print(e)
    """
)


@pytest.mark.parametrize("mode", ["offline_env", "unreachable"])
def test_hub_fails_fast_with_predownload_hint(tmp_path, mode):
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env["HF_HOME"] = str(tmp_path / "hf")
    if mode == "offline_env":
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    else:  # online mode, but the endpoint refuses connections: no ~25 s of client retries
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            env.pop(key, None)
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    out = subprocess.run(
        [sys.executable, "-c", _HUB_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    elapsed, _, message = out.stdout.partition("\n")
    assert message, out.stderr
    assert float(elapsed) < 5.0
    state = "offline mode" if mode == "offline_env" else "http://127.0.0.1:9 unreachable"
    assert (
        f"cannot load MixBench subset 'MSCOCO' from mixed-modality-search/MixBench2026 ({state}, not cached"
        in message
    )
    assert (
        "hf download mixed-modality-search/MixBench2026 --repo-type dataset --local-dir DIR"
        in message
    )
    assert "--include 'MSCOCO/qrels/*'" in message and "dataset.root=DIR" in message


def test_validate_empty_text_and_counts():
    img = ImageRef(data=b"\x00", origin="mem")
    bench = Benchmark(
        "t", queries=[Record("q", "hello")], corpus=[Record("d", "", img)], qrels={"q": {"d": 2}}
    )
    expected = {
        "queries": 1,
        "corpus": 5,
        "corpus_modalities": {"text": 0, "image": 1, "image+text": 0},
    }
    assert validate_benchmark(bench, expected) == ["t: corpus is 1, expected 5 (docs/formats.md §4)"]
    assert bench.corpus[0].modality == "image"  # "" text counts as absent
    bench.corpus.append(Record("e", ""))
    with pytest.raises(DataError, match="t corpus: record 'e' has neither text nor image"):
        validate_benchmark(bench)


def test_registry(mb25, registries_restored):
    root, written = mb25
    bench = load_benchmark("mixbench", root=str(root), subset="VisualNews", check_counts=False)
    _assert_round_trip(bench, written["subsets"]["VisualNews"])
    with pytest.raises(
        DataError, match=r"unknown benchmark kind 'nope'; registered: \[.*'beir',.*'mixbench'"
    ):
        load_benchmark("nope")

    def fake(**kwargs):
        return bench

    register_loader("test-kind", fake)
    register_loader("test-kind", fake)  # same function again: fine
    assert load_benchmark("test-kind") is bench
    with pytest.raises(ValueError, match="'test-kind' is already registered"):
        register_loader("test-kind", lambda **kw: bench)


def test_benchmark_repr_is_one_line_with_the_counts(mb25):
    root, written = mb25
    bench = load_mixbench(str(root), "MSCOCO", check_counts=False)
    text = repr(bench)
    assert "\n" not in text and len(text) < 300
    sub = written["subsets"]["MSCOCO"]
    assert text.startswith(f"Benchmark('mixbench/MSCOCO': queries={len(sub['queries'])}, "
                           f"corpus={len(sub['corpus'])}, mixed_corpus={len(sub['mixed_corpus'])}, ")
    assert text.endswith(f"from {root})")
