"""The toy benchmark generator: determinism, layout, splits, reuse and loading."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from mixsearch.data.benchmark import DataError
from mixsearch.data.toy import MARKER, TOY_SUBSETS, load_toy, write_toy_benchmark
from mixsearch.toymodel.world import BACKGROUNDS, OBJECT_COLOURS, SHAPES

SMALL = {"n_queries": 12, "n_distractors": 7, "n_calibration": 6, "n_train": 40}
_GROUP = re.compile(
    rf"\b(a|two|three) (small|large) ({'|'.join(OBJECT_COLOURS)}) ({'|'.join(SHAPES)})"
)
_BACKGROUND = re.compile(rf"\b({'|'.join(BACKGROUNDS)}) (?:background|backdrop)")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _caption_key(text: str) -> tuple:
    """A caption's meaning parsed back from its words (independent of the generator's code)."""
    groups = sorted(_GROUP.findall(text))
    background = _BACKGROUND.findall(text)
    assert groups and len(background) == 1, text
    return background[0], tuple(groups)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_benchmark(tmp_path_factory.mktemp("toy") / "toy", seed=3, **SMALL)


def test_generation_is_byte_identical(bench: Path, tmp_path: Path) -> None:
    again = write_toy_benchmark(tmp_path / "again", seed=3, **SMALL)
    assert _files(again) == _files(bench)
    other = write_toy_benchmark(tmp_path / "other", seed=4, **SMALL)
    assert _files(other) != _files(bench)


def test_layout_counts_and_qrels(bench: Path) -> None:
    n_docs = SMALL["n_queries"] + SMALL["n_distractors"]
    for subset in TOY_SUBSETS:
        d = bench / subset
        queries, corpus = _rows(d / "queries.jsonl"), _rows(d / "corpus.jsonl")
        assert len(queries) == SMALL["n_queries"] and len(corpus) == n_docs
        assert {r["corpus_id"] for r in corpus} == {str(i) for i in range(n_docs)}
        lines = (d / "qrels" / "qrels.tsv").read_text().splitlines()
        assert lines[0] == "query_id\tcorpus_id\tscore"
        qrels = [line.split("\t") for line in lines[1:]]
        assert [q for q, _, _ in qrels] == [r["query_id"] for r in queries]
        assert all(s == "1" for _, _, s in qrels) and len({c for _, c, _ in qrels}) == len(qrels)
        assert any(q != c for q, c, _ in qrels), "qrels should not be the identity"
        for row in corpus:
            assert row["text"] and (d / row["image"]).is_file()
        images = [r["image"] for r in corpus]
        assert any(i.endswith(".png") for i in images) and any(i.endswith(".jpg") for i in images)
    oven = _rows(bench / "ToyOVEN" / "queries.jsonl")
    assert all(
        r["text"].endswith(("?", ".")) and (bench / "ToyOVEN" / r["image"]).is_file() for r in oven
    )
    assert all(r["image"] is None for r in _rows(bench / "ToyCOCO" / "queries.jsonl"))


def test_mixed_corpus_is_one_to_one_to_one(bench: Path) -> None:
    for subset in TOY_SUBSETS:
        corpus = {r["corpus_id"]: r for r in _rows(bench / subset / "corpus.jsonl")}
        mixed = _rows(bench / subset / "mixed_corpus.jsonl")
        modes = Counter(
            "image+text" if r["text"] and r["image"] else "text" if r["text"] else "image"
            for r in mixed
        )
        assert modes == {"text": 6, "image": 6, "image+text": 7}  # 19 docs, remainder to image+text
        for row in mixed:  # same content with a modality dropped
            full = corpus[row["corpus_id"]]
            assert row["text"] in (None, full["text"]) and row["image"] in (None, full["image"])


def test_calibration_and_train_are_disjoint_from_the_benchmark(bench: Path) -> None:
    coco = bench / "ToyCOCO"
    test_keys = {_caption_key(r["text"]) for r in _rows(coco / "queries.jsonl")}
    cal_keys = {_caption_key(r["text"]) for r in _rows(coco / "calibration" / "queries.jsonl")}
    train = _rows(bench / "train" / "pairs.jsonl")
    train_keys = {_caption_key(r["caption"]) for r in train}
    assert len(test_keys) == SMALL["n_queries"] and len(train_keys) == SMALL["n_train"]
    assert not test_keys & cal_keys and not test_keys & train_keys and not cal_keys & train_keys
    for subset in TOY_SUBSETS:
        cal_docs = _rows(bench / subset / "calibration" / "corpus.jsonl")
        assert len(cal_docs) == SMALL["n_calibration"]
        test_texts = {r["text"] for r in _rows(bench / subset / "corpus.jsonl")}
        assert not test_texts & {r["text"] for r in cal_docs}
    assert all(r["description"] and (bench / "train" / r["image"]).is_file() for r in train)


def test_marker_reuse_and_regeneration(tmp_path: Path) -> None:
    root = write_toy_benchmark(tmp_path / "toy", **SMALL)
    marker = json.loads((root / MARKER).read_text())
    assert marker["params"] == {"seed": 0, **SMALL}
    stamp = (root / "ToyCOCO" / "queries.jsonl").stat().st_mtime_ns
    write_toy_benchmark(root, **SMALL)
    assert (root / "ToyCOCO" / "queries.jsonl").stat().st_mtime_ns == stamp  # reused
    write_toy_benchmark(root, **{**SMALL, "n_queries": 5})
    assert len(_rows(root / "ToyCOCO" / "queries.jsonl")) == 5  # parameters changed: regenerated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy", "toy.lock"]  # no temp dirs left


def test_bad_input_names_the_option_or_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="n_distractors must be an integer >= 0, got -1"):
        write_toy_benchmark(tmp_path / "toy", n_distractors=-1)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=f"{foreign} exists and is not a toy benchmark"):
        write_toy_benchmark(foreign, **SMALL)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(DataError, match="unknown toy subset 'ToyWIT'"):
        load_toy(tmp_path / "toy", "ToyWIT", **SMALL)


def test_loads_through_the_mixbench_loader(bench: Path) -> None:
    coco = load_toy(bench, "ToyCOCO", seed=3, **SMALL)
    assert coco.name == "toy/ToyCOCO" and coco.meta["generator"]["params"]["seed"] == 3
    assert len(coco.queries) == 12 and len(coco.corpus) == 19 and len(coco.qrels) == 12
    assert Counter(r.modality for r in coco.mixed_corpus) == {
        "text": 6,
        "image": 6,
        "image+text": 7,
    }
    assert {r.modality for r in coco.queries} == {"text"} and {r.modality for r in coco.corpus} == {
        "image+text"
    }
    assert len(coco.calibration["queries"]) == 6 and len(coco.calibration["corpus"]) == 6
    assert coco.corpus[0].image.load().size == (64, 64)
    oven = load_toy(bench, "ToyOVEN", seed=3, **SMALL)
    assert {r.modality for r in oven.queries} == {"image+text"}
    assert {r.modality for r in oven.calibration["queries"]} == {"image+text"}


def test_a_wrong_root_is_not_filled_with_a_new_toy(tmp_path: Path, bench: Path) -> None:
    """Only the default location generates: a mistyped dataset.root fails, creating nothing."""
    default = tmp_path / "data" / "toy"
    typo = tmp_path / "dta" / "toy"
    with pytest.raises(DataError, match=rf"dataset.root={typo} holds no toy benchmark"):
        load_toy(typo, default_root=default, **SMALL)
    assert not typo.exists() and not default.exists()
    fresh = load_toy(None, default_root=default, **SMALL)  # the default location generates
    assert fresh.meta["root"] == str(default)
    elsewhere = load_toy(bench, default_root=default, seed=3, **SMALL)  # an existing toy loads
    assert elsewhere.meta["generator"]["params"]["seed"] == 3


def test_a_world_too_small_for_the_request_is_an_error_not_an_endless_loop():
    from mixsearch.data.benchmark import DataError
    from mixsearch.data.toy import _Scenes

    scenes = _Scenes(0)
    one = scenes.take(1)
    # one scene has only a few dozen near-duplicates (one attribute of one group changed)
    with pytest.raises(DataError, match="no new distinct scene"):
        scenes.siblings(one, 2000)
