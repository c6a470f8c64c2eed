"""Settings 1 and 2 equal the seed's own scripts on a corpus with 40 exactly duplicated
documents, where equal scores are everywhere and only the tie order decides.

The seed functions below are the seed's ``src/retrieval_ushaped_curve_setting_one.py``
(``get_ndcg``) and ``src/retrieval_setting_two.py`` (``get_recall1_alpha_blend``) at 8fab110,
copied with only their file reading replaced by arrays (docs/paper.md §3, §4, §8): setting 1
ranks with ``np.argsort(sims)[::-1]`` and scores sklearn's NDCG over the top 100; setting 2
takes ``torch.argmax`` (the first maximum) and counts id equality. mixsearch reproduces them
with ``retrieval.ties=numpy_desc`` and ``retrieval.ties=first``; the default trec order
(id descending) gives other numbers on the same data, which shows the fixture is sensitive.
"""

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

N_UNIQUE, N_DUP, N_Q, DIM = 90, 40, 60, 64
RATIOS = [0., 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """130 docs: 90 distinct ones and 40 exact copies (text and image) of docs that queries are
    about, placed at random corpus positions with ids that sort unlike the positions."""
    rng = np.random.default_rng(5)

    def signs(base, flips):  # unit vectors with entries +-1/8: every dot product is exact
        out = base.copy()
        for row in out:
            row[rng.choice(DIM, flips, replace=False)] *= -1
        return out

    sem = rng.choice([-0.125, 0.125], (N_UNIQUE, DIM))
    text, image = signs(sem, 12), signs(sem, 20)
    copies = rng.choice(N_Q, N_DUP, replace=False)                # relevant docs that get a twin
    text = np.vstack([text, text[copies]]).astype(np.float32)
    image = np.vstack([image, image[copies]]).astype(np.float32)
    n = len(text)
    order = rng.permutation(n)                                    # corpus (file) order
    text, image = text[order], image[order]
    ids = [f"d{int(j):03d}" if j < N_UNIQUE else f"d{int(copies[j - N_UNIQUE]):03d}x"
           for j in order]
    target = rng.permutation(N_Q)
    queries = signs(sem[target], 24).astype(np.float32)
    # means on a 1/1024 grid: GR's differences and their dot products stay exact (every
    # product a multiple of 2^-20, sums below 2^2), and distinct docs do not tie by accident
    means = {r: (rng.integers(-32, 33, DIM) / 1024).astype(np.float32)
             for r in ("query_text", "doc_text", "doc_image")}
    folder = tmp_path_factory.mktemp("means")
    files = {}
    for role, v in means.items():
        files[role] = str(folder / f"{role}.npy")
        np.save(files[role], v)
    return {"text": text, "image": image, "ids": ids, "queries": queries, "target": target,
            "means": means, "files": files}


def _bench(d, qrels, query_ids):
    img = ImageRef(data=b"never-decoded", origin="test")
    corpus = [Record(i, text=f"t{i}", image=img) for i in d["ids"]]
    return Benchmark("ties", queries=[Record(q, text=f"q{q}") for q in query_ids],
                     corpus=corpus, qrels=qrels)


def _embs(d, query_ids):
    return {"queries/text": Embeddings(list(query_ids), d["queries"]),
            "corpus/text": Embeddings(d["ids"], d["text"]),
            "corpus/image": Embeddings(d["ids"], d["image"])}


# ---- setting 1 -----------------------------------------------------------------------------
def seed_setting_one(query_emb, corpus_ids, corpus_text, corpus_img, qrels, q_mean, t_mean, i_mean, seed=42):
    """get_ndcg of the seed, from arrays: (ndcg10, ndcg100, ndcg10_gr, ndcg100_gr, ndcg10_opt,
    ndcg100_opt) per ratio."""
    random.seed(seed)
    np.random.seed(seed)
    query_matrix = F.normalize(torch.tensor(query_emb["matrix"]), dim=-1)
    query_emb = dict(zip(query_emb["ids"], query_matrix, strict=True))
    corpus_text_matrix = F.normalize(torch.tensor(corpus_text), dim=-1).float().numpy()
    corpus_img_matrix = F.normalize(torch.tensor(corpus_img), dim=-1).float().numpy()
    n = len(corpus_ids)
    out = []
    for ratio in RATIOS:
        indices_to_replace = set(random.sample(range(n), int(n * ratio)))
        mixed_corpus = np.stack([corpus_img_matrix[i] if i in indices_to_replace else corpus_text_matrix[i]
                                 for i in range(n)])
        mixed_corpus_gr = np.stack([corpus_img_matrix[i] - i_mean if i in indices_to_replace
                                    else corpus_text_matrix[i] - t_mean for i in range(n)])
        rows = []
        for qid, qvec in query_emb.items():
            if qid not in qrels:
                continue
            qvec = qvec.float().numpy()
            qvec_gr = qvec - q_mean
            qnorm, qnorm_gr = np.linalg.norm(qvec), np.linalg.norm(qvec_gr)
            sims = mixed_corpus @ qvec / (qnorm * np.linalg.norm(mixed_corpus, axis=1))
            sims_gr = mixed_corpus_gr @ qvec_gr / (qnorm_gr * np.linalg.norm(mixed_corpus_gr, axis=1))
            topk, topk_gr = np.argsort(sims)[::-1][:100], np.argsort(sims_gr)[::-1][:100]
            text_idx = [i for i in range(n) if i not in indices_to_replace]
            image_idx = [i for i in range(n) if i in indices_to_replace]
            sims_text = corpus_text_matrix[text_idx] @ qvec / (qnorm * np.linalg.norm(corpus_text_matrix[text_idx], axis=1))
            sims_image = corpus_img_matrix[image_idx] @ qvec / (qnorm * np.linalg.norm(corpus_img_matrix[image_idx], axis=1))
            topk_opt = ([text_idx[i] for i in np.argsort(sims_text)[::-1]]
                        + [image_idx[i] for i in np.argsort(sims_image)[::-1]])[:100]
            row = []
            for top, sc in ((topk, sims), (topk_gr, sims_gr)):
                y_true = [qrels[qid].get(corpus_ids[i], 0) for i in top]
                y_score = [sc[i] for i in top]
                row += [ndcg_score([y_true], [y_score], k=10), ndcg_score([y_true], [y_score], k=100)]
            y_true = [qrels[qid].get(corpus_ids[i], 0) for i in topk_opt]
            y_score = [1.0 - i / 100.0 for i in range(100)]
            row += [ndcg_score([y_true], [y_score], k=10), ndcg_score([y_true], [y_score], k=100)]
            rows.append(row)
        out.append(np.mean(rows, axis=0))
    return np.array(out)


def _setting_one_ours(d, ties):
    query_ids = [f"q{k}" for k in range(N_Q)]
    # a BEIR-style judgement: the doc and, for the duplicated ones, not its twin
    qrels = {q: {f"d{int(t):03d}": 1} for q, t in zip(query_ids, d["target"], strict=True)}
    bench, embs = _bench(d, qrels, query_ids), _embs(d, query_ids)
    out = []
    for p in RATIOS:
        row = []
        for cal in ("none", "gr", "pushdown"):
            calibration = {"method": cal}
            if cal == "gr":
                calibration |= {"source": "files", "files": d["files"]}
            res = evaluate(bench, embs, corpus={"mode": "replace", "p": p, "seed": 42, "replace_with": "image"},
                           calibration=calibration, fusion={"method": "weighted", "alpha": 0.5},
                           retrieval={"k": 100, "ties": ties},
                           metrics={"ks": [10, 100], "measures": ["ndcg"], "ndcg_variant": "seed_topk"})
            row += [res.metrics["ndcg@10"], res.metrics["ndcg@100"]]
        out.append(row)
    return np.array(out), qrels, query_ids


@pytest.fixture(scope="module")
def seed_one(data):
    query_ids = [f"q{k}" for k in range(N_Q)]
    qrels = {q: {f"d{int(t):03d}": 1} for q, t in zip(query_ids, data["target"], strict=True)}
    m = data["means"]
    return seed_setting_one({"ids": query_ids, "matrix": data["queries"]}, data["ids"], data["text"],
                            data["image"], qrels, m["query_text"], m["doc_text"], m["doc_image"])


def test_setting1_equals_the_seed_script_with_numpy_desc(data, seed_one):
    ours, _, _ = _setting_one_ours(data, "numpy_desc")
    np.testing.assert_allclose(ours, seed_one, rtol=0, atol=1e-12)


def test_setting1_differs_from_the_seed_under_another_tie_order(data, seed_one):
    ours, _, _ = _setting_one_ours(data, "trec")
    assert np.abs(ours - seed_one).max() > 1e-3


# ---- setting 2 -----------------------------------------------------------------------------
def seed_setting_two(query_ids, query_matrix, corpus_ids, text, image, query_mean, text_mean, image_mean):
    """get_recall1_alpha_blend of the seed, from arrays: (recall1_normal, recall1_GR) per α."""
    query_matrix = F.normalize(torch.tensor(query_matrix), dim=1)
    corpus_text_matrix = F.normalize(torch.tensor(text), dim=1)
    corpus_image_matrix = F.normalize(torch.tensor(image), dim=1)
    query_mean, corpus_text_mean, corpus_image_mean = map(torch.tensor, (query_mean, text_mean, image_mean))
    recall1_normal, recall1_gr = [], []
    for alpha in np.arange(0.0, 1.01, 0.05):
        corpus_blend = alpha * corpus_text_matrix + (1 - alpha) * corpus_image_matrix
        corpus_blend_gr = (alpha * (corpus_text_matrix - corpus_text_mean)
                           + (1 - alpha) * (corpus_image_matrix - corpus_image_mean))
        corpus_norm = F.normalize(corpus_blend, p=2, dim=1)
        corpus_gr = F.normalize(corpus_blend_gr, p=2, dim=1)
        query_norm = F.normalize(query_matrix, p=2, dim=1)
        top1 = torch.argmax(torch.matmul(query_norm, corpus_norm.T), dim=1)
        recall1_normal.append(np.mean([1 if query_ids[i] == corpus_ids[top1[i]] else 0
                                       for i in range(len(query_ids))]))
        query_gr = F.normalize(query_norm - query_mean, p=2, dim=1)
        top1_gr = torch.argmax(torch.matmul(query_gr, corpus_gr.T), dim=1)
        recall1_gr.append(np.mean([1 if query_ids[i] == corpus_ids[top1_gr[i]] else 0
                                   for i in range(len(query_ids))]))
    return np.array([recall1_normal, recall1_gr]).T


def _setting_two_ours(d, ties):
    # the seed's identity pairing: query i is about the doc with its own id
    query_ids = [f"d{int(t):03d}" for t in d["target"]]
    qrels = {q: {q: 1} for q in query_ids}
    bench, embs = _bench(d, qrels, query_ids), _embs(d, query_ids)
    out = []
    for alpha in np.arange(0.0, 1.01, 0.05):
        row = []
        for cal in ("none", "gr"):
            calibration = {"method": cal}
            if cal == "gr":
                calibration |= {"source": "files", "files": d["files"]}
            res = evaluate(bench, embs, corpus={"mode": "all_multimodal"}, calibration=calibration,
                           fusion={"method": "weighted", "alpha": float(alpha)},
                           retrieval={"k": 10, "ties": ties},
                           metrics={"ks": [1, 10], "measures": ["recall"]})
            row.append(res.metrics["recall@1"])
        out.append(row)
    return np.array(out), query_ids


@pytest.fixture(scope="module")
def seed_two(data):
    query_ids = [f"d{int(t):03d}" for t in data["target"]]
    m = data["means"]
    return seed_setting_two(query_ids, data["queries"], data["ids"], data["text"], data["image"],
                            m["query_text"], m["doc_text"], m["doc_image"])


def test_setting2_equals_the_seed_script_with_first(data, seed_two):
    ours, _ = _setting_two_ours(data, "first")
    np.testing.assert_allclose(ours, seed_two, rtol=0, atol=1e-12)


def test_setting2_differs_from_the_seed_under_another_tie_order(data, seed_two):
    ours, _ = _setting_two_ours(data, "trec")
    assert np.abs(ours - seed_two).max() > 1e-3


@pytest.mark.parametrize("setting,order", [("setting1", "numpy_desc"), ("setting2", "first")])
def test_paper_presets_take_the_seed_order_with_the_seed_metrics(tmp_path, setting, order):
    from mixsearch.schema import validate
    from tests.test_schema import _resolved

    seed = _resolved([f"experiment=paper/{setting}", "metrics=seed_topk"], tmp_path)
    assert seed["retrieval"]["ties"] == order
    validate(seed)
    assert _resolved([f"experiment=paper/{setting}"], tmp_path)["retrieval"]["ties"] == "trec"
    override = [f"experiment=paper/{setting}", "metrics=seed_topk", "retrieval.ties=id_asc"]
    assert _resolved(override, tmp_path)["retrieval"]["ties"] == "id_asc"


def test_numpy_desc_is_numpys_own_order_and_refused_where_it_cannot_hold():
    from mixsearch.retrieval import IdOrder, search, search_blocks

    rng = np.random.default_rng(1)
    docs = rng.choice([-0.25, 0.25], (200, 16)).astype(np.float32)  # many exact ties
    queries = rng.choice([-0.25, 0.25], (7, 16)).astype(np.float32)
    top = search(queries, docs, 50, ties="numpy_desc")
    for i, q in enumerate(queries):
        expected = np.argsort(docs @ q)[::-1][:50]
        np.testing.assert_array_equal(top.indices[i], expected)
        np.testing.assert_array_equal(top.scores[i], (docs @ q)[expected])
    first = search(queries, docs, 50, ties="first")
    for i, q in enumerate(queries):  # a stable sort of -score: earlier position first
        np.testing.assert_array_equal(first.indices[i], np.argsort(-(docs @ q), kind="stable")[:50])
    with pytest.raises(ValueError, match="numpy_desc .* needs retrieval.backend=exact"):
        search(queries, docs, 5, ties="numpy_desc", backend="faiss")
    with pytest.raises(ValueError, match="numpy_desc"):
        search_blocks(queries, [docs], 5, n_docs=200, ties="numpy_desc")
    with pytest.raises(ValueError, match="numpy_desc depends on the scores"):
        IdOrder(None, 3, "numpy_desc")


def test_numpy_desc_takes_no_merge(data):
    query_ids = [f"q{k}" for k in range(N_Q)]
    qrels = {q: {f"d{int(t):03d}": 1} for q, t in zip(query_ids, data["target"], strict=True)}
    with pytest.raises(ValueError, match="numpy_desc orders one score vector per query; it takes no retrieval.merge"):
        evaluate(_bench(data, qrels, query_ids), _embs(data, query_ids), corpus={"mode": "remix", "seed": 42},
                 calibration={"method": "none"}, fusion={"method": "weighted", "alpha": 0.5},
                 retrieval={"k": 10, "ties": "numpy_desc", "merge": "rrf"}, metrics={"ks": [10]})
