"""Evaluator.sweep (the α fast path) against Evaluator.run / retrieve, one α at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mixsearch import sweep
from mixsearch.data.benchmark import Record
from mixsearch.embed.embeddings import Embeddings
from mixsearch.evaluation import Evaluator
from mixsearch.tracking import trec_run_text
from tests.test_evaluate import IMG, synthetic

ALPHAS = [round(a, 2) for a in np.arange(0.0, 1.01, 0.1)]


def _assert_same_result(fast, plain) -> None:
    assert fast.metrics == plain.metrics  # bit-identical
    pd.testing.assert_frame_equal(fast.per_query, plain.per_query)
    assert fast.by_target_modality == plain.by_target_modality
    assert fast.topk_modality_share == plain.topk_modality_share
    assert fast.calibration == plain.calibration and fast.corpus == plain.corpus
    for key in ("mean_cosine_before", "mean_cosine_after"):
        for role, row in plain.gap[key].items():
            assert fast.gap[key][role] == pytest.approx(row, abs=1e-7)
    assert {k: v for k, v in fast.gap.items() if not k.startswith("mean_cosine")} == {
        k: v for k, v in plain.gap.items() if not k.startswith("mean_cosine")}
    assert list(fast.ranked) == list(plain.ranked) and list(fast.scores) == list(plain.scores)
    for qid, docs in plain.ranked.items():  # the run file's lists: same docs up to near-ties
        assert len(fast.ranked[qid]) == len(docs)
        np.testing.assert_allclose(fast.scores[qid], plain.scores[qid], atol=1e-6)


def _assert_same_ranking(fast, plain, *, exact: bool) -> None:
    """Equal rankings; without ``exact``, adjacent docs whose plain scores agree to 1e-6 may
    swap (float32 rounding of two formulas for one real score), nothing else."""
    if exact:
        np.testing.assert_array_equal(fast.indices, plain.indices)
        np.testing.assert_array_equal(fast.scores, plain.scores)
        return
    np.testing.assert_allclose(fast.scores, plain.scores, atol=1e-6)
    for r, c in zip(*np.nonzero(fast.indices != plain.indices), strict=True):
        near = [c2 for c2 in (c - 1, c + 1) if 0 <= c2 < plain.scores.shape[1]]
        assert any(abs(plain.scores[r, c] - plain.scores[r, c2]) <= 1e-6 for c2 in near)
        assert set(fast.indices[r]) == set(plain.indices[r]) or abs(
            plain.scores[r, -1] - fast.scores[r, -1]) <= 1e-6


def _evaluator(bench, embs, pools=None, **kw):
    kw.setdefault("corpus", {"mode": "released"})
    kw.setdefault("retrieval", {"k": 40, "device": "cpu"})
    kw.setdefault("metrics", {"ks": [1, 5, 10, 40]})
    return Evaluator(bench, embs, pools=pools, **kw)


@pytest.mark.parametrize("ties", ["trec", "id_asc"])
@pytest.mark.parametrize("method", ["weighted", "score"])
@pytest.mark.parametrize("calibration", ["none", "gr"])
def test_sweep_equals_run_alpha_by_alpha(calibration, method, ties):
    bench, embs, pools = synthetic(n_q=80, n_docs=300)
    ev = _evaluator(bench, embs, pools, calibration={"method": calibration},
                    retrieval={"k": 40, "device": "cpu", "ties": ties})
    fusions = [{"alpha": a, "method": method} for a in ALPHAS]
    fast = ev.sweep(fusions)
    _, _, tops = ev._sweep_topk(method, "weighted", 0.5, ALPHAS)
    for f, result, top in zip(fusions, fast, tops, strict=True):
        _assert_same_result(result, ev.run(f))
        _assert_same_ranking(top, ev.retrieve(f), exact=False)


def _basis_case(shown_cycle=("text", "image", "image+text"), n_docs=45):
    """Basis-vector embeddings: every score is exactly 0 or 1 (ties everywhere), and some
    image+text docs have equal text and image, so they tie exactly with text docs."""
    eye = np.eye(8, dtype=np.float32)
    dids = [str((7 * j) % n_docs) for j in range(n_docs)]  # ids out of row and string order
    rng = np.random.default_rng(0)
    text, image = eye[rng.integers(0, 8, n_docs)], eye[rng.integers(0, 8, n_docs)]
    image[::2] = text[::2]
    bench, _, _ = synthetic(n_q=8, n_docs=n_docs, shown=list(shown_cycle))
    bench.corpus = [Record(d, text="t", image=IMG) for d in dids]
    bench.mixed_corpus = [Record(d, text=m.text, image=m.image)
                          for d, m in zip(dids, bench.mixed_corpus, strict=True)]
    bench.qrels = {q.id: {dids[i]: 1, dids[i + 9]: 2} for i, q in enumerate(bench.queries)}
    embs = {"queries/text": Embeddings([q.id for q in bench.queries], eye),
            "corpus/text": Embeddings(dids, text), "corpus/image": Embeddings(dids, image)}
    return bench, embs


@pytest.mark.parametrize("ties", ["trec", "id_asc"])
@pytest.mark.parametrize("method", ["weighted", "score"])
def test_exact_ties_are_ordered_as_the_plain_path_orders_them(method, ties):
    bench, embs = _basis_case()
    ev = _evaluator(bench, embs, calibration={"method": "none"},
                    retrieval={"k": 25, "device": "cpu", "ties": ties}, metrics={"ks": [10, 25]})
    alphas = [0.0, 0.2, 0.5, 0.8, 1.0]
    _, _, tops = ev._sweep_topk(method, "weighted", 0.5, alphas)
    for alpha, top, result in zip(alphas, tops, ev.sweep(
            [{"alpha": a, "method": method} for a in alphas]), strict=True):
        plain = ev.retrieve({"alpha": alpha, "method": method})
        tied = (np.diff(plain.scores, axis=1) == 0).sum()
        assert tied > 50
        _assert_same_ranking(top, plain, exact=True)
        ref = ev.run({"alpha": alpha, "method": method})
        _assert_same_result(result, ref)
        assert dict(result.ranked) == ref.ranked and dict(result.scores) == ref.scores
        assert trec_run_text(result.ranked, result.scores) == trec_run_text(ref.ranked, ref.scores)


@pytest.mark.parametrize("corpus", [{"mode": "all_multimodal"},
                                    {"mode": "remix", "ratio": [1, 1, 30], "seed": 3}])
def test_no_or_few_unimodal_docs(corpus):
    """No bar τ (fewer than k unimodal docs): every image+text doc is a candidate, and rows
    with many candidates take their top-k from the full row."""
    bench, embs, pools = synthetic(n_q=40, n_docs=150)
    ev = _evaluator(bench, embs, pools, corpus=corpus, calibration={"method": "gr"})
    n_uni = int((~(ev.docs.has_text & ev.docs.has_image)).sum())
    assert n_uni < 40
    for f, result in zip([{"alpha": a} for a in ALPHAS], ev.sweep([{"alpha": a} for a in ALPHAS]),
                         strict=True):
        _assert_same_result(result, ev.run(f))


@pytest.mark.parametrize(("share", "heavy"), [(0.0, 4), (1.0, 4), (1.0, 0)])
def test_sparse_dense_and_heavy_routes_agree(monkeypatch, share, heavy):
    """Pair lists (share 1), whole matrices (share 0) and full-row top-k for every row with a
    candidate (heavy 0) select the same top-k."""
    bench, embs, pools = synthetic(n_q=50, n_docs=240)
    ev = _evaluator(bench, embs, pools, calibration={"method": "gr"})
    reference = ev._sweep_topk("weighted", "weighted", 0.5, ALPHAS)[2]
    monkeypatch.setattr(sweep, "_SPARSE_SHARE", share)
    monkeypatch.setattr(sweep, "_HEAVY_FACTOR", heavy)
    for got, ref in zip(ev._sweep_topk("weighted", "weighted", 0.5, ALPHAS)[2], reference,
                        strict=True):
        _assert_same_ranking(got, ref, exact=True)


def test_reachable_keeps_every_pair_that_can_reach_the_bar():
    """ChunkSweep's α-free mask keeps every (query, doc) pair whose score reaches the query's
    bar at some α (queries are unit vectors), including bars at or below zero, and prunes:
    few pairs that never reach the bar are kept."""
    bench, embs, pools = synthetic(n_q=30, n_docs=120)
    ev = _evaluator(bench, embs, pools, calibration={"method": "gr"})
    q = ev._query_state("weighted", 0.5).after
    for method in ("weighted", "score"):
        mixed = sweep.MixedDocs.build(ev.centred_docs, method)
        s_t, s_i = q @ mixed.text.T, q @ mixed.image.T
        best = np.max([mixed.scores(s_t, s_i, a) for a in np.linspace(0, 1, 201)], axis=0)
        for quantile in (0.5, 0.8, 0.95):
            bar = np.quantile(best, quantile, axis=1).astype(np.float32)
            bar[:3] = (-0.05, 0.0, -np.inf)
            keep = mixed.reachable(torch.from_numpy(s_t), torch.from_numpy(s_i),
                                   torch.from_numpy(bar)).numpy()
            reached = best >= bar[:, None] + 1e-6
            assert keep[reached].all(), (method, quantile)
            assert keep[:3].sum() >= reached[:3].sum()
            # tight: a bound on the projection alone (no cone check) keeps several times more
            assert keep[3:].sum() <= 1.3 * (best[3:] >= bar[3:, None] - 1e-6).sum(), (method, quantile)


def test_fallbacks_and_groups_match_run():
    """Push-down, joint query modes and bad options take the plain path; mixed groups keep
    their order."""
    bench, embs, pools = synthetic(n_q=30, n_docs=120, query_images=True)
    ev = _evaluator(bench, embs, pools, calibration={"method": "gr"})
    fusions = [{"alpha": 0.3}, {"alpha": 0.3, "query": "text"}, {"alpha": 0.7, "method": "score"},
               {"alpha": 0.7, "query_alpha": 0.2}, {"alpha": 0.1}]
    for f, result in zip(fusions, ev.sweep(fusions), strict=True):
        _assert_same_result(result, ev.run(f))
    # the schema's checks (mixsearch.schema) name the option
    with pytest.raises(ValueError, match=r"fusion\.alpha: 1\.5 is out of range"):
        ev.sweep([{"alpha": 0.5}, {"alpha": 1.5}])
    with pytest.raises(ValueError, match=r"fusion\.method: 'max' is not one of"):
        ev.sweep([{"method": "max"}])
    push = _evaluator(bench, embs, pools, calibration={"method": "pushdown"})
    for f, result in zip(fusions[:2], push.sweep(fusions[:2]), strict=True):
        _assert_same_result(result, push.run(f))


@pytest.mark.parametrize("method", ["weighted", "score"])
def test_block_wise_fusion_and_centroids_equal_the_whole_matrix(monkeypatch, method):
    """The built-in fusions, make_views and the diagnostics' centroids work a block of rows at a
    time (bounded temporaries): with blocks of 7 rows, fused vectors are bit-identical to one
    block, and run() gives the same metrics, rankings and diagnostics (float64 sums to 1e-12)."""
    from mixsearch import diagnostics, evaluation, fusion

    bench, embs, pools = synthetic(n_q=30, n_docs=120)
    whole = _evaluator(bench, embs, pools, calibration={"method": "gr"})
    ref_docs = fusion._FUSERS.get(method)(whole.centred_docs, 0.3)
    ref = whole.run({"method": method, "alpha": 0.3})
    monkeypatch.setattr(fusion, "FUSE_ROWS", 7)
    monkeypatch.setattr(evaluation, "FUSE_ROWS", 7)
    monkeypatch.setattr(diagnostics, "CENTROID_ROWS", 7)
    blocks = _evaluator(bench, embs, pools, calibration={"method": "gr"})
    np.testing.assert_array_equal(blocks.docs.text, whole.docs.text)
    np.testing.assert_array_equal(fusion.fuse(blocks.centred_docs, method=method, alpha=0.3), ref_docs)
    got = blocks.run({"method": method, "alpha": 0.3})
    assert got.metrics == ref.metrics and got.ranked == ref.ranked
    for key, value in ref.gap.items():
        if key.startswith("mean_cosine"):
            for role, row in value.items():
                assert got.gap[key][role] == pytest.approx(row, abs=1e-12)
        elif isinstance(value, float):
            assert got.gap[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert got.gap[key] == value, key
