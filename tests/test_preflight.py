"""Preflight of a multirun: jobs expanded as Hydra's basic sweeper does, every job's config
checked, missing models and datasets named once with the commands that fetch them."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mixsearch.preflight import (
    PreflightCallback,
    fetch_command,
    job_problems,
    missing_files,
    sweep_jobs,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
BASIC = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _multirun(params: dict[str, str], task: list[str], target: str = BASIC):
    return OmegaConf.create({"preflight": True, "hydra": {
        "sweeper": {"_target_": target, "params": params},
        "overrides": {"task": task}, "sweep": {"dir": "/nonexistent/sweep"}}})


def _compose(tmp_path: Path):
    def one(job: list[str]):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("config", overrides=[*job, f"paths.output_dir={tmp_path / 'never'}",
                                                f"paths.data_dir={tmp_path / 'data'}"],
                           return_hydra_config=True)
    return one


def test_jobs_are_the_basic_sweepers_product_in_launch_order() -> None:
    config = _multirun({"model": "toy,st"}, ["fusion.alpha=0.1,0.2,0.3", "seed=1"])
    expected = [[f"model={m}", f"fusion.alpha={a}", "seed=1"]
                for m, a in itertools.product(("toy", "st"), ("0.1", "0.2", "0.3"))]
    assert sweep_jobs(config) == expected
    # a command-line sweep of a key the experiment sweeps too replaces it, as Hydra does
    assert sweep_jobs(_multirun({"model": "toy,st"}, ["model=toy"])) == [["model=toy"]]
    assert sweep_jobs(_multirun({}, ["seed=1"], target="hydra_plugins.optuna.OptunaSweeper")) is None


def test_each_distinct_config_error_is_one_line_with_its_job_count(tmp_path: Path) -> None:
    jobs = [["fusion.alpha=0.5"], ["fusion.alpha=1.5"], ["fusion.alpha=1.5", "seed=1"], ["model=st"]]
    problems, models, datasets = job_problems(jobs, _compose(tmp_path))
    assert problems == [
        "config: fusion.alpha: 1.5 is out of range (allowed: [0.0, 1.0]) (job: fusion.alpha=1.5; 2 jobs)",
        "config: model.name: required, not set; give a hub id or local folder, e.g. model=st "
        "model.name=sentence-transformers/clip-ViT-B-32 or model=mteb "
        "model.name=mteb/baseline-random-encoder (job: model=st)",
    ]
    assert [k.split(" (")[0] for k in models] == ["toy"] and [k.split(" (")[0] for k in datasets] == ["toy"]
    assert not (tmp_path / "data").exists() and not (tmp_path / "never").exists()


def test_missing_models_and_datasets_are_named_with_their_fetch_commands(tmp_path: Path) -> None:
    jobs = [[f"model={m}", f"dataset={d}"] for m in ("toy", "clip_b16") for d in ("toy", "mixbench_oven")]
    problems, models, datasets = job_problems(jobs, _compose(tmp_path))
    assert problems == [] and len(models) == 2 and len(datasets) == 2
    missing = missing_files(models, datasets)
    assert len(missing) == 2
    assert missing[0].startswith("model clip_b16: openai/clip-vit-base-patch16 is not in the hub cache")
    assert missing[0].endswith("run: hf download openai/clip-vit-base-patch16")
    assert missing[1].startswith("dataset mixbench_oven: cannot load MixBench subset 'OVEN'")
    assert "--revision 17a9e705b2346b118a63f163f10e47325f9e9ecc" in missing[1]  # the loader's pin
    assert fetch_command(missing) == ("python -m experiments.download --models clip_b16 "
                                      "--datasets mixbench_oven")


def test_a_toy_root_that_does_not_exist_is_missing_and_the_default_is_not(tmp_path: Path) -> None:
    bad = tmp_path / "typo"
    _, _, datasets = job_problems([["dataset=toy"], [f"dataset.root={bad}"]], _compose(tmp_path))
    assert missing_files({}, datasets) == [f"dataset toy: dataset.root={bad} does not exist"]


def test_mbeir_jobs_are_checked_for_the_files_they_read(tmp_path: Path) -> None:
    """M-BEIR is always a local copy: no root, a task without its query file and a task without
    its qrels file are each named before any job starts; a complete copy passes."""
    from mixsearch.data.mbeir_fixture import write_mbeir_fixture

    root = write_mbeir_fixture(tmp_path / "M-BEIR")
    (root / "qrels" / "test" / "mbeir_oven_task6_test_qrels.txt").unlink()
    jobs = [["dataset=mbeir"], ["dataset=mbeir", f"dataset.root={root}", "dataset.task=mscoco_task0"],
            ["dataset=mbeir", f"dataset.root={root}", "dataset.task=nights_task4"],
            ["dataset=mbeir", f"dataset.root={root}", "dataset.task=oven_task6"]]
    problems, _, datasets = job_problems(jobs, _compose(tmp_path))
    assert problems == [] and len(datasets) == 4
    missing = missing_files({}, datasets)
    assert len(missing) == 3, missing
    assert "dataset.root=None is not an M-BEIR copy; pre-download it with `hf download TIGER-Lab/M-BEIR" in missing[0]
    assert "M-BEIR task 'nights_task4'" in missing[1] and "not found" in missing[1]
    assert "mbeir_oven_task6_test_qrels.txt not found" in missing[2]


def test_preflight_false_skips_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import mixsearch.preflight as pf

    called = []
    monkeypatch.setattr(pf, "preflight", lambda *a: called.append(a) or ["a problem"])
    config = _multirun({}, ["model=st"])
    config.preflight = False
    PreflightCallback().on_multirun_start(config)
    assert called == []
    config.preflight = True
    with pytest.raises(SystemExit) as e:
        PreflightCallback().on_multirun_start(config)
    assert e.value.code == 2 and len(called) == 1
