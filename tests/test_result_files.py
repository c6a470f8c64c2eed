"""Result files anyone can read and recompute: the TREC run scored by pytrec_eval gives
metrics.json's numbers, files follow the umask, the checkout's commit is recorded."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import pytrec_eval
from test_evaluate import synthetic

from mixsearch.evaluation import Evaluator
from mixsearch.tracking import atomic_write_text, git_commit, trec_run_text, write_results


def _read_run(text: str) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        qid, q0, doc, rank, score, tag = line.split(" ")
        assert q0 == "Q0" and tag == "mixsearch" and int(rank) >= 1
        run.setdefault(qid, {})[doc] = float(score)
    return run


def _truncated(run: dict[str, dict[str, float]], k: int) -> dict[str, dict[str, float]]:
    """The first k lines per query: the top k as ranked (for recip_rank at a cutoff)."""
    return {q: dict(list(docs.items())[:k]) for q, docs in run.items()}


@pytest.mark.parametrize("calibration,alpha,merge", [
    ("none", 0.5, "single"), ("gr", 0.3, "single"), ("gr", 1.0, "single"),
    ("gr", 0.5, "rrf"),  # merged lists: many equal scores, ordered as trec_eval orders ties
    ("none", 0.5, "zscore"),
])
def test_run_file_scored_by_pytrec_eval_gives_the_metrics(calibration: str, alpha: float, merge: str) -> None:
    bench, embs, pools = synthetic(query_images=True)
    result = Evaluator(bench, embs, calibration={"method": calibration}, pools=pools,
                       retrieval={"merge": merge}).run({"alpha": alpha})
    text = trec_run_text(result.ranked, result.scores)
    run = _read_run(text)
    assert len(text.splitlines()) == sum(len(v) for v in result.ranked.values())
    ks = (1, 5, 10, 100)
    measures = {"ndcg_cut." + ",".join(map(str, ks)), "recall." + ",".join(map(str, ks))}
    per_query = pytrec_eval.RelevanceEvaluator(bench.qrels, measures).evaluate(run)
    for k in ks:
        for ours, theirs in ((f"ndcg@{k}", f"ndcg_cut_{k}"), (f"recall@{k}", f"recall_{k}")):
            mean = sum(v[theirs] for v in per_query.values()) / len(per_query)
            assert result.metrics[ours] == pytest.approx(mean, abs=1e-12), ours
        rr = pytrec_eval.RelevanceEvaluator(bench.qrels, {"recip_rank"}).evaluate(_truncated(run, k))
        mrr = sum(v["recip_rank"] for v in rr.values()) / len(rr)
        assert result.metrics[f"mrr@{k}"] == pytest.approx(mrr, abs=1e-12)


def test_run_file_keeps_full_precision_and_refuses_whitespace_ids() -> None:
    score = 0.1234567890123456
    assert trec_run_text({"q1": ["d1"]}, {"q1": [score]}) == f"q1 Q0 d1 1 {score!r} mixsearch\n"
    assert float(trec_run_text({"q": ["d"]}, {"q": [score]}).split()[4]) == score
    with pytest.raises(ValueError, match="'doc 1'"):
        trec_run_text({"q1": ["doc 1"]}, {"q1": [1.0]})


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        write_results(tmp_path, {"metrics": {}}, pd.DataFrame({"qid": ["q"]}), run="q Q0 d 1 1.0 t\n")
        atomic_write_text(tmp_path / "summary.md", "x")
    finally:
        os.umask(old)
    for name in ("metrics.json", "per_query.csv", "run.trec", "summary.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert not list(tmp_path.glob(".*tmp"))


def test_git_commit_of_a_checkout(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None  # not a checkout
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "f").write_text("a")
    git("add", "f")
    git("commit", "-qm", "c")
    assert git_commit(tmp_path) == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "f").write_text("b")
    assert git_commit(tmp_path)["dirty"] is True
