"""Fault injection on the toy benchmark: damaged caches, bad bytes, held locks, signals, kills.

Each test breaks one thing the way a user's disk, editor or cluster would, and checks that the
run either heals (same metrics as a clean run, a warning naming the file) or fails with a
message naming the file, line or lock. Runs are in-process (``pipeline.run`` on a composed
config) except where a process must die: SIGTERM and kill -9 use ``python run.py``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_encoder import FakeEncoder
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import mixsearch
from mixsearch.data.benchmark import DataError, ImageRef, Record
from mixsearch.data.io import read_jsonl, read_qrels
from mixsearch.data.toy import load_toy
from mixsearch.embed import cache as cache_mod
from mixsearch.embed.cache import CacheLockTimeout, EmbeddingCache, image_key
from mixsearch.embed.extract import embed_records
from mixsearch.pipeline import run
from mixsearch.signals import Interrupted, interruptible

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_queries": 20, "n_distractors": 20, "n_calibration": 4, "n_train": 0}
# The fake encoder (tests/fake_encoder.py) instead of the toy CLIP: nothing to load, so the
# module stays fast. Small parts, and in subprocesses a per-batch delay, make extraction last
# long enough to signal or kill it.
MODEL = "model._target_=fake_encoder.from_model_config"
PARTS = ["embed.batch_size=4", "embed.part_size=8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    load_toy(folder / "toy", **SMALL)  # generate once for the module
    return folder


def config(tmp: Path, data: Path, *overrides: str, cache: str = "cache") -> dict:
    """The composed config of ``python run.py <overrides>`` on the small toy benchmark."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"paths.data_dir={data}", f"paths.cache_dir={tmp / cache}", "embed.progress=false",
            f"paths.output_dir={tmp / 'out' / str(time.monotonic_ns())}", "device=cpu", MODEL,
            *(f"+dataset.{k}={v}" for k, v in SMALL.items()), *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def entry_dir(cache: Path, name: str) -> Path:
    """The folder of the cache entry ``<split>-<field>`` (e.g. ``corpus-image``)."""
    [path] = [p for p in cache.rglob("layout.json") if p.parent.name.startswith(name + "-")]
    return path.parent


def test_bit_flip_in_a_cached_part_is_named_and_recomputed(tmp_path, data, caplog):
    clean = run(config(tmp_path, data))["metrics"]
    npy = entry_dir(tmp_path / "cache", "corpus-image") / "part-00000.npy"
    raw = bytearray(npy.read_bytes())
    raw[-1] |= 0x7F  # the last float's exponent bits all set: it becomes NaN or Inf
    raw[-2] |= 0x80
    npy.write_bytes(bytes(raw))
    cache_mod._VERIFIED.clear()  # a new process would not remember the verified file
    with caplog.at_level(logging.WARNING):
        again = run(config(tmp_path, data))
    assert f"corrupt part {npy} (checksum mismatch" in caplog.text
    assert again["metrics"] == clean
    assert again["embedding"]["encoded_items"] == 40  # only the damaged part (40 images)


def test_non_finite_values_in_a_part_without_checksum_are_recomputed(tmp_path, caplog):
    recs = [Record(f"t{i}", text=f"text number {i}") for i in range(6)]
    cache = EmbeddingCache(tmp_path)
    opts = dict(dataset_key="ds", split="corpus", part_size=4, amp="none", progress=False)
    ref = embed_records(FakeEncoder(), recs, "text", cache=cache, **opts)
    part = next(tmp_path.rglob("part-00001.npy"))
    ids = part.with_name("part-00001.ids.json")
    meta = json.loads(ids.read_text())
    del meta["checksum"]  # as written before checksums existed
    ids.write_text(json.dumps(meta))
    vec = np.load(part)
    vec[1, 3] = np.nan
    np.save(part, vec)
    with caplog.at_level(logging.WARNING):
        emb = embed_records(FakeEncoder(), recs, "text", cache=cache, **opts)
    assert f"corrupt part {part} (non-finite values in 1 row(s), first id 't5')" in caplog.text
    np.testing.assert_array_equal(emb.vectors, ref.vectors)


@pytest.mark.parametrize("bad", ["[]", '{"part_size": 0}', "{not json"])
def test_invalid_manifest_is_rewritten_with_a_warning(tmp_path, data, caplog, bad):
    clean = run(config(tmp_path, data))["metrics"]
    manifest = entry_dir(tmp_path / "cache", "corpus-text") / "manifest.json"
    manifest.write_text(bad)
    with caplog.at_level(logging.WARNING):
        again = run(config(tmp_path, data))
    assert f"invalid {manifest}" in caplog.text
    assert again["metrics"] == clean and again["embedding"]["encoded_items"] == 0
    assert json.loads(manifest.read_text())["part_size"] == 4096  # sealed again


def test_part_sizes_mix_without_duplicate_work_or_false_alarms(tmp_path, data, caplog):
    first = run(config(tmp_path, data, "embed.part_size=20"))
    with caplog.at_level(logging.INFO):
        second = run(config(tmp_path, data))
    assert "corrupt" not in caplog.text
    assert second["metrics"] == first["metrics"] and second["embedding"]["encoded_items"] == 0

    # An entry left incomplete by a part_size=4 job is finished by a part_size=8 job in the
    # first job's layout: only the missing parts are encoded, nothing is flagged.
    recs = [Record(f"t{i}", text=f"a text {i}") for i in range(10)]
    cache = EmbeddingCache(tmp_path / "c2")
    opts = dict(dataset_key="ds", split="corpus", batch_size=4, amp="none", progress=False)
    with pytest.raises(Exception, match="simulated kill"):
        embed_records(FakeEncoder(fail_after_batches=1), recs, "text", cache=cache,
                      part_size=4, **opts)
    stats: dict = {}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        emb = embed_records(FakeEncoder(), recs, "text", cache=cache, part_size=8, stats=stats,
                            **opts)
    assert "corrupt" not in caplog.text and "was started with part_size=4" in caplog.text
    assert stats["cached_items"] == 4 and stats["encoded_items"] == 6
    ref = embed_records(FakeEncoder(), recs, "text", cache=None, **opts)
    np.testing.assert_allclose(emb.vectors, ref.vectors, rtol=1e-6)


def test_non_utf8_bytes_name_file_and_line(tmp_path, data):
    subset = data / "toy" / "ToyCOCO"
    queries, qrels = tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    shutil.copy(subset / "queries.jsonl", queries)
    shutil.copy(subset / "qrels" / "qrels.tsv", qrels)
    with open(queries, "ab") as f:
        f.write(b'{"query_id": "x", "text": "caf\xff"}\n')
    with open(qrels, "ab") as f:
        f.write(b"q\xff\t0\t1\n")
    with pytest.raises(DataError, match=r"queries\.jsonl:21: not valid UTF-8 \(byte 0xff"):
        list(read_jsonl(queries))
    with pytest.raises(DataError, match=r"qrels\.tsv:22: not valid UTF-8 \(byte 0xff"):
        read_qrels(qrels)


def test_complete_toy_data_needs_no_write(tmp_path, data):
    lock = data / "toy.lock"
    lock.unlink(missing_ok=True)
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    load_toy(data / "toy", **SMALL)
    assert not lock.exists() and {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before


def test_held_lock_times_out_with_a_message_about_it(tmp_path, data, monkeypatch, caplog):
    run(config(tmp_path, data))
    entry = entry_dir(tmp_path / "cache", "corpus-image")
    for name in ("manifest.json", "part-00000.npy"):  # make the entry need part 0 again
        (entry / name).unlink()
    lock = entry / "part-00000.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "l = FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(120)",
         str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(cache_mod, "LOCK_LOG_EVERY", 1.0)
        t0 = time.monotonic()
        with caplog.at_level(logging.INFO), pytest.raises(CacheLockTimeout) as err:
            run(config(tmp_path, data, "embed.lock_timeout=5"))
        elapsed = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    assert 5 <= elapsed < 30
    assert re.search(rf"waiting for the lock file {re.escape(str(lock))} after \d+ s "
                     r"\(embed.lock_timeout=5\)", str(err.value))
    assert f"waiting for {lock}, held by another process, giving up after 5 s" in caplog.text
    assert f"still waiting for {lock}, held by another process (" in caplog.text


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    def full(f, vectors):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod, "_write_npy", full)
    recs = [Record(f"t{i}", text=f"a text {i}") for i in range(3)]
    with pytest.raises(OSError, match=r"disk full: cannot write .*part-00000\.npy") as err:
        embed_records(FakeEncoder(), recs, "text", cache=EmbeddingCache(tmp_path),
                      dataset_key="ds", split="corpus", amp="none", progress=False)
    assert err.value.errno == errno.ENOSPC
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.npy"))


def test_on_missing_skip_drops_the_doc_and_its_query_scores_zero(tmp_path, data):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    subset = copy / "toy" / "ToyCOCO"
    shown = {r["corpus_id"]: r for r in read_rows(subset / "mixed_corpus.jsonl")}
    qrels = read_qrels(subset / "qrels" / "qrels.tsv")
    qid, doc = next((q, d) for q, j in qrels.items() for d in j if shown[d]["image"])
    (subset / shown[doc]["image"]).write_bytes(b"not an image")

    with pytest.raises(DataError, match=rf"cannot decode image .*{shown[doc]['image']}"):
        run(config(tmp_path, copy))
    out = run(config(tmp_path, copy, "embed.on_missing=skip"))
    [skip] = out["skipped"]
    assert skip["entry"] == "corpus/image" and skip["id"] == doc and skip["dropped"]
    assert "cannot decode image" in skip["reason"]
    assert out["corpus"]["n_docs"] == 39 and out["corpus"]["n_dropped"] == 1
    table = pd.read_csv(Path(out["config"]["paths"]["output_dir"]) / "per_query.csv",
                        dtype={"qid": str}).set_index("qid")
    assert len(table) == 20  # the query whose only relevant doc was dropped still counts ...
    assert table.loc[qid, "ndcg@10"] == 0.0 and table.loc[qid, "recall@100"] == 0.0  # ... as 0
    assert out["metrics"]["ndcg@10"] == pytest.approx(table["ndcg@10"].mean())
    # the notebook API applies the same rule
    api = mixsearch.evaluate(FakeEncoder(), load_toy(copy / "toy", **SMALL),
                             embed={"on_missing": "skip", "amp": "none"})
    assert api.corpus["n_dropped"] == 1 and api.metrics == out["metrics"]


def _break_two_images(subset: Path) -> dict[str, str]:
    """Delete one document image and corrupt another; returns id -> what was done."""
    shown = [r for r in read_rows(subset / "mixed_corpus.jsonl") if r.get("image")]
    (deleted, corrupt) = shown[:2]
    key = "corpus_id" if "corpus_id" in deleted else "id"
    (subset / deleted["image"]).unlink() if (subset / deleted["image"]).exists() else \
        (subset / "images" / Path(deleted["image"]).name).unlink()
    target = subset / corrupt["image"]
    if not target.exists():
        target = subset / "images" / Path(corrupt["image"]).name
    target.write_bytes(b"\xff\xd8 not really a jpeg")
    return {str(deleted[key]): "image file not found", str(corrupt[key]): "cannot decode image"}


def _mixbench_config(tmp: Path, root: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "dataset=mixbench_mscoco", f"dataset.root={root}", "dataset.check_counts=false",
            f"paths.cache_dir={tmp / 'cache'}", "embed.progress=false", "device=cpu", MODEL,
            f"paths.output_dir={tmp / 'out' / str(time.monotonic_ns())}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


@pytest.mark.parametrize("layout", ["toy", "mixbench25"])
def test_dataset_on_missing_skip_lists_a_deleted_and_a_corrupt_image(tmp_path, data, layout):
    """The acceptance case: one option, both images listed with id and file, qrels kept."""
    if layout == "toy":
        shutil.copytree(data, tmp_path / "data")
        subset = tmp_path / "data" / "toy" / "ToyCOCO"
        make = lambda *o: config(tmp_path, tmp_path / "data", *o)  # noqa: E731
    else:
        from replica import write_replica

        write_replica(tmp_path / "mb")
        subset = tmp_path / "mb" / "MSCOCO"
        make = lambda *o: _mixbench_config(tmp_path, tmp_path / "mb", *o)  # noqa: E731
    broken = _break_two_images(subset)
    qrels = read_qrels(subset / "qrels" / "qrels.tsv")
    with pytest.raises(DataError, match="image file not found"):  # error stays the default
        run(make())
    out = run(make("dataset.on_missing=skip"))
    listed = {(s["id"], s["entry"]): s for s in out["skipped"]}
    for doc, reason in broken.items():
        entries = [s for (i, _), s in listed.items() if i == doc]
        assert entries and all(reason in s["reason"] and s["file"] and s["dropped"] for s in entries)
        assert Path(entries[0]["file"]).name in entries[0]["reason"]
    assert {i for i, _ in listed} == set(broken)
    assert out["corpus"]["n_dropped"] == 2
    # every judged query is still scored; one whose relevant docs all went scores 0
    table = pd.read_csv(Path(out["config"]["paths"]["output_dir"]) / "per_query.csv",
                        dtype={"qid": str}).set_index("qid")
    assert set(table.index) == set(qrels)
    for qid, judged in qrels.items():
        if {d for d, g in judged.items() if g > 0} <= set(broken):
            assert table.loc[qid, "ndcg@10"] == 0.0


def read_rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)]


def test_suspect_inputs(tmp_path, caplog):
    recs = [Record("a", text="fine"), Record("b", text="   "), Record("c", text="\t\n")]
    opts = dict(dataset_key="ds", split="corpus", amp="none", progress=False)
    with caplog.at_level(logging.WARNING):
        embed_records(FakeEncoder(), recs, "text", cache=None, **opts)
    assert "2 text(s) of split 'corpus' are whitespace only (first ids: 'b', 'c')" in caplog.text

    class Zeros(FakeEncoder):
        def encode_text(self, texts, role="document"):
            out = super().encode_text(texts, role)
            out[[i for i, t in enumerate(texts) if t == "zero"]] = 0
            return out

    recs = [Record("a", text="fine"), Record("z", text="zero")]
    with pytest.raises(DataError, match="all-zero vectors for 1 id\\(s\\): 'z'"):
        embed_records(Zeros(), recs, "text", cache=None, **opts)


def test_content_image_key_sees_a_rewrite_that_stat_misses(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"one")
    st = path.stat()
    ref = ImageRef(path=str(path))
    before = image_key(ref, "content"), image_key(ref, "stat")
    path.write_bytes(b"two")  # same size ...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and mtime
    cache_mod._IMAGE_HASHES.clear()  # the memo is keyed by inode too; a new process has none
    assert image_key(ref, "stat") == before[1]
    assert image_key(ref, "content") != before[0]


def test_interruptible_turns_sigterm_into_an_exception() -> None:
    with pytest.raises(Interrupted) as err, interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert err.value.exit_code == 143 and err.value.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _start(tmp: Path, data: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    """``python run.py`` with the slow fake encoder, held at a barrier until ``<go file>``
    exists; returns the process, its cache dir and the go file."""
    folder = tmp / name
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
           "MIXSEARCH_LOG_DIR": str(folder / "outputs"), "PYTHONUNBUFFERED": "1"}
    args = [f"paths.data_dir={data}", f"paths.cache_dir={folder / 'cache'}",
            "embed.progress=false", "device=cpu", *(f"+dataset.{k}={v}" for k, v in SMALL.items()),
            MODEL, *PARTS, "+model.delay=0.15", f"+model.go_file={folder / 'go'}"]
    proc = subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, folder / "cache", folder / "go"


@pytest.fixture(scope="module", autouse=True)
def jobs(data: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two jobs to kill, started with the module: their start-up (imports, mostly) overlaps
    the in-process tests; each waits at its barrier until its test lets it extract."""
    tmp = tmp_path_factory.mktemp("jobs")
    started = {name: _start(tmp, data, name) for name in ("sigterm", "kill9")}
    yield started
    for proc, _, _ in started.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _go_and_wait_for_parts(job: tuple[subprocess.Popen, Path, Path], n: int) -> None:
    proc, cache, go = job
    go.touch()
    deadline = time.monotonic() + 60
    while len(list(cache.rglob("part-*.npy"))) < n:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "extraction did not start"
        time.sleep(0.02)


def test_sigterm_during_extraction_records_interrupted(jobs):
    proc, cache, _ = jobs["sigterm"]
    _go_and_wait_for_parts(jobs["sigterm"], 1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    outputs = cache.parent / "outputs"
    [status_file] = outputs.rglob("status.json")
    status = json.loads(status_file.read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    assert not list(outputs.rglob("metrics.json"))


def test_kill_9_then_resume_gives_the_clean_results(tmp_path, data, jobs):
    proc, cache, _ = jobs["kill9"]
    _go_and_wait_for_parts(jobs["kill9"], 3)
    proc.kill()
    proc.communicate(timeout=60)
    done = sum(len(json.loads(p.with_name(p.name.replace(".npy", ".ids.json")).read_text())["ids"])
               for p in cache.rglob("part-*.npy"))
    assert done >= 8
    resumed = run(config(tmp_path, data, *PARTS, f"paths.cache_dir={cache}"))
    clean = run(config(tmp_path, data, *PARTS, cache="clean"))
    assert resumed["embedding"]["cached_items"] == done  # the finished parts were reused
    assert resumed["metrics"] == clean["metrics"]
    assert resumed["by_target_modality"] == clean["by_target_modality"]
