"""Trackers: W&B offline round trip (read back from the offline run file), CSV ledger, registry."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from mixsearch.tracking import CsvTracker, WandbTracker, flatten, log_sweep_to_wandb, start_tracker

RESULT = {
    "metrics": {"ndcg@10": 0.6180339887, "ndcg@100": 0.7, "recall@1": 0.5, "mrr@10": 0.55},
    "by_target_modality": {"image": {"n_queries": 3, "ndcg@10": 0.25},
                           "text": {"n_queries": 5, "ndcg@10": 0.875}},
    "topk_modality_share": {"k": 10, "topk": {"text": 0.7, "image": 0.3},
                            "corpus": {"text": 0.5, "image": 0.5}},
    "gap": {"centroid_distance_before": 0.82, "centroid_distance_after": 0.03},
    "calibration": {"method": "gr", "source": "crossfit", "n_samples": 16},
    "seconds": 1.5,
    # M-BEIR task=all (mixsearch.diagnostics.task_breakdown)
    "by_task": {"mscoco_task0": {"n_queries": 6, "hit@5": 0.5}, "oven_task6": {"n_queries": 6, "hit@5": 1.0}},
    "task_macro": {"hit@5": 0.75},
    "task_headline_macro": {"value": 0.75, "measures": {"mscoco_task0": "hit@5", "oven_task6": "hit@5"}},
}
PER_QUERY = pd.DataFrame({"qid": ["0", "1"], "first_rel_rank": [1, 3], "ndcg@10": [1.0, 0.5],
                          "target_modality": ["text", "image"]})


def read_offline_run(wandb_dir: Path, wait_s: float = 15.0) -> dict:
    """Decode the one offline run under ``wandb_dir`` from its ``run-*.wandb`` record log
    (LevelDB-log framing: 7-byte file header, 32 KiB blocks, 7-byte chunk headers) with
    wandb's protobuf schema, independently of wandb's own sync code. The wandb-core process
    may append the final records just after ``finish()`` returns: wait for the exit record."""
    (run_dir,) = list(wandb_dir.glob("wandb/offline-run-*"))
    return _read_run_dir(run_dir, wait_s)


def read_offline_runs(wandb_dir: Path, wait_s: float = 15.0) -> list[dict]:
    """Every offline run under ``wandb_dir`` (a sweep's runs share its folder), in start order."""
    return [_read_run_dir(d, wait_s) for d in sorted(wandb_dir.glob("wandb/offline-run-*"))]


def _read_run_dir(run_dir: Path, wait_s: float) -> dict:
    (path,) = list(run_dir.glob("run-*.wandb"))
    deadline = time.monotonic() + wait_s
    while True:
        out = _decode(path.read_bytes(), run_dir)
        if "exit_code" in out or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def _decode(data: bytes, run_dir: Path) -> dict:
    from wandb.proto import wandb_internal_pb2 as pb

    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too short for a header: padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            break
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST chunk ends a record
            rec = pb.Record()
            rec.ParseFromString(pending)
            records.append(rec)
    out: dict = {"config": {}, "summary": {}, "history": {}, "rows": [], "artifacts": {},
                 "files": run_dir / "files"}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "config":  # run.config.update() after init
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind in ("summary", "history"):
            items = rec.summary.update if kind == "summary" else rec.history.item
            row = {}
            for i in items:
                key = i.key or "/".join(i.nested_key)
                row[key] = out[kind][key] = json.loads(i.value_json)
            if kind == "history":
                out["rows"].append(row)
        elif kind == "artifact":
            out["artifacts"][rec.artifact.name] = {
                "type": rec.artifact.type, "files": sorted(e.path for e in rec.artifact.manifest.contents)}
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out


def _job_dir(tmp_path: Path) -> Path:
    """A job dir inside a sweep dir, as Hydra lays them out: the multirun swept calibration
    (command line) and fusion.alpha (an experiment's sweeper params); dataset is fixed."""
    sweep = tmp_path / "2026-01-01_00-00-00" / "setting2"
    job = sweep / "3"
    (job / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "overrides": {"task": ["calibration=none,gr", "dataset=toy", "logger=wandb"]},
        "sweeper": {"params": {"fusion.alpha": "0.0,0.25", "dataset": "mixbench_oven,mixbench_mscoco"}}}}))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["calibration=gr", "dataset=toy", "logger=wandb", "fusion.alpha=0.25"]))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {
        "experiment": "paper/setting2", "model": "clip_b16", "dataset": "toy", "calibration": "gr",
        "local": None, "hydra": "default", "hydra/launcher": "basic"}}}}))
    return job


def test_wandb_offline_round_trip(tmp_path, monkeypatch):
    for var in ("WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    job = _job_dir(tmp_path)
    (job / "means").mkdir()
    np.save(job / "means" / "doc_text.npy", np.ones(4, dtype=np.float32))
    (job / "calibration_state").mkdir()
    np.save(job / "calibration_state" / "scale.npy", np.ones(4, dtype=np.float32))
    (job / "metrics.json").write_text(json.dumps(RESULT))
    (job / "per_query.csv").write_text(PER_QUERY.to_csv(index=False))
    (job / "run.trec").write_text("0 Q0 d1 1 0.9 mixsearch\n")
    cfg = {"logger": {"name": "wandb", "mode": "offline", "project": "mixsearch-test",
                      "tags": ["paper", "setting2"], "dir": str(tmp_path / "wb")},
           "model": {"_target_": "mixsearch.encoders.hf.HFEncoder", "model_id_or_path": "openai/clip-vit-base-patch16"},
           "dataset": {"_target_": "mixsearch.data.toy.load_toy"},
           "calibration": {"method": "gr"}, "fusion": {"alpha": 0.25}}
    tracker = start_tracker(cfg, job)
    assert isinstance(tracker, WandbTracker)
    tracker.log_result(RESULT, PER_QUERY)
    png = tmp_path / "fig.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(png)
    tracker.log_figure("gap", png)
    tracker.finish(ok=True)

    run = read_offline_run(tmp_path / "wb")
    assert run["exit_code"] == 0
    assert run["run"].project == "mixsearch-test"
    assert run["config"]["calibration"] == {"method": "gr"} and run["config"]["fusion"] == {"alpha": 0.25}
    # Hydra's choices as a nested dict (hydra's own groups and unset ones left out), a readable name
    assert run["config"]["choices"] == {"experiment": "paper/setting2", "model": "clip_b16",
                                        "dataset": "toy", "calibration": "gr"}
    assert run["config"]["model_name"] == "CLIP-B/16"
    assert run["config"]["model_calibration"] == "CLIP-B/16 · gr"
    # flat keys the dashboard's views filter on (RESULT records no fusion: not a paper fusion)
    assert (run["config"]["experiment"], run["config"]["bench"]) == ("paper/setting2", "toy")
    assert run["config"]["paper_fusion"] is False
    assert run["config"]["overrides"] == ["calibration=gr", "dataset=toy", "logger=wandb", "fusion.alpha=0.25"]
    assert run["run"].run_group == "2026-01-01_00-00-00/setting2"  # unique per sweep dir
    # swept keys only; dataset is fixed on the command line although the params sweep it
    assert run["run"].display_name == "calibration=gr,fusion.alpha=0.25"
    assert list(run["run"].tags) == ["paper", "setting2", "bench:toy", "experiment:paper/setting2"]
    summary = run["summary"]
    for key, value in RESULT["metrics"].items():
        assert summary[key] == value
    assert summary["gap/centroid_distance_after"] == 0.03
    assert summary["by_target_modality/image/ndcg@10"] == 0.25
    assert summary["by_task/mscoco_task0/hit@5"] == 0.5 and summary["task_macro/hit@5"] == 0.75
    assert summary["task_headline_macro/value"] == 0.75
    assert summary["status"] == "ok"
    table_path = run["files"] / summary["by_target_modality/path"]
    table = json.loads(table_path.read_text())
    rows = {r[0]: dict(zip(table["columns"], r, strict=True)) for r in table["data"]}
    assert rows["text"]["ndcg@10"] == 0.875 and rows["image"]["n_queries"] == 3
    image_path = run["files"] / summary["figures/gap/path"]
    assert Image.open(image_path).size == (8, 8)
    (results,) = [a for a in run["artifacts"].values() if a["type"] == "results"]
    assert results["files"] == ["calibration_state/scale.npy", "means/doc_text.npy", "metrics.json",
                                "per_query.csv", "run.trec"]


def test_wandb_environment_applies_unless_the_config_sets_a_value(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "env_dir"))
    cfg = {"logger": {"name": "wandb", "mode": None, "project": None, "entity": None, "dir": None}}
    (tmp_path / "job" / ".hydra").mkdir(parents=True)
    (tmp_path / "job" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["logger=wandb", "calibration=gr", "paths.data_dir=/data", "fusion.alpha=0.5"]))
    start_tracker(cfg, tmp_path / "job").finish(ok=True)
    run = read_offline_run(tmp_path / "env_dir")
    assert run["run"].project == "from-env"
    assert run["run"].display_name == "calibration=gr,fusion.alpha=0.5"  # a single run: what ran
    assert list(run["run"].tags) == ["bench:unknown"]
    # a value in the config wins over the environment
    cfg["logger"].update(mode="disabled", project="from-config")
    start_tracker(cfg, tmp_path / "job2").finish(ok=True)
    assert len(list((tmp_path / "env_dir" / "wandb").glob("offline-run-*"))) == 1


def test_wandb_mode_from_the_environment_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE: 'sometimes' is not one of online, offline, disabled"):
        WandbTracker(tmp_path, project="p")


def test_sweep_run_logs_table_curves_and_summary_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    sweep.mkdir(parents=True)
    for name in ("summary.csv", "summary.md", "multirun.yaml"):
        (sweep / name).write_text("x\n")
    frame = pd.DataFrame({
        "job": ["0", "1", "2", "3", "4"], "status": ["ok", "ok", "ok", "ok", "failed"],
        "calibration": ["none", "gr", "none", "gr", "gr"],
        "fusion.alpha": ["0.0", "0.0", "0.5", "0.5", "1.0"],
        "ndcg@10": [0.2, 0.7, 0.1, 0.6, float("nan")]})
    log_sweep_to_wandb({"name": "wandb", "mode": "offline", "tags": ["paper"]}, sweep, frame,
                       {"model": "toy", "dataset": "toy", "calibration": "none"},
                       ["fusion.alpha", "calibration"])
    run = read_offline_run(tmp_path / "wb")
    assert run["exit_code"] == 1  # a job of the sweep failed
    assert run["run"].job_type == "sweep" and run["run"].run_group == "multiruns/2026-01-01_00-00-00"
    assert list(run["run"].tags) == ["paper", "bench:toy"]
    assert run["config"]["choices"] == {"model": "toy", "dataset": "toy"}  # swept groups left out
    assert run["summary"]["jobs"] == 5 and run["summary"]["jobs_not_ok"] == 1
    table = json.loads((run["files"] / run["summary"]["sweep/path"]).read_text())
    assert len(table["data"]) == 5
    # one history row per alpha of the ok jobs, alpha the x of one line per calibration
    curves = [r for r in run["rows"] if "fusion_alpha" in r and "curves/fusion_alpha/calibration=gr" in r]
    assert [(r["fusion_alpha"], r["curves/fusion_alpha/calibration=none"], r["curves/fusion_alpha/calibration=gr"])
            for r in curves] == [(0.0, 0.2, 0.7), (0.5, 0.1, 0.6)]
    chart = json.loads((run["files"] / run["summary"]["curves/fusion_alpha/chart_table/path"]).read_text())
    assert chart["columns"] == ["fusion_alpha", "ndcg@10", "series"] and len(chart["data"]) == 4
    assert run["artifacts"][f"sweep-{run['run'].run_id}"]["files"] == ["multirun.yaml", "summary.csv", "summary.md"]


def test_wandb_failed_run_is_finished_with_exit_code_1(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)  # then the files go under the run dir
    tracker = WandbTracker(tmp_path, project="mixsearch-test", mode="offline", name="bad")
    tracker.finish(ok=False, error=ValueError("calibration.method: unknown method 'x'"))
    run = read_offline_run(tmp_path)
    assert run["exit_code"] == 1
    assert run["summary"]["status"] == "failed"
    assert run["summary"]["error"] == "ValueError: calibration.method: unknown method 'x'"
    assert run["run"].run_group == ""  # not in a sweep: no group


def test_wandb_rejects_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match="logger.mode: 'sometimes' is not one of online, offline, disabled"):
        WandbTracker(tmp_path, project="p", mode="sometimes")


def test_csv_ledger_appends_long_rows(tmp_path):
    ledger = tmp_path / "logs" / "runs.csv"
    first = start_tracker({"logger": {"name": "csv", "path": str(ledger)}}, tmp_path / "a")
    assert isinstance(first, CsvTracker)
    first.log_result(RESULT, PER_QUERY)
    first.log_figure("fig2", tmp_path / "fig2.png")
    first.finish(ok=True)
    second = CsvTracker(ledger, tmp_path / "b")
    second.finish(ok=False, error=RuntimeError("out of memory"))
    frame = pd.read_csv(ledger)
    assert list(frame.columns) == ["time", "run_dir", "key", "value"]
    a = frame[frame["run_dir"] == str(tmp_path / "a")].set_index("key")["value"]
    assert float(a["ndcg@10"]) == RESULT["metrics"]["ndcg@10"]
    assert float(a["calibration/n_samples"]) == 16 and a["status"] == "ok"
    assert a["figure/fig2"] == str(tmp_path / "fig2.png")
    b = frame[frame["run_dir"] == str(tmp_path / "b")].set_index("key")["value"]
    assert b["status"] == "failed" and b["error"] == "RuntimeError: out of memory"


def test_registry_errors_name_the_option(tmp_path):
    with pytest.raises(ValueError, match=r"logger.name: unknown tracker 'tensorboard'; choose from \['csv', 'none', 'wandb'\]"):
        start_tracker({"logger": {"name": "tensorboard"}}, tmp_path)
    with pytest.raises(ValueError, match="logger.path: the csv logger needs the path"):
        start_tracker({"logger": {"name": "csv", "path": None}}, tmp_path)


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a/b": 1, "a/c/d": 2, "e": 3}


def test_the_viewer_page_joins_the_runs_wandb_run(tmp_path, monkeypatch):
    """A tracked run dir records its W&B run; ``python -m mixsearch.viewer RUN --wandb``
    resumes that run and adds the page as an HTML panel (read back from the offline files);
    an untracked run dir gets a viewer run of its own."""
    from mixsearch.tracking import log_html_to_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)  # an untracked run's W&B files: in its dir
    job = _job_dir(tmp_path)
    cfg = {"logger": {"name": "wandb", "mode": "offline", "project": "mixsearch-test",
                      "dir": str(tmp_path / "wb")}}
    tracker = start_tracker(cfg, job)
    tracker.log_result(RESULT, PER_QUERY)
    tracker.finish(ok=True)
    recorded = json.loads((job / "wandb_run.json").read_text())
    assert recorded["id"] == read_offline_run(tmp_path / "wb")["run"].run_id
    assert (recorded["mode"], recorded["project"]) == ("offline", "mixsearch-test")

    page = "<!doctype html><title>view</title><p id='marker'>ranked lists</p>"
    assert log_html_to_wandb(job, page) == recorded["id"]
    first, resumed = read_offline_runs(tmp_path / "wb")
    assert resumed["run"].run_id == first["run"].run_id and resumed["exit_code"] == 0
    summary = resumed["summary"]
    assert summary["viewer/_type"] == "html-file"
    assert (resumed["files"] / summary["viewer/path"]).read_text() == page  # inject=False: as is

    untracked = tmp_path / "plain_run"
    untracked.mkdir()
    other = log_html_to_wandb(untracked, page)
    assert other != recorded["id"]
    (own,) = read_offline_runs(untracked)
    assert own["run"].run_id == other and own["run"].job_type == "viewer"
