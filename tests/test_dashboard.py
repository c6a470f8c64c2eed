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


def test_dry_run_writes_the_specs_and_never_saves(tmp_path, monkeypatch):
    import wandb_workspaces.workspaces.internal as internal

    def no_network(*args, **kwargs):
        raise AssertionError("dry run tried to save the view")

    monkeypatch.setattr(internal, "upsert_view2", no_network)
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    out = tmp_path / "spec.json"
    assert dashboard.main(["--dry-run", "--out", str(out), "--project", "p",
                           "--filters", "Config('model_name') = 'CLIP-B/16'"]) == 0
    specs = json.loads(out.read_text())
    assert list(specs) == ["table1", "sweeps", "toy"]
    assert all(s["project"] == "p" for s in specs.values())
    panels = _panels(specs["table1"])
    table1 = panels["Table 1: NDCG@10, NDCG@100, Recall@1 by model × calibration"]
    assert [p["config"]["metrics"] for p in table1] == [["ndcg@10"], ["ndcg@100"], ["recall@1"]]
    assert {p["config"]["groupBy"] for p in table1} == {"model_calibration.value"}
    # the error bars say what they are over
    assert all("standard error over the runs of each bar" in p["config"]["chartTitle"] for p in table1)
    (modality,) = panels["NDCG@10 per target modality (Table 1 runs)"]
    assert modality["config"]["metrics"] == [f"by_target_modality/{m}/ndcg@10" for m in ("text", "image", "image+text")]
    (gap,) = panels["Modality gap before and after calibration (Table 1 runs)"]
    assert gap["config"]["metrics"] == ["gap/centroid_distance_before", "gap/centroid_distance_after"]
    sweeps = _panels(specs["sweeps"])
    alpha = sweeps["α curves (setting 2: all docs image+text, text weight α)"]
    assert alpha[0]["viewType"] == "Run History Line Plot"
    assert alpha[0]["config"]["xAxis"] == "fusion_alpha"
    assert alpha[0]["config"]["metricRegex"] == "^curves/fusion_alpha/.*"
    assert alpha[1]["config"]["xAxis"] == "config:fusion.value.alpha"
    assert sweeps["p curves (setting 1: ratio p of docs shown as images)"][0]["config"]["xAxis"] == "corpus_p"
    assert all(name.startswith("toy: ") for name in _panels(specs["toy"]))
    for key in ("sweeps", "toy"):  # sweep panels group by sweep (the W&B group is the sweep dir)
        (runset,) = specs[key]["spec"]["section"]["runSets"]
        assert runset["grouping"] == [{"section": "run", "name": "group"}]
    for spec in specs.values():  # --filters narrows every view
        (runset,) = spec["spec"]["section"]["runSets"]
        assert runset["filters"]["filters"][-1]["value"] == "CLIP-B/16"


# ---- which runs each view shows, on a project with every kind of run ------------------------


def _matches(run: dict, flt: dict) -> bool:
    """One W&B filterV2 clause against a run as W&B stores it (dotted config names are paths
    into the nested config, as the W&B UI writes them)."""
    section, name = flt["key"]["section"], flt["key"]["name"]
    if section == "run":
        value = run[name]
    elif name in run["config"]:
        value = run["config"][name]
    else:
        value = run["config"]
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    op, want = flt["op"], flt["value"]
    if op == "=":
        return value == want
    if op == "!=":
        return value != want
    if op == "IN":
        return value in want
    if op == "NIN":
        return value not in want
    raise AssertionError(f"filter op {op} not handled by this test")


def _shown(spec: dict, runs: dict[str, dict]) -> set[str]:
    (runset,) = spec["spec"]["section"]["runSets"]
    clauses = runset["filters"]["filters"]
    assert all(c.get("connector", "AND") == "AND" for c in clauses)
    return {name for name, run in runs.items() if all(_matches(run, c) for c in clauses)}


def _tracked_run(tmp_path: Path, name: str, overrides: list[str], *, joint: bool = False,
                 sweep: bool = True) -> dict:
    """A run's W&B config and job type as mixsearch.tracking writes them, from the composed
    config of ``python run.py <overrides>`` and the Hydra files of its job dir."""
    import yaml
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from mixsearch.pipeline import resolve_fusion
    from mixsearch.tracking import result_facts, wandb_run_facts

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "logger=wandb",
                                           f"paths.output_dir={tmp_path / name}"], return_hydra_config=True)
    run_dir = tmp_path / name.split("/")[0] / name.split("/")[-1] if sweep else tmp_path / name
    (run_dir / ".hydra").mkdir(parents=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if sweep:
        (run_dir.parent / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": overrides}}}))
    with open_dict(cfg):
        del cfg["hydra"]
    container = OmegaConf.to_container(cfg, resolve=True)
    facts = wandb_run_facts(container, run_dir)
    encoder = type("Encoder", (), {"supports_joint": joint})()
    ran = {**container, "fusion": {**container["fusion"], **resolve_fusion(container["fusion"], encoder)}}
    config = {**facts["config"], **result_facts({"config": ran, "encoder": {"supports_joint": joint}})}
    return {"config": config, "jobType": container["logger"]["job_type"], "group": facts["group"]}


def test_each_view_shows_only_its_runs(tmp_path):
    """The acceptance case: a project with paper runs, α and p sweeps on MixBench, toy sweeps
    and a sweep's own summary run; Table 1 shows exactly the paper runs."""
    paper = ["experiment=paper/mixbench", "corpus=released"]
    kinds = {
        "paper/clip-oven-none": ([*paper, "dataset=mixbench_oven", "model=clip_b16", "calibration=none"], False),
        "paper/clip-oven-gr": ([*paper, "dataset=mixbench_oven", "model=clip_b16", "calibration=gr"], False),
        "paper/clip-coco-gr": ([*paper, "dataset=mixbench_mscoco", "model=clip_b16", "calibration=gr"], False),
        "paper/vlm2vec-coco-gr": ([*paper, "dataset=mixbench_mscoco", "model=vlm2vec_qwen2vl_7b",
                                   "calibration=gr"], True),
        # VLM2Vec with α-weighted fusion is not its Table 1 row
        "other/vlm2vec-weighted": ([*paper, "dataset=mixbench_mscoco", "model=vlm2vec_qwen2vl_7b",
                                    "calibration=gr", "fusion=weighted"], True),
        "alpha/a05": (["experiment=paper/setting2", "dataset=mixbench_oven", "fusion.alpha=0.5",
                       "calibration=gr"], False),
        "alpha/a03": (["experiment=paper/setting2", "dataset=mixbench_oven", "fusion.alpha=0.3",
                       "calibration=gr"], False),
        "p/p05": (["experiment=paper/setting1", "dataset=mixbench_mscoco", "corpus.p=0.5",
                   "calibration=none"], False),
        "toy/paper": ([*paper, "dataset=toy", "calibration=gr"], False),
        "toyalpha/a05": (["experiment=paper/setting2", "dataset=toy", "fusion.alpha=0.5"], False),
        "released/abl": (["dataset=mixbench_oven", "calibration=gr"], False),  # no experiment
    }
    runs = {name: _tracked_run(tmp_path, name, o, joint=j) for name, (o, j) in kinds.items()}
    # the α sweep's own run (curves), as log_sweep_to_wandb writes it
    runs["alpha/summary"] = {"config": {"experiment": "paper/setting2", "bench": "mixbench",
                                        "choices": {"experiment": "paper/setting2"}},
                             "jobType": "sweep", "group": runs["alpha/a05"]["group"]}
    specs = {w: dashboard.workspace_spec(dashboard.build_workspace("e", "p", w)) for w in ("table1", "sweeps", "toy")}
    assert _shown(specs["table1"], runs) == {n for n in runs if n.startswith("paper/")}
    assert _shown(specs["sweeps"], runs) == {n for n in runs if not n.startswith("toy")}
    assert _shown(specs["toy"], runs) == {"toy/paper", "toyalpha/a05"}
    assert runs["alpha/a05"]["group"] == runs["alpha/a03"]["group"] != runs["p/p05"]["group"]


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
    assert "3 views, 7 sections, 13 panels" in proc.stdout
    assert {s["project"] for s in json.loads(out.read_text()).values()} == {"mixsearch"}
