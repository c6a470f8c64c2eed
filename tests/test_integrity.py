"""Integrity of what a run reads back: checksummed calibration state (files written by one run,
reused with ``calibration.source=files``) and the digest of the vectors a run used."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mixsearch.data.benchmark import DataError
from mixsearch.data.synthetic import released_mix
from mixsearch.embed.embeddings import Embeddings
from mixsearch.evaluation import Evaluator
from mixsearch.pipeline import save_means, save_state

CHECKSUMS = "checksums.json"  # mixsearch.statefiles.CHECKSUMS, spelled out as users see it

CORPUS = {"mode": "released"}


def synthetic(n_q: int = 12, n_docs: int = 18, dim: int = 16, seed: int = 0):
    """A small MixBench-like benchmark (1:1:1 mix) with gapped text and image embeddings."""
    rng = np.random.default_rng(seed)
    sem = rng.standard_normal((n_docs, dim)).astype(np.float32)

    def emb(rows):
        return (rows + 3 * rng.standard_normal(dim) + 0.5 * rng.standard_normal(rows.shape)).astype(np.float32)

    bench, qids, dids = released_mix(n_q, n_docs, query_prefix="q", origin="test")
    embs = {"queries/text": Embeddings(qids, emb(sem[:n_q])),
            "corpus/text": Embeddings(dids, emb(sem)), "corpus/image": Embeddings(dids, emb(sem))}
    return bench, embs


@pytest.fixture(scope="module")
def data():
    return synthetic()


def _fit(data, method: str, folder: Path) -> dict:
    """Fit ``method`` transductively, save its state as a run does; return the metrics."""
    ev = Evaluator(*data, corpus=CORPUS, calibration={"method": method, "source": "transductive"})
    if method == "gr":
        save_means(folder, ev.calibration.means)
    else:
        save_state(folder, ev.calibration.reusable_state)
    return ev.run({"alpha": 0.5}).metrics


def _from_files(data, method: str, **source) -> dict:
    ev = Evaluator(*data, corpus=CORPUS, calibration={"method": method, "source": "files", **source})
    return ev.run({"alpha": 0.5}).metrics


def _flip_low_bit(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01  # a mantissa bit of the last float: the value stays finite and plausible
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("method", ["gr", "procrustes", "project", "i0t"])
def test_saved_state_round_trips_and_a_flipped_bit_is_named(tmp_path, data, method):
    folder = tmp_path / "state"
    metrics = _fit(data, method, folder)
    sums = json.loads((folder / CHECKSUMS).read_text())
    assert sums["format"] == 1 and sorted(sums["files"]) == sorted(p.name for p in folder.glob("*.npy"))
    assert _from_files(data, method, state_dir=str(folder)) == metrics
    target = sorted(folder.glob("*.npy"))[-1]
    _flip_low_bit(target)
    assert np.isfinite(np.load(target)).all()  # nothing but the checksum can tell
    with pytest.raises(DataError, match=f"calibration state {target}: checksum mismatch"):
        _from_files(data, method, state_dir=str(folder))


def test_gr_mean_files_are_verified_too(tmp_path, data):
    folder = tmp_path / "means"
    metrics = _fit(data, "gr", folder)
    files = {role: str(folder / f"{role}.npy") for role in ("query_text", "doc_text", "doc_image")}
    assert _from_files(data, "gr", files=files) == metrics
    _flip_low_bit(folder / "doc_image.npy")
    with pytest.raises(DataError, match=f"mean file {folder / 'doc_image.npy'}: checksum mismatch"):
        _from_files(data, "gr", files=files)


def test_state_without_checksums_is_read_with_a_warning(tmp_path, data, caplog):
    """Folders written before checksums existed still load; each file is named as unverified."""
    folder = tmp_path / "old"
    metrics = _fit(data, "gr", folder)
    (folder / CHECKSUMS).unlink()
    with caplog.at_level(logging.WARNING, logger="mixsearch.statefiles"):
        assert _from_files(data, "gr", state_dir=str(folder)) == metrics
    assert (f"calibration state {folder / 'doc_text.npy'} is not verified: no {CHECKSUMS} beside it"
            in caplog.text)


def test_a_file_the_checksums_do_not_list_is_refused(tmp_path, data):
    folder = tmp_path / "state"
    _fit(data, "gr", folder)
    np.save(folder / "query_image.npy", np.zeros(16, np.float32))  # a stray file
    with pytest.raises(DataError, match=r"lists .* but the folder holds .*: unlisted \['query_image.npy'\]"):
        _from_files(data, "gr", state_dir=str(folder))


@pytest.mark.parametrize(("method", "state", "problem"), [
    ("gr", {"query_text": np.full(16, 0.3), "doc_text": np.zeros(16), "doc_image": np.zeros(16)},
     r"query_text\.npy: norm 1\.2 > 1: not a mean of L2-normalised embeddings"),
    ("procrustes", {"rotation": 2 * np.eye(16)},
     r"rotation\.npy: not an orthogonal \(d, d\) rotation \(shape \(16, 16\), max \|M Mᵀ − I\| = 3"),
    ("project", {"directions": np.ones((1, 16))},
     r"directions\.npy: not orthonormal \(k, d\) directions"),
])
def test_a_consistent_but_impossible_state_is_refused(tmp_path, data, method, state, problem):
    """Checksums prove a file is what was written, not that it is a state: each method checks
    what it knows (a mean of unit vectors has norm <= 1, a rotation is orthogonal)."""
    save_state(tmp_path, state)  # valid files with valid checksums
    with pytest.raises(DataError, match=problem):
        _from_files(data, method, state_dir=str(tmp_path))


def test_digest_covers_ids_values_and_order():
    from mixsearch.embed.embeddings import digest

    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = digest(Embeddings(["a", "b", "c"], v))
    assert base == digest(Embeddings(["a", "b", "c"], v.copy()))
    assert base.startswith("xxh3_64:")
    changed = v.copy()
    changed[2, 3] = np.nextafter(changed[2, 3], np.float32(100))  # one ulp
    assert digest(Embeddings(["a", "b", "c"], changed)) != base
    assert digest(Embeddings(["a", "c", "b"], v)) != base
    assert digest(Embeddings(["a", "b", "c"], v.reshape(3, 4)[[0, 2, 1]])) != base


def test_a_tampered_but_consistent_cache_part_changes_the_recorded_digest(tmp_path):
    """A part replaced by a valid array of the right shape, its checksum updated, passes every
    cache check; metrics.json must still tell the two runs apart (embedding.digests)."""
    from test_faults import SMALL, config, entry_dir

    from mixsearch.data.toy import load_toy
    from mixsearch.embed import cache as cache_mod
    from mixsearch.pipeline import run

    load_toy(tmp_path / "data" / "toy", **SMALL)
    clean = run(config(tmp_path, tmp_path / "data"))
    digests = clean["embedding"]["digests"]
    assert set(digests) >= {"queries/text", "corpus/text", "corpus/image"}
    folder = entry_dir(tmp_path / "cache", "corpus-text")
    npy, ids = folder / "part-00000.npy", folder / "part-00000.ids.json"
    vectors = np.load(npy)
    vectors[[0, 1]] = vectors[[1, 0]]  # two docs swap texts: valid, finite, same shape
    np.save(npy, vectors)
    meta = json.loads(ids.read_text())
    meta["checksum"] = cache_mod.checksum(vectors)
    ids.write_text(json.dumps(meta))
    cache_mod._VERIFIED.clear()
    again = run(config(tmp_path, tmp_path / "data"))
    assert again["embedding"]["encoded_items"] == 0  # the cache accepted the part
    changed = {k for k in digests if again["embedding"]["digests"][k] != digests[k]}
    assert changed == {"corpus/text"}
