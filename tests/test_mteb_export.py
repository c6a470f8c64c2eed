"""export-mteb: run folders written as mteb result files that mteb's own loaders read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mteb
import pytest

from experiments.report import main as report_main
from mixsearch.data.mteb_fixture import write_it2it
from mixsearch.mteb_export import (
    ExportError,
    experiment_kwargs,
    export_runs,
    mteb_metric,
    task_name,
)

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"ndcg@10": 0.61234567, "recall@5": 0.7, "mrr@10": 0.55, "ndcg@1": 0.5}


def _run(folder: Path, bench: dict, calibration: str = "none", fusion: str = "weighted", **extra) -> Path:
    folder.mkdir(parents=True)
    config = {"calibration": {"method": calibration, "source": "auto"},
              "fusion": {"method": fusion, "alpha": 0.5, "query": "weighted", "query_alpha": 0.5},
              "corpus": {"mode": "released"}, "retrieval": {"merge": "single", "backend": "exact"},
              "model": {"_target_": "x"}, "main_metric": "ndcg@10", **extra}
    (folder / "metrics.json").write_text(json.dumps({
        "metrics": METRICS, "benchmark": bench, "config": config, "seconds": 12.5,
        "encoder": {"name": "open_clip:ViT-B-16", "model_name": "ViT-B-16", "pretrained": "openai", "dim": 512},
        "versions": {"mixsearch": "0.1.0"}}))
    return folder


MTEB_BENCH = {"name": "mteb/OVENIT2ITRetrieval", "mteb_task": "OVENIT2ITRetrieval", "split": "test",
              "hf_subset": "default", "revision": "619847759581b2e57dfc1d68e2dadedc9599b283",
              "main_score": "ndcg_at_10"}
MIX_BENCH = {"name": "mixbench/MSCOCO", "revision": "abc"}


def _cache(out: Path, tmp: Path) -> mteb.ResultCache:
    """An mteb ResultCache whose ``results`` folder is the export."""
    (tmp / "cache").mkdir()
    os.symlink(out, tmp / "cache" / "results")
    return mteb.ResultCache(tmp / "cache")


def test_names_follow_mteb() -> None:
    assert [mteb_metric(m) for m in ("ndcg@10", "recall@5", "mrr@100")] == \
        ["ndcg_at_10", "recall_at_5", "mrr_at_100"]
    assert task_name(MIX_BENCH) == "MixBenchMSCOCO"
    assert task_name({"name": "mixbench/Google_WIT"}) == "MixBenchGoogleWIT"
    assert task_name({"name": "toy/ToyCOCO"}) == "ToyCOCO"
    assert task_name(MTEB_BENCH) == "OVENIT2ITRetrieval"
    plain = {"calibration": {"method": "none"}, "fusion": {"method": "joint"}}
    assert experiment_kwargs(plain) == {}
    assert experiment_kwargs({"calibration": {"method": "gr", "source": "transductive"},
                              "fusion": {"method": "weighted", "alpha": 0.3}}) == \
        {"calibration": "gr", "calibration_source": "transductive", "fusion": "weighted", "fusion_alpha": 0.3}
    # scoring mteb does not do is a setting of its own, not the model's plain result
    assert experiment_kwargs({**plain, "metrics": {"absent_qrels": "drop", "gain": "linear"}}) == \
        {"metrics_absent_qrels": "drop"}
    assert experiment_kwargs({**plain, "metrics": {"absent_qrels": "count", "ndcg_variant": "seed_topk"}}) == \
        {"metrics_ndcg_variant": "seed_topk"}


def test_layout_and_mteb_reads_back_equal_scores(tmp_path: Path) -> None:
    runs = tmp_path / "sweep"
    _run(runs / "0", MTEB_BENCH)
    _run(runs / "1", MTEB_BENCH, calibration="gr", fusion="score")
    _run(runs / "2", MIX_BENCH)
    out = tmp_path / "out"
    written = export_runs([runs], out)
    model = out / "open_clip__ViT-B-16-openai" / "no_revision_available"
    assert written == sorted([model / "MixBenchMSCOCO.json", model / "OVENIT2ITRetrieval.json",
                              model / "experiments" / "calibration_gr__fusion_score" / "OVENIT2ITRetrieval.json"])
    for path in written:
        assert (path.parent / "model_meta.json").is_file()
        result = mteb.TaskResult.from_disk(path)
        entry = result.scores["test"][0]
        assert entry["ndcg_at_10"] == pytest.approx(METRICS["ndcg@10"], abs=1e-6)
        assert entry["main_score"] == entry["ndcg_at_10"] and entry["recall_at_5"] == 0.7
        assert entry["hf_subset"] == "default" and entry["languages"] == ["eng-Latn"]
        assert result.evaluation_time == 12.5 and result.kg_co2_emissions is None
        assert result.mteb_version == mteb.__version__
    raw = json.loads((model / "MixBenchMSCOCO.json").read_text())
    assert raw["dataset_revision"] == "abc" and "is not an mteb task" in raw["mixsearch"]["note"]
    assert "note" not in json.loads((model / "OVENIT2ITRetrieval.json").read_text())["mixsearch"]
    # mteb's result cache: the plain use, and the experiment by the name it derives itself
    cache = _cache(out, tmp_path)
    plain = cache.load_results(include_remote=False, load_experiments="no_experiments")
    assert {t.task_name for m in plain.model_results for t in m.task_results} == \
        {"MixBenchMSCOCO", "OVENIT2ITRetrieval"}
    every = cache.load_results(include_remote=False, load_experiments="match_name")
    names = {m.experiment_name for m in every.model_results}
    assert names == {None, "calibration_gr__fusion_score"}


def test_two_runs_for_one_file_are_refused(tmp_path: Path) -> None:
    _run(tmp_path / "a", MTEB_BENCH, seed=0)
    _run(tmp_path / "b", MTEB_BENCH, seed=1)
    with pytest.raises(ExportError, match="both export to"):
        export_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert report_main(["export-mteb", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.slow
def test_run_sweeps_export_and_report(tmp_path: Path) -> None:
    """`python run.py -m calibration=none,gr` on the toy benchmark and on an mteb task, then
    export-mteb (mteb reads back every metric) and the gr_help table over both sweeps."""
    copy = write_it2it(tmp_path / "oven", n=8)
    env = {**os.environ, "MIXSEARCH_DATA_DIR": str(tmp_path / "data"),
           "MIXSEARCH_CACHE_DIR": str(tmp_path / "cache"), "MIXSEARCH_LOG_DIR": str(tmp_path / "logs")}
    sweeps = []
    for args in ([], ["dataset=mteb", "dataset.task=OVENIT2ITRetrieval", f"dataset.root={copy}"]):
        proc = subprocess.run([sys.executable, "run.py", "-m", *args, "calibration=none,gr",
                               "embed.progress=false", f"hydra.sweep.dir={tmp_path}/sweep{len(sweeps)}"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        sweeps.append(tmp_path / f"sweep{len(sweeps)}")
    out = tmp_path / "export"
    assert report_main(["export-mteb", *map(str, sweeps), "--out", str(out)]) == 0
    model = out / "mixsearch__toy_clip" / "no_revision_available"
    for sweep, task in zip(sweeps, ("ToyCOCO", "OVENIT2ITRetrieval"), strict=True):
        for job in ("0", "1"):
            run = json.loads((sweep / job / "metrics.json").read_text())
            sub = "" if run["config"]["calibration"]["method"] == "none" else "experiments/calibration_gr"
            entry = mteb.TaskResult.from_disk(model / sub / f"{task}.json").scores["test"][0]
            for name, value in run["metrics"].items():
                assert entry[mteb_metric(name)] == pytest.approx(value, abs=1e-6)
    report = tmp_path / "report"
    assert report_main([*map(str, sweeps), "--out", str(report), "--figures", "gr_help"]) == 0
    table = (report / "gr_help.md").read_text()
    assert "| ToyCOCO |" in table and "| mteb/OVENIT2ITRetrieval |" in table
    assert "Holm-corrected over 2 comparisons" in table


def test_a_run_on_an_undated_local_copy_is_exported_with_a_warning(tmp_path: Path, caplog) -> None:
    bench = {**MTEB_BENCH, "revision_check": "unverified: corpus/test.parquet has no download metadata"}
    _run(tmp_path / "run", bench)
    with caplog.at_level("WARNING", logger="mixsearch.mteb_export"):
        (path,) = export_runs([tmp_path / "run"], tmp_path / "out")
    assert mteb.TaskResult.from_disk(path).dataset_revision == MTEB_BENCH["revision"]
    assert "dataset_revision 619847759581b2e57dfc1d68e2dadedc9599b283 is mteb's pinned one" in caplog.text
    assert "corpus/test.parquet has no download metadata" in caplog.text
    caplog.clear()
    _run(tmp_path / "dated", MTEB_BENCH)
    export_runs([tmp_path / "dated"], tmp_path / "out2")
    assert "pinned one" not in caplog.text
