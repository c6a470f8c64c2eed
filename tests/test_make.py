"""The Makefile: `make help` documents targets and variables; SWEEP reuses a finished sweep."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_help_lists_targets_and_variables() -> None:
    out = re.sub(r"\x1b\[[0-9;]*m", "", make("help").stdout)
    for target in ("table1", "figure2", "figure3", "figure4", "reproduce", "bench", "test"):
        assert re.search(rf"^  {target} +\S", out, re.M), target
    variables = out.split("Variables")[1]
    for name in ("BENCH", "MODELS", "LAUNCHER", "LOGGER", "OUT", "HYDRA_ARGS", "SWEEP"):
        assert re.search(rf"^  {name} +\S", variables, re.M), name


def test_bench_has_a_recipe() -> None:
    out = make("-n", "bench").stdout
    assert "experiments/bench_retrieval.py" in out and "experiments/bench_sweep.py" in out


def test_sweep_reuses_a_finished_sweep_instead_of_running_one(tmp_path: Path) -> None:
    for setting in ("mixbench", "setting1", "setting2"):
        (tmp_path / "repro" / setting).mkdir(parents=True)
        (tmp_path / "repro" / setting / "multirun.yaml").write_text("{}\n")
    out = tmp_path / "out"
    # a sweep dir itself
    plan = make("-n", "figure4", f"SWEEP={tmp_path / 'repro' / 'mixbench'}", f"OUT={out}").stdout
    assert f"experiments.report {tmp_path / 'repro' / 'mixbench'} --out" in plan
    assert "run.py" not in plan and "experiments.download" not in plan
    # a reproduction dir: each target finds its setting's sweep
    plan = make("-n", "reproduce", f"SWEEP={tmp_path / 'repro'}", f"OUT={out}").stdout
    for setting, target in (("mixbench", "table1"), ("setting1", "figure2"), ("setting2", "figure3")):
        assert f"experiments.report {tmp_path / 'repro' / setting} --out {out}/mixbench/" in plan
        assert f"/{target} --figures {target}" in plan
    assert "run.py" not in plan
    # without SWEEP the sweep runs
    assert "run.py -m experiment=paper/mixbench" in make("-n", "table1", f"OUT={out}").stdout


def test_sweep_without_multirun_yaml_fails_before_anything_runs(tmp_path: Path) -> None:
    proc = make("table1", f"SWEEP={tmp_path / 'nowhere'}", f"OUT={tmp_path / 'out'}")
    assert proc.returncode != 0
    assert f"SWEEP={tmp_path / 'nowhere'}: no multirun.yaml" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_with_the_paper_pools_table1_runs_oven_with_its_own_query_mean(tmp_path: Path) -> None:
    (tmp_path / "data" / "calibration").mkdir(parents=True)
    (tmp_path / "data" / "calibration" / "MANIFEST.json").write_text("{}\n")
    out = tmp_path / "out"
    plan = make("-n", "table1", f"DATA_DIR={tmp_path / 'data'}", f"OUT={out}").stdout
    runs = [line for line in plan.replace("\\\n", " ").splitlines() if "run.py -m" in line]
    assert len(runs) == 2, plan
    other, oven = sorted(runs, key=lambda r: "mixbench_oven " in r + " ")
    assert "dataset=mixbench_google_wit,mixbench_mscoco,mixbench_visualnews calibration=none,gr_paper" in other
    assert "mixbench_oven" not in other.split("hydra.sweep.dir=")[1].split()[0]
    assert "dataset=mixbench_oven calibration=none,gr_paper_oven" in oven
    assert re.search(r"experiments\.report \S+/mixbench \S+/mixbench_oven --out", plan)
    # without the pools: one sweep, GR's default means, no OVEN split
    plan = make("-n", "table1", f"DATA_DIR={tmp_path / 'none'}", f"OUT={out}").stdout
    assert "gr_paper" not in plan and "/mixbench_oven" not in plan
    # a reused reproduction with an OVEN sweep reports both
    for setting in ("mixbench", "mixbench_oven"):
        (tmp_path / "repro" / setting).mkdir(parents=True)
        (tmp_path / "repro" / setting / "multirun.yaml").write_text("{}\n")
    plan = make("-n", "figure4", f"SWEEP={tmp_path / 'repro'}", f"OUT={out}").stdout
    assert f"report {tmp_path / 'repro' / 'mixbench'} {tmp_path / 'repro' / 'mixbench_oven'} --out" in plan
    assert "run.py" not in plan
