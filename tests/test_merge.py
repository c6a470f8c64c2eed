"""Per-modality search with merged lists (retrieval.merge): against ranx.fuse and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from ranx import Run, fuse
from test_evaluate import synthetic

from mixsearch.evaluation import Evaluator
from mixsearch.merge import available_merges, merge_lists, register_merge
from mixsearch.retrieval import search


def _ranx_merge(lists, ids, method, k, rrf_k=60):
    runs = [Run({f"q{q}": {ids[r]: float(s) for s, r in zip(scores[q], rows[q], strict=True)}
                 for q in range(len(scores))}) for scores, rows in lists]
    if method == "rrf":  # the modality runs and the union run (every candidate by raw score)
        union = Run({f"q{q}": {ids[r]: float(s) for scores, rows in lists
                               for s, r in zip(scores[q], rows[q], strict=True)}
                     for q in range(len(lists[0][0]))})
        fused = fuse([*runs, union], norm=None, method="rrf", params={"k": rrf_k})
    else:
        fused = fuse(runs, norm="zmuv", method="sum")
    return {q: sorted(docs.items(), key=lambda kv: -kv[1])[:k] for q, docs in fused.to_dict().items()}


def _lists(seed=0, n=90, nq=5):
    """Three disjoint "modalities" with their own score ranges, sorted best first."""
    rng = np.random.default_rng(seed)
    groups = np.array_split(rng.permutation(n), 3)
    lists = []
    for g, m in zip(groups, (0.9, 0.3, -0.2), strict=True):
        sc = np.sort(rng.normal(m, 0.1 * (1 + m) + 0.4, (nq, len(g))), axis=1)[:, ::-1].copy()
        lists.append((sc, np.tile(g, (nq, 1))))
    return lists


def _rrf_by_hand(lists, k, rrf_k):
    """Σ over the doc's own list and the union list of 1 / (rrf_k + rank), ranks from 1."""
    out = []
    for q in range(len(lists[0][0])):
        own = {int(r): 1 / (rrf_k + i + 1) for _, rows in lists for i, r in enumerate(rows[q])}
        raw = sorted(((float(s), int(r)) for sc, rows in lists for s, r in zip(sc[q], rows[q], strict=True)),
                     reverse=True)
        total = {r: own[r] + 1 / (rrf_k + i + 1) for i, (_, r) in enumerate(raw)}
        out.append(sorted(total, key=lambda r: -total[r])[:k])
    return out


@pytest.mark.parametrize("method", ["rrf", "zscore"])
def test_merge_lists_equals_ranx_fuse(method):
    ids = [f"d{i:03d}" for i in range(90)]
    lists = _lists()
    scores, rows = merge_lists(lists, method, 40, np.arange(90))
    ref = _ranx_merge(lists, ids, method, 40)
    for q in range(5):
        ref_docs, ref_scores = zip(*ref[f"q{q}"], strict=True)
        np.testing.assert_allclose(scores[q], ref_scores, rtol=1e-5)
        distinct = np.r_[True, np.abs(np.diff(scores[q])) > 1e-9]  # away from equal merged scores
        got = np.array([ids[r] for r in rows[q]])
        assert (got[distinct & np.r_[distinct[1:], True]] == np.array(ref_docs)[distinct & np.r_[distinct[1:], True]]).all()


@pytest.mark.parametrize("rrf_k", [1, 60, 1000])
def test_rrf_k_changes_the_fusion_as_the_formula_says(rrf_k):
    lists = _lists(seed=3)
    _, rows = merge_lists(lists, "rrf", 30, np.arange(90), rrf_k=rrf_k)
    assert [list(map(int, r)) for r in rows] == _rrf_by_hand(lists, 30, rrf_k)


def test_rrf_k_matters_and_the_tie_order_does_not():
    lists = _lists(seed=3)
    k1 = merge_lists(lists, "rrf", 30, np.arange(90), rrf_k=1)[1]
    k1000 = merge_lists(lists, "rrf", 30, np.arange(90), rrf_k=1000)[1]
    assert (k1 != k1000).any()
    for method in ("rrf", "zscore"):  # no exactly equal raw cosines: ids never decide
        fwd = merge_lists(lists, method, 30, np.arange(90))
        rev = merge_lists(lists, method, 30, np.arange(90)[::-1].copy())
        np.testing.assert_array_equal(fwd[1], rev[1])


def test_evaluator_merge_equals_per_modality_search_then_merge():
    bench, embs, _ = synthetic(n_q=12, n_docs=60)
    k = 20
    ev = {m: Evaluator(bench, embs, corpus={"mode": "released"}, calibration={"method": "none"},
                       retrieval={"k": k, "merge": m}, metrics={"ks": [10]})
          for m in ("single", "rrf", "zscore")}
    base = ev["single"]
    q = base._query_state("weighted", 0.5).after
    from mixsearch.fusion import fuse
    d = fuse(base.docs, alpha=0.5)
    mods = base.docs.modalities
    assert set(mods) == {"text", "image", "image+text"}
    for method in ("rrf", "zscore"):
        lists = []
        for mod in sorted(set(mods)):
            idx = np.flatnonzero(mods == mod)
            hit = search(q, d[idx], k, doc_ids=[base.docs.ids[i] for i in idx])
            lists.append((hit.scores, idx[hit.indices]))
        ref = _ranx_merge(lists, base.docs.ids, method, k)
        got = ev[method].retrieve()
        for n in range(len(base.queries.ids)):
            ref_docs, ref_scores = zip(*ref[f"q{n}"], strict=True)
            np.testing.assert_allclose(got.scores[n], ref_scores, rtol=1e-5)
            if method == "zscore":
                assert [base.docs.ids[r] for r in got.indices[n]] == list(ref_docs)
        res = ev[method].run()
        assert 0 < res.metrics["ndcg@10"] <= 1


def test_evaluator_rrf_is_the_same_under_either_id_order():
    bench, embs, _ = synthetic(n_q=12, n_docs=60)
    runs = {t: Evaluator(bench, embs, corpus={"mode": "released"}, calibration={"method": "gr", "source": "transductive"},
                         retrieval={"k": 20, "merge": "rrf", "ties": t}, metrics={"ks": [10]}).retrieve()
            for t in ("trec", "id_asc")}
    np.testing.assert_array_equal(runs["trec"].indices, runs["id_asc"].indices)


def test_merge_errors_and_registry(registries_restored):
    bench, embs, _ = synthetic(n_q=5, n_docs=30)
    with pytest.raises(ValueError, match="retrieval.merge: 'borda' is not one of"):
        Evaluator(bench, embs, corpus={"mode": "released"}, calibration={"method": "none"},
                  retrieval={"merge": "borda"})
    ev = Evaluator(bench, embs, corpus={"mode": "released"}, calibration={"method": "pushdown"},
                   retrieval={"merge": "rrf", "k": 30}, metrics={"ks": [10]})
    with pytest.raises(ValueError, match="calibration=pushdown .* no retrieval.merge"):
        ev.run()
    register_merge("first_only", lambda s, k: np.where(np.arange(s.shape[1]) == 0, 1.0, 0.0) * np.ones_like(s))
    assert "first_only" in available_merges()
    with pytest.raises(ValueError, match="already registered"):
        register_merge("rrf", lambda s, k: s)
    ev = Evaluator(bench, embs, corpus={"mode": "released"}, calibration={"method": "none"},
                   retrieval={"merge": "first_only", "k": 30}, metrics={"ks": [10]})
    assert ev.retrieve().scores[:, :3].tolist() == [[1.0, 1.0, 1.0]] * 5
