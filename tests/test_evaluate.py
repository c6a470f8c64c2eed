"""evaluate(): GR math against an independent Algorithm 1, the planted modality gap, fusion,
push-down, diagnostics, the result contract and config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixsearch.corpus import mix_corpus
from mixsearch.data.benchmark import Benchmark, DataError, ImageRef, Record
from mixsearch.diagnostics import mean_cosine
from mixsearch.embed.embeddings import Embeddings
from mixsearch.evaluation import Evaluator, evaluate
from mixsearch.fusion import build_doc_matrix, build_query_matrix, make_views
from mixsearch.retrieval import search

IMG = ImageRef(data=b"never-decoded", origin="test")
DIM = 32


def synthetic(n_q=60, n_docs=90, *, query_images=False, gap=3.0, seed=0, shown=None, n_pool=400):
    """Query k is relevant to doc k. Every item = shared semantic vector + modality offset +
    noise; query texts get their own offset (short questions vs long descriptions)."""
    rng = np.random.default_rng(seed)
    sem = rng.standard_normal((n_docs, DIM))
    offsets = {m: gap * rng.standard_normal(DIM) / np.sqrt(DIM) * 3
               for m in ("qt", "qi", "dt", "di")}
    noise = lambda n: 0.3 * rng.standard_normal((n, DIM))  # noqa: E731

    def emb(rows, off):
        return (rows + offsets[off] + noise(len(rows))).astype(np.float32)

    qids, dids = [f"q{i}" for i in range(n_q)], [f"d{i:03d}" for i in range(n_docs)]
    queries = [Record(q, text=f"query {q}", image=IMG if query_images else None) for q in qids]
    corpus = [Record(d, text=f"text of {d}", image=IMG) for d in dids]
    shown = shown or ["text", "image", "image+text"]
    mixed = [Record(d, text=r.text if shown[i % len(shown)] != "image" else None,
                    image=IMG if shown[i % len(shown)] != "text" else None)
             for i, (d, r) in enumerate(zip(dids, corpus, strict=True))]
    qrels = {q: {dids[i]: 1} for i, q in enumerate(qids)}
    bench = Benchmark("synthetic", queries, corpus, qrels, mixed_corpus=mixed)
    embs = {"queries/text": Embeddings(qids, emb(sem[:n_q], "qt")),
            "corpus/text": Embeddings(dids, emb(sem, "dt")),
            "corpus/image": Embeddings(dids, emb(sem, "di"))}
    if query_images:
        embs["queries/image"] = Embeddings(qids, emb(sem[:n_q], "qi"))
    pools = {role: emb(rng.standard_normal((n_pool, DIM)), role[0] + role.split("_")[1][0])
             for role in ("query_text", "query_image", "doc_text", "doc_image")}
    return bench, embs, pools


def reference_scores(bench, embs, means, *, alpha, query_alpha):
    """docs/paper.md Algorithm 1 in the seed's order, item by item: normalise raw → fuse → subtract
    the (fused) mean → normalise → dot. ``means`` = None for the CLIP baseline."""
    def n(v):
        return v / np.linalg.norm(v)

    zero = np.zeros(DIM)
    mq_t, mq_i, m_t, m_i = (zero,) * 4 if means is None else (
        means["query_text"], means.get("query_image"), means["doc_text"], means["doc_image"])
    lookup = {k: dict(zip(e.ids, e.vectors.astype(np.float64), strict=True)) for k, e in embs.items()}
    Q = []
    for r in bench.queries:
        if r.image is not None:
            e = (query_alpha * n(lookup["queries/text"][r.id]) + (1 - query_alpha) * n(lookup["queries/image"][r.id])
                 - (query_alpha * mq_t + (1 - query_alpha) * mq_i))
        else:
            e = n(lookup["queries/text"][r.id]) - mq_t
        Q.append(n(e))
    D = []
    for r in bench.mixed_corpus:
        t = n(lookup["corpus/text"][r.id]) if r.text else None
        i = n(lookup["corpus/image"][r.id]) if r.image else None
        if t is not None and i is not None:
            e = alpha * t + (1 - alpha) * i - (alpha * m_t + (1 - alpha) * m_i)
        else:
            e = t - m_t if t is not None else i - m_i
        D.append(n(e))
    return np.array(Q) @ np.array(D).T


def ranks_of_relevant(scores, bench):
    dids = [r.id for r in bench.corpus]
    out = {}
    for qi, q in enumerate(bench.queries):
        rel = dids.index(next(iter(bench.qrels[q.id])))
        out[q.id] = 1 + int((scores[qi] > scores[qi, rel]).sum())
    return out


CFG = {"corpus": {"mode": "released"}, "fusion": {"method": "weighted", "alpha": 0.5},
       "retrieval": {"k": 100}, "metrics": {"ks": [1, 10, 100]}}


@pytest.mark.parametrize("query_images", [False, True])
@pytest.mark.parametrize(("alpha", "query_alpha"), [(0.5, 0.5), (0.3, 0.8)])
def test_gr_matches_independent_algorithm_1(query_images, alpha, query_alpha):
    bench, embs, pools = synthetic(query_images=query_images)
    means = {r: (p / np.linalg.norm(p, axis=1, keepdims=True)).mean(0) for r, p in pools.items()}
    fusion = {"method": "weighted", "alpha": alpha, "query": "weighted", "query_alpha": query_alpha}
    for method, ref_means in (("gr", means), ("none", None)):
        res = evaluate(bench, embs, corpus=CFG["corpus"], calibration={"method": method, "source": "train"},
                       fusion=fusion, retrieval=CFG["retrieval"], metrics=CFG["metrics"], pools=pools)
        expected = ranks_of_relevant(
            reference_scores(bench, embs, ref_means, alpha=alpha, query_alpha=query_alpha), bench)
        got = dict(zip(res.per_query["qid"], res.per_query["first_rel_rank"], strict=True))
        assert got == expected
        ndcg10 = np.mean([1 / np.log2(r + 1) if r <= 10 else 0 for r in expected.values()])
        assert res.metrics["ndcg@10"] == pytest.approx(ndcg10, abs=1e-9)


def test_doc_matrix_equals_reference_vectors():
    bench, embs, pools = synthetic()
    means = {r: (p / np.linalg.norm(p, axis=1, keepdims=True)).mean(0) for r, p in pools.items()}
    shown = [r.modality for r in bench.mixed_corpus]
    v = make_views([r.id for r in bench.corpus], embs["corpus/text"].vectors, embs["corpus/image"].vectors,
                   np.array([s != "image" for s in shown]), np.array([s != "text" for s in shown]))
    got, ids = build_doc_matrix(v, alpha=0.25, text_mean=means["doc_text"], image_mean=means["doc_image"])
    assert ids == [r.id for r in bench.corpus]
    for k, r in enumerate(bench.mixed_corpus):
        t = embs["corpus/text"].vectors[k] / np.linalg.norm(embs["corpus/text"].vectors[k])
        i = embs["corpus/image"].vectors[k] / np.linalg.norm(embs["corpus/image"].vectors[k])
        e = {"text": t - means["doc_text"], "image": i - means["doc_image"],
             "image+text": 0.25 * t + 0.75 * i - (0.25 * means["doc_text"] + 0.75 * means["doc_image"])}[r.modality]
        np.testing.assert_allclose(got[k], e / np.linalg.norm(e), atol=1e-5)


@pytest.mark.parametrize("source", ["train", "crossfit"])
def test_planted_gap_closes_and_gr_beats_clip(source):
    # the gap is measured on paired text/image parts: every doc shows both
    bench, embs, pools = synthetic(n_q=100, n_docs=400, n_pool=4000)
    kw = {"corpus": {"mode": "all_multimodal"}, "fusion": {"alpha": 0.5}, "pools": pools}
    none = evaluate(bench, embs, calibration={"method": "none"}, **kw)
    gr = evaluate(bench, embs, calibration={"method": "gr", "source": source, "folds": 5}, **kw)
    assert none.gap["centroid_distance_before"] > 1.0
    assert none.gap["centroid_distance_after"] == pytest.approx(none.gap["centroid_distance_before"])
    assert gr.gap["centroid_distance_before"] == pytest.approx(none.gap["centroid_distance_before"])
    assert gr.gap["centroid_distance_after"] < 0.05
    assert gr.gap["query_doc_image_distance_before"] > 1.0
    assert gr.calibration["source"] == source


@pytest.mark.parametrize("source", ["train", "crossfit"])
def test_gr_beats_clip_when_relevance_crosses_modalities(source):
    bench, embs, pools = synthetic(n_q=150, n_docs=300)
    kw = {"corpus": {"mode": "remix", "seed": 42}, "fusion": {"alpha": 0.5}, "pools": pools}
    none = evaluate(bench, embs, calibration={"method": "none"}, **kw)
    gr = evaluate(bench, embs, calibration={"method": "gr", "source": source}, **kw)
    assert gr.metrics["ndcg@10"] > none.metrics["ndcg@10"] + 0.2
    # CLIP fills the top 10 with one modality; GR about as often as each fills the corpus
    assert max(none.topk_modality_share["topk"].values()) > 0.6
    share = gr.topk_modality_share
    for m in ("text", "image", "image+text"):
        assert abs(share["topk"][m] - share["corpus"][m]) < 0.15


def test_score_fusion_equals_independent_formula():
    bench, embs, pools = synthetic(shown=["image+text"])
    means = {r: (p / np.linalg.norm(p, axis=1, keepdims=True)).mean(0) for r, p in pools.items()}
    res = evaluate(bench, embs, corpus={"mode": "all_multimodal"}, calibration={"method": "gr", "source": "train"},
                   fusion={"method": "score", "alpha": 0.7}, pools=pools)

    def cal(key, mean):
        v = embs[key].vectors / np.linalg.norm(embs[key].vectors, axis=1, keepdims=True) - mean
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    q = cal("queries/text", means["query_text"])
    scores = 0.7 * q @ cal("corpus/text", means["doc_text"]).T + 0.3 * q @ cal("corpus/image", means["doc_image"]).T
    got = dict(zip(res.per_query["qid"], res.per_query["first_rel_rank"], strict=True))
    assert got == ranks_of_relevant(scores, bench)


def test_alpha_one_equals_text_only_and_sweep_equals_evaluate():
    bench, embs, pools = synthetic(shown=["image+text"])
    cfg = {"corpus": {"mode": "all_multimodal"}, "calibration": {"method": "gr", "source": "train"}, "pools": pools}
    ev = Evaluator(bench, embs, **cfg)
    text_only = {**embs, "corpus/image": Embeddings(embs["corpus/image"].ids, embs["corpus/text"].vectors)}
    a1 = ev.run({"alpha": 1.0})
    # with the image replaced by the text, any alpha gives the text-only ranking; means must match too
    pools_t = {**pools, "doc_image": pools["doc_text"]}
    ref = evaluate(bench, text_only, fusion={"alpha": 0.3}, **{**cfg, "pools": pools_t})
    assert a1.per_query["first_rel_rank"].tolist() == ref.per_query["first_rel_rank"].tolist()
    for alpha in (0.0, 0.35):
        one = evaluate(bench, embs, fusion={"alpha": alpha}, **cfg)
        assert ev.run({"alpha": alpha}).to_json() == one.to_json()


def test_query_image_mean_falls_back_to_doc_image_mean():
    bench, embs, pools = synthetic(query_images=True)
    del pools["query_image"]
    res = evaluate(bench, embs, calibration={"method": "gr", "source": "train"}, fusion={"query": "weighted"},
                   corpus={"mode": "released"}, pools=pools)
    assert res.calibration["notes"] == ["query_image: doc_image mean used (no query_image mean)"]
    means = {r: (p / np.linalg.norm(p, axis=1, keepdims=True)).mean(0) for r, p in pools.items()}
    means["query_image"] = means["doc_image"]
    expected = ranks_of_relevant(reference_scores(bench, embs, means, alpha=0.5, query_alpha=0.5), bench)
    assert dict(zip(res.per_query["qid"], res.per_query["first_rel_rank"], strict=True)) == expected
    text_only = evaluate(bench, embs, calibration={"method": "gr", "source": "train"}, fusion={"query": "text"},
                         corpus={"mode": "released"}, pools=pools)
    assert text_only.calibration["notes"] == [] and text_only.gap["query_role"] == ["text"]
    assert res.gap["query_role"] == ["image+text"]


def test_pushdown_ranks_every_text_first():
    bench, embs, _ = synthetic(n_q=20, n_docs=60)
    kw = {"corpus": {"mode": "replace", "p": 0.5, "replace_with": "image"}, "fusion": {},
          "retrieval": {"k": 60}, "metrics": {"ks": [10, 60]}}
    push = evaluate(bench, embs, calibration={"method": "pushdown"}, **kw)
    none = evaluate(bench, embs, calibration={"method": "none"}, **kw)
    n_text = push.corpus["counts"]["text"]
    assert n_text == 30 and push.topk_modality_share["topk"]["text"] == 1.0
    # texts first by cosine, then images by cosine: the rank of a relevant doc is its rank among
    # its own modality, offset by all texts for images
    shown = mix_corpus(bench, "replace", p=0.5, replace_with="image")
    text_mask = np.array([shown[r.id] == "text" for r in bench.corpus])

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    docs = np.where(text_mask[:, None], unit(embs["corpus/text"].vectors), unit(embs["corpus/image"].vectors))
    scores = unit(embs["queries/text"].vectors) @ docs.T
    expected = {}
    for qi, q in enumerate(bench.queries):
        rel = [r.id for r in bench.corpus].index(next(iter(bench.qrels[q.id])))
        same = text_mask == text_mask[rel]
        expected[q.id] = 1 + int((scores[qi][same] > scores[qi, rel]).sum()) + (0 if text_mask[rel] else n_text)
    got = dict(zip(push.per_query["qid"], push.per_query["first_rel_rank"], strict=True))
    assert got == expected
    assert push.calibration["method"] == "pushdown" and none.calibration["source"] is None


def test_replace_uses_screenshot_embeddings():
    bench, embs, _ = synthetic(n_q=10, n_docs=20)
    bench.corpus = [Record(r.id, text=r.text) for r in bench.corpus]  # no images: screenshots
    cfg = {"corpus": {"mode": "replace", "p": 1.0}, "calibration": {"method": "none"}, "fusion": {}}
    with pytest.raises(DataError, match="no 'corpus/screenshot' embeddings"):
        evaluate(bench, embs, **cfg)
    shots = {**embs, "corpus/screenshot": embs["corpus/image"]}
    res = evaluate(bench, shots, **cfg)
    assert res.corpus["n_screenshots"] == 20 and res.corpus["counts"]["image"] == 20
    swapped = {**embs, "corpus/image": embs["corpus/text"], "corpus/screenshot": embs["corpus/image"]}
    assert evaluate(bench, swapped, **cfg).to_json() == res.to_json()


def test_result_contract_and_diagnostics():
    bench, embs, pools = synthetic()
    res = evaluate(bench, embs, corpus={"mode": "released"}, calibration={"method": "gr", "source": "transductive"},
                   fusion={"alpha": 0.5}, metrics={"ks": [1, 5, 10, 100]}, pools=pools)
    out = json.loads(json.dumps(res.to_json()))
    assert set(out) == {"metrics", "by_target_modality", "topk_modality_share", "gap", "calibration", "corpus"}
    assert {"ndcg@10", "ndcg@100", "recall@1", "mrr@10"} <= set(out["metrics"])
    assert out["calibration"]["method"] == "gr" and out["calibration"]["source"] == "transductive"
    assert set(out["calibration"]["n_samples"]) == {"query_text", "doc_text", "doc_image"}
    assert out["corpus"] == {"mode": "released", "n_docs": 90, "counts": {"text": 30, "image": 30, "image+text": 30}}
    by = out["by_target_modality"]
    assert {m: v["n_queries"] for m, v in by.items()} == {"text": 20, "image": 20, "image+text": 20}
    table = res.per_query
    assert {"qid", "first_rel_rank", "ndcg@10", "target_modality"} <= set(table.columns)
    assert by["image"]["ndcg@10"] == pytest.approx(table[table.target_modality == "image"]["ndcg@10"].mean())
    share = out["topk_modality_share"]
    assert share["k"] == 10 and sum(share["topk"].values()) == pytest.approx(1.0)
    assert share["corpus"]["image"] == pytest.approx(1 / 3)
    for key in ("centroid_distance_before", "centroid_distance_after", "query_doc_image_distance_before",
                "query_doc_text_distance_after", "mean_cosine_before", "mean_cosine_after"):
        assert key in out["gap"]


def test_mean_cosine_equals_brute_force():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((7, 5))
    d = rng.standard_normal((11, 5))
    roles = ["text"] * 4 + ["image+text"] * 3
    mods = ["text", "image", "image+text"] * 3 + ["text", "image"]
    got = mean_cosine(q, roles, d, mods)
    s = q @ d.T
    for role in set(roles):
        for m in set(mods):
            rows = [i for i, r in enumerate(roles) if r == role]
            cols = [j for j, x in enumerate(mods) if x == m]
            assert got[role][m] == pytest.approx(s[np.ix_(rows, cols)].mean())


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [("calibration", {"method": "whiten"}, "calibration.method"),
     ("calibration", {"method": "gr", "source": "test"}, "calibration.source"),
     ("calibration", {"method": "gr", "fold": 3}, "calibration.fold: unknown option"),
     ("corpus", {"mode": "shuffled"}, "corpus.mode"),
     ("fusion", {"method": "max"}, "fusion.method"),
     ("fusion", {"alpha": 1.5}, "fusion.alpha"),
     ("fusion", {"query": "both"}, "fusion.query"),
     ("fusion", {"alpah": 0.5}, "fusion.alpah: unknown option"),
     ("metrics", {"ndcg_variant": "sklearn"}, "metrics.ndcg_variant"),
     ("retrieval", {"backend": "annoy"}, "retrieval.backend"),
     ("retrieval", {"k": 5}, "retrieval.k=5 is below the largest metrics.ks")],
)
def test_bad_options_name_the_option(section, value, message):
    bench, embs, pools = synthetic(n_q=10, n_docs=30)
    kw = {"corpus": {"mode": "released"}, "calibration": {"method": "none"}, "fusion": {}, section: value}
    with pytest.raises(ValueError, match=message):
        evaluate(bench, embs, pools=pools, **kw)


def test_missing_embeddings_name_key_and_id():
    bench, embs, _ = synthetic(n_q=10, n_docs=30)
    keep = [i for i in embs["corpus/image"].ids if i != "d001"]
    short = {**embs, "corpus/image": Embeddings(keep, embs["corpus/image"].take(keep))}
    with pytest.raises(DataError, match=r"embs\['corpus/image'\]: no embedding for id 'd001'"):
        evaluate(bench, short, corpus={"mode": "released"}, calibration={}, fusion={})
    bench_q, embs_q, _ = synthetic(n_q=10, n_docs=30, query_images=True)
    del embs_q["queries/image"]
    with pytest.raises(DataError, match="fusion.query=weighted: queries have images"):
        evaluate(bench_q, embs_q, corpus={"mode": "released"}, calibration={}, fusion={})
    ok = evaluate(bench_q, embs_q, corpus={"mode": "released"}, calibration={}, fusion={"query": "text"})
    assert ok.gap["query_role"] == ["text"]


@pytest.mark.parametrize("method", ["none", "gr"])
def test_split_search_equals_one_search_over_the_whole_corpus(method):
    """Unimodal docs are searched once per query option and merged with the image+text docs:
    the result must be the whole-corpus search, ties (by doc id) included."""
    n_docs, k = 40, 25
    eye = np.eye(8, dtype=np.float32)
    # basis-vector embeddings: every score is exactly 0 or 1, so ties are everywhere
    dids = [str((7 * j) % n_docs) for j in range(n_docs)]  # ids out of row and string order
    rng = np.random.default_rng(0)
    text, image = eye[rng.integers(0, 8, n_docs)], eye[rng.integers(0, 8, n_docs)]
    image[::3] = text[::3]  # image+text docs (row % 3 == 2 in released) tie with text docs
    bench, _, _ = synthetic(n_q=8, n_docs=n_docs)
    bench.corpus = [Record(d, text="t", image=IMG) for d in dids]
    bench.mixed_corpus = [Record(d, text=m.text, image=m.image) for d, m in zip(dids, bench.mixed_corpus, strict=True)]
    bench.qrels = {q.id: {dids[i]: 1} for i, q in enumerate(bench.queries)}
    embs = {"queries/text": Embeddings([q.id for q in bench.queries], eye),
            "corpus/text": Embeddings(dids, text), "corpus/image": Embeddings(dids, image)}
    cal = {"method": method, "source": "transductive"}
    ev = Evaluator(bench, embs, corpus={"mode": "released"}, calibration=cal,
                   retrieval={"k": k}, metrics={"ks": [10]})
    shown = [m.modality for m in bench.mixed_corpus]
    views = make_views(dids, text, image, np.array([s != "image" for s in shown]),
                       np.array([s != "text" for s in shown]))
    m = ev.calibration.means
    q, _ = build_query_matrix(ev.queries, text_mean=m.get("query_text"))
    for alpha in (0.5, 0.2):
        d, _ = build_doc_matrix(views, alpha=alpha, text_mean=m.get("doc_text"), image_mean=m.get("doc_image"))
        expected = search(q, d, k, doc_ids=dids)
        got = ev.retrieve({"alpha": alpha})
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_allclose(got.scores, expected.scores, atol=1e-6)
