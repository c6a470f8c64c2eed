"""Hydra multiruns through run.py (subprocesses, toy benchmark, toy model, all offline):
a failing job in a sweep, W&B offline runs per job, submitit_local, sharded extraction,
and the fail-fast check before a reproduction."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_tracking import read_offline_runs

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Toy data and embedding cache shared by this module's runs: one extraction, not one per test."""
    return tmp_path_factory.mktemp("shared")


def run_py(
    tmp: Path, *args: str, env: dict | None = None, drop: tuple[str, ...] = (), ok: bool = True
) -> subprocess.CompletedProcess:
    """``python run.py args`` with data, cache and logs in ``tmp`` and everything offline;
    asserts the exit status is 0 (``ok``) or not 0."""
    inherited = {k: v for k, v in os.environ.items() if k not in drop}
    full_env = {**inherited, "MIXSEARCH_DATA_DIR": str(tmp / "data"),
                "MIXSEARCH_CACHE_DIR": str(tmp / "cache"), "MIXSEARCH_LOG_DIR": str(tmp / "logs"),
                "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", **(env or {})}
    # -m must come first: Hydra's argparse stops collecting overrides at the first flag
    proc = subprocess.run([sys.executable, "run.py", *args, "embed.progress=false", "device=cpu"],
                          cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_sweep_with_a_failing_job_and_wandb_offline(tmp_path, shared):
    sweep = tmp_path / "sweep"
    # job 2 fails while running (source=files without mean files), after its W&B run started
    run_py(shared, "-m", "calibration=gr", "calibration.source=auto,transductive,files",
           f"hydra.sweep.dir={sweep}",
           "logger=wandb", "logger.mode=offline", "logger.tags=[test]",
           drop=("WANDB_DIR",), ok=False)  # W&B files in the sweep dir; a failed job fails the sweep
    frame = pd.read_csv(sweep / "summary.csv")
    assert list(frame["status"]) == ["ok", "ok", "failed"]
    assert "calibration.files.query_text: no mean file given" in frame.loc[2, "error"]
    status = json.loads((sweep / "2" / "status.json").read_text())
    assert status["error"] == frame.loc[2, "error"] and "Traceback" in status["traceback"]
    for i in (0, 1):
        metrics = json.loads((sweep / str(i) / "metrics.json").read_text())["metrics"]
        for key in ("ndcg@10", "ndcg@100", "recall@1", "mrr@10"):
            assert frame.loc[i, key] == metrics[key]
    assert "| 2 | failed |" in (sweep / "summary.md").read_text()

    # without WANDB_DIR, every run of the sweep (its jobs' and its own) is in one folder
    runs = read_offline_runs(sweep)
    assert not list(sweep.glob("*/wandb"))
    jobs = {r["config"]["calibration"]["source"]: r for r in runs if r["run"].job_type == "eval"}
    for i, code in ((0, 0), (1, 0), (2, 1)):
        source = ["auto", "transductive", "files"][i]
        run = jobs[source]
        assert run["exit_code"] == code
        assert run["run"].run_group == f"{tmp_path.name}/sweep"
        assert list(run["run"].tags) == ["test", "bench:toy"]
        assert run["run"].display_name == f"calibration.source={source}"  # the swept override only
        assert run["config"]["calibration"]["source"] == source
        assert run["config"]["choices"]["dataset"] == "toy"
        if code == 0:
            metrics = json.loads((sweep / str(i) / "metrics.json").read_text())["metrics"]
            assert run["summary"]["ndcg@10"] == metrics["ndcg@10"]
            assert "by_target_modality/path" in run["summary"]
    # the multirun's own run: the sweep table, marked failed as one job failed
    (summary_run,) = [r for r in runs if r["run"].job_type == "sweep"]
    assert len(runs) == 4 and summary_run["exit_code"] == 1
    assert summary_run["summary"]["jobs"] == 3 and summary_run["summary"]["jobs_not_ok"] == 1


def test_preflight_stops_the_sweep_with_one_list_before_any_job(tmp_path, shared):
    """The acceptance case: one list of what is missing or wrong, exit 2, no job started."""
    sweep = tmp_path / "sweep"
    proc = run_py(shared, "-m", "model=toy,clip_b16", "dataset=toy,mixbench_oven",
                  "fusion.alpha=0.5,1.5", f"hydra.sweep.dir={sweep}", ok=False)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    start = lines.index("preflight: the sweep cannot run; 3 problem(s), no job started:")
    listed = lines[start + 1:start + 4]
    assert listed[0].startswith("  - config: fusion.alpha: 1.5 is out of range") and "4 jobs" in listed[0]
    assert listed[1].startswith("  - model clip_b16:") and "hf download openai/clip-vit-base-patch16" in listed[1]
    assert listed[2].startswith("  - dataset mixbench_oven:")
    assert lines[start + 4].endswith("python -m experiments.download --models clip_b16 --datasets mixbench_oven")
    assert proc.stderr.count("preflight: the sweep cannot run") == 1
    assert not sweep.exists()  # Hydra creates it when the first job starts


def test_sweep_exits_non_zero_after_every_job_ran(tmp_path, shared):
    """Toy runs, clip_b16 is not in the (empty, offline) hub cache; preflight=false lets the
    sweep start (as on a cluster whose nodes, not this machine, hold the hub cache)."""
    sweep = tmp_path / "sweep"
    proc = run_py(shared, "-m", "model=toy,clip_b16", "preflight=false", f"hydra.sweep.dir={sweep}",
                  ok=False)
    assert proc.returncode == 1
    frame = pd.read_csv(sweep / "summary.csv")
    assert list(frame["model"]) == ["toy", "clip_b16"]
    assert list(frame["status"]) == ["ok", "failed"]
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "1" / "metrics.json").exists()
    assert "clip-vit-base-patch16" in frame.loc[1, "error"]


def test_submitit_local_multirun(tmp_path, shared):
    sweep = tmp_path / "sweep"
    run_py(shared, "-m", "hydra/launcher=local", "calibration=none,gr", f"hydra.sweep.dir={sweep}")
    frame = pd.read_csv(sweep / "summary.csv")
    assert list(frame["status"]) == ["ok", "ok"]
    assert (sweep / ".submitit").is_dir()  # the jobs really went through submitit
    gr = json.loads((sweep / "1" / "metrics.json").read_text())
    assert gr["calibration"]["method"] == "gr" and frame.loc[1, "ndcg@10"] == gr["metrics"]["ndcg@10"]


def _parts(cache: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(cache)): np.load(p) for p in sorted(cache.rglob("part-*.npy"))}


def test_sharded_extraction_equals_unsharded(tmp_path, shared):
    # same data dir (image paths are part of the cache key), one new cache per way of extracting
    common = ["embed.part_size=128", "calibration=gr"]
    sharded = {"MIXSEARCH_CACHE_DIR": str(tmp_path / "cache_sharded")}
    whole = {"MIXSEARCH_CACHE_DIR": str(tmp_path / "cache_whole")}
    shards_dir, merged_dir, whole_dir = tmp_path / "shards", tmp_path / "merged", tmp_path / "whole"
    shards = run_py(shared, "-m", *common, "embed.num_shards=2", "embed.shard=0,1",
                    f"hydra.sweep.dir={shards_dir}", env=sharded)
    # the basic launcher runs the shards in turn: shard 0 stops after its own parts; shard 1
    # finds the entry complete after its parts and evaluates
    assert "shard 0/2 done; run without embed.num_shards" in shards.stdout
    assert not (shards_dir / "0" / "metrics.json").exists()
    merged = run_py(shared, *common, f"hydra.run.dir={merged_dir}", env=sharded)
    assert "embeddings: all" in merged.stdout  # the merge run computed nothing
    run_py(shared, *common, f"hydra.run.dir={whole_dir}", env=whole)

    a, b = _parts(tmp_path / "cache_sharded"), _parts(tmp_path / "cache_whole")
    assert a.keys() == b.keys() and len(a) > 2
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    mb = json.loads((whole_dir / "metrics.json").read_text())
    for run_dir in (merged_dir, shards_dir / "1"):
        ma = json.loads((run_dir / "metrics.json").read_text())
        assert ma["metrics"] == mb["metrics"] and ma["gap"] == mb["gap"]
        assert (run_dir / "per_query.csv").read_text() == (whole_dir / "per_query.csv").read_text()


def test_reproduction_fails_fast_without_cached_weights(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.download", "--check", "--models", "toy,clip_b16",
         "--datasets", "toy,mixbench_oven"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "model toy: ok" in proc.stderr and "dataset toy: ok" in proc.stderr
    assert "model clip_b16: openai/clip-vit-base-patch16 is not in the hub cache" in proc.stderr
    assert "dataset mixbench_oven: cannot load MixBench subset 'OVEN'" in proc.stderr
    assert "`make download`" in proc.stderr
    make = subprocess.run(["make", "table1", f"OUT={tmp_path / 'out'}", "MODELS=clip_b16"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert make.returncode != 0 and "not available offline" in make.stderr
    assert not (tmp_path / "out").exists()  # failed before any job ran


def test_a_20_job_sweep_shows_each_distinct_warning_once(tmp_path, shared):
    """The acceptance case: 20 jobs, half of which warn that calibration.source has no effect
    (calibration=none); the terminal shows it once, each job's run.log keeps it, and each
    job's printed result names its model."""
    sweep = tmp_path / "sweep"
    alphas = ",".join(str(a / 10) for a in range(10))
    proc = run_py(shared, "-m", "calibration=none,gr", "calibration.source=crossfit",
                  f"fusion.alpha={alphas}", f"hydra.sweep.dir={sweep}")
    out = proc.stdout + proc.stderr
    warnings = [line.split("[WARNING] - ", 1)[1] for line in out.splitlines() if "[WARNING] - " in line]
    assert any("calibration.source='crossfit' has no effect" in w for w in warnings)
    causes = [re.sub(r"\d+", "N", w) for w in warnings]  # counts do not make a new cause
    assert len(causes) == len(set(causes)), "\n".join(warnings)
    jobs_warned = [d for d in sweep.iterdir() if (d / "run.log").is_file()
                   and "has no effect" in (d / "run.log").read_text()]
    assert len(jobs_warned) == 10
    assert len(re.findall(r"^model=toy:toy_clip  toy/ToyCOCO", out, flags=re.M)) == 20


def test_a_data_error_is_one_line_naming_the_log_with_the_traceback(tmp_path, shared):
    proc = run_py(shared, "dataset=mixbench_mscoco", f"dataset.root={tmp_path / 'nowhere'}",
                  f"hydra.run.dir={tmp_path / 'run'}", ok=False)
    assert proc.returncode == 1
    [line] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("data error: DataError: subset folder not found")
    assert line.endswith(f"(traceback: {tmp_path / 'run' / 'run.log'})")
    assert "Traceback (most recent call last)" in (tmp_path / "run" / "run.log").read_text()
