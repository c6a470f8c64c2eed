"""Acceptance on the shipped toy: every calibration method and merge through `python run.py`,
state reused via source=files, and `report compare` of the none and GR runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_run import _env, _run

from mixsearch.calibration import load_state_dir

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_methods_merges_state_reuse_and_compare(tmp_path: Path) -> None:
    env = _env(tmp_path, tmp_path / "data")
    _run(["-m", "calibration=none,gr,i0t,project,procrustes", "retrieval.merge=single,rrf,zscore",
          "hydra.sweep.dir=" + str(tmp_path / "zoo")], env)
    runs = {}
    for d in sorted(p.parent for p in (tmp_path / "zoo").rglob("metrics.json")):
        res = json.loads((d / "metrics.json").read_text())
        runs[res["calibration"]["method"], res["config"]["retrieval"]["merge"]] = (d, res)
    assert len(runs) == 15
    for method in ("i0t", "project", "procrustes"):
        d, res = runs[method, "single"]
        gap = res["gap"]
        assert gap["centroid_distance_after"] < gap["centroid_distance_before"], method
        assert res["calibration"]["source"] == "train"
        state = load_state_dir(d / "calibration_state")
        assert set(state) == set(res["calibration"]["state_files"])
    none_single = runs["none", "single"][1]["metrics"]["ndcg@10"]
    assert runs["none", "rrf"][1]["metrics"]["ndcg@10"] != none_single  # the merge changed ranking

    # the procrustes rotation reloaded from its run dir gives the same numbers
    d, res = runs["procrustes", "single"]
    again = _run(["calibration=procrustes", "calibration.source=files",
                  f"calibration.state_dir={d / 'calibration_state'}",
                  f"hydra.run.dir={tmp_path / 'reuse'}"], env)
    assert "calibration=procrustes (source=files)" in again.stdout
    reused = json.loads((tmp_path / "reuse" / "metrics.json").read_text())
    assert reused["metrics"] == res["metrics"]

    def compare(a: Path, b: Path) -> dict:
        proc = subprocess.run([sys.executable, "-m", "experiments.report", "compare", str(a), str(b),
                               "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    c = compare(runs["none", "single"][0], runs["gr", "single"][0])
    assert c["delta"] > 0 and c["ci_low"] > 0 and c["p_value"] < 0.01 and c["n_queries"] == 300
    same = compare(runs["gr", "single"][0], runs["gr", "single"][0])
    assert same["delta"] == 0 and same["p_value"] == 1
