"""`python run.py` end to end in a subprocess: results contract, cache reuse, multirun, errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tiny_models import make_tiny_openclip

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated toy benchmark for every run in this module (generation takes seconds)."""
    return tmp_path_factory.mktemp("data")


def _env(tmp: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MIXSEARCH_DATA_DIR=str(data),
        MIXSEARCH_CACHE_DIR=str(tmp / "cache"),
        MIXSEARCH_LOG_DIR=str(tmp / "outputs"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="disabled",
        PYTHONUNBUFFERED="1",
    )
    return env


def _run(args: list[str], env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "run.py", *args, "embed.progress=false"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        preexec_fn=lambda: os.umask(0o022),  # result files must then be 0644
    )
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _run_dirs(tmp: Path, kind: str) -> list[Path]:
    return sorted(p.parent for p in (tmp / "outputs" / "mixsearch" / kind).rglob("metrics.json"))


def _cache_snapshot(cache: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in cache.rglob("*") if p.is_file()}


def test_default_run_writes_contract_and_second_run_uses_cache(tmp_path: Path, shared_data: Path) -> None:
    env = _env(tmp_path, shared_data)
    first = _run([], env)
    assert "ndcg@10=" in first.stdout and "recall@1=" in first.stdout
    assert "encoded" in first.stdout
    [run_dir] = _run_dirs(tmp_path, "runs")
    result = json.loads((run_dir / "metrics.json").read_text())
    for key in ("metrics", "by_target_modality", "topk_modality_share", "gap", "calibration",
                "config", "versions"):
        assert key in result, key
    assert 0.0 <= result["metrics"]["ndcg@10"] <= 1.0
    assert result["config"]["calibration"]["method"] == "none"
    assert result["config"]["fusion"]["alpha"] == 0.5
    per_query = pd.read_csv(run_dir / "per_query.csv")
    assert len(per_query) == result["benchmark"]["n_queries"]
    assert per_query["ndcg@10"].mean() == pytest.approx(result["metrics"]["ndcg@10"], abs=1e-9)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "ok"
    for name in ("metrics.json", "per_query.csv", "status.json", "run.trec"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name
    lines = (run_dir / "run.trec").read_text().splitlines()
    assert len(lines) == result["benchmark"]["n_queries"] * 100
    qid, q0, _, rank, score, tag = lines[0].split(" ")
    assert (q0, rank, tag) == ("Q0", "1", "mixsearch") and float(score) <= 1.0
    assert result["git"] is None or len(result["git"]["commit"]) == 40
    assert f"results: {run_dir}" in first.stdout
    assert "ndcg@10=" in (run_dir / "run.log").read_text()
    compute = result["encoder"]["compute"]
    assert compute["gflops_per_text"] > 0 and compute["gflops_per_image"] > 0
    assert compute["parameters"] > 0 and compute["items_per_s"] > 0

    before = _cache_snapshot(tmp_path / "cache")
    second = _run([], env)
    assert "taken from the cache" in second.stdout and "encoded" not in second.stdout
    assert _cache_snapshot(tmp_path / "cache") == before  # a hit reads only
    runs = _run_dirs(tmp_path, "runs")
    assert len(runs) == 2
    again = json.loads((runs[-1] / "metrics.json").read_text())
    assert again["metrics"] == result["metrics"]


def test_multirun_over_two_model_configs(tmp_path: Path, shared_data: Path) -> None:
    conf = tmp_path / "extra_conf" / "model"
    conf.mkdir(parents=True)
    for name, seed in (("tiny_a", 1), ("tiny_b", 2)):
        folder = make_tiny_openclip(tmp_path / name, seed=seed)
        (conf / f"{name}.yaml").write_text(
            "_target_: mixsearch.encoders.openclip.OpenClipEncoder\n"
            f"model_name: local-dir:{folder}\ndevice: cpu\n"
        )
    env = _env(tmp_path, shared_data)
    _run(["-m", "model=tiny_a,tiny_b", "calibration=gr",
          f"hydra.searchpath=[file://{tmp_path / 'extra_conf'}]"], env)
    runs = _run_dirs(tmp_path, "multiruns")
    assert len(runs) == 2
    results = [json.loads((d / "metrics.json").read_text()) for d in runs]
    assert {r["config"]["model"]["model_name"].split("/")[-1] for r in results} == {"tiny_a", "tiny_b"}
    assert all(r["calibration"]["method"] == "gr" for r in results)
    # different weights, different embeddings: the jobs did not share a cache entry
    assert results[0]["embedding"]["encoded_items"] > 0 and results[1]["embedding"]["encoded_items"] > 0


def test_bad_options_fail_with_a_message_naming_them(tmp_path: Path, shared_data: Path) -> None:
    env = _env(tmp_path, shared_data)
    proc = _run(["model=no_such_model"], env, ok=False)
    assert proc.returncode != 0 and "no_such_model" in proc.stderr
    missing = tmp_path / "nowhere"
    proc = _run(["dataset=mixbench_mscoco", f"dataset.root={missing}"], env, ok=False)
    assert proc.returncode != 0 and str(missing) in proc.stderr
    proc = _run(["calibration.method=bogus"], env, ok=False)
    assert proc.returncode != 0 and "calibration.method" in proc.stderr


def test_setting1_on_a_text_only_corpus_renders_and_caches_screenshots(
    tmp_path: Path, shared_data: Path
) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    words = "heart cancer diet fiber vitamin obesity protein sugar salt blood".split()
    docs = [{"_id": f"d{i}", "title": f"Study {i}",
             "text": " ".join(words[(i * 7 + k) % len(words)] for k in range(25))} for i in range(20)]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{j}", "text": docs[2 * j]["text"][:40]}) + "\n" for j in range(5)))
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{j}\td{2 * j}\t1\n" for j in range(5)))
    env = _env(tmp_path, shared_data)
    args = ["dataset=beir_nfcorpus", f"dataset.root={beir}", "corpus=replace", "corpus.p=0.5",
            "calibration=gr"]
    first = _run(args, env)
    assert "encoded 45 items" in first.stdout  # 5 queries + 20 doc texts + 20 screenshots
    [run_dir] = _run_dirs(tmp_path, "runs")
    result = json.loads((run_dir / "metrics.json").read_text())
    assert result["corpus"]["counts"] == {"text": 10, "image": 10, "image+text": 0}
    assert result["corpus"]["n_screenshots"] == 10
    assert result["calibration"]["source"] == "crossfit"  # no calibration split: leak-free
    second = _run(args, env)
    assert "all 45 items taken from the cache" in second.stdout  # rendering is deterministic


def test_wandb_offline_from_the_environment(tmp_path: Path, shared_data: Path) -> None:
    """`WANDB_MODE=offline python run.py -m logger=wandb ...`: no API key needed; each job's W&B
    config holds Hydra's choices; the multirun adds a sweep run with the alpha curves."""
    from test_tracking import _decode

    env = _env(tmp_path, shared_data)
    env.update(WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wb"), WANDB_PROJECT="e2e")
    env.pop("WANDB_API_KEY", None)
    _run(["-m", "logger=wandb", "calibration=gr", "fusion.alpha=0.0,1.0"], env)
    runs = {}
    for d in (tmp_path / "wb" / "wandb").glob("offline-run-*"):
        (log,) = d.glob("run-*.wandb")
        run = _decode(log.read_bytes(), d)
        runs[run["run"].display_name] = run
    assert sorted(runs) == ["fusion.alpha=0.0", "fusion.alpha=1.0", f"sweep {runs['fusion.alpha=0.0']['run'].run_group}"]
    job = runs["fusion.alpha=1.0"]
    assert job["run"].project == "e2e"
    assert job["config"]["choices"]["model"] == "toy" and job["config"]["choices"]["calibration"] == "gr"
    assert job["config"]["model_name"] == "toy CLIP"
    assert "bench:toy" in job["run"].tags
    assert job["summary"]["ndcg@10"] == json.loads((Path(job["config"]["paths"]["output_dir"]) / "metrics.json")
                                                   .read_text())["metrics"]["ndcg@10"]
    sweep = runs[f"sweep {job['run'].run_group}"]
    curve = [(r["fusion_alpha"], r["curves/fusion_alpha/ndcg@10"]) for r in sweep["rows"]
             if "curves/fusion_alpha/ndcg@10" in r]
    assert curve == [(0.0, runs["fusion.alpha=0.0"]["summary"]["ndcg@10"]), (1.0, job["summary"]["ndcg@10"])]


def test_joint_fusion_with_a_dual_encoder_fails_before_extraction(tmp_path: Path, shared_data: Path) -> None:
    env = _env(tmp_path, shared_data)
    proc = _run(["fusion=joint"], env, ok=False)
    assert proc.returncode != 0
    assert "joint" in proc.stderr and "toy:toy_clip" in proc.stderr and "fusion=weighted" in proc.stderr
    assert not (tmp_path / "cache").exists()  # nothing was extracted
