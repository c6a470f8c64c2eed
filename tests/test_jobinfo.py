"""Hydra's job context read from files: choices, swept keys, groups, display names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mixsearch.jobinfo import (
    benchmark_kind,
    model_display_name,
    read_job_info,
    sweep_group,
    swept_keys,
)


def _multirun(tmp_path: Path, task: list[str], params: dict[str, str] | None) -> Path:
    path = tmp_path / "multirun.yaml"
    path.write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}, "sweeper": {"params": params}}}))
    return path


def test_swept_keys_command_line_replaces_the_experiments_params(tmp_path):
    path = _multirun(tmp_path, ["model=toy,clip_b16", "dataset=toy", "+seed=range(0,3)", "corpus.p=0.5"],
                     {"dataset": "mixbench_oven,mixbench_mscoco", "calibration": "none,gr", "corpus.p": "0.1,0.9"})
    # dataset: a single value on the command line wins over the params' sweep; corpus.p too
    assert swept_keys(path) == ["calibration", "model", "seed"]


def test_swept_keys_bad_override_names_the_file(tmp_path):
    path = _multirun(tmp_path, ["model=[unclosed"], None)
    with pytest.raises(ValueError, match="multirun.yaml: cannot parse the sweep's overrides"):
        swept_keys(path)


def test_read_job_info_of_a_job_and_of_a_bare_dir(tmp_path):
    sweep = tmp_path / "out" / "stamp"
    job = sweep / "0"
    (job / ".hydra").mkdir(parents=True)
    _multirun(sweep, ["calibration=none,gr", "model=toy"], None)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["calibration=gr", "model=toy"]))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {
        "model": "toy", "calibration": "gr", "experiment": None, "hydra/launcher": "basic"}}}}))
    info = read_job_info(job)
    assert info.choices == {"model": "toy", "calibration": "gr"}
    assert info.swept == ["calibration"] and info.swept_overrides == ["calibration=gr"]
    assert info.sweep_dir == sweep.resolve()
    assert sweep_group(sweep) == "out/stamp"
    bare = read_job_info(tmp_path / "notebook")
    assert (bare.choices, bare.overrides, bare.swept, bare.sweep_dir) == ({}, [], [], None)


def test_display_names_and_benchmark_kinds():
    assert model_display_name("clip_l14_336") == "CLIP-L/14"
    assert model_display_name("clip_l14") == "CLIP-L/14-224"  # the seed's 224-px checkpoint, apart
    assert model_display_name("st", {"name": "BAAI/bge-m3"}) == "BAAI/bge-m3"
    assert model_display_name("gme_qwen2vl_2b", {"model_id_or_path": "Alibaba-NLP/gme"}) == "gme_qwen2vl_2b"
    assert model_display_name(None, {"model_id_or_path": "openai/clip-vit-base-patch16"}) == "openai/clip-vit-base-patch16"
    assert model_display_name(None, {"_target_": "mixsearch.encoders.toy.ToyEncoder"}) == "ToyEncoder"
    assert benchmark_kind("toy") == "toy"
    assert benchmark_kind("mixbench_oven") == "mixbench"
    assert benchmark_kind(None, {"_target_": "mixsearch.data.beir.load_beir"}) == "beir"
    assert benchmark_kind("my_local_set") == "my_local_set"
