"""Per-modality search with merged lists (retrieval.merge): against ranx.fuse and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from ranx import Run, fuse
from test_evaluate import synthetic

from mixsearch.evaluation import Evaluator
from mixsearch.merge import available_merges, merge_lists, register_merge
from mixsearch.retrieval import search


def _ranx_merge(lists, ids, method, k):
    runs = [Run({f"q{q}": {ids[r]: float(s) for s, r in zip(scores[q], rows[q], strict=True)}
                 for q in range(len(scores))}) for scores, rows in lists]
    if method == "rrf":
        fused = fuse(runs, norm=None, method="rrf", params={"k": 60})
    else:
        fused = fuse(runs, norm="zmuv", method="sum")
    return {q: sorted(docs.items(), key=lambda kv: -kv[1])[:k] for q, docs in fused.to_dict().items()}


@pytest.mark.parametrize("method", ["rrf", "zscore"])
def test_merge_lists_equals_ranx_fuse(method):
    rng = np.random.default_rng(0)
    ids = [f"d{i:03d}" for i in range(90)]
    groups = np.array_split(rng.permutation(90), 3)  # three disjoint "modalities"
    lists = []
    for g, m in zip(groups, (0.9, 0.3, -0.2), strict=True):
        s = np.sort(rng.normal(m, 0.1 * (1 + m), (5, len(g))), axis=1)[:, ::-1].copy()
        lists.append((s, np.tile(g, (5, 1))))
    scores, rows = merge_lists(lists, method, 40, np.arange(90))
    ref = _ranx_merge(lists, ids, method, 40)
    for q in range(5):
        ref_docs, ref_scores = zip(*ref[f"q{q}"], strict=True)
        if method == "zscore":  # no ties among random z-scores: the same list in the same order
            assert [ids[r] for r in rows[q]] == list(ref_docs)
        else:  # RRF ties every rank across lists; compare the multiset of scores per rank
            assert sorted(ids[r] for r in rows[q][:3]) == sorted(ref_docs[:3])
        np.testing.assert_allclose(scores[q], ref_scores, rtol=1e-5)


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
            ranked = [base.docs.ids[r] for r in got.indices[n]]
            if method == "zscore":
                assert ranked == [doc for doc, _ in ref[f"q{n}"]]
            # RRF: position 3m..3m+2 holds the rank-(m+1) docs of the three modalities
            top3 = {base.docs.ids[lst[1][n][0]] for lst in lists}
            if method == "rrf":
                assert set(ranked[:3]) == top3
        res = ev[method].run()
        assert 0 < res.metrics["ndcg@10"] <= 1


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
