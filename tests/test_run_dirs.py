"""Run and sweep dirs never shared: unique names for runs started in the same second, a lock
held by a live run, and no multirun into a sweep dir that holds another multirun's jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mixsearch.callbacks import SummaryCallback, SweepDirInUse
from mixsearch.pipeline import run
from mixsearch.schema import register_configs
from mixsearch.tracking import RunDirInUse

ROOT = Path(__file__).resolve().parents[1]

# Resolves the default run and sweep dirs as `python run.py` does, with the clock frozen at one
# instant: two processes running it are two runs started in the same second (and microsecond).
RESOLVE = """
import datetime as real, sys
import hydra.core.utils as hu
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from mixsearch.schema import register_configs

class Frozen(real.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2026, 1, 2, 3, 4, 5, 678)

hu.datetime = Frozen
register_configs()
with initialize_config_dir(config_dir=sys.argv[1], version_base="1.3"):
    cfg = compose("config", return_hydra_config=True)
    hu.setup_globals()  # Hydra's ${now:} resolver, now on the frozen clock
    print(OmegaConf.select(cfg, "hydra.run.dir"), OmegaConf.select(cfg, "hydra.sweep.dir"))
"""


def test_runs_started_in_the_same_second_get_different_dirs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's mixsearch
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVE, str(ROOT / "conf")], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        outs.append(out.split())
    (run_a, sweep_a), (run_b, sweep_b) = outs
    assert run_a.startswith("./outputs/mixsearch/runs/2026-01-02_03-04-05_000678_"), run_a
    assert run_a != run_b and sweep_a != sweep_b


def _config(output_dir: Path) -> dict:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.output_dir={output_dir}",
                                           f"paths.data_dir={output_dir / 'data'}"])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def test_a_run_dir_held_by_a_live_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"theirs": true}')
    with FileLock(str(run_dir / ".run.lock")):  # the other run, still going
        with pytest.raises(RunDirInUse, match=f"run dir {run_dir} is in use by another run"):
            run(_config(run_dir))
    assert (run_dir / "metrics.json").read_text() == '{"theirs": true}'  # untouched
    assert sorted(p.name for p in run_dir.iterdir()) == [".run.lock", "metrics.json"]


def test_a_multirun_into_a_sweep_dir_with_job_dirs_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    SummaryCallback().on_multirun_start(config)  # no dir yet: fine
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    SummaryCallback().on_multirun_start(config)  # no job dirs: fine
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "1").mkdir()
    (sweep / "1" / "status.json").write_text("{}")
    with pytest.raises(SweepDirInUse, match=rf"sweep dir {sweep} already holds 2 job dir\(s\) of "
                                            r"another multirun \(0, 1\); its summary would mix"):
        SummaryCallback().on_multirun_start(config)
