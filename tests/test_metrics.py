"""evaluate_ranking against pytrec_eval, sklearn and hand-computed values."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import pytrec_eval
from sklearn.metrics import ndcg_score

from mixsearch.metrics import evaluate_ranking

KS = (1, 3, 5, 10, 20)


def _random_case(seed: int = 0, n_queries: int = 60, pool: int = 40):
    """Graded qrels 0-3 and ranked lists with unjudged, judged-not-retrieved and all-miss queries."""
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(pool)]
    qrels, ranked = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        judged = rng.choice(pool, size=int(rng.integers(2, 12)), replace=False)
        grades = rng.integers(0, 4, size=judged.size)
        grades[0] = max(grades[0], 1)  # at least one relevant doc
        qrels[qid] = {docs[d]: int(g) for d, g in zip(judged, grades, strict=True)}
        candidates = np.arange(pool)
        if q % 7 == 0:  # no relevant doc retrieved
            candidates = np.array([d for d in candidates if qrels[qid].get(docs[d], 0) <= 0])
        n_ret = int(rng.integers(1, min(30, candidates.size) + 1))
        ranked[qid] = [docs[d] for d in rng.choice(candidates, size=n_ret, replace=False)]
    return ranked, qrels


def _trec_run(ranked, cut=None):
    """Distinct descending scores that encode our order, so trec_eval's tie rule never applies."""
    return {
        qid: {doc: float(len(docs) - i) for i, doc in enumerate(docs[:cut])}
        for qid, docs in ranked.items()
    }


def test_matches_pytrec_eval_on_random_graded_runs():
    ranked, qrels = _random_case()
    agg, per_query = evaluate_ranking(ranked, qrels, ks=KS)
    cuts = ",".join(map(str, KS))
    ref = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{cuts}", f"recall.{cuts}"}).evaluate(
        _trec_run(ranked)
    )
    mrr_ref = {
        k: pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(_trec_run(ranked, k))
        for k in KS
    }
    assert set(per_query) == set(ref) == set(qrels)
    missed = [q for q, m in per_query.items() if math.isnan(m["first_rel_rank"])]
    assert len(missed) >= 5  # the no-relevant-retrieved case is exercised
    for qid, mine in per_query.items():
        for k in KS:
            assert mine[f"ndcg@{k}"] == pytest.approx(ref[qid][f"ndcg_cut_{k}"], abs=1e-9)
            assert mine[f"recall@{k}"] == pytest.approx(ref[qid][f"recall_{k}"], abs=1e-9)
            assert mine[f"mrr@{k}"] == pytest.approx(mrr_ref[k][qid]["recip_rank"], abs=1e-9)
    for name, value in agg.items():
        assert value == pytest.approx(np.mean([m[name] for m in per_query.values()]), abs=1e-12)


def test_exponential_gain_matches_independent_formula():
    ranked, qrels = _random_case(seed=1)
    _, per_query = evaluate_ranking(ranked, qrels, ks=KS, measures=["ndcg"], gain="exponential")
    for qid, mine in per_query.items():
        rels = [qrels[qid].get(d, 0) for d in ranked[qid]]
        ideal = sorted(qrels[qid].values(), reverse=True)
        for k in KS:
            dcg = sum((2.0**r - 1) / math.log2(i + 2) for i, r in enumerate(rels[:k]))
            idcg = sum((2.0**r - 1) / math.log2(i + 2) for i, r in enumerate(ideal[:k]))
            assert mine[f"ndcg@{k}"] == pytest.approx(dcg / idcg, abs=1e-12)


def test_seed_topk_matches_sklearn_including_ties():
    ranked, qrels = _random_case(seed=2)
    rng = np.random.default_rng(2)
    ranked = {q: d if len(d) >= 2 else d + ["unjudged"] for q, d in ranked.items()}
    # Scores on a coarse grid: many ties, which sklearn averages (ignore_ties=False).
    scores = {q: sorted(rng.integers(0, 4, len(d)) / 4.0, reverse=True) for q, d in ranked.items()}
    _, per_query = evaluate_ranking(
        ranked, qrels, ks=KS, measures=["ndcg"], ndcg_variant="seed_topk", scores=scores
    )
    n_tied = 0
    for qid, mine in per_query.items():
        rel = [qrels[qid].get(d, 0) for d in ranked[qid]]
        n_tied += len(set(scores[qid])) < len(scores[qid])
        for k in KS:
            ref = ndcg_score([rel], [scores[qid]], k=k)
            assert mine[f"ndcg@{k}"] == pytest.approx(ref, abs=1e-12)
    assert n_tied > 30


def test_seed_topk_orders_by_score_not_list_position():
    # sklearn ranks the window by score; a list that disagrees with its scores shows it.
    qrels = {"q": {"b": 1}}
    args = dict(ks=(1,), measures=["ndcg"], ndcg_variant="seed_topk")
    agg, _ = evaluate_ranking({"q": ["a", "b"]}, qrels, scores={"q": [0.1, 0.9]}, **args)
    assert agg["ndcg@1"] == pytest.approx(ndcg_score([[0, 1]], [[0.1, 0.9]], k=1)) == 1.0


def test_trec_and_seed_agree_with_one_binary_positive():
    rng = np.random.default_rng(3)
    ranked, qrels, scores = {}, {}, {}
    for q in range(40):
        docs = [f"d{i}" for i in rng.permutation(30)[:12]]
        ranked[f"q{q}"] = docs
        scores[f"q{q}"] = list(np.linspace(1.0, 0.0, len(docs)))
        qrels[f"q{q}"] = {f"d{rng.integers(30)}": 1, f"d{rng.integers(30, 40)}": 0}
    trec, _ = evaluate_ranking(ranked, qrels, ks=(1, 5, 10))
    seed, _ = evaluate_ranking(
        ranked, qrels, ks=(1, 5, 10), ndcg_variant="seed_topk", scores=scores
    )
    assert 0 < trec["ndcg@10"] < 1
    assert trec == pytest.approx(seed, abs=1e-12)


def test_paper_section7_examples():
    # Two relevant docs, one retrieved at rank 2: seed 1/log2(3), trec 0.631 / 1.631.
    ranked, qrels, scores = {"q": ["x", "r1", "y"]}, {"q": {"r1": 1, "r2": 1}}, {"q": [3, 2, 1]}
    trec, _ = evaluate_ranking(ranked, qrels, ks=(10,), measures=["ndcg"])
    seed, _ = evaluate_ranking(
        ranked, qrels, ks=(10,), measures=["ndcg"], ndcg_variant="seed_topk", scores=scores
    )
    assert seed["ndcg@10"] == pytest.approx(1 / math.log2(3)) == pytest.approx(0.631, abs=5e-4)
    assert trec["ndcg@10"] == pytest.approx(0.387, abs=5e-4)
    # Retrieved grades [1, 2]: linear 0.860, exponential 0.797.
    graded = {"q": {"a": 1, "b": 2}}
    lin, _ = evaluate_ranking({"q": ["a", "b"]}, graded, ks=(2,), measures=["ndcg"])
    exp, _ = evaluate_ranking(
        {"q": ["a", "b"]}, graded, ks=(2,), measures=["ndcg"], gain="exponential"
    )
    assert lin["ndcg@2"] == pytest.approx(0.860, abs=5e-4)
    assert exp["ndcg@2"] == pytest.approx(0.797, abs=5e-4)


def test_mixbench_replica_expectations():
    ids = [str(i) for i in range(6)]
    qrels = {q: {q: 1} for q in ids}
    oracle = {q: [q] + [d for d in ids if d != q] for q in ids}
    agg, _ = evaluate_ranking(oracle, qrels)
    assert agg["ndcg@10"] == agg["recall@1"] == agg["mrr@10"] == 1.0
    # Every query's positive ranked last of the 6 docs.
    last = {q: [d for d in reversed(ids) if d != q] + [q] for q in ids}
    agg, per_query = evaluate_ranking(last, qrels)
    assert agg["ndcg@10"] == pytest.approx(1 / math.log2(7)) == pytest.approx(0.356, abs=5e-4)
    assert agg["recall@1"] == 0.0 and agg["recall@10"] == 1.0
    assert agg["mrr@10"] == pytest.approx(1 / 6) and agg["mrr@5"] == 0.0
    assert {m["first_rel_rank"] for m in per_query.values()} == {6.0}


def test_query_coverage_rules_and_first_rel_rank():
    qrels = {
        "hit": {"a": 1},
        "absent": {"a": 2},  # judged, not in ranked: scores 0
        "no_rel": {"a": 0},  # no relevant doc: not evaluated
        "deep": {"z": 1},
    }
    ranked = {
        "hit": ["b", "a"],
        "extra": ["a"],  # not in qrels: ignored
        "no_rel": ["a"],
        "deep": [f"n{i}" for i in range(12)] + ["z"],  # relevant beyond max(ks)
    }
    agg, per_query = evaluate_ranking(ranked, qrels, ks=(1, 10))
    assert set(per_query) == {"hit", "absent", "deep"}
    assert per_query["hit"]["first_rel_rank"] == 2.0
    assert per_query["deep"]["first_rel_rank"] == 13.0
    assert per_query["deep"]["recall@10"] == 0.0 and per_query["deep"]["mrr@10"] == 0.0
    assert math.isnan(per_query["absent"]["first_rel_rank"])
    assert all(v == 0.0 for n, v in per_query["absent"].items() if n != "first_rel_rank")
    assert agg["recall@10"] == pytest.approx(1 / 3)
    assert agg["ndcg@10"] == pytest.approx(1 / math.log2(3) / 3)


def test_negative_grades_count_as_zero_like_trec_eval():
    qrels = {"q": {"a": -1, "b": 2, "c": 1}}
    ranked = {"q": ["a", "b", "x"]}
    _, per_query = evaluate_ranking(ranked, qrels, ks=(1, 2, 3))
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.1,2,3", "recall.1,2,3"}).evaluate(
        _trec_run(ranked)
    )["q"]
    for k in (1, 2, 3):
        assert per_query["q"][f"ndcg@{k}"] == pytest.approx(ref[f"ndcg_cut_{k}"], abs=1e-12)
        assert per_query["q"][f"recall@{k}"] == pytest.approx(ref[f"recall_{k}"], abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"measures": ["ndcg", "map"]}, r"metrics\.measures: unknown \['map'\]"),
        ({"gain": "log"}, r"metrics\.gain: unknown gain 'log'"),
        ({"ndcg_variant": "sklearn"}, r"metrics\.ndcg_variant: unknown variant 'sklearn'"),
        ({"ks": (10, 0)}, r"metrics\.ks must be positive integers, got \[10, 0\]"),
        ({"ndcg_variant": "seed_topk"}, r"seed_topk' needs the retrieval scores"),
        (
            {"ndcg_variant": "seed_topk", "scores": {"q": [1.0]}},
            r"scores\['q'\] has 1 scores for 2 ranked docs",
        ),
        (
            {"ndcg_variant": "seed_topk", "scores": {"q": [1.0, float("nan")]}},
            "seed_topk needs finite scores",
        ),
    ],
)
def test_bad_options_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_ranking({"q": ["a", "b"]}, {"q": {"a": 1}}, **kwargs)


def test_bad_inputs_name_the_query():
    with pytest.raises(ValueError, match=r"ranked\['q'\] lists a doc id more than once"):
        evaluate_ranking({"q": ["a", "b", "a"]}, {"q": {"a": 1}})
    with pytest.raises(ValueError, match="no query has a relevant document"):
        evaluate_ranking({"q": ["a"]}, {"q": {"a": 0}})


def test_ten_thousand_queries_is_fast():
    rng = np.random.default_rng(4)
    n_q, k = 10_000, 100
    pool = np.array([f"d{i}" for i in range(50_000)], dtype=object)
    # Distinct docs per row: a random start, then a stride.
    rows = (rng.integers(0, pool.size, (n_q, 1)) + 7 * np.arange(k)) % pool.size
    ranked = {str(q): docs for q, docs in enumerate(pool[rows].tolist())}
    qrels = {q: {d[int(rng.integers(len(d)))]: 1, "unretrieved": 1} for q, d in ranked.items()}
    start = time.perf_counter()
    agg, _ = evaluate_ranking(ranked, qrels)
    elapsed = time.perf_counter() - start
    assert agg["recall@100"] == pytest.approx(0.5)
    # Generous bound for a shared CPU; it runs in about 0.2 s.
    assert elapsed < 3.0


def test_hit_is_mbeir_recall_on_a_hand_made_case():
    """M-BEIR's "Recall@k" as UniIR computes it (``compute_recall_at_k`` in
    ``src/common/mbeir_retriever.py``): per query, 1.0 if the set of the top k retrieved ids
    intersects the set of relevant ids (qrels lines with relevance > 0), else 0.0; the task's
    figure is the mean over its queries. Expected values below are counted by hand."""
    qrels = {
        "A": {"d1": 1, "d4": 1},  # two relevant: found one of them at rank 3
        "B": {"d9": 1},  # the only relevant doc at rank 6
        "C": {"d5": 0, "d7": 1, "d8": 1, "d0": 1},  # rank 1 is judged non-relevant
    }
    ranked = {
        "A": ["d2", "d3", "d4", "d5", "d6", "d1"],
        "B": ["d1", "d2", "d3", "d4", "d5", "d9"],
        "C": ["d5", "d7", "d8", "d0", "d1"],
    }
    agg, per_query = evaluate_ranking(ranked, qrels, ks=(1, 5, 10), measures=("recall", "hit"))
    assert [per_query[q]["hit@5"] for q in "ABC"] == [1.0, 0.0, 1.0]
    assert [per_query[q]["hit@10"] for q in "ABC"] == [1.0, 1.0, 1.0]
    assert [per_query[q]["hit@1"] for q in "ABC"] == [0.0, 0.0, 0.0]
    assert agg["hit@5"] == pytest.approx(2 / 3) and agg["hit@10"] == 1.0 and agg["hit@1"] == 0.0
    # the usual recall differs where a query has several relevant docs: A finds 1 of 2
    assert [per_query[q]["recall@5"] for q in "ABC"] == [0.5, 0.0, 1.0]
    assert agg["recall@5"] == pytest.approx(0.5)


def test_hit_matches_trec_eval_success_on_random_runs():
    ranked, qrels = _random_case(seed=3)
    _, per_query = evaluate_ranking(ranked, qrels, ks=KS, measures=("hit",))
    cuts = ",".join(map(str, KS))
    ref = pytrec_eval.RelevanceEvaluator(qrels, {f"success.{cuts}"}).evaluate(_trec_run(ranked))
    values = [mine[f"hit@{k}"] for mine in per_query.values() for k in KS]
    assert 0 < np.mean(values) < 1  # both outcomes occur
    for qid, mine in per_query.items():
        for k in KS:
            assert mine[f"hit@{k}"] == ref[qid][f"success_{k}"]
