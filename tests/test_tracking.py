"""Trackers: W&B offline round trip (read back from the offline run file), CSV ledger, registry."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from mixsearch.tracking import CsvTracker, WandbTracker, flatten, start_tracker

RESULT = {
    "metrics": {"ndcg@10": 0.6180339887, "ndcg@100": 0.7, "recall@1": 0.5, "mrr@10": 0.55},
    "by_target_modality": {"image": {"n_queries": 3, "ndcg@10": 0.25},
                           "text": {"n_queries": 5, "ndcg@10": 0.875}},
    "topk_modality_share": {"k": 10, "topk": {"text": 0.7, "image": 0.3},
                            "corpus": {"text": 0.5, "image": 0.5}},
    "gap": {"centroid_distance_before": 0.82, "centroid_distance_after": 0.03},
    "calibration": {"method": "gr", "source": "crossfit", "n_samples": 16},
    "seconds": 1.5,
}
PER_QUERY = pd.DataFrame({"qid": ["0", "1"], "first_rel_rank": [1, 3], "ndcg@10": [1.0, 0.5],
                          "target_modality": ["text", "image"]})


def read_offline_run(wandb_dir: Path, wait_s: float = 15.0) -> dict:
    """Decode the one offline run under ``wandb_dir`` from its ``run-*.wandb`` record log
    (LevelDB-log framing: 7-byte file header, 32 KiB blocks, 7-byte chunk headers) with
    wandb's protobuf schema, independently of wandb's own sync code. The wandb-core process
    may append the final records just after ``finish()`` returns: wait for the exit record."""
    (run_dir,) = list(wandb_dir.glob("wandb/offline-run-*"))
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
    out: dict = {"config": {}, "summary": {}, "history": {}, "files": run_dir / "files"}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind in ("summary", "history"):
            items = rec.summary.update if kind == "summary" else rec.history.item
            for i in items:
                key = i.key or "/".join(i.nested_key)
                out[kind][key] = json.loads(i.value_json)
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out


def _job_dir(tmp_path: Path) -> Path:
    """A job dir inside a sweep dir, as Hydra lays them out."""
    sweep = tmp_path / "2026-01-01_00-00-00"
    job = sweep / "3"
    (job / ".hydra").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("{}\n")
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["calibration=gr", "fusion.alpha=0.25"]))
    return job


def test_wandb_offline_round_trip(tmp_path):
    job = _job_dir(tmp_path)
    cfg = {"logger": {"name": "wandb", "mode": "offline", "project": "mixsearch-test",
                      "tags": ["paper", "setting2"], "dir": str(tmp_path / "wb")},
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
    assert run["config"]["calibration"] == {"method": "gr"} and run["config"]["fusion"] == {"alpha": 0.25}
    assert run["run"].run_group == "2026-01-01_00-00-00"  # the sweep dir's name
    assert run["run"].display_name == "calibration=gr,fusion.alpha=0.25"
    assert list(run["run"].tags) == ["paper", "setting2"]
    summary = run["summary"]
    for key, value in RESULT["metrics"].items():
        assert summary[key] == value
    assert summary["gap/centroid_distance_after"] == 0.03
    assert summary["by_target_modality/image/ndcg@10"] == 0.25
    assert summary["status"] == "ok"
    table_path = run["files"] / summary["by_target_modality/path"]
    table = json.loads(table_path.read_text())
    rows = {r[0]: dict(zip(table["columns"], r, strict=True)) for r in table["data"]}
    assert rows["text"]["ndcg@10"] == 0.875 and rows["image"]["n_queries"] == 3
    image_path = run["files"] / summary["figures/gap/path"]
    assert Image.open(image_path).size == (8, 8)


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
