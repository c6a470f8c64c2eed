"""Universal embedders: role-specific inputs and joint image+text embeddings through the cache,
fusion=joint against a hand computation, joint calibration roles, precomputed mixed fields,
the dual-encoder refusal and the compute-per-item measurement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fake_encoder import FakeEncoder, FakeJointEncoder
from replica import _encode
from test_evaluate import synthetic
from tiny_models import write_seed_pt

from mixsearch.compute import measure_compute
from mixsearch.data.benchmark import Benchmark, ImageRef, Record
from mixsearch.embed.cache import EmbeddingCache
from mixsearch.embed.extract import embed_benchmark, embed_records
from mixsearch.encoders.base import EncoderError
from mixsearch.encoders.precomputed import load_precomputed
from mixsearch.evaluation import evaluate
from mixsearch.pipeline import check_joint, joint_splits


def _bench(n: int = 9) -> Benchmark:
    """n docs, a third each text / image / image+text as released; every doc has both."""
    colours = [(30 * i % 255, 90, 200 - 15 * i) for i in range(n)]
    corpus = [Record(f"d{i}", text=f"a document about colour {c}",
                     image=ImageRef(data=_encode(c, (12, 12), "PNG"), origin=f"d{i}.png"))
              for i, c in enumerate(colours)]
    shown = ["text", "image", "image+text"]
    mixed = [Record(r.id, text=r.text if shown[i % 3] != "image" else None,
                    image=r.image if shown[i % 3] != "text" else None) for i, r in enumerate(corpus)]
    queries = [Record(f"q{i}", text=f"colour {c}",
                      image=ImageRef(data=_encode(c, (12, 12), "PNG"), origin=f"q{i}.png") if i % 2 else None)
               for i, c in enumerate(colours)]
    return Benchmark("jointbench", queries, corpus, {f"q{i}": {f"d{i}": 1} for i in range(n)},
                     mixed_corpus=mixed)


def test_joint_field_is_embedded_per_role_through_the_cache(tmp_path: Path) -> None:
    bench, enc = _bench(), FakeJointEncoder(dim=8, seed=3)
    cache = EmbeddingCache(tmp_path / "cache")
    embs, stats = embed_benchmark(enc, bench, joint_splits=("queries", "corpus"), cache=cache,
                                  progress=False)
    assert set(embs) == {"queries/text", "queries/image", "queries/joint", "corpus/text",
                         "corpus/image", "corpus/joint"}
    both = [r for r in bench.corpus if r.text and r.image]
    assert embs["corpus/joint"].ids == [r.id for r in both]
    transform = enc.image_transform()
    pixels = torch.stack([transform(r.image.load()) for r in both])
    direct = enc.encode_joint([r.text for r in both], pixels, role="document").numpy()
    np.testing.assert_allclose(embs["corpus/joint"].vectors, direct, rtol=1e-5, atol=1e-5)
    # queries are embedded as queries (the instruction prefix), documents as documents
    q_texts = [r.text for r in bench.queries]
    np.testing.assert_allclose(embs["queries/text"].vectors,
                               enc.encode_text(q_texts, role="query").numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(embs["queries/text"].vectors, enc.encode_text(q_texts).numpy())
    q_both = [r for r in bench.queries if r.image is not None]
    assert embs["queries/joint"].ids == [r.id for r in q_both]
    # a second extraction reads every entry from the cache
    again = FakeJointEncoder(dim=8, seed=3)
    embs2, stats2 = embed_benchmark(again, bench, joint_splits=("queries", "corpus"), cache=cache,
                                    progress=False)
    assert sum(s["encoded_items"] for s in stats2) == 0 and again.batches == 0
    np.testing.assert_array_equal(embs2["corpus/joint"].vectors, embs["corpus/joint"].vectors)


def test_a_role_other_than_the_splits_own_gets_its_own_cache_entry(tmp_path: Path) -> None:
    bench, enc = _bench(), FakeJointEncoder(dim=8, seed=3)
    cache = EmbeddingCache(tmp_path / "cache")
    kw = {"cache": cache, "dataset_key": "b", "split": "queries", "progress": False}
    as_query = embed_records(enc, bench.queries, "text", **kw)
    as_doc = embed_records(enc, bench.queries, "text", role="document", **kw)
    assert not np.allclose(as_query.vectors, as_doc.vectors)
    with pytest.raises(ValueError, match="role='passage'"):
        embed_records(enc, bench.queries, "text", role="passage", **kw)


def test_a_dual_encoder_refuses_joint_before_touching_the_cache(tmp_path: Path) -> None:
    bench, enc = _bench(), FakeEncoder(dim=8)
    with pytest.raises(EncoderError, match="'fake' cannot embed image\\+text items jointly.*fusion=weighted"):
        embed_records(enc, bench.corpus, "joint", cache=EmbeddingCache(tmp_path / "c"),
                      dataset_key="b", split="corpus", progress=False)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.npy"))
    with pytest.raises(Exception, match="fusion=joint: encoder 'fake'"):
        check_joint(enc, {"method": "joint"})
    check_joint(enc, {"method": "weighted"})  # no error
    check_joint(FakeJointEncoder(), {"method": "joint"})
    assert joint_splits({"method": "joint", "query": "joint"}) == (
        "corpus", "calibration/corpus", "queries", "calibration/queries")
    assert joint_splits({"method": "weighted", "query": "weighted"}) == ()


def _n(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("method", ["none", "gr"])
def test_joint_fusion_matches_a_hand_computation(method: str) -> None:
    bench, embs, pools = synthetic(query_images=True)
    rng = np.random.default_rng(7)
    ids = [r.id for r in bench.corpus]
    qids = [r.id for r in bench.queries]
    from mixsearch.embed.embeddings import Embeddings

    embs["corpus/joint"] = Embeddings(ids, rng.standard_normal((len(ids), 32)).astype(np.float32) + 2.0)
    embs["queries/joint"] = Embeddings(qids, rng.standard_normal((len(qids), 32)).astype(np.float32) - 1.0)
    pools = {**pools, "doc_joint": rng.standard_normal((50, 32)).astype(np.float32) + 2.0,
             "query_joint": rng.standard_normal((50, 32)).astype(np.float32) - 1.0}
    res = evaluate(bench, embs, corpus={"mode": "released"},
                   calibration={"method": method, "source": "train"},
                   fusion={"method": "joint", "query": "joint"}, retrieval={"k": 100},
                   metrics={"ks": [1, 10, 100]}, pools=pools)
    mean = {r: _n(p).mean(0) if method == "gr" else np.zeros(32) for r, p in pools.items()}
    look = {k: dict(zip(e.ids, e.vectors.astype(np.float64), strict=True)) for k, e in embs.items()}
    docs = []
    for r in bench.mixed_corpus:
        if r.text and r.image:
            e = _n(look["corpus/joint"][r.id]) - mean["doc_joint"]
        elif r.text:
            e = _n(look["corpus/text"][r.id]) - mean["doc_text"]
        else:
            e = _n(look["corpus/image"][r.id]) - mean["doc_image"]
        docs.append(_n(e))
    qs = [_n(_n(look["queries/joint"][q]) - mean["query_joint"]) for q in qids]
    scores = np.array(qs) @ np.array(docs).T
    for i, q in enumerate(qids):
        rel = ids.index(next(iter(bench.qrels[q])))
        expected_rank = 1 + int((scores[i] > scores[i, rel]).sum())
        got = int(res.per_query.set_index("qid").loc[q, "first_rel_rank"])
        assert got == expected_rank, q
    if method == "gr":
        assert res.calibration["n_samples"]["doc_joint"] == 50


@pytest.mark.parametrize("source", ["transductive", "crossfit"])
def test_joint_role_gets_its_own_mean_from_every_eval_source(source: str) -> None:
    bench, embs, _ = synthetic()
    from mixsearch.embed.embeddings import Embeddings

    ids = [r.id for r in bench.corpus]
    embs["corpus/joint"] = Embeddings(ids, np.random.default_rng(1).standard_normal((len(ids), 32))
                                      .astype(np.float32) + 3.0)
    res = evaluate(bench, embs, corpus={"mode": "released"},
                   calibration={"method": "gr", "source": source},
                   fusion={"method": "joint", "query": "joint"}, retrieval={"k": 100},
                   metrics={"ks": [1, 10, 100]})
    assert res.calibration["n_samples"]["doc_joint"] == sum(
        1 for r in bench.mixed_corpus if r.text and r.image)


def test_precomputed_mixed_field_is_scored_by_joint_fusion(tmp_path: Path) -> None:
    bench, embs, _ = synthetic()
    ids, qids = [r.id for r in bench.corpus], [r.id for r in bench.queries]
    mixed = torch.randn(len(ids), 32, generator=torch.Generator().manual_seed(5))
    write_seed_pt(tmp_path / "q.pt", "query_id", qids, text=torch.from_numpy(embs["queries/text"].vectors))
    write_seed_pt(tmp_path / "c.pt", "corpus_id", ids, text=torch.from_numpy(embs["corpus/text"].vectors),
                  image=torch.from_numpy(embs["corpus/image"].vectors), mixed=mixed)
    enc = load_precomputed(str(tmp_path / "q.pt"), str(tmp_path / "c.pt"))
    assert enc.supports_joint
    loaded, _ = embed_benchmark(enc, bench, joint_splits=("corpus",), cache=None)
    np.testing.assert_array_equal(loaded["corpus/joint"].vectors, mixed.numpy())
    common = {"corpus": {"mode": "all_multimodal"}, "calibration": {"method": "none"},
              "retrieval": {"k": 100}, "metrics": {"ks": [1, 10, 100]}}
    joint = evaluate(bench, loaded, fusion={"method": "joint"}, **common)
    weighted = evaluate(bench, loaded, fusion={"method": "weighted"}, **common)
    assert joint.metrics["ndcg@10"] != weighted.metrics["ndcg@10"]
    scores = _n(embs["queries/text"].vectors.astype(np.float64)) @ _n(mixed.numpy().astype(np.float64)).T
    for i, q in enumerate(qids):
        rel = ids.index(next(iter(bench.qrels[q])))
        expected = 1 + int((scores[i] > scores[i, rel]).sum())
        assert int(joint.per_query.set_index("qid").loc[q, "first_rel_rank"]) == expected
    # seed files without the mixed field cannot do joint fusion
    write_seed_pt(tmp_path / "c2.pt", "corpus_id", ids, text=torch.from_numpy(embs["corpus/text"].vectors))
    assert not load_precomputed(str(tmp_path / "q.pt"), str(tmp_path / "c2.pt")).supports_joint


def test_compute_counts_flops_of_each_input_kind() -> None:
    bench, enc = _bench(), FakeJointEncoder(dim=8, seed=0)
    samples = {"text": bench.corpus[:3], "image": bench.corpus[:2], "joint": bench.corpus[:2]}
    out = measure_compute(enc, samples)
    # the fake projects a 2**k-bucket count vector and 3*16*16 pixels: 2*in*dim FLOPs per item
    from fake_encoder import N_BUCKETS, SIDE

    assert out["gflops_per_text"] == pytest.approx(2 * N_BUCKETS * 8 / 1e9)
    assert out["gflops_per_image"] == pytest.approx(2 * 3 * SIDE * SIDE * 8 / 1e9)
    assert out["gflops_per_joint"] == pytest.approx(out["gflops_per_text"] + out["gflops_per_image"])
    assert out["items_per_s"] > 0 and out["items_per_s_source"] == "sample"
    dual = measure_compute(FakeEncoder(dim=8), samples)
    assert dual["gflops_per_joint"] is None and any("joint" in n for n in dual["notes"])


def test_joint_means_written_by_a_run_are_reusable_as_files(tmp_path: Path) -> None:
    from mixsearch.embed.embeddings import Embeddings
    from mixsearch.evaluation import Evaluator
    from mixsearch.pipeline import save_means

    bench, embs, pools = synthetic()
    ids = [r.id for r in bench.corpus]
    embs["corpus/joint"] = Embeddings(ids, np.random.default_rng(2).standard_normal((len(ids), 32))
                                      .astype(np.float32) + 1.5)
    pools = {**pools, "doc_joint": np.random.default_rng(3).standard_normal((40, 32)).astype(np.float32) + 1.5}
    common = {"corpus": {"mode": "released"}, "retrieval": {"k": 100}, "metrics": {"ks": [1, 10, 100]}}
    fitted = Evaluator(bench, embs, calibration={"method": "gr", "source": "train"}, pools=pools, **common)
    files = save_means(tmp_path / "means", fitted.calibration.means)
    assert "doc_joint" in files
    reused = Evaluator(bench, embs, calibration={"method": "gr", "source": "files", "files": files}, **common)
    fusion = {"method": "joint", "query": "joint"}
    assert reused.run(fusion).metrics == fitted.run(fusion).metrics
    missing = {k: v for k, v in files.items() if k != "doc_joint"}
    with pytest.raises(Exception, match="calibration.files.doc_joint"):
        Evaluator(bench, embs, calibration={"method": "gr", "source": "files", "files": missing}, **common)


def test_auto_fusion_is_each_encoders_own_recipe() -> None:
    from mixsearch.pipeline import resolve_fusion

    cfg = {"method": "auto", "alpha": 0.5, "query": "auto", "query_alpha": 0.5}
    assert resolve_fusion(cfg, FakeJointEncoder()) == {**cfg, "method": "joint", "query": "joint"}
    assert resolve_fusion(cfg, FakeEncoder()) == {**cfg, "method": "weighted", "query": "weighted"}
    assert resolve_fusion({"method": "score"}, FakeJointEncoder()) == {"method": "score"}
