"""The scale path: calibration means streamed over cache parts, and extraction with one
process per device (two CPU "devices" here) filling the same cache as an unsharded run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mixsearch.calibration import entry_blocks, fit_means, gr_blocks, streamed_mean, streamed_means
from mixsearch.config import ConfigError
from mixsearch.embed.cache import CacheEntry, Part
from mixsearch.embed.devices import check_devices, resolve_devices
from mixsearch.pipeline import run

ROOT = Path(__file__).resolve().parents[1]


def test_streamed_mean_equals_numpy_mean_of_normalised_rows():
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((n, 24)).astype(np.float32) * rng.uniform(0.1, 9)
              for n in (7, 300, 1, 64)]
    stacked = np.concatenate(blocks)
    ref = (stacked / np.linalg.norm(stacked, axis=1, keepdims=True)).mean(axis=0)
    for chunk_rows in (1, 5, 64, 10_000):  # chunks inside, across and beyond the blocks
        got, n = streamed_mean(iter(blocks), chunk_rows=chunk_rows)
        assert n == len(stacked) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="no rows"):
        streamed_mean(iter([]))
    with pytest.raises(ValueError, match="width 3 after width 24"):
        streamed_mean(iter([blocks[0], np.ones((2, 3), np.float32)]))


def test_gr_blocks_equal_gr_on_the_stacked_rows():
    rng = np.random.default_rng(2)
    # shifted: the rows share a direction, as one modality's embeddings do
    blocks = [(rng.standard_normal((n, 16)) + 1.0).astype(np.float16) for n in (50, 3, 77)]
    mean, _ = streamed_mean(iter(blocks))
    got = np.concatenate(list(gr_blocks(iter(blocks), mean, chunk_rows=20)))
    x = np.concatenate(blocks).astype(np.float32)
    x = x / np.linalg.norm(x, axis=1, keepdims=True) - mean
    np.testing.assert_allclose(got, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-6)
    assert np.linalg.norm(got.mean(axis=0)) < 0.1 < 0.5 < np.linalg.norm(mean)  # centred


def test_streamed_means_over_float16_cache_parts_match_fit_means(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1000, 32)).astype(np.float32)
    ids = [f"d{i}" for i in range(1000)]
    inputs = {"encoder": {"backend": "synthetic"}, "autocast": "none", "dataset": "d",
              "split": "corpus", "field": "text", "store_dtype": "float16", "content": "c"}
    entry = CacheEntry(tmp_path / "e", "k", inputs, ids, 32, 128)
    for p in range(entry.n_parts):
        entry.write_part(p, Part(ids[entry.part_slice(p)], vectors[entry.part_slice(p)], []))
    entry.write_manifest([])
    blocks = list(entry_blocks(entry))
    assert len(blocks) == 8 and all(isinstance(b, np.memmap) for b in blocks)
    stored = np.concatenate(blocks).astype(np.float32)  # what the parts hold (float16)
    means = streamed_means({"doc_text": entry})
    ref = fit_means({"doc_text": stored}, "train")
    np.testing.assert_allclose(means.doc_text, ref.doc_text, rtol=0, atol=1e-7)
    assert means.n_samples == {"doc_text": 1000}


def test_devices_option_is_checked():
    assert check_devices(None) is None and check_devices("auto") is None
    assert check_devices(["cpu", "cpu"]) is None and check_devices(["cuda:0", "cuda:1"]) is None
    assert "not cpu, mps, cuda" in check_devices(["gpu0"])
    assert "empty list" in check_devices([])
    assert resolve_devices(None) == [] and resolve_devices(["cpu", "cpu"]) == ["cpu", "cpu"]
    with pytest.raises(ConfigError, match="embed.devices: 'tpu' is not"):
        resolve_devices(["tpu"])


def _config(tmp: Path, cache: str, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"paths.data_dir={tmp / 'data'}", f"paths.cache_dir={tmp / cache}",
            f"paths.output_dir={tmp / 'out' / str(time.monotonic_ns())}", "device=cpu",
            "embed.progress=false", "embed.part_size=16",
            "+dataset.n_queries=30", "+dataset.n_distractors=20", "+dataset.n_calibration=4",
            "+dataset.n_train=0", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _cache_vectors(cache: Path) -> dict[str, np.ndarray]:
    """Every entry of a cache (by its folder path under the cache root) as one array."""
    out = {}
    for layout in cache.rglob("layout.json"):
        entry = layout.parent
        parts = sorted(entry.glob("part-*.npy"))
        out[str(entry.relative_to(cache))] = np.concatenate([np.load(p) for p in parts])
    return out


@pytest.mark.slow
def test_two_device_processes_fill_the_cache_an_unsharded_run_fills(tmp_path):
    plain = run(_config(tmp_path, "plain"))
    split = run(_config(tmp_path, "split", "embed.devices=[cpu,cpu]"))
    per_device = split["embedding"]["devices"]
    assert [d["device"] for d in per_device] == ["cpu", "cpu"]
    assert all(d["encoded_items"] > 0 for d in per_device)  # both processes did part of it
    assert sum(d["encoded_items"] for d in per_device) == plain["embedding"]["encoded_items"]
    assert split["embedding"]["encoded_items"] == 0  # the run itself only read the cache
    a, b = _cache_vectors(tmp_path / "plain"), _cache_vectors(tmp_path / "split")
    assert a.keys() == b.keys() and len(a) >= 3
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert split["metrics"] == plain["metrics"]
