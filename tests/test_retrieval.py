"""search() against a brute-force numpy ranking with the (-score, tie order) rule.

The default tie order is trec_eval's (doc id descending); ``ties="id_asc"`` is ascending."""

from __future__ import annotations

import sys
from itertools import pairwise

import numpy as np
import pytest

from mixsearch import retrieval
from mixsearch.retrieval import TopK, search


def _grid_data(seed: int, n_q: int, n_d: int, dim: int = 6):
    """Entries in {-0.5, ..., 0.5}: every dot product is exact in float32, and ties abound."""
    rng = np.random.default_rng(seed)
    q = (rng.integers(-2, 3, (n_q, dim)) / 4).astype(np.float32)
    d = (rng.integers(-2, 3, (n_d, dim)) / 4).astype(np.float32)
    return q, d


def _shuffled_ids(n: int, seed: int) -> list[str]:
    # String order differs from numeric order ("d10" < "d9") and from row order.
    return [f"d{i}" for i in np.random.default_rng(seed).permutation(n)]


def _brute(q: np.ndarray, d: np.ndarray, k: int, ids=None, ties: str = "trec") -> TopK:
    scores = q.astype(np.float64) @ d.astype(np.float64).T
    key = np.arange(d.shape[0]) if ids is None else np.argsort(np.argsort(np.array(ids)))
    if ties == "trec":  # id descending
        key = -key
    order = np.stack([np.lexsort((key, -row))[:k] for row in scores])
    return TopK(np.take_along_axis(scores, order, 1).astype(np.float32), order)


def _assert_same(got: TopK, ref: TopK) -> None:
    assert got.scores.dtype == np.float32 and got.indices.dtype == np.int64
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_array_equal(got.scores, ref.scores)


def _boundary_ties(ref_all: TopK, k: int) -> int:
    """Rows whose k-th and (k+1)-th best scores are equal: tie-break decides membership."""
    return int((ref_all.scores[:, k - 1] == ref_all.scores[:, k]).sum())


@pytest.mark.parametrize("ties", ["trec", "id_asc"])
@pytest.mark.parametrize("with_ids", [False, True])
def test_exact_matches_brute_force_with_ties_at_k(with_ids, ties):
    q, d = _grid_data(0, 30, 200)
    ids = _shuffled_ids(200, 1) if with_ids else None
    k = 10
    assert _boundary_ties(_brute(q, d, k + 1, ids, ties), k) >= 20
    got = search(q, d, k, doc_ids=ids, device="cpu", ties=ties)
    _assert_same(got, _brute(q, d, k, ids, ties))
    for backend in ("exact", "faiss"):
        _assert_same(search(q, d, k, doc_ids=ids, backend=backend, ties=ties),
                     _brute(q, d, k, ids, ties))


def test_default_tie_order_is_trec_evals():
    """A run file of our top-k, scored by pytrec_eval (which re-sorts by score, then docno
    descending), gives exactly our metrics on heavily tied scores; ascending ids would not."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from mixsearch.metrics import evaluate_ranking

    q, d = _grid_data(7, 40, 120)
    ids = _shuffled_ids(120, 8)
    rng = np.random.default_rng(9)
    qrels = {f"q{i}": {ids[j]: int(rng.integers(1, 3)) for j in rng.choice(120, 6, replace=False)}
             for i in range(40)}
    k = 10
    measures = {"ndcg_cut.10", "recall.10"}
    results = {}
    for ties in ("trec", "id_asc"):
        top = search(q, d, k, doc_ids=ids, ties=ties)
        ranked = {f"q{i}": [ids[j] for j in row] for i, row in enumerate(top.indices)}
        ours, _ = evaluate_ranking(ranked, qrels, ks=[k], measures=["ndcg", "recall"])
        run = {f"q{i}": {ids[j]: float(s) for j, s in zip(row, srow, strict=True)}
               for i, (row, srow) in enumerate(zip(top.indices, top.scores, strict=True))}
        theirs = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        results[ties] = (ours, {m: np.mean([v[m] for v in theirs.values()])
                                for m in ("ndcg_cut_10", "recall_10")})
    ours, theirs = results["trec"]
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg_cut_10"], abs=1e-12)
    assert ours["recall@10"] == pytest.approx(theirs["recall_10"], abs=1e-12)
    asc, theirs_asc = results["id_asc"]
    assert asc["ndcg@10"] != pytest.approx(theirs_asc["ndcg_cut_10"], abs=1e-6)


def test_tie_groups_larger_than_the_candidate_margin():
    # 60 identical docs tie for first place: the tie spills far past k + margin.
    q, d = _grid_data(1, 8, 100)
    d[20:80] = q[0]
    ids = _shuffled_ids(100, 2)
    for backend in ("exact", "faiss"):
        got = search(q, d, 5, doc_ids=ids, backend=backend)
        _assert_same(got, _brute(q, d, 5, ids))
        assert set(got.indices[0]) <= set(range(20, 80))


@pytest.mark.parametrize("chunk_size", [1, 3, 7])
def test_query_chunks_equal_unchunked(chunk_size):
    q, d = _grid_data(2, 20, 150)
    ids = _shuffled_ids(150, 3)
    _assert_same(
        search(q, d, 12, doc_ids=ids, chunk_size=chunk_size), search(q, d, 12, doc_ids=ids)
    )


@pytest.mark.parametrize("budget", [40, 300])
def test_doc_chunks_merge_exactly(monkeypatch, budget):
    # A tiny block budget forces doc chunks (some smaller than k) and partial top-k merges.
    q, d = _grid_data(3, 17, 130)
    ids = _shuffled_ids(130, 4)
    monkeypatch.setattr(retrieval, "_MAX_BLOCK_ELEMENTS", budget)
    _assert_same(search(q, d, 12, doc_ids=ids, chunk_size=4), _brute(q, d, 12, ids))


def test_faiss_equals_exact():
    q, d = _grid_data(4, 25, 180)
    ids = _shuffled_ids(180, 5)
    assert _boundary_ties(_brute(q, d, 9, ids), 8) >= 10
    exact = search(q, d, 8, doc_ids=ids, backend="exact")
    _assert_same(search(q, d, 8, doc_ids=ids, backend="faiss"), exact)
    _assert_same(exact, _brute(q, d, 8, ids))


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_k_larger_than_corpus_is_clipped(backend):
    q, d = _grid_data(5, 4, 7)
    got = search(q, d, 100, backend=backend)
    assert got.scores.shape == got.indices.shape == (4, 7)
    _assert_same(got, _brute(q, d, 7))


def test_random_normalised_embeddings():
    rng = np.random.default_rng(6)
    q = rng.standard_normal((40, 32))
    d = rng.standard_normal((300, 32))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    got = search(q, d, 20)  # float64 input is accepted
    full = q @ d.T
    np.testing.assert_allclose(got.scores, np.take_along_axis(full, got.indices, 1), atol=1e-5)
    assert (np.diff(got.scores, axis=1) <= 0).all()
    np.testing.assert_allclose(got.scores, -np.sort(-full, axis=1)[:, :20], atol=1e-5)


def test_empty_query_set():
    got = search(np.zeros((0, 4), np.float32), np.eye(4, dtype=np.float32), 3)
    assert got.scores.shape == got.indices.shape == (0, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "hnsw"}, r"retrieval\.backend: unknown backend 'hnsw'; choose one of"),
        ({"k": 0}, r"retrieval\.k must be a positive integer, got 0"),
        ({"chunk_size": 0}, r"retrieval\.chunk_size must be a positive integer"),
        ({"device": "gpu0"}, r"retrieval\.device: invalid device 'gpu0'"),
        ({"doc_ids": ["a", "b"]}, "doc_ids has 2 ids but docs has 3 rows"),
        ({"doc_ids": ["a", "b", "a"]}, r"doc_ids: duplicate id 'a' \(rows 0 and 2\)"),
        ({"ties": "random"}, r"retrieval\.ties: unknown tie order 'random'"),
    ],
)
def test_bad_options_name_the_option(kwargs, message):
    args = {"k": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        search(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), **args)


def test_bad_arrays_are_rejected():
    eye = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"queries have dim 3 but docs have dim 2"):
        search(eye, eye[:, :2], 1)
    with pytest.raises(ValueError, match=r"docs must be a 2-D \(n, dim\) array"):
        search(eye, eye[0], 1)
    bad = eye.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="docs row 1 contains NaN or infinite values"):
        search(eye, bad, 1)


def test_faiss_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install 'mixsearch\[faiss\]'"):
        search(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 1, backend="faiss")


def test_candidate_selection_orders_signed_zeros_and_negatives_like_floats():
    # The packed int64 sort key must order like (-float score, id) for any float32 score.
    scores = np.array([[-0.0, 0.0, -1.5, np.inf, -np.inf, 1e-30, -1e-30, 0.0]], np.float32)
    ids = ["h", "g", "f", "e", "d", "c", "b", "a"]
    got_scores, got_rows = retrieval.IdOrder(ids, 8, "id_asc").select(scores, np.arange(8)[None], 8)
    expected = sorted(range(8), key=lambda i: (-float(scores[0, i]), ids[i]))
    assert got_rows[0].tolist() == expected == [3, 5, 7, 1, 0, 6, 2, 4]
    np.testing.assert_array_equal(got_scores[0], scores[0, expected])
    # trec: equal scores (0.0 and -0.0 here) by id descending
    _, trec_rows = retrieval.IdOrder(ids, 8).select(scores, np.arange(8)[None], 8)
    assert trec_rows[0].tolist() == [3, 5, 0, 1, 7, 6, 2, 4]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_search_blocks_equals_search_on_the_stacked_docs(monkeypatch, tmp_path, dtype):
    """Streamed blocks (memory-mapped .npy files, float16 or float32, some smaller than k),
    consumed once from a generator, give the whole-matrix result; tiny chunk budgets force
    doc chunks inside blocks."""
    q, d = _grid_data(10, 23, 170)
    ids = _shuffled_ids(170, 11)
    cuts = [0, 5, 60, 61, 130, 170]
    for n, (a, b) in enumerate(pairwise(cuts)):
        np.save(tmp_path / f"p{n}.npy", d[a:b].astype(dtype))
    blocks = (np.load(tmp_path / f"p{n}.npy", mmap_mode="r") for n in range(len(cuts) - 1))
    monkeypatch.setattr(retrieval, "_DOC_CHUNK", 16)
    monkeypatch.setattr(retrieval, "_MAX_BLOCK_ELEMENTS", 300)
    got = retrieval.search_blocks(q, blocks, 12, n_docs=170, doc_ids=ids)
    _assert_same(got, _brute(q, d.astype(dtype).astype(np.float32), 12, ids))


def test_search_blocks_checks_rows_and_values():
    q, d = _grid_data(12, 3, 20)
    with pytest.raises(ValueError, match="docs blocks hold 20 rows, but 25 were announced"):
        retrieval.search_blocks(q, [d[:10], d[10:]], 3, n_docs=25)
    with pytest.raises(ValueError, match="docs blocks hold more than the 15 rows announced"):
        retrieval.search_blocks(q, [d[:10], d[10:]], 3, n_docs=15)
    bad = d.copy()
    bad[13, 0] = np.nan
    with pytest.raises(ValueError, match="docs row 13 contains NaN or infinite values"):
        retrieval.search_blocks(q, [bad[:10], bad[10:]], 3, n_docs=20)
    with pytest.raises(ValueError, match=r"docs block at row 10 has shape \(10, 5\)"):
        retrieval.search_blocks(q, [d[:10], d[10:, :5]], 3, n_docs=20)


def _unit(rng, n, dim):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_faiss_ivf_probing_every_cell_is_exact_and_hnsw_recalls():
    rng = np.random.default_rng(13)
    d, q = _unit(rng, 2000, 24), _unit(rng, 30, 24)
    exact = search(q, d, 20)
    ivf = search(q, d, 20, backend="faiss", index="ivf", nlist=16, nprobe=16)
    np.testing.assert_array_equal(ivf.indices, exact.indices)  # scores differ by rounding only
    np.testing.assert_allclose(ivf.scores, exact.scores, atol=1e-6)
    few = search(q, d, 20, backend="faiss", index="ivf", nlist=16, nprobe=1)
    recall_few = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(few.indices, exact.indices, strict=True)])
    assert recall_few < 1.0  # one probed cell of 16 misses true neighbours
    hnsw = search(q, d, 20, backend="faiss", index="hnsw", hnsw_m=16, ef_search=200)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(hnsw.indices, exact.indices, strict=True)])
    assert recall >= 0.9
    assert (np.diff(hnsw.scores, axis=1) <= 0).all()


def test_faiss_ivf_with_too_few_candidates_falls_back_to_exact():
    # 3 cells, 1 probed, k = 150 of 200 docs: most queries see fewer than k candidates.
    rng = np.random.default_rng(14)
    d, q = _unit(rng, 200, 8), _unit(rng, 5, 8)
    got = search(q, d, 150, backend="faiss", index="ivf", nlist=3, nprobe=1)
    np.testing.assert_array_equal(got.indices, search(q, d, 150).indices)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"index": "lsh"}, r"retrieval\.index: unknown index 'lsh'"),
    ({"index": "ivf", "nprobe": 0}, r"retrieval\.nprobe must be a positive integer, got 0"),
])
def test_bad_faiss_index_options(kwargs, message):
    eye = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        search(eye, eye, 1, backend="faiss", **kwargs)
