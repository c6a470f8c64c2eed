"""Calibration methods on the registry: i0t, project, procrustes against independent
references, every source (train, crossfit, transductive, files), plug-in registration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.preprocessing import StandardScaler
from test_calibration import D, unit, views
from test_evaluate import synthetic

from mixsearch.calibration import assign_folds, load_state_dir, resolve
from mixsearch.calibrators import Calibrator, available_calibrators, register_calibrator
from mixsearch.evaluation import Evaluator
from mixsearch.fusion import Views, make_views
from mixsearch.pipeline import save_state


def test_i0t_standardises_each_role_like_sklearn():
    q, d = views(20, image=False, seed=1), views(30, seed=2)
    cal = resolve({"method": "i0t", "source": "transductive"}, q, d)
    out = cal.apply(d, "doc")
    for part in ("text", "image"):
        ref = StandardScaler().fit_transform(getattr(d, part).astype(np.float64))
        np.testing.assert_allclose(getattr(out, part), ref, atol=1e-4)
    assert set(cal.state) == {f"{r}.{s}" for r in ("query_text", "doc_text", "doc_image")
                              for s in ("mean", "std")}


def test_project_removes_the_gap_direction():
    q, d = views(20, image=False, seed=1), views(30, seed=2)
    cal = resolve({"method": "project", "source": "transductive"}, q, d)
    gap = (q.text.mean(0) + d.text.mean(0)) / 2 - d.image.mean(0)
    np.testing.assert_allclose(cal.state["directions"][0], gap / np.linalg.norm(gap), atol=1e-5)
    out = cal.apply(d, "doc")
    assert np.abs(out.text @ cal.state["directions"][0]).max() < 1e-5
    # the doc text-image centroid difference loses its component along the gap: it shrinks
    before = np.linalg.norm(d.text.mean(0) - d.image.mean(0))
    assert np.linalg.norm(out.text.mean(0) - out.image.mean(0)) < 0.5 * before
    paired = resolve({"method": "project", "params": {"k": 3, "estimate": "paired"},
                      "source": "transductive"}, q, d)
    dirs = paired.state["directions"]
    np.testing.assert_allclose(dirs @ dirs.T, np.eye(3), atol=1e-5)
    with pytest.raises(ValueError, match="estimate=means removes exactly 1"):
        resolve({"method": "project", "params": {"k": 2}}, q, d)


def test_procrustes_recovers_a_planted_rotation():
    rng = np.random.default_rng(0)
    rot = ortho_group.rvs(D, random_state=1).astype(np.float32)
    text = unit(rng.standard_normal((50, D))).astype(np.float32)
    image = text @ rot.T  # image_i = R text_i, so the fitted map is R^T
    d = make_views([str(i) for i in range(50)], text, image, np.ones(50, bool), np.ones(50, bool))
    q = views(10, image=False)
    cal = resolve({"method": "procrustes", "source": "transductive"}, q, d)
    np.testing.assert_allclose(cal.state["rotation"], rot, atol=1e-4)
    out = cal.apply(d, "doc")
    np.testing.assert_allclose(out.image, text, atol=1e-4)
    np.testing.assert_array_equal(out.text, d.text)  # text is the target space: unchanged
    with pytest.raises(ValueError, match="procrustes source=train: no paired"):
        resolve({"method": "procrustes", "source": "train"}, q, d, pools={"doc_text": text})


def _rows(v: Views, keep: np.ndarray) -> Views:
    return Views([i for i, k in zip(v.ids, keep, strict=True) if k], v.text[keep], v.image[keep],
                 v.has_text[keep], v.has_image[keep])


@pytest.mark.parametrize("method", ["i0t", "project", "procrustes"])
def test_crossfit_fits_each_fold_without_it(method):
    q, d = views(20, image=False, seed=3), views(40, seed=4)
    cal = resolve({"method": method, "source": "crossfit", "folds": 4, "seed": 0}, q, d)
    assert cal.source == "crossfit" and len(cal.fold_states) == 4 and cal.reusable_state == {}
    folds = assign_folds(40, 4, 1)
    out = cal.apply(d, "doc")
    for f in range(4):
        keep_q, keep_d = assign_folds(20, 4, 0) != f, folds != f
        sub = resolve({"method": method, "source": "transductive"}, _rows(q, keep_q), _rows(d, keep_d))
        ref = sub.apply(d, "doc")
        np.testing.assert_allclose(out.image[folds == f], ref.image[folds == f], atol=1e-5)
        np.testing.assert_allclose(out.text[folds == f], ref.text[folds == f], atol=1e-5)


@pytest.mark.parametrize("method", ["gr", "i0t", "project", "procrustes"])
def test_saved_state_reloads_as_source_files(tmp_path, method):
    bench, embs, pools = synthetic(n_q=20, n_docs=45)
    pairs = (pools["doc_text"], pools["doc_image"])
    cfg = {"corpus": {"mode": "released"}, "metrics": {"ks": [10]}}
    trained = Evaluator(bench, embs, calibration={"method": method, "source": "train"}, pools=pools,
                        pairs=pairs, **cfg)
    written = save_state(tmp_path / "state", trained.calibration.reusable_state)
    assert set(written) == set(trained.calibration.state)
    assert set(load_state_dir(tmp_path / "state")) == set(written)
    again = Evaluator(bench, embs, calibration={"method": method, "source": "files",
                                                "state_dir": str(tmp_path / "state")}, **cfg)
    a, b = trained.run(), again.run()
    assert a.metrics == b.metrics
    assert a.gap["centroid_distance_after"] < a.gap["centroid_distance_before"]
    assert b.calibration["source"] == "files"


def test_max_samples_caps_every_pool():
    bench, embs, pools = synthetic(n_q=20, n_docs=45, n_pool=300)
    cal = {"method": "i0t", "source": "train", "max_samples": 50, "seed": 3}
    ev = Evaluator(bench, embs, corpus={"mode": "released"}, calibration=cal, pools=pools,
                   metrics={"ks": [10]})
    assert ev.calibration.n_samples == {r: 50 for r in pools}
    other = Evaluator(bench, embs, corpus={"mode": "released"}, calibration={**cal, "seed": 4},
                      pools=pools, metrics={"ks": [10]})
    assert not np.array_equal(ev.calibration.state["doc_text.mean"], other.calibration.state["doc_text.mean"])


class Shrink(Calibrator):
    """The example plug-in of docs/calibration.md."""

    def __init__(self, factor: float = 0.5) -> None:
        self.factor = factor

    def fit(self, pools, pairs):
        return {"factor": np.full(D, self.factor, np.float32)}

    def transform(self, role, rows, state):
        return rows * state["factor"]


def test_registered_plugin_runs_through_resolve_and_errors_name_options(registries_restored):
    register_calibrator("shrink_test", Shrink)
    assert {"none", "gr", "pushdown", "i0t", "project", "procrustes", "shrink_test"} <= set(available_calibrators())
    q, d = views(10, image=False), views(12)
    cal = resolve({"method": "shrink_test", "params": {"factor": 0.25}, "source": "transductive"}, q, d)
    np.testing.assert_allclose(cal.apply(d, "doc").text, d.text * 0.25, atol=1e-7)
    with pytest.raises(ValueError, match="already registered"):
        register_calibrator("gr", Shrink)
    with pytest.raises(ValueError, match="calibration.params: method 'shrink_test' does not take"):
        resolve({"method": "shrink_test", "params": {"facto": 1}}, q, d)
    with pytest.raises(ValueError, match="calibration.source=files: set calibration.state_dir"):
        resolve({"method": "i0t", "source": "files"}, q, d)


def test_registered_fusion_method_is_selectable(registries_restored):
    from mixsearch.fusion import available_fusions, l2_normalise, register_fusion

    def text_first(centred, alpha):  # image+text docs by their text alone
        return l2_normalise(np.where(centred.has_text[:, None], centred.text, centred.image))

    register_fusion("text_first_test", text_first)
    assert {"weighted", "score", "joint", "text_first_test"} <= set(available_fusions())
    bench, embs, pools = synthetic(n_q=15, n_docs=45)
    ev = Evaluator(bench, embs, corpus={"mode": "released"}, calibration={"method": "gr", "source": "train"},
                   pools=pools, metrics={"ks": [10]})
    assert ev.run({"method": "text_first_test"}).metrics == ev.run({"method": "weighted", "alpha": 1.0}).metrics
    with pytest.raises(ValueError, match="already registered"):
        register_fusion("weighted", text_first)


def test_method_by_module_path_needs_no_registration(registries_restored):
    q, d = views(10, image=False), views(12)
    cal = resolve({"method": "test_calibrators:Shrink", "params": {"factor": 0.5},
                   "source": "transductive"}, q, d)
    np.testing.assert_allclose(cal.apply(d, "doc").image, d.image * 0.5, atol=1e-7)
    with pytest.raises(ValueError, match="calibration.method: cannot load 'nope_mod:X'"):
        resolve({"method": "nope_mod:X"}, q, d)
