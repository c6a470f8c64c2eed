"""dataset=mbeir on a fixture in M-BEIR's on-disk layout: records, pools, qrels, instructions,
bad rows, the shared pool cache, and `python run.py dataset=mbeir ... calibration=gr`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mixsearch.data.benchmark import DataError
from mixsearch.data.mbeir import MBEIR_REVISION, load_mbeir
from mixsearch.data.mbeir_fixture import TASKS, write_mbeir_fixture
from mixsearch.data.registry import load_benchmark
from mixsearch.pipeline import run

ROOT = Path(__file__).resolve().parents[1]
N_Q, N_D = 6, 4  # the fixture's defaults: queries and distractors per task


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mbeir_fixture(tmp_path_factory.mktemp("mbeir") / "M-BEIR")


@pytest.fixture
def copy(fixture_root: Path, tmp_path: Path) -> Path:
    """A private copy to damage (images are linked, not copied)."""
    dst = tmp_path / "M-BEIR"
    shutil.copytree(fixture_root, dst, ignore=shutil.ignore_patterns("mbeir_images"))
    (dst / "mbeir_images").symlink_to(fixture_root / "mbeir_images")
    return dst


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_global_pool_holds_every_modality_and_all_tasks(fixture_root):
    bench = load_benchmark("mbeir", root=str(fixture_root), task="all", pool="global")
    assert bench.name == "mbeir/all/global"
    assert len(bench.queries) == len(TASKS) * N_Q and len(bench.corpus) == len(TASKS) * (N_Q + N_D)
    assert bench.meta["counts"]["corpus"] == {"total": 40, "text": 20, "image": 10, "image+text": 10}
    assert bench.meta["counts"]["queries"] == {"total": 24, "text": 12, "image": 6, "image+text": 6}
    assert bench.mixed_corpus is bench.corpus  # the pool as shipped is the released mix
    # five-column qrels: "9:1 0 9:1 1 0" -> query 9:1 judges candidate 9:1 relevant
    assert bench.qrels["9:1"] == {"9:1": 1} and len(bench.qrels) == 24
    pool = {r["did"]: r for r in _rows(fixture_root / "cand_pool/global/mbeir_union_test_cand_pool.jsonl")}
    for record in bench.corpus:  # each record holds exactly what its modality names
        row = pool[record.id]
        assert record.modality == {"image,text": "image+text"}.get(row["modality"], row["modality"])
        if record.image is not None:
            assert record.image.path == str(fixture_root / row["img_path"])
    assert bench.meta["headline"] == "hit@5" and bench.meta["measures"] == ["hit"]
    assert bench.meta["revision"] == MBEIR_REVISION


def test_local_pools_with_and_without_the_split_in_the_name(fixture_root):
    coco = load_mbeir(str(fixture_root), "mscoco_task0", pool="local")  # ..._test_cand_pool.jsonl
    assert {r.modality for r in coco.corpus} == {"image"} and len(coco.corpus) == N_Q + N_D
    webqa = load_mbeir(str(fixture_root), "webqa_task2", pool="local")  # ..._cand_pool.jsonl
    assert {r.modality for r in webqa.corpus} == {"image+text"}
    assert coco.meta["files"]["corpus"].endswith("mbeir_mscoco_task0_test_cand_pool.jsonl")
    with pytest.raises(DataError, match="pool=local needs one task"):
        load_mbeir(str(fixture_root), "all", pool="local")
    with pytest.raises(DataError, match=r"task 'nights_task4'.*mscoco_task0"):
        load_mbeir(str(fixture_root), "nights_task4")


def test_tasks_share_the_pool_cache_key(fixture_root):
    a = load_mbeir(str(fixture_root), "mscoco_task0")
    b = load_mbeir(str(fixture_root), "oven_task6")
    assert a.name != b.name and a.cache_key() == b.cache_key() == f"mbeir/global/test@{MBEIR_REVISION}"


def test_instructions_are_prepended_from_the_tsv(fixture_root):
    plain = load_mbeir(str(fixture_root), "mscoco_task3")
    told = load_mbeir(str(fixture_root), "mscoco_task3", instructions="prepend")
    # image -> text queries of dataset 9: the TSV row (image, text, MSCOCO, 9), prompt_1
    assert all(r.modality == "image" for r in plain.queries)
    assert {r.text for r in told.queries} == {"Retrieve a caption that matches this query."}
    assert all(r.modality == "image+text" for r in told.queries)
    oven = load_mbeir(str(fixture_root), "oven_task6", instructions="prepend").queries[0]
    question = _rows(fixture_root / "query/test/mbeir_oven_task6_test.jsonl")[0]["query_txt"]
    assert oven.text == f"Retrieve a caption that matches this query. {question}"


def test_one_pinned_revision():
    from experiments.calibration_sets import MBEIR

    conf = OmegaConf.load(ROOT / "conf" / "dataset" / "mbeir.yaml")
    assert conf.revision == MBEIR.revision == MBEIR_REVISION


def test_no_root_fails_at_once_with_the_download_command():
    with pytest.raises(DataError) as e:
        load_mbeir(None)
    msg = str(e.value)
    assert f"hf download TIGER-Lab/M-BEIR --repo-type dataset --revision {MBEIR_REVISION}" in msg
    assert "mbeir_images.tar.gz.part-*" in msg and "dataset.root=DIR" in msg


def test_bad_rows_name_file_line_and_id(copy):
    pool = copy / "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
    rows = _rows(pool)
    _write(pool, [*rows[:2], {**rows[2], "modality": "video"}, *rows[3:]])
    with pytest.raises(DataError, match=rf"{pool}:3: id '{rows[2]['did']}': unknown modality 'video'"):
        load_mbeir(str(copy))
    _write(pool, [*rows, rows[5]])
    with pytest.raises(DataError, match=rf"{pool}:{len(rows) + 1}: duplicate id '{rows[5]['did']}'"):
        load_mbeir(str(copy))
    text_row = next(i for i, r in enumerate(rows) if r["modality"] == "text")
    _write(pool, [*rows[:text_row], {**rows[text_row], "txt": ""}, *rows[text_row + 1:]])
    with pytest.raises(DataError, match=rf"{pool}:{text_row + 1}: .*modality 'text' but txt is empty"):
        load_mbeir(str(copy))


def test_an_image_row_keeps_only_its_image(copy):
    pool = copy / "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
    rows = _rows(pool)
    i = next(i for i, r in enumerate(rows) if r["modality"] == "image")
    rows[i]["txt"] = "a caption the image-only candidate does not show"
    _write(pool, rows)
    record = next(r for r in load_mbeir(str(copy)).corpus if r.id == rows[i]["did"])
    assert record.modality == "image" and record.text is None


def test_qrels_errors_name_the_line(copy):
    qrels = copy / "qrels/test/mbeir_webqa_task2_test_qrels.txt"
    lines = qrels.read_text().splitlines(keepends=True)
    qrels.write_text("".join([*lines[:1], "2:1 0 2:999 1 2\n", *lines[1:]]))
    with pytest.raises(DataError, match=rf"{qrels}:2: .*candidate '2:999', which is not in the candidate pool"):
        load_mbeir(str(copy), "webqa_task2")
    qrels.write_text("".join([*lines, "2:77 0 2:1 1 2\n"]))
    with pytest.raises(DataError, match=rf"{qrels}:{len(lines) + 1}: qrels name query '2:77'"):
        load_mbeir(str(copy), "webqa_task2")
    qrels.write_text("2:1 2:1 1\n")
    with pytest.raises(DataError, match=rf"{qrels}:1: expected 5 columns"):
        load_mbeir(str(copy), "webqa_task2")


def test_missing_image_errors_or_is_skipped(copy):
    queries = copy / "query/test/mbeir_mscoco_task3_test.jsonl"
    rows = _rows(queries)
    rows[1]["query_img_path"] = "mbeir_images/mscoco_images/gone.jpg"
    _write(queries, rows)
    with pytest.raises(DataError, match=rf"{queries}:2: id '{rows[1]['qid']}': image file not found"):
        load_mbeir(str(copy), "mscoco_task3")
    bench = load_mbeir(str(copy), "mscoco_task3", on_missing="skip")
    assert rows[1]["qid"] not in {r.id for r in bench.queries} | set(bench.qrels)
    assert len(bench.queries) == N_Q - 1 and bench.meta["dropped_records"] == [rows[1]["qid"]]


def _config(tmp: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"paths.data_dir={tmp}", f"paths.cache_dir={tmp / 'cache'}", "embed.progress=false",
            f"paths.output_dir={tmp / 'out' / str(time.monotonic_ns())}", "device=cpu",
            "dataset=mbeir", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def test_a_second_task_reads_the_pool_from_the_cache(fixture_root, tmp_path):
    first = run(_config(tmp_path, f"dataset.root={fixture_root}", "dataset.task=mscoco_task0"))
    second = run(_config(tmp_path, f"dataset.root={fixture_root}", "dataset.task=oven_task6"))
    assert first["benchmark"]["n_queries"] == second["benchmark"]["n_queries"] == N_Q
    corpus = [e for e in second["embedding"]["entries"] if e["entry"].startswith("corpus/")]
    assert corpus and all(e["encoded_items"] == 0 and e["cached_items"] > 0 for e in corpus)
    assert second["metrics"]["hit@5"] >= second["metrics"]["recall@5"] - 1e-12


@pytest.mark.slow
def test_run_py_on_the_global_pool_with_gr(fixture_root, tmp_path):
    """The acceptance command: metrics.json has M-BEIR's Recall@5 (hit@5), NDCG@10 and the
    fixture's query count; run.trec ranks text, image and image+text candidates."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "MIXSEARCH_CACHE_DIR": str(tmp_path / "cache"), "MIXSEARCH_DATA_DIR": str(tmp_path)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "run.py", "dataset=mbeir", f"dataset.root={fixture_root}",
         "dataset.pool=global", "calibration=gr", f"paths.output_dir={out}", "embed.progress=false"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Recall@5 (hit)=" in proc.stdout
    result = json.loads((out / "metrics.json").read_text())
    metrics = result["metrics"]
    assert {"hit@5", "hit@10", "ndcg@10", "recall@5"} <= set(metrics)
    assert result["benchmark"]["n_queries"] == len(TASKS) * N_Q
    assert metrics["hit@5"] > 0.3  # the toy CLIP is far above chance (5 of 40 candidates)
    pool = {r["did"]: r["modality"] for r in
            _rows(fixture_root / "cand_pool/global/mbeir_union_test_cand_pool.jsonl")}
    ranked = {line.split()[2] for line in (out / "run.trec").read_text().splitlines()}
    assert {pool[d] for d in ranked} == {"text", "image", "image,text"}

    # task=all: UniIR's per-task figures, counted here from run.trec and the qrels files
    top5: dict[str, list[str]] = {}
    for line in (out / "run.trec").read_text().splitlines():
        qid, _, did, rank, *_ = line.split()
        if int(rank) <= 5:
            top5.setdefault(qid, []).append(did)
    by_task, stems = result["by_task"], [t[0] for t in TASKS]
    assert set(by_task) == set(stems)
    hand = {}
    for task in stems:
        relevant: dict[str, set[str]] = {}
        for line in (fixture_root / "qrels" / "test" / f"mbeir_{task}_test_qrels.txt").read_text().splitlines():
            qid, _, did, grade, _ = line.split()
            if int(grade) > 0:
                relevant.setdefault(qid, set()).add(did)
        hits = [bool(relevant[q] & set(top5.get(q, []))) for q in relevant]
        hand[task] = sum(hits) / len(hits)
        assert by_task[task]["n_queries"] == N_Q == len(hits)
        assert by_task[task]["hit@5"] == pytest.approx(hand[task], abs=1e-12), task
    assert result["task_macro"]["hit@5"] == pytest.approx(sum(hand.values()) / len(hand), abs=1e-12)
    assert result["task_headline_macro"]["measures"] == {t: "hit@5" for t in stems}
    assert "tasks: mean of each task's Recall@5 (hit) (UniIR's average)" in proc.stdout
    per_query = (out / "per_query.csv").read_text().splitlines()
    assert per_query[0].split(",")[-1] == "task"


def test_summary_heads_hit_as_mbeir_recall(tmp_path):
    from mixsearch.callbacks import write_summary

    for job, hit in (("0", 0.25), ("1", 0.75)):
        folder = tmp_path / "sweep" / job
        folder.mkdir(parents=True)
        (folder / "status.json").write_text(json.dumps({"status": "ok"}))
        metrics = {"ndcg@10": 0.5, "recall@5": 0.1, "hit@5": hit, "hit@10": 1.0}
        (folder / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    frame = write_summary([tmp_path / "sweep"], tmp_path)
    assert list(frame["hit@5"]) == [0.25, 0.75]  # the CSV keeps the unambiguous name
    md = (tmp_path / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| job"))
    assert "| Recall@5 (hit) | Recall@10 (hit) |" in header and "hit@5" not in header
    assert "| 0.2500 | 1.0000 |" in md and "not the fraction of relevant documents" in md
