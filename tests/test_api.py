"""The notebook API: mixsearch.evaluate(encoder, benchmark, ...) without Hydra."""

from __future__ import annotations

from pathlib import Path

import pytest

import mixsearch
from mixsearch.data.benchmark import DataError


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("toy") / "toy"
    return mixsearch.load_benchmark("toy", root=str(root), n_queries=40, n_distractors=20,
                                    n_calibration=60, n_train=10)


def test_evaluate_matches_the_pipeline_and_reuses_the_cache(bench, tmp_path: Path) -> None:
    enc = mixsearch.build_encoder("toy", device="cpu")
    none = mixsearch.evaluate(enc, bench, cache_dir=tmp_path)
    gr = mixsearch.evaluate(enc, bench, calibration="gr", cache_dir=tmp_path)
    assert none.calibration["method"] == "none" and gr.calibration["source"] == "train"
    assert gr.gap["centroid_distance_after"] < gr.gap["centroid_distance_before"]
    # the same call again is served by the cache and gives identical numbers
    again = mixsearch.evaluate(enc, bench, calibration={"method": "gr"}, cache_dir=tmp_path)
    assert again.metrics == gr.metrics
    assert len(none.per_query) == len(bench.qrels)


def test_unknown_kinds_are_named() -> None:
    with pytest.raises(DataError, match="unknown benchmark kind 'nope'"):
        mixsearch.load_benchmark("nope")
    with pytest.raises(Exception, match="nope"):
        mixsearch.build_encoder("nope")


def test_evaluate_with_joint_and_auto_fusion(bench, tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_encoder import FakeEncoder, FakeJointEncoder

    universal, dual = FakeJointEncoder(dim=16, seed=1), FakeEncoder(dim=16, seed=1)
    joint = mixsearch.evaluate(universal, bench, fusion="joint", cache_dir=tmp_path)
    auto = mixsearch.evaluate(universal, bench, fusion="auto", cache_dir=tmp_path)
    weighted = mixsearch.evaluate(universal, bench, fusion="weighted", cache_dir=tmp_path)
    assert auto.metrics == joint.metrics and joint.metrics != weighted.metrics
    assert universal.encoded.get("joint", 0) > 0
    # a dual encoder: auto is its weighted recipe; joint is refused before anything is encoded
    assert (mixsearch.evaluate(dual, bench, fusion="auto", cache_dir=tmp_path).metrics
            == mixsearch.evaluate(dual, bench, fusion="weighted", cache_dir=tmp_path).metrics)
    fresh = FakeEncoder(dim=16, seed=2)
    with pytest.raises(Exception, match="fusion=joint: encoder 'fake'"):
        mixsearch.evaluate(fresh, bench, fusion="joint", cache_dir=tmp_path)
    assert fresh.batches == 0
