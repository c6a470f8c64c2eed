"""`make calibration-sets` offline: the paper's training pools from local copies of M-BEIR,
WIT and BEIR NFCorpus (generated fixtures in their real layouts), read back by the pairs loader
and used by calibration=gr_paper; the hub path fails at once naming what to pre-download."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from experiments import calibration_sets as cs
from mixsearch.data.benchmark import DataError
from mixsearch.data.pairs import load_pairs

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_mbeir(root: Path, images: Path, n: int = 6) -> None:
    """M-BEIR's train queries and union pool: per caption dataset, text->image queries (task 0)
    and image->text queries (task 3); OVEN queries (image + question) whose positives are
    entity texts only (task 6, not a document) or entity text + image (task 8)."""
    pool = []
    for ds in ("mscoco", "visualnews"):
        rows = []
        for i in range(n):
            _png(images / f"{ds}/{i}.jpg", (i * 30, 0, 0))
            pool.append({"did": f"{ds}-img-{i}", "txt": None, "img_path": f"{ds}/{i}.jpg", "modality": "image"})
            pool.append({"did": f"{ds}-txt-{i}", "txt": f"{ds} caption {i}", "img_path": None, "modality": "text"})
            rows.append({"qid": f"{ds}-q{i}", "query_txt": f"{ds} query {i}", "query_img_path": None,
                         "query_modality": "text", "pos_cand_list": [f"{ds}-img-{i}"], "task_id": 0})
            rows.append({"qid": f"{ds}-iq{i}", "query_txt": None, "query_img_path": f"{ds}/{i}.jpg",
                         "query_modality": "image", "pos_cand_list": [f"{ds}-txt-{i}"], "task_id": 3})
        _jsonl(root / f"query/train/mbeir_{ds}_train.jsonl", rows)
    rows = []
    for i in range(n):
        _png(images / f"oven/q{i}.jpg", (0, i * 30, 0))
        _png(images / f"oven/e{i}.jpg", (0, 0, i * 30))
        both = i % 2 == 0
        pool.append({"did": f"oven-e{i}", "txt": f"entity {i}", "img_path": f"oven/e{i}.jpg" if both else None,
                     "modality": "image,text" if both else "text"})
        rows.append({"qid": f"oven-q{i}", "query_txt": f"what is this {i}?", "query_img_path": f"oven/q{i}.jpg",
                     "query_modality": "image,text", "pos_cand_list": [f"oven-e{i}"], "task_id": 8 if both else 6})
    _jsonl(root / "query/train/mbeir_oven_train.jsonl", rows)
    pool.append({"did": "unused", "txt": "not a positive", "img_path": None, "modality": "text"})
    _jsonl(root / "cand_pool/global/mbeir_union_train_cand_pool.jsonl", pool)


def make_wit(folder: Path, n: int = 5) -> None:
    """wit_base shards: image struct (bytes) and wit_features as a list of per-language entries."""
    for shard in range(2):
        images, features = [], []
        for i in range(n):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (shard * 100, i * 40, 50)).save(buf, format="PNG")
            images.append({"bytes": buf.getvalue(), "path": None})
            features.append([
                {"language": "de", "page_title": "Seite", "caption_reference_description": "de ref",
                 "context_page_description": "de page"},
                {"language": "en", "page_title": f"Page {shard}.{i}",
                 "caption_reference_description": f"ref {shard}.{i}" if i else None,
                 "context_page_description": f"page text {shard}.{i}"},
            ])
        table = pa.table({"image": images, "wit_features": features})
        path = folder / cs.WIT.files[shard]
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def make_nfcorpus(data_dir: Path) -> None:
    root = data_dir / "beir" / "nfcorpus"
    _jsonl(root / "corpus.jsonl", [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(3)])
    _jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": f"nf query {i}"} for i in range(4)])
    (root / "qrels").mkdir()
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                               + "".join(f"q{i}\td{i % 3}\t1\n" for i in range(4)))


@pytest.fixture()
def sources(tmp_path: Path) -> dict[str, Path]:
    paths = {"mbeir": tmp_path / "mbeir", "images": tmp_path / "mbeir_images", "wit": tmp_path / "wit",
             "data": tmp_path / "data"}
    make_mbeir(paths["mbeir"], paths["images"])
    make_wit(paths["wit"])
    make_nfcorpus(paths["data"])
    return paths


def _build(s: dict[str, Path], **kw) -> dict:
    return cs.build(s["data"] / "calibration", mbeir=s["mbeir"], mbeir_images=s["images"], wit=s["wit"],
                    data_dir=s["data"], **kw)


def test_builds_every_pool_gr_paper_reads(sources):
    manifest = _build(sources, n=4, n_oven_queries=3, seed=1)
    out = sources["data"] / "calibration"
    assert manifest["files"] == {
        "google_wit_train.jsonl": 4, "google_wit_train_docs.jsonl": 4, "mscoco_train.jsonl": 4,
        "mscoco_train_docs.jsonl": 4, "oven_train_docs.jsonl": 3, "oven_train_queries.jsonl": 3,
        "visualnews_train.jsonl": 4, "visualnews_train_docs.jsonl": 4}
    assert json.loads((out / "MANIFEST.json").read_text())["sources"]["mbeir"]["revision"] == cs.MBEIR.revision
    # every file name that gr_paper / gr_paper_oven read exists and loads
    for conf in ("gr_paper.yaml", "gr_paper_oven.yaml"):
        for name in set(__import__("re").findall(r"calibration/(\w+\.jsonl)", (ROOT / "conf/calibration" / conf).read_text())):
            bench = load_pairs(str(out / name))
            assert len(bench.corpus) == manifest["files"][name]
    queries = load_pairs(str(out / "mscoco_train.jsonl"))
    assert all(r.image is None and r.text.startswith("mscoco query") for r in queries.corpus)
    docs = [json.loads(line) for line in (out / "mscoco_train_docs.jsonl").read_text().splitlines()]
    for d in docs:  # a candidate-pool caption document with its image (task 3), never a query text
        assert d["text"].startswith("mscoco caption ")
        i = d["text"].rsplit(" ", 1)[1]
        assert d["image"] == str((sources["images"] / f"mscoco/{i}.jpg").resolve())
    oven_docs = [json.loads(line) for line in (out / "oven_train_docs.jsonl").read_text().splitlines()]
    assert {d["text"] for d in oven_docs} == {"entity 0", "entity 2", "entity 4"}  # entity text + image only
    assert all("/oven/e" in d["image"] for d in oven_docs)
    oven_q = load_pairs(str(out / "oven_train_queries.jsonl"))
    assert all(r.text and r.image for r in oven_q.corpus)
    wit_q = [json.loads(line)["text"] for line in (out / "google_wit_train.jsonl").read_text().splitlines()]
    assert all(t.startswith("Page ") and ", ref " in t for t in wit_q)  # English, with a reference
    wit_docs = load_pairs(str(out / "google_wit_train_docs.jsonl"))
    assert all(r.text.startswith("page text") and Path(r.image.path).is_file() for r in wit_docs.corpus)
    # seeded: the same seed picks the same items
    again = _build(sources, n=4, n_oven_queries=3, seed=1)
    assert again == manifest
    assert (out / "mscoco_train.jsonl").read_text() == "".join(
        json.dumps({"id": r.id, "text": r.text, "image": None}) + "\n" for r in queries.corpus)


def test_missing_sources_are_named(sources):
    (sources["images"] / "mscoco" / "2.jpg").unlink()
    with pytest.raises(DataError, match=r"mbeir_mscoco_train.jsonl:\d+: image mscoco/2.jpg not found"):
        _build(sources, n=100)
    assert not (sources["data"] / "calibration" / "MANIFEST.json").exists()
    (sources["data"] / "beir" / "nfcorpus" / "qrels" / "train.tsv").unlink()
    with pytest.raises(DataError, match="NFCorpus training queries are missing"):
        _build(sources)
    make_nfcorpus(sources["data"] / "other")
    (sources["mbeir"] / cs.MBEIR.files[-1]).unlink()
    with pytest.raises(DataError, match="not a copy of TIGER-Lab/M-BEIR; missing cand_pool/global"):
        _build({**sources, "data": sources["data"] / "other"})


def test_hub_path_fails_fast_offline_naming_the_download(tmp_path):
    data = tmp_path / "data"
    make_nfcorpus(data)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-m", "experiments.calibration_sets", "--data-dir", str(data),
                           "--mbeir-images", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"TIGER-Lab/M-BEIR@{cs.MBEIR.revision[:7]} is not in the hub cache" in proc.stderr
    assert (f"huggingface-cli download --repo-type dataset TIGER-Lab/M-BEIR --revision {cs.MBEIR.revision}"
            in proc.stderr)
    assert "--include query/train/mbeir_oven_train.jsonl" in proc.stderr
    assert not (data / "calibration" / "MANIFEST.json").exists()
