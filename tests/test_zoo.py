"""Zoo table (CIs, Holm-marked differences from GR), sample-count figure, Table 1 marks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import _metrics, make_job

from experiments import report, zoo
from mixsearch import stats


def _job(sweep: Path, num: int, calibration: str, merge: str, subset: str, values: np.ndarray,
         **cal: object) -> Path:
    run_dir = make_job(sweep, num, model="toy", calibration=calibration, subset=subset,
                       metrics={**_metrics(0), "ndcg@10": float(values.mean())})
    res = json.loads((run_dir / "metrics.json").read_text())
    res["config"]["retrieval"] = {"merge": merge}
    res["config"]["calibration"].update(cal)
    (run_dir / "metrics.json").write_text(json.dumps(res))
    pd.DataFrame({"qid": [f"q{i}" for i in range(len(values))], "ndcg@10": values}).to_csv(
        run_dir / "per_query.csv", index=False)
    return run_dir


def test_zoo_table_marks_holm_significant_differences(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, 200)
    sweep, n = tmp_path / "zoo", 0
    runs = {}
    for subset in ("ToyCOCO", "ToyOVEN"):
        for cal, merge, shift in (("gr", "single", 0.0), ("none", "single", -0.2),
                                  ("i0t", "single", 0.0005), ("gr", "rrf", 0.1)):
            values = np.clip(base + shift + rng.normal(0, 0.01 if shift else 0, 200), 0, 1)
            runs[subset, cal, merge] = _job(sweep, n, cal, merge, subset, values)
            n += 1
    assert report.main([str(sweep), "--figures", "zoo"]) == 0
    table = pd.read_csv(sweep / "zoo.csv")
    assert len(table) == 8
    row = table[(table.benchmark == "ToyCOCO") & (table.calibration == "none")].iloc[0]
    cmp = stats.compare(pd.read_csv(runs["ToyCOCO", "gr", "single"] / "per_query.csv"),
                        pd.read_csv(runs["ToyCOCO", "none", "single"] / "per_query.csv"))
    assert row["delta_vs_baseline"] == pytest.approx(cmp.delta)
    tested = table[table["p_value"].notna()]
    assert len(tested) == 6  # 3 non-baseline cells x 2 subsets
    np.testing.assert_allclose(tested["p_holm"], stats.holm(tested["p_value"].to_numpy()))
    sig = dict(zip(zip(table["benchmark"], table["calibration"], table["merge"], strict=True), table["significant"], strict=True))
    assert sig["ToyCOCO", "none", "single"] and sig["ToyOVEN", "gr", "rrf"]
    assert not sig["ToyCOCO", "i0t", "single"]  # a 0.0005 shift in 0.01 noise: not significant
    md = (sweep / "zoo.md").read_text()
    assert f"{zoo.MARK} ▼" in md and f"{zoo.MARK} ▲" in md and "Holm-corrected over 6 comparisons" in md
    lo, hi = stats.mean_ci(pd.read_csv(runs["ToyCOCO", "gr", "single"] / "per_query.csv")["ndcg@10"].to_numpy())
    assert f"[{lo:.3f}, {hi:.3f}]" in md


def test_zoo_needs_a_baseline(tmp_path, capsys):
    _job(tmp_path / "s", 0, "i0t", "single", "ToyCOCO", np.full(10, 0.5))
    assert report.main([str(tmp_path / "s"), "--figures", "zoo"]) == 2
    assert "has no baseline job (calibration=gr, retrieval.merge=single)" in capsys.readouterr().err


def test_samples_figure_mean_and_sd_over_seeds(tmp_path):
    sweep, n = tmp_path / "samples", 0
    for method in ("gr", "procrustes"):
        for count in (10, 100):
            for seed in range(3):
                _job(sweep, n, method, "single", "ToyCOCO", np.full(20, 0.1 * seed + count / 1000),
                     max_samples=count, seed=seed)
                n += 1
    assert report.main([str(sweep), "--figures", "samples"]) == 0
    agg = pd.read_csv(sweep / "samples.csv")
    r = agg[(agg.calibration == "gr") & (agg.max_samples == 100)].iloc[0]
    assert r["mean"] == pytest.approx(0.1 + 0.1) and r["sd"] == pytest.approx(np.std([0, .1, .2], ddof=1))
    assert r["n_seeds"] == 3
    assert (sweep / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.main([str(sweep), "--figures", "zoo"]) == 2  # sample-ablation jobs are not zoo cells


def test_table1_marks_calibrated_rows_that_survive_holm(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, 150)
    sweep = tmp_path / "t1"
    _job(sweep, 0, "none", "single", "ToyCOCO", base)
    _job(sweep, 1, "gr", "single", "ToyCOCO", np.clip(base + 0.15, 0, 1))
    _job(sweep, 2, "none", "single", "ToyOVEN", base)
    _job(sweep, 3, "gr", "single", "ToyOVEN", np.clip(base + rng.normal(0, 0.01, 150), 0, 1))
    assert report.main([str(sweep), "--figures", "table1"]) == 0
    md = (sweep / "table1.md").read_text()
    gr_row = next(line for line in md.splitlines() if line.startswith("| GR-toy"))
    assert gr_row.count(zoo.MARK) == 1  # ToyCOCO's +0.15 survives; ToyOVEN's noise does not
    assert "Holm-corrected" in md
