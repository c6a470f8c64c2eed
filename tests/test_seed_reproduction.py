"""evaluate() reproduces the seed code's ``src/retrieval_mixbench.py`` (docs/paper.md §2, §7;
docs/formats.md §5, §6), re-implemented here from its description: seed-42 re-mix of ``corpus``,
L2-normalise at load, fuse α = 0.5, subtract means loaded from files, renormalise, sklearn
``ndcg_score`` over the top-10, mean over queries."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import ndcg_score

from mixsearch.data.benchmark import Benchmark, ImageRef, Record
from mixsearch.embed.embeddings import Embeddings
from mixsearch.evaluation import evaluate

N_DOCS, N_Q, DIM = 100, 70, 24  # N not a multiple of 3: remainders go to text, then image


def seed_format_files(tmp_path):
    """Embedding files in the seed's ``.pt`` format (lists of dicts), raw text, normalised
    images as its extractor writes them, and three mean vectors, with a planted modality gap."""
    rng = np.random.default_rng(11)
    sem = rng.standard_normal((N_DOCS, DIM))
    off = {k: 2.0 * rng.standard_normal(DIM) for k in ("q", "t", "i")}

    def raw(rows, k):
        return torch.tensor(rows + off[k] + 0.8 * rng.standard_normal(rows.shape), dtype=torch.float32)

    # non-identity qrels: query k is about doc perm[k]
    target = rng.permutation(N_DOCS)[:N_Q]
    queries = [{"query_id": f"{k}", "text_embedding": raw(sem[target[k]][None], "q")[0],
                "image_embedding": None} for k in range(N_Q)]
    images = F.normalize(raw(sem, "i"), dim=-1)
    corpus = [{"corpus_id": f"{100 + j}", "text_embedding": t, "image_embedding": i}
              for j, (t, i) in enumerate(zip(raw(sem, "t"), images, strict=True))]
    qrels = {f"{k}": {f"{100 + int(target[k])}": 1} for k in range(N_Q)}
    torch.save(queries, tmp_path / "mmscoco_query_embeddings.pt")
    torch.save(corpus, tmp_path / "mmscoco_corpus_embeddings.pt")
    files = {}
    for role, k in (("query_text", "q"), ("doc_text", "t"), ("doc_image", "i")):
        pool = raw(rng.standard_normal((500, DIM)), k)
        files[role] = str(tmp_path / f"{role}_mean.pt")
        torch.save(F.normalize(pool, dim=-1).mean(0), files[role])
    return qrels, files


def seed_retrieval_mixbench(tmp_path, qrels, mean_files=None, alpha=0.5):
    """What the seed script computes: NDCG@10 over the top-10 per query."""
    query_data = torch.load(tmp_path / "mmscoco_query_embeddings.pt")
    corpus_data = torch.load(tmp_path / "mmscoco_corpus_embeddings.pt")
    corpus_data = [c for c in corpus_data
                   if c["text_embedding"] is not None and c["image_embedding"] is not None]
    n = len(corpus_data)
    random.seed(42)
    perm = random.sample(range(n), n)
    for i in range(n):
        corpus_data[perm[i]]["mode"] = ["text", "image", "mixed"][i % 3]

    q = F.normalize(torch.stack([x["text_embedding"] for x in query_data]), dim=-1)
    t = F.normalize(torch.stack([c["text_embedding"] for c in corpus_data]), dim=-1)
    im = F.normalize(torch.stack([c["image_embedding"] for c in corpus_data]), dim=-1)
    if mean_files is not None:
        qry_mean = torch.load(mean_files["query_text"])
        text_mean = torch.load(mean_files["doc_text"])
        img_mean = torch.load(mean_files["doc_image"])
        q = q - qry_mean
    docs = []
    for j, c in enumerate(corpus_data):
        if c["mode"] == "text":
            e = t[j] - text_mean if mean_files else t[j]
        elif c["mode"] == "image":
            e = im[j] - img_mean if mean_files else im[j]
        else:
            e = alpha * t[j] + (1 - alpha) * im[j]
            if mean_files:
                e = e - (alpha * text_mean + (1 - alpha) * img_mean)
        docs.append(e)
    sims = F.normalize(q, dim=-1) @ F.normalize(torch.stack(docs), dim=-1).T
    scores = []
    for i, qd in enumerate(query_data):
        top = torch.topk(sims[i], 10)
        cids = [corpus_data[j]["corpus_id"] for j in top.indices.tolist()]
        rel = [qrels.get(qd["query_id"], {}).get(cid, 0) for cid in cids]
        scores.append(ndcg_score([rel], [top.values.tolist()], k=10))
    return float(np.mean(scores))


def mixsearch_inputs(tmp_path, qrels):
    """The same data as a Benchmark plus Embeddings (built directly from the seed's lists)."""
    query_data = torch.load(tmp_path / "mmscoco_query_embeddings.pt")
    corpus_data = torch.load(tmp_path / "mmscoco_corpus_embeddings.pt")
    img = ImageRef(data=b"never-decoded", origin="test")
    bench = Benchmark(
        "seed-format",
        queries=[Record(x["query_id"], text=f"q{x['query_id']}") for x in query_data],
        corpus=[Record(c["corpus_id"], text=f"d{c['corpus_id']}", image=img) for c in corpus_data],
        qrels=qrels,
    )

    def stack(items, id_key, field):
        return Embeddings([x[id_key] for x in items], torch.stack([x[field] for x in items]).numpy())

    embs = {"queries/text": stack(query_data, "query_id", "text_embedding"),
            "corpus/text": stack(corpus_data, "corpus_id", "text_embedding"),
            "corpus/image": stack(corpus_data, "corpus_id", "image_embedding")}
    return bench, embs


@pytest.mark.parametrize("method", ["none", "gr"])
def test_evaluate_matches_seed_retrieval_mixbench(tmp_path, method):
    qrels, files = seed_format_files(tmp_path)
    expected = seed_retrieval_mixbench(tmp_path, qrels, files if method == "gr" else None)
    bench, embs = mixsearch_inputs(tmp_path, qrels)
    res = evaluate(
        bench, embs,
        corpus={"mode": "remix", "seed": 42},
        calibration={"method": method, "source": "files", "files": files},
        fusion={"method": "weighted", "alpha": 0.5},
        retrieval={"k": 10},
        metrics={"ks": [10], "ndcg_variant": "seed_topk"},
    )
    assert res.metrics["ndcg@10"] == pytest.approx(expected, abs=1e-6)
    assert res.corpus["counts"] == {"text": 34, "image": 33, "image+text": 33}
    if method == "gr":
        assert res.calibration["source"] == "files"


def test_gr_changes_the_seed_score(tmp_path):
    """Guards the comparison above against data on which calibration makes no difference."""
    qrels, files = seed_format_files(tmp_path)
    none = seed_retrieval_mixbench(tmp_path, qrels)
    gr = seed_retrieval_mixbench(tmp_path, qrels, files)
    assert gr > none + 0.1 and 0.0 < none < 0.9
