"""The Hydra config tree composes for every option, and the paper's checkpoints are named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mixsearch.schema import register_configs

CONF = Path(__file__).resolve().parents[1] / "conf"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def _compose(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_groups_named_in_design_exist() -> None:
    assert {"toy", "clip_b16", "clip_l14", "clip_l14_336", "openclip_b16", "openclip_l14",
            "siglip_so400m", "precomputed"} <= set(_options("model"))
    assert {"toy", "mixbench_mscoco", "mixbench_google_wit", "mixbench_visualnews",
            "mixbench_oven"} <= set(_options("dataset"))
    assert {"none", "gr"} <= set(_options("calibration"))
    assert {"released", "remix", "replace", "all_multimodal"} <= set(_options("corpus"))


@pytest.mark.parametrize(
    "model,key,expected",
    [
        ("clip_b16", "model_id_or_path", "openai/clip-vit-base-patch16"),
        ("clip_l14", "model_id_or_path", "openai/clip-vit-large-patch14"),
        ("clip_l14_336", "model_id_or_path", "openai/clip-vit-large-patch14-336"),
        ("siglip_so400m", "model_id_or_path", "google/siglip-so400m-patch14-384"),
        ("openclip_b16", "model_name", "hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K"),
        ("openclip_l14", "model_name", "hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K"),
    ],
)
def test_paper_checkpoints(model: str, key: str, expected: str) -> None:
    cfg = _compose([f"model={model}"])
    assert cfg.model[key] == expected
    assert cfg.model._target_.startswith("mixsearch.encoders.")


def test_siglip_pads_to_max_length_as_trained() -> None:
    cfg = _compose(["model=siglip_so400m"])
    assert cfg.model.text_padding == "max_length" and cfg.model.max_length == 64


@pytest.mark.parametrize("dataset", _options("dataset"))
def test_every_dataset_composes(dataset: str, tmp_path: Path) -> None:
    cfg = _compose([f"dataset={dataset}", f"hydra.runtime.output_dir={tmp_path}"])
    assert cfg.dataset._target_.startswith("mixsearch.data.")
    if dataset.startswith("mixbench_"):
        assert cfg.dataset.subset in {"MSCOCO", "Google_WIT", "VisualNews", "OVEN"}
        assert cfg.dataset.root is None  # hub by default; a local folder via dataset.root
        assert len(cfg.dataset.revision) == 40  # pinned


@pytest.mark.parametrize(
    "group", ["corpus", "calibration", "fusion", "retrieval", "metrics", "logger"]
)
def test_every_option_composes(group: str) -> None:
    for option in _options(group):
        cfg = _compose([f"{group}={option}"])
        assert OmegaConf.select(cfg, group) is not None


def test_defaults_are_offline_toy() -> None:
    cfg = _compose([])
    assert cfg.dataset._target_ == "mixsearch.data.toy.load_toy"
    assert cfg.model._target_ == "mixsearch.encoders.toy.ToyEncoder"
    assert cfg.calibration.method == "none"
    assert cfg.fusion.alpha == 0.5
