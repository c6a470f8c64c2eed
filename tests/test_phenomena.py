"""The paper's phenomena, reproduced offline by the shipped toy CLIP on the toy benchmark.

These are acceptance properties of the shipped checkpoint (mixsearch/assets/toy_clip), not of
a freshly trained model: if a retrained checkpoint loses one, the world or the training must
change, never these thresholds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixsearch.corpus import SEED_REPLACE_RATIOS
from mixsearch.data.toy import load_toy
from mixsearch.embed import embed_benchmark
from mixsearch.encoders.toy import ToyEncoder
from mixsearch.evaluation import Evaluator
from mixsearch.metrics import evaluate_ranking
from mixsearch.pipeline import calibration_pools
from mixsearch.retrieval import search

ALPHAS = [round(a / 20, 2) for a in range(21)]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("toy")) / "toy"


def _prepare(root: Path, subset: str):
    bench = load_toy(root, subset)
    encoder = ToyEncoder(device="cpu")
    embs, _ = embed_benchmark(
        encoder, bench, splits=("queries", "corpus", "calibration/queries", "calibration/corpus"),
        cache=None, progress=False,
    )
    pools = calibration_pools(encoder, bench, embs, {"method": "gr", "source": "train"}, None, {})
    return bench, embs, pools


@pytest.fixture(scope="module")
def toy(toy_root: Path):
    """ToyCOCO: text queries, MSCOCO-like."""
    return _prepare(toy_root, "ToyCOCO")


@pytest.fixture(scope="module")
def toy_oven(toy_root: Path):
    """ToyOVEN: image+text queries, OVEN-like."""
    return _prepare(toy_root, "ToyOVEN")


def _ndcg(toy, corpus: dict, calibration: str, fusion: dict | None = None) -> float:
    bench, embs, pools = toy
    ev = Evaluator(bench, embs, corpus=corpus, calibration={"method": calibration}, pools=pools)
    return ev.run(fusion or {}).metrics["ndcg@10"]


def test_text_to_image_recall_is_far_above_chance(toy) -> None:
    bench, embs, _ = toy
    q = embs["queries/text"].vectors
    d = embs["corpus/image"].vectors
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    top = search(q, d, 10, doc_ids=embs["corpus/image"].ids)
    ids = np.array(embs["corpus/image"].ids, dtype=object)
    ranked = dict(zip(embs["queries/text"].ids, ids[top.indices].tolist(), strict=True))
    recall1 = evaluate_ranking(ranked, bench.qrels, ks=(1,))[0]["recall@1"]
    chance = 1 / len(d)
    assert recall1 >= 10 * chance, (recall1, chance)


def test_gap_is_large_before_and_closed_after_gr(toy) -> None:
    bench, embs, pools = toy
    ev = Evaluator(bench, embs, corpus={"mode": "all_multimodal"}, calibration={"method": "gr"},
                   pools=pools)
    gap = ev.run({}).gap
    assert gap["centroid_distance_before"] >= 0.3
    assert gap["centroid_distance_after"] <= 0.05


def test_gr_lifts_ndcg_on_the_released_mixed_corpus(toy) -> None:
    none = _ndcg(toy, {"mode": "released"}, "none")
    gr = _ndcg(toy, {"mode": "released"}, "gr")
    assert gr >= none + 0.05, (none, gr)


def test_setting1_u_shape_without_calibration_and_flatter_with_gr(toy) -> None:
    curves = {cal: [_ndcg(toy, {"mode": "replace", "p": p}, cal) for p in SEED_REPLACE_RATIOS]
              for cal in ("none", "gr")}
    none = curves["none"]
    interior_min = min(none[1:-1])
    assert interior_min < none[0] and interior_min < none[-1], none
    spread = {cal: max(c) - min(c) for cal, c in curves.items()}
    assert spread["gr"] < spread["none"], spread
    # GR recovers most where the uncalibrated model is worst
    worst = int(np.argmin(none))
    assert curves["gr"][worst] > none[worst] + 0.1, (curves, worst)


def test_setting2_fusion_failure_without_calibration_interior_optimum_with_gr(toy_oven) -> None:
    """On the OVEN-like subset, as in the paper's OVEN panels: raw fusion is best at an end
    (fusing in the image hurts), GR's best fusion is an interior alpha above both ends.
    (On ToyCOCO the effect is weak: the uncalibrated optimum sits at alpha 0.2.)"""
    curves = {cal: [_ndcg(toy_oven, {"mode": "all_multimodal"}, cal, {"alpha": a}) for a in ALPHAS]
              for cal in ("none", "gr")}
    best = {cal: ALPHAS[int(np.argmax(c))] for cal, c in curves.items()}
    assert best["none"] in (0.0, 1.0), (best, curves["none"])
    assert 0.0 < best["gr"] < 1.0, (best, curves["gr"])
    gr = curves["gr"]
    assert max(gr) > max(gr[0], gr[-1]) + 0.01, gr
