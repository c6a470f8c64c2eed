"""Paper data, sweep summaries and the paper report, on fabricated run dirs and a toy sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from experiments import paper, report
from mixsearch.callbacks import read_job, write_summary

ROOT = Path(__file__).resolve().parents[1]

# docs/paper.md §5 "4-subset means", computed there independently of the table transcription.
PAPER_MEANS = {
    "CLIP-B/16": (0.4457, 0.483, 0.361), "GR-CLIP-B/16": (0.5927, 0.640, 0.483),
    "CLIP-L/14": (0.4790, 0.523, 0.390), "GR-CLIP-L/14": (0.6308, 0.670, 0.515),
    "OpenCLIP-B/16": (0.5373, 0.574, 0.445), "GR-OpenCLIP-B/16": (0.6240, 0.673, 0.520),
    "OpenCLIP-L/14": (0.5527, 0.606, 0.477), "GR-OpenCLIP-L/14": (0.6600, 0.707, 0.558),
    "SigLIP-400m": (0.4075, 0.461, 0.355), "GR-SigLIP-400m": (0.6723, 0.707, 0.539),
    "VLM2Vec-LLaVA-Next": (0.6242, 0.663, 0.511), "VLM2Vec-Qwen": (0.6327, 0.672, 0.512),
}


def make_job(sweep: Path, num: int, *, model: str, calibration: str, subset: str,
             corpus: str = "released", p: float = 0.0, alpha: float = 0.5,
             metrics: dict | None = None, error: str | None = None, fusion: str = "weighted",
             compute: dict | None = None) -> Path:
    """A job dir as run.py leaves it: .hydra files, status.json and (if ok) metrics.json."""
    run_dir = sweep / str(num)
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = [f"model={model}", f"calibration={calibration}", f"corpus={corpus}",
                 f"corpus.p={p}", f"fusion.alpha={alpha}"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"model": model, "calibration": calibration, "corpus": corpus,
               "dataset": "toy", "hydra/launcher": "basic"}
    (run_dir / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    status = {"status": "failed" if error else "ok", "overrides": overrides}
    if error:
        status["error"] = error
    else:
        result = {"metrics": metrics, "calibration": {"method": calibration, "source": "crossfit"},
                  "corpus": {"mode": corpus}, "gap": {"centroid_distance_before": 0.8,
                                                      "centroid_distance_after": 0.01},
                  "config": {"dataset": {"subset": subset}, "corpus": {"mode": corpus, "p": p},
                             "fusion": {"method": fusion, "alpha": alpha},
                             "calibration": {"method": calibration}}}
        if compute is not None:
            result["encoder"] = {"compute": compute}
        (run_dir / "metrics.json").write_text(json.dumps(result))
    (run_dir / "status.json").write_text(json.dumps(status))
    (sweep / "multirun.yaml").touch()
    return run_dir


def _metrics(seed: float) -> dict[str, float]:
    return {"ndcg@10": 0.5 + seed / 7, "ndcg@100": 0.55 + seed / 9, "recall@1": 0.4 + seed / 11,
            "mrr@10": 0.45 + seed / 13, "recall@10": 0.9}


def test_table1_matches_the_papers_independent_means():
    assert len(paper.TABLE1) == 12
    assert paper.TABLE1["GR-SigLIP-400m"]["OVEN"] == {"ndcg@10": 0.532, "ndcg@100": 0.581,
                                                      "recall@1": 0.328}
    assert paper.TABLE1["CLIP-B/16"]["Google WIT"]["recall@1"] == 0.443
    for row, means in PAPER_MEANS.items():
        for metric, expected in zip(paper.TABLE1_METRICS, means, strict=True):
            got = sum(paper.TABLE1[row][s][metric] for s in paper.SUBSETS.values()) / 4
            assert got == pytest.approx(expected, abs=6e-4), (row, metric)


def test_name_mapping():
    assert paper.table1_value("clip_l14_336", "gr", "Google_WIT", "ndcg@10") == 0.648
    assert paper.table1_value("openclip_b16", "none", "VisualNews", "recall@1") == 0.543
    assert paper.table1_value("toy", "gr", "MSCOCO", "ndcg@10") is None
    assert paper.table1_value("clip_b16", "pushdown", "MSCOCO", "ndcg@10") is None
    assert paper.paper_benchmark("beir/nfcorpus") == "NFCorpus"
    # VLM2Vec's rows are its joint embedding, uncalibrated; family names map like exact ones
    assert paper.table1_value("vlm2vec_qwen2vl_7b", "none", "OVEN", "ndcg@10", "joint") == 0.412
    assert paper.table1_value("vlm2vec_qwen2vl_7b", "none", "OVEN", "ndcg@10", "weighted") is None
    assert paper.table1_value("vlm2vec_llava_next", "gr", "OVEN", "ndcg@10") is None
    assert paper.table1_value("siglip", "gr", "OVEN", "ndcg@10", "weighted") == 0.532


def test_table1_places_vlm2vec_rows_beside_the_papers_and_compute_figure(tmp_path):
    sweep = tmp_path / "sweep"
    rows = [("vlm2vec_qwen2vl_7b", "none", "joint", 45000.0), ("vlm2vec_qwen2vl_7b", "gr", "joint", 45000.0),
            ("vlm2vec_qwen2vl_7b", "none", "weighted", 60000.0), ("siglip", "gr", "weighted", 600.0)]
    for n, (model, cal, fusion, gflops) in enumerate(rows):
        make_job(sweep, n, model=model, calibration=cal, subset="OVEN", fusion=fusion,
                 metrics=_metrics(n), compute={"gflops_per_doc": gflops})
    assert report.main([str(sweep), "--figures", "table1", "compute"]) == 0
    table = pd.read_csv(sweep / "table1.csv")
    assert set(table["method"]) == {"VLM2Vec-Qwen", "GR-VLM2Vec-Qwen", "VLM2Vec-Qwen [weighted]",
                                    "GR-SigLIP-400m"}
    ndcg = table[table["metric"] == "ndcg@10"].set_index("method")["paper"]
    assert ndcg["VLM2Vec-Qwen"] == 0.412 and ndcg["GR-SigLIP-400m"] == 0.532
    assert ndcg[["GR-VLM2Vec-Qwen", "VLM2Vec-Qwen [weighted]"]].isna().all()
    compute = pd.read_csv(sweep / "compute.csv")
    assert len(compute) == 4 and sorted(compute["gflops_per_doc"]) == [600.0, 45000.0, 45000.0, 60000.0]
    assert (sweep / "compute.png").exists()
    assert paper.paper_benchmark("ToyOVEN") is None
    assert paper.figure_readings(paper.FIGURE3, "clip_b16", "OVEN")["gr"][0] == (0.55, 0.77)


def test_summary_lists_failed_missing_and_corrupt_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, model="toy", calibration="none", subset="ToyCOCO", metrics=_metrics(1))
    make_job(sweep, 1, model="toy", calibration="bogus", subset="ToyCOCO",
             error="ConfigError: calibration.method: unknown method 'bogus'")
    missing = make_job(sweep, 2, model="toy", calibration="gr", subset="ToyCOCO", metrics=_metrics(2))
    (missing / "status.json").unlink()
    corrupt = make_job(sweep, 10, model="toy", calibration="gr", subset="ToyOVEN", metrics=_metrics(3))
    (corrupt / "metrics.json").write_text("{not json")
    frame = write_summary([sweep], sweep)
    assert list(frame["job"]) == ["0", "1", "2", "10"]
    assert list(frame["status"]) == ["ok", "failed", "missing", "corrupt"]
    assert frame.loc[1, "error"] == "ConfigError: calibration.method: unknown method 'bogus'"
    assert read_job(corrupt).error.startswith(f"{corrupt / 'metrics.json'}: not valid JSON")
    csv = pd.read_csv(sweep / "summary.csv")
    assert csv.loc[0, "ndcg@10"] == _metrics(1)["ndcg@10"]  # exact: full precision in the CSV
    assert csv.loc[0, "corpus.p"] == 0.0 and csv.loc[0, "calibration"] == "none"
    md = (sweep / "summary.md").read_text()
    assert "4 jobs: 1 ok, 3 not ok" in md and "unknown method 'bogus'" in md


def _mixbench_sweep(sweep: Path) -> dict[tuple, Path]:
    dirs, n = {}, 0
    for model in ("clip_b16", "siglip_so400m"):
        for cal in ("none", "gr"):
            for subset in ("MSCOCO", "OVEN"):
                dirs[model, cal, subset] = make_job(sweep, n, model=model, calibration=cal,
                                                    subset=subset, metrics=_metrics(n / 10))
                n += 1
    return dirs


def test_report_table1_side_by_side_with_paper(tmp_path):
    sweep, out = tmp_path / "sweep", tmp_path / "report"
    _mixbench_sweep(sweep)
    assert report.main([str(sweep), "--out", str(out), "--figures", "table1", "figure4"]) == 0
    t1 = pd.read_csv(out / "table1.csv")
    assert len(t1) == 8 * 3
    for r in t1.itertuples(index=False):
        got = json.loads((Path(r.run_dir) / "metrics.json").read_text())["metrics"][r.metric]
        assert r.ours == got
        assert r.paper == paper.table1_value(r.model, r.calibration, r.benchmark, r.metric)
        assert r.diff == pytest.approx(r.ours - r.paper)
    assert set(t1["method"]) == {"CLIP-B/16", "GR-CLIP-B/16", "SigLIP-400m", "GR-SigLIP-400m"}
    md = (out / "table1.md").read_text()
    assert "| GR-SigLIP-400m |" in md and ".696/.732/.548" not in md  # 0.696 formatted with 0
    assert "0.696/0.732/0.548" in md and "Δ = ours − paper" in md
    rows = [line.split(" | ")[0].strip("| ") for line in md.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["CLIP-B/16", "SigLIP-400m", "GR-CLIP-B/16", "GR-SigLIP-400m"]
    for suffix in (".png", ".pdf"):
        assert (out / f"figure4{suffix}").stat().st_size > 1000
    assert (out / "figure4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "figure4.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_all_figures_toy_names_not_comparable(tmp_path):
    sweep = tmp_path / "sweep"
    n = 0
    for cal in ("none", "gr", "pushdown"):
        for p in (0.0, 0.5, 1.0):
            make_job(sweep, n, model="toy", calibration=cal, subset="ToyCOCO", corpus="replace",
                     p=p, metrics=_metrics(n / 20))
            n += 1
    for cal in ("none", "gr"):
        for alpha in (0.0, 0.05, 1.0):
            make_job(sweep, n, model="toy", calibration=cal, subset="ToyOVEN",
                     corpus="all_multimodal", alpha=alpha, metrics=_metrics(n / 20))
            n += 1
        make_job(sweep, n, model="toy", calibration=cal, subset="ToyCOCO", metrics=_metrics(n / 20))
        n += 1
    assert report.main([str(sweep)]) == 0
    for name in ("figure2", "figure3", "figure4"):
        for suffix in (".png", ".pdf", ".csv"):
            assert (sweep / f"{name}{suffix}").stat().st_size > 0
    fig2 = pd.read_csv(sweep / "figure2.csv")
    assert len(fig2) == 9 and set(fig2["calibration"]) == {"none", "gr", "pushdown"}
    fig3 = pd.read_csv(sweep / "figure3.csv")
    assert sorted(fig3["alpha"].unique()) == [0.0, 0.05, 1.0]
    for r in fig3.to_dict("records"):
        assert r["ndcg@10"] == json.loads((Path(r["run_dir"]) / "metrics.json").read_text())["metrics"]["ndcg@10"]
    md = (sweep / "table1.md").read_text()
    assert "Not comparable with the paper" in md and "# Table 1 (toy benchmark, not the paper's data)" in md
    # one display name per model; GR rows say where their means come from
    assert "| toy CLIP | – |" in md and "| GR-toy CLIP | cross-fitted means (not the paper's recipe) |" in md
    assert pd.read_csv(sweep / "table1.csv")["paper"].isna().all()
    report_md = (sweep / "report.md").read_text()
    for name in ("figure2", "figure3", "figure4"):
        assert f"![{name}]({name}.png)" in report_md  # embedded, not only linked


def test_report_errors_name_the_problem(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, model="toy", calibration="gr", subset="ToyCOCO", metrics=_metrics(0))
    make_job(sweep, 1, model="toy", calibration="gr", subset="ToyCOCO", metrics=_metrics(1))
    assert report.main([str(sweep), "--figures", "table1"]) == 2
    err = capsys.readouterr().err
    assert "table1: several jobs for the same model/calibration/fusion/benchmark" in err
    assert str(sweep / "0") in err and str(sweep / "1") in err
    assert report.main([str(sweep), "--figures", "figure2"]) == 2
    assert "figure2: no finished job with corpus.mode=replace" in capsys.readouterr().err
    assert report.main([str(tmp_path / "nope")]) == 2
    assert f"sweep dir {tmp_path / 'nope'} does not exist" in capsys.readouterr().err


def test_summarize_cli_across_sweeps(tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    make_job(a, 0, model="toy", calibration="none", subset="ToyCOCO", metrics=_metrics(0))
    make_job(b, 0, model="toy", calibration="x", subset="ToyCOCO", error="ValueError: boom")
    proc = subprocess.run([sys.executable, "-m", "experiments.report", "summarize", str(a), str(b),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # one job failed
    frame = pd.read_csv(out / "summary.csv")
    assert list(frame["sweep"]) == ["a", "b"] and list(frame["status"]) == ["ok", "failed"]
    assert frame.loc[1, "error"] == "ValueError: boom"


def test_report_logged_to_wandb_offline(tmp_path, monkeypatch):
    from test_tracking import read_offline_run

    sweep = tmp_path / "sweep"
    _mixbench_sweep(sweep)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    assert report.main([str(sweep), "--figures", "table1", "figure4", "--wandb",
                        "--wandb-mode", "offline"]) == 0
    run = read_offline_run(tmp_path / "wb")
    assert run["exit_code"] == 0 and run["run"].run_group == f"{tmp_path.name}/sweep"
    assert Image.open(run["files"] / run["summary"]["figures/figure4/path"]).format == "PNG"
    table = json.loads((run["files"] / run["summary"]["table1/path"]).read_text())
    assert len(table["data"]) == 8 * 3 and "paper" in table["columns"]


@pytest.mark.slow
def test_report_from_a_toy_sweep(tmp_path):
    from test_multirun import run_py

    sweep = tmp_path / "sweep"
    run_py(tmp_path, "-m", "corpus=released,replace,all_multimodal", "calibration=none,gr",
           f"hydra.sweep.dir={sweep}")
    proc = subprocess.run([sys.executable, "-m", "experiments.report", str(sweep)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("table1.md", "table1.csv", "summary.md", "report.md",
                 *(f"figure{i}{s}" for i in (2, 3, 4) for s in (".png", ".pdf", ".csv"))):
        assert (sweep / name).stat().st_size > 0, name
    t1 = pd.read_csv(sweep / "table1.csv")
    assert len(t1) == 2 * 3 and t1["paper"].isna().all()  # toy: not comparable
    for r in t1.to_dict("records"):
        assert r["ours"] == json.loads((Path(r["run_dir"]) / "metrics.json").read_text())["metrics"][r["metric"]]
    for name, mode in (("figure2", "replace"), ("figure3", "all_multimodal"), ("figure4", "released")):
        for r in pd.read_csv(sweep / f"{name}.csv").to_dict("records"):
            result = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
            assert result["config"]["corpus"]["mode"] == mode
            assert r["ndcg@10"] == result["metrics"]["ndcg@10"]


def _per_query(run_dir: Path, values, qids=None, benchmark=None) -> None:
    qids = qids or [f"q{i}" for i in range(len(values))]
    if not (run_dir / "metrics.json").exists():  # a bare run dir: say which benchmark it ran
        bench = {"name": "toy/ToyCOCO", "subset": "ToyCOCO", "revision": None, **(benchmark or {})}
        (run_dir / "metrics.json").write_text(json.dumps({"benchmark": bench}))
    pd.DataFrame({"qid": qids, "target_modality": "text", "ndcg@10": values,
                  "recall@1": [float(v > 0.5) for v in values]}).to_csv(run_dir / "per_query.csv", index=False)


def test_summary_has_the_ndcg_bootstrap_ci(tmp_path):
    from mixsearch import stats

    sweep = tmp_path / "sweep"
    values = [0.1 * (i % 10) for i in range(60)]
    job = make_job(sweep, 0, model="toy", calibration="gr", subset="ToyCOCO", metrics=_metrics(0))
    _per_query(job, values)
    make_job(sweep, 1, model="toy", calibration="none", subset="ToyCOCO", metrics=_metrics(1))  # no per_query
    frame = write_summary([sweep], sweep)
    lo, hi = stats.mean_ci(values)
    assert (frame.loc[0, "ndcg@10_ci_low"], frame.loc[0, "ndcg@10_ci_high"]) == (lo, hi)
    assert lo < sum(values) / 60 < hi
    assert pd.isna(frame.loc[1, "ndcg@10_ci_low"])
    assert list(frame.columns[frame.columns.get_loc("ndcg@10"):][:3]) == ["ndcg@10", "ndcg@10_ci_low",
                                                                            "ndcg@10_ci_high"]
    md = (sweep / "summary.md").read_text()
    assert "ndcg@10_ci_low" in md and f"{lo:.4f}" in md


def test_compare_cli_json_and_self_comparison(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    va = [0.2 + 0.01 * (i % 7) for i in range(50)]
    vb = [v + 0.05 + 0.02 * (i % 3) for i, v in enumerate(va)]
    _per_query(a, va)
    _per_query(b, vb[::-1] + [0.9], qids=[f"q{i}" for i in range(49, -1, -1)] + ["only_b"])
    assert report.main(["compare", str(a), str(b), "--json", "--allow-different"]) == 0
    captured = capsys.readouterr()
    assert "warning: query sets differ: 0 only in A (first []), 1 only in B (first ['only_b'])" in captured.err
    out = captured.out.strip()
    got = json.loads(out)  # exactly one JSON object on stdout
    assert out.count("\n") == 0
    assert list(got) == ["metric", "a", "b", "delta", "ci_low", "ci_high", "p_value", "n_queries", "test"]
    assert got["n_queries"] == 50 and got["metric"] == "ndcg@10"
    assert got["delta"] == pytest.approx(sum(vb) / 50 - sum(va) / 50)
    assert 0 < got["ci_low"] < got["delta"] < got["ci_high"] and got["p_value"] < 0.001
    assert report.main(["compare", str(b), str(b), "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert (same["delta"], same["p_value"]) == (0.0, 1.0)
    assert report.main(["compare", str(a), str(b), "--metric", "recall@1", "--allow-different"]) == 0
    assert "recall@1 on 50 common queries" in capsys.readouterr().out
    assert report.main(["compare", str(a), str(tmp_path / "none")]) == 2
    assert f"{tmp_path / 'none' / 'per_query.csv'}: no such file" in capsys.readouterr().err
    assert report.main(["compare", str(a), str(b), "--metric", "mrr@10", "--allow-different"]) == 2
    assert "per_query.csv: per-query table has no 'mrr@10' column" in capsys.readouterr().err


@pytest.mark.parametrize(("bench_b", "qids_b", "problem"), [
    ({"name": "beir/scifact", "subset": None}, None,
     "benchmark name differs: A 'toy/ToyCOCO', B 'beir/scifact'; benchmark subset differs: "
     "A 'ToyCOCO', B None"),
    ({"split": "dev"}, None, "benchmark split differs: A None, B 'dev'"),
    ({"revision": "abc"}, None, "benchmark revision differs: A None, B 'abc'"),
    ({}, [f"q{i}" for i in range(1, 21)],
     "query sets differ: 1 only in A (first ['q0']), 1 only in B (first ['q20'])"),
])
def test_compare_refuses_runs_on_different_queries(tmp_path, capsys, bench_b, qids_b, problem):
    """Per-query rows pair by id: ids that coincide across benchmarks, splits or query sets
    must not get a paired delta unless asked (--allow-different)."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    values = [0.1 * (i % 10) for i in range(20)]
    _per_query(a, values)
    _per_query(b, values[::-1], qids=qids_b, benchmark=bench_b)
    assert report.main(["compare", str(a), str(b), "--json"]) == 2
    err = capsys.readouterr().err
    assert f"error: {a} and {b} are not runs on the same queries: {problem} (pass --allow-different" in err
    assert report.main(["compare", str(a), str(b), "--json", "--allow-different"]) == 0
    assert f"warning: {problem.split('; ')[0]}" in capsys.readouterr().err
    (b / "metrics.json").unlink()
    assert report.main(["compare", str(a), str(b)]) == 2
    assert f"{b / 'metrics.json'}: unreadable" in capsys.readouterr().err


def test_modality_figure_and_figure_cis_from_per_query_scores(tmp_path):
    from mixsearch import stats

    sweep = tmp_path / "sweep"
    scores = {"text": [0.9, 0.8, 1.0, 0.7], "image": [0.0, 0.1, 0.3, 0.2]}
    for n, cal in enumerate(("none", "gr")):
        job = make_job(sweep, n, model="clip_l14", calibration=cal, subset="MSCOCO", metrics=_metrics(n))
        result = json.loads((job / "metrics.json").read_text())
        result["by_target_modality"] = {m: {"n_queries": 4, "ndcg@10": sum(v) / 4 + n / 10}
                                        for m, v in scores.items()}
        (job / "metrics.json").write_text(json.dumps(result))
        pd.DataFrame({"qid": [f"q{i}" for i in range(8)],
                      "target_modality": ["text"] * 4 + ["image"] * 4,
                      "ndcg@10": [v + n / 10 for v in scores["text"] + scores["image"]]}
                     ).to_csv(job / "per_query.csv", index=False)
    assert report.main([str(sweep), "--figures", "table1", "figure4", "modality"]) == 0
    modality = pd.read_csv(sweep / "modality.csv")
    assert len(modality) == 4 and set(modality["model_name"]) == {"CLIP-L/14-224"}
    image_gr = modality[(modality["calibration"] == "gr") & (modality["target_modality"] == "image")].iloc[0]
    assert image_gr["ndcg@10"] == pytest.approx(0.15 + 0.1)
    assert (image_gr["ndcg@10_ci_low"], image_gr["ndcg@10_ci_high"]) == stats.mean_ci(
        [v + 0.1 for v in scores["image"]])
    assert (sweep / "modality.png").stat().st_size > 0
    # figure 4 carries the whole run's CI; the 224-px CLIP-L/14 is not the paper's row
    fig4 = pd.read_csv(sweep / "figure4.csv")
    assert (fig4["ndcg@10_ci_low"] < fig4["ndcg@10_ci_high"]).all()
    assert "| CLIP-L/14-224 |" in (sweep / "table1.md").read_text()
    assert "![modality](modality.png)" in (sweep / "report.md").read_text()


def test_setting1_axis_stretches_p_near_one():
    import matplotlib.pyplot as plt

    from experiments.plots import _near_one_axis

    fig, ax = plt.subplots()
    _near_one_axis(ax)
    ax.plot([0.0, 1.0], [0.0, 1.0])
    to_axes = (ax.transData + ax.transAxes.inverted()).transform
    x = {p: to_axes((p, 0.5))[0] for p in (0.0, 0.9, 0.99, 1.0)}
    plt.close(fig)
    assert x[0.0] == pytest.approx(0.0, abs=1e-9) and x[1.0] == pytest.approx(1.0)
    # the last 10 % of p take over half of the axis; 0.99 -> 1 keeps a visible gap
    assert x[1.0] - x[0.9] > 0.5 and x[1.0] - x[0.99] > 0.2


def test_labels_of_nearby_points_do_not_overlap():
    import matplotlib.pyplot as plt

    from experiments.plots import place_labels

    fig, ax = plt.subplots(figsize=(4, 3))
    points = [(20.0, 0.624), (32.0, 0.593), (100.0, 0.66), (150.0, 0.631), (600.0, 0.672)]
    ax.scatter(*zip(*points, strict=True))
    ax.set_xscale("log")
    fig.tight_layout()
    place_labels(ax, [(x, y, f"paper: GR-model-{i}", {"fontsize": 6}) for i, (x, y) in enumerate(points)])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    plt.close(fig)
    assert len(boxes) == len(points)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_toy_scores_get_their_own_axis_beside_the_papers(tmp_path, monkeypatch):
    from experiments import plots

    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out, rect=None: drawn.setdefault("axes", fig.axes) and [])
    points = pd.DataFrame({"method": ["toy CLIP", "GR-toy CLIP"], "calibration": ["none", "gr"],
                           "gflops_per_doc": [0.004, 0.004], "ndcg10": [0.35, 0.63]})
    plots.compute_scatter(points, [("CLIP-B/16", 32.0, 0.45)], "t", tmp_path / "c", separate=True)
    ours, theirs = drawn["axes"]
    assert [len(c.get_offsets()) for c in ours.collections] == [1, 1]
    assert [len(c.get_offsets()) for c in theirs.collections] == [1]
    assert ours.get_ylim() != theirs.get_ylim()
