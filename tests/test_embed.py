"""Extraction and embedding cache: hits, keys, atomicity, resume, shards, locks, skips."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_encoder import FakeEncoder, SimulatedKill, counted
from PIL import Image

from mixsearch.data.benchmark import Benchmark, DataError, ImageRef, Record
from mixsearch.embed.cache import EmbeddingCache
from mixsearch.embed.embeddings import Embeddings
from mixsearch.embed.extract import embed_benchmark, embed_records

HERE = Path(__file__).resolve().parent


def make_images(folder: Path, n: int, fmt: str = "png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (20 + i % 5, 24, 3), dtype=np.uint8)
        path = folder / f"img{i:03d}.{fmt}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def image_records(paths: list[Path]) -> list[Record]:
    return [Record(id=p.stem, image=ImageRef(path=str(p))) for p in paths]


TEXTS = [f"a photo of thing number {i} on a table" for i in range(10)]


def text_records(texts: list[str] = TEXTS) -> list[Record]:
    return [Record(id=f"t{i}", text=t) for i, t in enumerate(texts)]


def run(enc, records, field, cache, **kw) -> tuple[Embeddings | None, dict]:
    stats: dict = {}
    opts = dict(
        dataset_key="ds@r1", split="corpus", batch_size=2, part_size=4, amp="none", progress=False
    )
    opts.update(kw)
    return embed_records(enc, records, field, cache=cache, stats=stats, **opts), stats


def reference(records: list[Record], field: str) -> np.ndarray:
    """Independent computation: the fake encoder over all items at once, no cache."""
    enc = FakeEncoder()
    if field == "text":
        return enc.encode_text([r.text for r in records]).numpy()
    tf = enc.image_transform()
    import torch

    return enc.encode_image(torch.stack([tf(r.image.load()) for r in records])).numpy()


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_miss_then_hit_reads_only(tmp_path):
    recs = image_records(make_images(tmp_path / "img", 10))
    cache = EmbeddingCache(tmp_path / "cache")
    enc = FakeEncoder()
    emb, st = run(enc, recs, "image", cache)
    assert st["encoded_items"] == 10 and st["cached_items"] == 0 and st["complete"]
    assert emb.ids == [r.id for r in recs]
    np.testing.assert_allclose(emb.vectors, reference(recs, "image"), rtol=1e-5, atol=1e-5)
    entry = Path(st["path"])
    assert sorted(p.name for p in entry.glob("part-*.npy")) == [
        "part-00000.npy",
        "part-00001.npy",
        "part-00002.npy",
    ]
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["n"] == 10 and manifest["dim"] == 8 and manifest["part_size"] == 4
    assert manifest["encoder"] == enc.fingerprint() and manifest["skipped"] == []
    assert manifest["dataset"] == "ds@r1" and "numpy" in manifest["versions"]

    before = snapshot(tmp_path / "cache")
    enc2 = FakeEncoder()
    emb2, st2 = run(enc2, recs, "image", cache)
    assert enc2.batches == 0 and st2["encoded_items"] == 0 and st2["cached_items"] == 10
    assert st2["key"] == st["key"]
    np.testing.assert_array_equal(emb2.vectors, emb.vectors)
    assert snapshot(tmp_path / "cache") == before
    # A complete entry keeps its layout: another part_size is still a pure hit.
    emb3, st3 = run(FakeEncoder(), recs, "image", cache, part_size=3)
    assert st3["encoded_items"] == 0 and st3["path"] == st["path"]
    np.testing.assert_array_equal(emb3.vectors, emb.vectors)
    assert snapshot(tmp_path / "cache") == before


def test_text_field_keeps_order_and_excludes_records_without_text(tmp_path):
    recs = text_records()
    mixed = recs[:3] + [Record(id="img-only", image=ImageRef(path="/nonexistent.png"))] + recs[3:]
    emb, st = run(FakeEncoder(), mixed, "text", EmbeddingCache(tmp_path))
    assert emb.ids == [r.id for r in recs] and st["items"] == 10
    np.testing.assert_allclose(emb.vectors, reference(recs, "text"), rtol=1e-5, atol=1e-4)
    assert emb.vectors.dtype == np.float32
    none, st = run(FakeEncoder(), mixed[3:4], "text", EmbeddingCache(tmp_path))
    assert none.ids == [] and none.vectors.shape == (0, 8) and st["items"] == 0


def _key(tmp_path, recs, field, enc=None, **kw) -> str:
    _, st = run(enc or FakeEncoder(), recs, field, EmbeddingCache(tmp_path / "c"), **kw)
    assert st["encoded_items"] == len(recs)  # a new key always recomputes
    return st["key"]


def test_key_changes_with_every_input(tmp_path):
    paths = make_images(tmp_path / "img", 4)
    texts = text_records()
    keys = {
        "base_text": _key(tmp_path, texts, "text"),
        "encoder": _key(tmp_path, texts, "text", enc=FakeEncoder(seed=1)),
        "one_text": _key(tmp_path, text_records([*TEXTS[:-1], "changed"]), "text"),
        "order": _key(tmp_path, texts[::-1], "text"),
        "dtype": _key(tmp_path, texts, "text", store_dtype="float16"),
        "autocast": _key(tmp_path, texts, "text", amp="bf16"),
        "split": _key(tmp_path, texts, "text", split="queries"),
        "base_image": _key(tmp_path, image_records(paths), "image"),
    }
    Image.new("RGB", (30, 30), (200, 10, 10)).save(paths[2])  # new bytes, size and mtime
    keys["image_file"] = _key(tmp_path, image_records(paths), "image")
    assert len(set(keys.values())) == len(keys)


def test_store_float16_and_cpu_bf16_autocast(tmp_path):
    recs = text_records()
    ref = reference(recs, "text")
    emb16, st = run(FakeEncoder(), recs, "text", EmbeddingCache(tmp_path))
    assert emb16.vectors.dtype == np.float32
    emb16, st = run(FakeEncoder(), recs, "text", EmbeddingCache(tmp_path), store_dtype="float16")
    assert np.load(Path(st["path"]) / "part-00000.npy").dtype == np.float16
    assert emb16.vectors.dtype == np.float32
    np.testing.assert_array_equal(emb16.vectors, ref.astype(np.float16).astype(np.float32))
    bf, _ = run(FakeEncoder(), recs, "text", None, amp="bf16")
    assert not np.array_equal(bf.vectors, ref)  # really ran in bf16
    np.testing.assert_allclose(bf.vectors, ref, rtol=0.05, atol=0.5)
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA encoder"):
        run(FakeEncoder(), recs, "text", None, amp="fp16")
    with pytest.raises(ValueError, match="store_dtype='bfloat16': expected one of"):
        run(FakeEncoder(), recs, "text", None, store_dtype="bfloat16")
    with pytest.raises(ValueError, match="num_shards=2 needs a cache"):
        run(FakeEncoder(), recs, "text", None, num_shards=2)


def job(spec: dict, **popen) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(HERE / "fake_encoder.py"), json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def test_crash_mid_write_leaves_only_temp_files_and_rerun_computes_missing_part(tmp_path):
    paths = make_images(tmp_path / "img", 10)
    spec = {"cache": str(tmp_path / "cache"), "images": [str(p) for p in paths], "part_size": 4}
    proc = job({**spec, "crash_on": "part-00001.npy"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    entry = next((tmp_path / "cache").rglob("part-00000.npy")).parent
    names = sorted(p.name for p in entry.iterdir() if not p.name.endswith(".lock"))
    temps = [n for n in names if n.endswith(".tmp")]
    assert [n for n in names if not n.endswith(".tmp")] == [
        "layout.json",
        "part-00000.ids.json",
        "part-00000.npy",
        "part-00001.ids.json",
    ]
    assert len(temps) == 1 and temps[0].startswith("part-00001.npy.")

    enc = FakeEncoder()
    emb, st = run(
        enc,
        image_records(paths),
        "image",
        EmbeddingCache(tmp_path / "cache"),
        dataset_key="fake-ds",
    )
    assert st["path"] == str(entry)
    assert st["encoded_items"] == 6 and st["cached_items"] == 4  # parts 1 and 2 only
    assert not list(entry.glob("*.tmp")) and (entry / "manifest.json").exists()
    np.testing.assert_allclose(
        emb.vectors, reference(image_records(paths), "image"), rtol=1e-5, atol=1e-5
    )


def test_resume_after_kill_encodes_only_remaining_parts(tmp_path):
    recs = text_records()  # 10 items, parts of 4 -> 3 parts, 2 batches each (last: 1)
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(SimulatedKill):
        run(FakeEncoder(fail_after_batches=4), recs, "text", cache)
    entry = next(tmp_path.rglob("part-00000.npy")).parent
    assert sorted(p.name for p in entry.glob("*.npy")) == ["part-00000.npy", "part-00001.npy"]
    assert not (entry / "manifest.json").exists()
    enc = FakeEncoder()
    emb, st = run(enc, recs, "text", cache)
    assert st["encoded_items"] == 2 and enc.batches == 1 and st["cached_items"] == 8
    full, _ = run(FakeEncoder(), recs, "text", None)
    np.testing.assert_array_equal(emb.vectors, full.vectors)


def test_sharded_extraction_equals_unsharded(tmp_path):
    recs = image_records(make_images(tmp_path / "img", 11))
    cache = EmbeddingCache(tmp_path / "shared")
    out0, st0 = run(FakeEncoder(), recs, "image", cache, shard=0, num_shards=2)
    assert out0 is None and st0["complete"] is False
    assert st0["encoded_items"] == 4 + 3  # parts 0 and 2
    assert not (Path(st0["path"]) / "manifest.json").exists()
    out1, st1 = run(FakeEncoder(), recs, "image", cache, shard=1, num_shards=2)
    assert st1["encoded_items"] == 4 and st1["complete"]
    assert (Path(st1["path"]) / "manifest.json").exists()
    whole, _ = run(FakeEncoder(), recs, "image", EmbeddingCache(tmp_path / "alone"))
    assert out1.ids == whole.ids
    np.testing.assert_array_equal(out1.vectors, whole.vectors)
    merged, st = run(FakeEncoder(), recs, "image", cache)
    assert st["encoded_items"] == 0
    np.testing.assert_array_equal(merged.vectors, whole.vectors)
    with pytest.raises(ValueError, match="shard=2, num_shards=2"):
        run(FakeEncoder(), recs, "image", cache, shard=2, num_shards=2)


def test_two_processes_compute_each_part_once(tmp_path):
    paths = make_images(tmp_path / "img", 12)
    go, counter = tmp_path / "go", tmp_path / "counter.txt"
    spec = {
        "cache": str(tmp_path / "cache"),
        "images": [str(p) for p in paths],
        "part_size": 3,
        "delay": 0.15,
        "counter": str(counter),
        "go_file": str(go),
    }
    procs = [job(spec), job(spec)]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert counted(counter) == 12  # not 24
    assert sum(r["encoded"] for r in results) == 12
    assert results[0]["ids"] == results[1]["ids"] == [p.stem for p in paths]
    np.testing.assert_array_equal(results[0]["vectors"], results[1]["vectors"])


def test_corrupt_part_is_recomputed_with_a_warning(tmp_path, caplog):
    recs = text_records()
    cache = EmbeddingCache(tmp_path)
    good, st = run(FakeEncoder(), recs, "text", cache)
    part = Path(st["path"]) / "part-00001.npy"
    part.write_bytes(part.read_bytes()[:-10])  # truncated
    with caplog.at_level(logging.WARNING, logger="mixsearch.embed.cache"):
        again, st2 = run(FakeEncoder(), recs, "text", cache)
    assert f"corrupt part {part}" in caplog.text
    assert st2["encoded_items"] == 4
    np.testing.assert_array_equal(again.vectors, good.vectors)
    # Ids that do not belong to the part are caught as well.
    ids_file = Path(st["path"]) / "part-00002.ids.json"
    ids_file.write_text(json.dumps({"ids": ["t9", "t8"], "skipped": []}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mixsearch.embed.cache"):
        _, st3 = run(FakeEncoder(), recs, "text", cache)
    assert "part-00002.npy (its ids do not match" in caplog.text and st3["encoded_items"] == 2


def test_on_missing_error_and_skip(tmp_path, caplog):
    paths = make_images(tmp_path / "img", 6)
    paths[3].write_bytes(b"not an image")
    recs = image_records(paths)
    with pytest.raises(
        DataError, match=f"record 'img003': cannot decode image {re.escape(str(paths[3]))}"
    ):
        run(FakeEncoder(), recs, "image", EmbeddingCache(tmp_path / "c"))
    gone = [*recs, Record(id="gone", image=ImageRef(path=str(tmp_path / "gone.png")))]
    with pytest.raises(
        DataError, match=f"record 'gone': image file not found: {re.escape(str(tmp_path))}"
    ):
        run(FakeEncoder(), gone, "image", EmbeddingCache(tmp_path / "c"))

    with caplog.at_level(logging.WARNING, logger="mixsearch.embed.extract"):
        emb, st = run(
            FakeEncoder(), gone, "image", EmbeddingCache(tmp_path / "c"), on_missing="skip"
        )
    assert st["skipped"] == ["img003", "gone"] and st["encoded_items"] == 5
    assert "skipping record 'img003'" in caplog.text and "skipping record 'gone'" in caplog.text
    assert emb.ids == ["img000", "img001", "img002", "img004", "img005"]
    np.testing.assert_allclose(
        emb.vectors, reference([recs[i] for i in (0, 1, 2, 4, 5)], "image"), rtol=1e-5, atol=1e-5
    )
    manifest = json.loads((Path(st["path"]) / "manifest.json").read_text())
    assert manifest["skipped"] == ["img003", "gone"] and manifest["n"] == 5
    # A cached entry with skipped items is reused with skip, and refused (not hidden) with error.
    _, st2 = run(FakeEncoder(), gone, "image", EmbeddingCache(tmp_path / "c"), on_missing="skip")
    assert st2["encoded_items"] == 0 and st2["skipped"] == ["img003", "gone"]
    _, st3 = run(FakeEncoder(), recs, "image", EmbeddingCache(tmp_path / "c"), on_missing="skip")
    assert st3["encoded_items"] == 5 and st3["skipped"] == ["img003"]
    no_cache, st4 = run(FakeEncoder(), recs, "image", None, on_missing="skip")
    assert st4["encoded_items"] == 5 and st4["skipped"] == ["img003"] and len(no_cache) == 5
    with pytest.raises(
        DataError,
        match=r"1 image item\(s\) of split 'corpus' were skipped "
        r"as unreadable \(first: 'img003', cache entry ",
    ):
        run(FakeEncoder(), recs, "image", EmbeddingCache(tmp_path / "c"))


def test_dataloader_workers_give_same_vectors(tmp_path):
    recs = image_records(make_images(tmp_path / "img", 9, fmt="jpg"))
    a, _ = run(FakeEncoder(), recs, "image", None, num_workers=0, batch_size=4)
    b, _ = run(FakeEncoder(), recs, "image", None, num_workers=2, batch_size=4)
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.vectors, b.vectors)


def _bench(tmp_path) -> Benchmark:
    paths = make_images(tmp_path / "img", 4)
    corpus = [
        Record(id="d0", text="a red car"),
        Record(id="d1", image=ImageRef(path=str(paths[0]))),
        Record(id="d2", text="a dog", image=ImageRef(path=str(paths[1]))),
    ]
    queries = [Record(id="q0", text="car"), Record(id="q1", text="dog")]
    calib = {
        "queries": [Record(id="cq", text="cat")],
        "corpus": [Record(id="cd", image=ImageRef(path=str(paths[2])))],
    }
    return Benchmark(
        "toy/Mini", queries, corpus, {"q0": {"d0": 1}}, calibration=calib, meta={"revision": "abc"}
    )


def test_embed_benchmark_entries_and_dataset_key(tmp_path):
    bench = _bench(tmp_path)
    splits = ("queries", "corpus", "calibration/queries", "calibration/corpus")
    embs, stats = embed_benchmark(
        FakeEncoder(),
        bench,
        splits=splits,
        cache=EmbeddingCache(tmp_path / "c"),
        amp="none",
        progress=False,
    )
    assert sorted(embs) == [
        "calibration/corpus/image",
        "calibration/queries/text",
        "corpus/image",
        "corpus/text",
        "queries/text",
    ]
    assert embs["corpus/text"].ids == ["d0", "d2"] and embs["corpus/image"].ids == ["d1", "d2"]
    assert [s["entry"] for s in stats] == [
        "queries/text",
        "corpus/text",
        "corpus/image",
        "calibration/queries/text",
        "calibration/corpus/image",
    ]
    manifest = json.loads((Path(stats[0]["path"]) / "manifest.json").read_text())
    assert manifest["dataset"] == "toy/Mini@abc" and "toy_Mini_abc" in stats[0]["path"]
    _, again = embed_benchmark(
        FakeEncoder(),
        bench,
        splits=splits,
        cache=EmbeddingCache(tmp_path / "c"),
        amp="none",
        progress=False,
    )
    assert all(s["encoded_items"] == 0 for s in again)


class Precomputed:
    def __init__(self, table: dict[tuple[str, str], Embeddings]):
        self.table = table

    def get(self, split: str, field: str) -> Embeddings:
        return self.table[(split, field)]


def test_embed_benchmark_with_precomputed_source(tmp_path):
    bench = _bench(tmp_path)

    def rows(ids: list[str]) -> Embeddings:
        return Embeddings(ids, np.arange(len(ids) * 2, dtype=np.float64).reshape(-1, 2))

    src = Precomputed(
        {
            ("queries", "text"): rows(["q1", "q0", "extra"]),
            ("corpus", "text"): rows(["d2", "d0"]),
            ("corpus", "image"): rows(["d1"]),
        }
    )
    with pytest.raises(DataError, match=r"corpus/image have no row for id 'd2' \(1 of 2 missing\)"):
        embed_benchmark(src, bench, cache=None)
    src.table[("corpus", "image")] = rows(["d2", "d1"])
    embs, stats = embed_benchmark(src, bench, cache=None)
    # rows keep the source's order (corpus.order=embeddings follows it), minus unused ids
    assert embs["queries/text"].ids == ["q1", "q0"]
    np.testing.assert_array_equal(embs["queries/text"].vectors, [[0.0, 1.0], [2.0, 3.0]])
    assert embs["corpus/image"].vectors.dtype == np.float32
    assert all(s["encoded_items"] == 0 for s in stats)
