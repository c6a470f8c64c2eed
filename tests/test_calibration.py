"""Means: fitting, files, save/load, cross-fitting without leaks, source resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixsearch.calibration import (
    Means,
    assign_folds,
    crossfit_means,
    fit_means,
    load_mean_files,
    resolve,
)
from mixsearch.data.benchmark import DataError
from mixsearch.fusion import make_views

D = 16


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def views(n, *, text=True, image=True, seed=0, has_image=None):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((n, D)).astype(np.float32) + 3
    i = rng.standard_normal((n, D)).astype(np.float32) - 3
    ht = np.full(n, text)
    hi = np.full(n, image) if has_image is None else np.asarray(has_image)
    return make_views([str(k) for k in range(n)], t, i, ht, hi)


def test_fit_means_averages_normalised_rows():
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((50, D)).astype(np.float32) * rng.uniform(0.1, 30, (50, 1))
    m = fit_means({"doc_text": raw, "query_text": raw[:5]}, "train")
    np.testing.assert_allclose(m.doc_text, unit(raw).mean(0), atol=1e-6)
    np.testing.assert_allclose(m.query_text, unit(raw[:5]).mean(0), atol=1e-6)
    assert m.doc_image is None and m.source == "train"
    assert m.n_samples == {"doc_text": 50, "query_text": 5}
    with pytest.raises(ValueError, match="unknown role 'doc_video'"):
        fit_means({"doc_video": raw}, "train")
    with pytest.raises(ValueError, match="calibration pool 'doc_image'"):
        fit_means({"doc_image": np.zeros((0, D))}, "train")


def test_means_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    m = Means(query_text=rng.standard_normal(D).astype(np.float32), doc_image=np.ones(D, np.float32),
              source="train", n_samples={"query_text": 10, "doc_image": 3})
    m.save(tmp_path / "means.npz")
    back = Means.load(tmp_path / "means.npz")
    np.testing.assert_array_equal(back.query_text, m.query_text)
    np.testing.assert_array_equal(back.doc_image, m.doc_image)
    assert back.doc_text is None and back.query_image is None
    assert (back.source, back.n_samples) == ("train", m.n_samples)
    np.savez(tmp_path / "other.npz", x=np.ones(3))
    with pytest.raises(DataError, match="not a mixsearch means file"):
        Means.load(tmp_path / "other.npz")


def test_load_mean_files_forms_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    vecs = {r: rng.standard_normal(D).astype(np.float32) for r in ("query_text", "doc_text", "doc_image", "query_image")}
    np.save(tmp_path / "q.npy", vecs["query_text"])
    torch.save(torch.from_numpy(vecs["doc_text"])[None], tmp_path / "t.pt")  # (1, d) tensor
    torch.save({"mean": torch.from_numpy(vecs["doc_image"])}, tmp_path / "i.pt")  # one-entry dict
    torch.save(vecs["query_image"].tolist(), tmp_path / "qi.pt")  # list of floats
    files = {"query_text": str(tmp_path / "q.npy"), "doc_text": str(tmp_path / "t.pt"),
             "doc_image": str(tmp_path / "i.pt"), "query_image": str(tmp_path / "qi.pt")}
    m = load_mean_files(files)
    for role, v in vecs.items():
        np.testing.assert_allclose(m.get(role), v, rtol=0, atol=0)
    assert m.source == "files"

    with pytest.raises(DataError, match=r"calibration\.files\.doc_image: no mean file"):
        load_mean_files({**files, "doc_image": None})
    # query_image is optional
    assert load_mean_files({**files, "query_image": None}).query_image is None
    np.save(tmp_path / "short.npy", np.ones(D - 1, np.float32))
    with pytest.raises(DataError, match="short.npy has dim 15"):
        load_mean_files({**files, "doc_image": str(tmp_path / "short.npy")})
    np.save(tmp_path / "matrix.npy", np.ones((3, D), np.float32))
    with pytest.raises(DataError, match="matrix.npy: expected a finite"):
        load_mean_files({**files, "doc_text": str(tmp_path / "matrix.npy")})
    torch.save({"a": torch.ones(D), "b": torch.ones(D)}, tmp_path / "two.pt")
    with pytest.raises(DataError, match="two.pt: not a vector"):
        load_mean_files({**files, "doc_text": str(tmp_path / "two.pt")})
    (tmp_path / "m.txt").write_text("1 2 3")
    with pytest.raises(DataError, match="m.txt: expected a .pt or .npy"):
        load_mean_files({**files, "doc_text": str(tmp_path / "m.txt")})
    with pytest.raises(DataError, match="cannot read mean file .*missing.npy"):
        load_mean_files({**files, "doc_text": str(tmp_path / "missing.npy")})
    with pytest.raises(DataError, match=r"calibration\.files\.doc_video"):
        load_mean_files({**files, "doc_video": "x.npy"})


def test_assign_folds_balanced_and_seeded():
    f = assign_folds(103, 5, seed=0)
    assert sorted(np.bincount(f).tolist()) == [20, 20, 21, 21, 21]
    np.testing.assert_array_equal(f, assign_folds(103, 5, seed=0))
    assert not np.array_equal(f, assign_folds(103, 5, seed=1))
    with pytest.raises(ValueError, match="calibration.folds"):
        assign_folds(10, 1, seed=0)
    with pytest.raises(ValueError, match="calibration.folds"):
        assign_folds(3, 5, seed=0)


def test_crossfit_means_equal_brute_force_other_fold_means():
    rows = unit(np.random.default_rng(4).standard_normal((40, D)))
    folds = assign_folds(40, 4, seed=9)
    got = crossfit_means(rows, folds, 4, "doc_text")
    for f in range(4):
        np.testing.assert_allclose(got[f], rows[folds != f].mean(0), atol=1e-6)
    with pytest.raises(DataError, match="no doc_text items outside fold 0"):
        crossfit_means(rows[:3], np.zeros(3, int), 2, "doc_text")


def test_crossfit_never_uses_an_items_own_fold():
    """A planted item with a direction nobody else has: its own mean must not see it."""
    q, d = views(30, image=False, seed=5), views(40, seed=6)
    planted = np.zeros(D, np.float32)
    planted[-1] = 1.0
    for v in (q, d):
        v.text[:, -1] = 0.0  # nobody else points along the last axis...
        v.text[0] = planted  # ...but item 0 does
    cal = resolve({"method": "gr", "source": "crossfit", "folds": 5, "seed": 0}, q, d)
    assert cal.source == "crossfit" and cal.folds == 5
    for role, n in (("query_text", 30), ("doc_text", 40)):
        m = cal.means[role]
        assert m.shape == (n, D)
        assert m[0, -1] == 0.0  # item 0 is calibrated without itself
        folds = assign_folds(n, 5, 0 if role == "query_text" else 1)
        others = folds != folds[0]
        assert (m[others, -1] > 0).all()  # the other folds do see it
        assert (m[~others, -1] == 0).all()
    assert cal.n_samples == {"query_text": 30, "doc_text": 40, "doc_image": 40}
    assert "query_image" not in cal.means


def test_crossfit_doc_pools_only_hold_what_the_run_shows():
    shows_image = np.arange(40) % 2 == 0
    d = views(40, has_image=shows_image, seed=7)
    cal = resolve({"method": "gr", "source": "crossfit", "folds": 4, "seed": 3}, views(20, seed=8), d)
    folds = assign_folds(40, 4, 4)
    for item in (0, 1, 17):
        pool = shows_image & (folds != folds[item])
        np.testing.assert_allclose(cal.means["doc_image"][item], d.image[pool].mean(0), atol=1e-6)
    assert cal.n_samples["doc_image"] == 20


def test_sources_auto_train_transductive_files(tmp_path):
    q, d = views(20, image=False, seed=1), views(30, seed=2)
    rng = np.random.default_rng(3)
    pools = {r: rng.standard_normal((15, D)) for r in ("query_text", "doc_text", "doc_image")}
    cal = resolve({"method": "gr"}, q, d, pools=pools)
    assert (cal.source, cal.n_samples["doc_text"]) == ("train", 15)
    np.testing.assert_allclose(cal.means["doc_image"], unit(pools["doc_image"]).mean(0), atol=1e-6)
    assert resolve({"method": "gr", "source": "auto"}, q, d).source == "crossfit"

    tr = resolve({"method": "gr", "source": "transductive"}, q, d)
    assert tr.source == "transductive"
    np.testing.assert_allclose(tr.means["doc_text"], d.text.mean(0), atol=1e-6)
    np.testing.assert_allclose(tr.means["query_text"], q.text.mean(0), atol=1e-6)

    for role in ("query_text", "doc_text", "doc_image"):
        np.save(tmp_path / f"{role}.npy", unit(pools[role]).mean(0))
    files = {r: str(tmp_path / f"{r}.npy") for r in pools}
    fc = resolve({"method": "gr", "source": "files", "files": files}, q, d)
    for role in pools:
        np.testing.assert_allclose(fc.means[role], cal.means[role], atol=1e-6)

    given = fit_means(pools, "train")
    assert resolve({"method": "gr"}, q, d, means=given).source == "train"
    with pytest.raises(ValueError, match="calibration.source=crossfit conflicts"):
        resolve({"method": "gr", "source": "crossfit"}, q, d, means=given)

    assert resolve({"method": "none"}, q, d).means == {}
    assert resolve({"method": "pushdown"}, q, d).summary()["source"] is None


def test_resolve_errors_name_the_option():
    q, d = views(10, image=False), views(12)
    with pytest.raises(ValueError, match="calibration.method: unknown method 'grr'"):
        resolve({"method": "grr"}, q, d)
    with pytest.raises(ValueError, match="calibration.source: unknown source 'test'"):
        resolve({"method": "gr", "source": "test"}, q, d)
    with pytest.raises(ValueError, match="calibration.source=train: no calibration pools"):
        resolve({"method": "gr", "source": "train"}, q, d)
    pools = {"query_text": np.ones((3, D)), "doc_text": np.ones((3, D))}
    with pytest.raises(ValueError, match="no doc_image mean"):
        resolve({"method": "gr", "source": "train"}, q, d, pools=pools)
    pools["doc_image"] = np.ones((3, D + 1))
    with pytest.raises(ValueError, match="doc_image mean has shape"):
        resolve({"method": "gr", "source": "train"}, q, d, pools=pools)
    with pytest.raises(DataError, match=r"calibration\.files\.query_text"):
        resolve({"method": "gr", "source": "files", "files": {}}, q, d)


def test_a_calibrated_vector_of_zero_is_named_in_a_warning_and_the_notes(caplog):
    """One query with transductive GR: the query-text mean is the query itself, so its
    calibrated vector is zero and it scores 0 against every doc; the run says so by id."""
    import logging

    from fake_encoder import FakeEncoder

    import mixsearch
    from mixsearch.data.benchmark import Benchmark, Record

    docs = [Record(f"d{i}", text=f"document number {i} about topic {i % 3}") for i in range(6)]  # text only
    bench = Benchmark("one-query", [Record("only-q", text="a lonely query")], docs,
                      {"only-q": {"d1": 1}}, mixed_corpus=docs)
    with caplog.at_level(logging.WARNING, logger="mixsearch.calibration"):
        result = mixsearch.evaluate(FakeEncoder(), bench,
                                    calibration={"method": "gr", "source": "transductive"})
    message = ("calibration=gr: 1 query_text vector(s) are zero after calibration (the item equals "
               "its role's mean) and score 0 against everything: 'only-q'")
    assert message in caplog.text
    assert message in result.calibration["notes"]
    assert set(result.scores["only-q"]) == {0.0}  # what the note warns of
    # docs are not degenerate here: no note names a doc role
    assert not any("doc_" in n for n in result.calibration["notes"])
