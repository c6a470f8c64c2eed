"""Pipeline helpers: reusable mean files, shared builds, the terminal summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixsearch.calibration import load_mean_files
from mixsearch.pipeline import build_shared, format_summary, save_means


def test_saved_means_load_back_as_calibration_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    means = {"query_text": rng.normal(size=8).astype(np.float32),
             "doc_text": rng.normal(size=8).astype(np.float32),
             "doc_image": rng.normal(size=8).astype(np.float32),
             "query_image": rng.normal(size=(5, 8)).astype(np.float32)}  # cross-fitted: per item
    files = save_means(tmp_path / "means", means)
    assert set(files) == {"query_text", "doc_text", "doc_image"}
    assert not list((tmp_path / "means").glob(".*tmp"))
    loaded = load_mean_files(files)
    for role in files:
        np.testing.assert_array_equal(loaded.get(role), means[role])


def test_build_shared_reuses_identical_sections_only() -> None:
    spec = {"_target_": "collections.OrderedDict", "a": 1}
    first = build_shared(spec, "model")
    assert build_shared(dict(spec), "model") is first
    assert build_shared({**spec, "a": 2}, "model") is not first
    assert build_shared(spec, "dataset") is not first  # the option is part of the key


def test_summary_tolerates_undefined_gap() -> None:
    out = {"benchmark": {"name": "b"}, "metrics": {"ndcg@10": 0.5, "recall@1": 0.25},
           "calibration": {"method": "none", "source": None}, "corpus": {"mode": "replace"},
           "gap": {"centroid_distance_before": None, "centroid_distance_after": None}}
    text = format_summary(out)
    assert "ndcg@10=0.5000" in text and "gap" not in text
    out["gap"] = {"centroid_distance_before": 0.5, "centroid_distance_after": 0.0}
    assert "0.500 -> 0.000" in format_summary(out)


def test_fingerprint_key_raises_what_breaks_and_names_a_plugin_without_one(caplog) -> None:
    """The compute memo key: an error inside ``fingerprint()`` is not swallowed into a blank
    key (two broken models would share one entry); only a plug-in object without
    ``fingerprint_hash`` falls back to its name, with a warning."""
    import logging

    import pytest
    from fake_encoder import FakeEncoder

    from mixsearch.pipeline import _fingerprint

    enc = FakeEncoder()
    assert _fingerprint(enc) == enc.fingerprint_hash() != ""

    class Broken(FakeEncoder):
        def fingerprint(self):
            raise RuntimeError("checkpoint folder vanished")

    with pytest.raises(RuntimeError, match="checkpoint folder vanished"):
        _fingerprint(Broken())

    class DuckTyped:  # a plug-in factory may return any object with the encoder methods
        name = "duck"

    with caplog.at_level(logging.WARNING, logger="mixsearch.pipeline"):
        assert _fingerprint(DuckTyped()) == ""
    assert "'duck' has no fingerprint_hash()" in caplog.text
