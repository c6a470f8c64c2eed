"""The paper's W&B workspace as code: its spec offline, the keys it plots are the ones we log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mixsearch import dashboard

ROOT = Path(__file__).resolve().parents[1]


def _panels(spec: dict) -> dict[str, list[dict]]:
    sections = spec["spec"]["section"]["panelBankConfig"]["sections"]
    return {s["name"]: [p for p in s["panels"]] for s in sections}


def test_dry_run_writes_the_spec_and_never_saves(tmp_path, monkeypatch):
    import wandb_workspaces.workspaces.internal as internal

    def no_network(*args, **kwargs):
        raise AssertionError("dry run tried to save the view")

    monkeypatch.setattr(internal, "upsert_view2", no_network)
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    out = tmp_path / "spec.json"
    assert dashboard.main(["--dry-run", "--out", str(out), "--project", "p",
                           "--filters", "Config('corpus.mode') = 'released'"]) == 0
    spec = json.loads(out.read_text())
    assert spec["project"] == "p" and spec["displayName"] == "mixsearch: closing the modality gap"
    panels = _panels(spec)
    table1 = panels["NDCG@10 by model × calibration (Table 1)"]
    assert [p["config"]["metrics"] for p in table1] == [["ndcg@10"], ["ndcg@100"], ["recall@1"]]
    assert {p["config"]["groupBy"] for p in table1} == {"model_calibration.value"}
    alpha = panels["α curves (setting 2: all docs image+text, text weight α)"]
    assert alpha[0]["viewType"] == "Run History Line Plot"
    assert alpha[0]["config"]["xAxis"] == "fusion_alpha"
    assert alpha[0]["config"]["metricRegex"] == "^curves/fusion_alpha/.*"
    assert alpha[1]["config"]["xAxis"] == "config:fusion.value.alpha"
    p_curves = panels["p curves (setting 1: ratio p of docs shown as images)"]
    assert p_curves[0]["config"]["xAxis"] == "corpus_p"
    (modality,) = panels["NDCG@10 per target modality"]
    assert modality["config"]["metrics"] == [f"by_target_modality/{m}/ndcg@10" for m in ("text", "image", "image+text")]
    (gap,) = panels["Modality gap before and after calibration"]
    assert gap["config"]["metrics"] == ["gap/centroid_distance_before", "gap/centroid_distance_after"]
    (runset,) = spec["spec"]["section"]["runSets"]
    assert runset["filters"]["filters"][0]["value"] == "released"


def test_plotted_keys_are_what_the_tracker_logs():
    """The dashboard's summary keys exist in a tracked result (flattened as the tracker does)."""
    from test_tracking import RESULT

    from mixsearch.tracking import _scalars

    logged = _scalars({**RESULT, "by_target_modality": {m: {"ndcg@10": 0.5} for m in dashboard.MODALITIES}})
    for key in [*dashboard.TABLE1_METRICS, "gap/centroid_distance_before", "gap/centroid_distance_after",
                *(f"by_target_modality/{m}/ndcg@10" for m in dashboard.MODALITIES)]:
        assert key in logged, key


def test_saving_needs_an_entity(monkeypatch, capsys):
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    with pytest.raises(SystemExit) as exc:
        dashboard.main([])
    assert exc.value.code == 2
    assert "--entity (or WANDB_ENTITY) is required" in capsys.readouterr().err


def test_cli_dry_run(tmp_path):
    out = tmp_path / "spec.json"
    proc = subprocess.run([sys.executable, "-m", "mixsearch.dashboard", "--dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "5 sections, 9 panels" in proc.stdout
    assert json.loads(out.read_text())["project"] == "mixsearch"
