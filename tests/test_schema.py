"""The structured schema: one source of defaults and types, values checked before anything loads."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict

from mixsearch.config import ConfigError
from mixsearch.embed.extract import embed_records
from mixsearch.schema import defaults, register_configs, section_options, validate

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SECTIONS = ("corpus", "calibration", "fusion", "retrieval", "metrics", "embed")
# the key that names a group option's mode: its YAML may restate it even when it is the default
SELECTORS = {"corpus": "mode", "calibration": "method", "fusion": "method", "retrieval": "backend"}


def _compose(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def _resolved(overrides: list[str], tmp_path: Path) -> dict:
    cfg = _compose([*overrides, f"hydra.runtime.output_dir={tmp_path}"])
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)  # paths.output_dir reads ${hydra:runtime.output_dir}
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def test_no_private_base_is_a_choice() -> None:
    groups = [p for p in CONF.rglob("*") if p.is_dir()]
    private = [str(p.relative_to(CONF)) for g in groups for p in g.glob("_*.yaml")]
    assert private == []  # bases live at conf/base_*.yaml, outside every group
    assert _compose(["model=clip_b16"]).model._target_ == "mixsearch.encoders.hf.HFEncoder"
    assert _compose(["model=openclip_b16"]).model.precision == "fp32"
    assert _compose(["dataset=mixbench_oven"]).dataset.subset == "OVEN"


@pytest.mark.parametrize("section", SECTIONS)
def test_composed_defaults_are_the_schema_defaults(section: str, tmp_path: Path) -> None:
    cfg = _resolved(["device=cpu"], tmp_path)
    expected = defaults(section)
    if section == "retrieval":
        expected["device"] = "cpu"  # retrieval/exact.yaml: device: ${device}
    assert cfg[section] == expected


def test_group_files_do_not_restate_defaults() -> None:
    for section in SECTIONS:
        base = defaults(section)
        for path in (CONF / section).glob("*.yaml"):
            values = yaml.safe_load(path.read_text()) or {}
            for key, value in values.items():
                if key in ("defaults", SELECTORS.get(section)) or str(value).startswith("${"):
                    continue
                assert key in base, f"{path}: {key} is not an option of {section}"
                assert value != base[key], f"{path}: {key}={value!r} restates the schema default"


def test_embed_options_are_embed_records_signature() -> None:
    params = inspect.signature(embed_records).parameters
    embed = defaults("embed")
    # devices is the pipeline's (one extraction process per device, mixsearch/embed/devices.py)
    assert embed.pop("devices") is None
    for key, value in embed.items():
        assert params[key].default == value
    assert "cache" not in defaults("embed") and "stats" not in defaults("embed")


def test_types_are_checked_while_composing() -> None:
    with pytest.raises(ConfigCompositionException) as e:
        _compose(["fusion.alpha=abc"])
    assert "fusion.alpha" in str(e.value.__cause__)
    with pytest.raises(ConfigCompositionException):
        _compose(["retrieval.k=ten"])
    with pytest.raises(ConfigCompositionException):
        _compose(["fusion.alhpa=0.3"])  # misspelt option


@pytest.mark.parametrize(
    "override,option",
    [
        ("fusion.alpha=1.5", "fusion.alpha"),
        ("fusion.query_alpha=-0.1", "fusion.query_alpha"),
        ("corpus.mode=mixed", "corpus.mode"),
        ("calibration.method=bogus", "calibration.method"),
        ("calibration.source=nowhere", "calibration.source"),
        ("retrieval.k=0", "retrieval.k"),
        ("retrieval.backend=annoy", "retrieval.backend"),
        ("metrics.ks=[1,0]", "metrics.ks"),
        ("metrics.gain=cubic", "metrics.gain"),
        ("embed.batch_size=0", "embed.batch_size"),
        ("embed.amp=fp8", "embed.amp"),
        ("device=gpu", "device"),
        ("main_metric=ndcg@3", "main_metric"),
        ("logger.name=tensorboard", "logger.name"),
        ("calibration=i0t", None),
        ("+calibration.params.eps=0", "calibration.params"),  # gr takes no parameters
        ("retrieval.merge=borda", "retrieval.merge"),
        ("corpus.order=shuffled", "corpus.order"),
        ("embed.image_key=inode", "embed.image_key"),
        ("+model.checkpont=x", "model"),
        ("dataset.subset=ToyCOCO", None),
        ("dataset.on_missing=ignore", "dataset.on_missing"),
        ("dataset.on_missing=skip", None),
    ],
)
def test_values_are_checked_naming_the_option(override: str, option: str | None, tmp_path: Path) -> None:
    cfg = _resolved([override, "calibration.method=gr"] if "params" in override else [override], tmp_path)
    if option is None:
        assert validate(cfg, overrides=[override]) == []
        return
    with pytest.raises(ConfigError) as e:
        validate(cfg, overrides=[override])
    assert str(e.value).startswith(option)


def test_calibration_training_sets_are_checked(tmp_path: Path) -> None:
    cfg = _resolved(["calibration=gr_paper"], tmp_path)
    assert validate(cfg, overrides=["calibration=gr_paper"]) == []
    cfg["calibration"]["train_sets"][1]["role"] = "doc_audio"
    with pytest.raises(ConfigError, match=r"^calibration\.train_sets\[1\]\.role"):
        validate(cfg)
    cfg = _resolved(["calibration=gr_paper"], tmp_path)
    cfg["calibration"]["train_sets"][0]["dataset"]["paht"] = "x"
    with pytest.raises(ConfigError, match=r"^calibration\.train_sets\[0\]\.dataset"):
        validate(cfg)


def test_inactive_option_on_the_command_line_without_its_mode_is_an_error(tmp_path: Path) -> None:
    cfg = _resolved(["corpus.p=0.3"], tmp_path)
    with pytest.raises(ConfigError, match=r"^corpus\.p=0\.3 has no effect.*corpus=replace"):
        validate(cfg, overrides=["corpus.p=0.3"])
    cfg = _resolved(["calibration.folds=3"], tmp_path)
    with pytest.raises(ConfigError, match=r"^calibration\.folds=3 has no effect"):
        validate(cfg, overrides=["calibration.folds=3"])
    cfg = _resolved(["corpus=replace", "corpus.p=0.3"], tmp_path)
    assert validate(cfg, overrides=["corpus=replace", "corpus.p=0.3"]) == []


def test_inactive_option_with_a_swept_mode_is_a_named_warning(tmp_path: Path, caplog) -> None:
    """A job of ``-m calibration=none,gr calibration.source=crossfit``: source is GR's option."""
    overrides = ["calibration=none", "calibration.source=crossfit"]
    cfg = _resolved(overrides, tmp_path)
    with caplog.at_level(logging.WARNING, logger="mixsearch.schema"):
        warnings = validate(cfg, overrides=overrides)
    assert warnings == ["calibration.source='crossfit' has no effect: it applies with "
                        "calibration.method that fits a state (not none / pushdown), "
                        "but calibration.method='none'"]
    assert warnings[0] in caplog.text
    # in library use (no command line) it is a warning as well
    assert section_options("corpus", {"mode": "released", "p": 0.2}, warnings=(w := [])) and w


def test_library_sections_share_the_checks() -> None:
    assert section_options("fusion", {"alpha": 0.2}) == {**defaults("fusion"), "alpha": 0.2}
    with pytest.raises(ConfigError, match=r"^fusion\.alpha"):
        section_options("fusion", {"alpha": 2})
    with pytest.raises(ConfigError, match=r"^fusion\.alhpa: unknown option"):
        section_options("fusion", {"alhpa": 0.2})


def test_bad_value_fails_before_any_data_or_embedding(tmp_path: Path) -> None:
    """The acceptance case: nothing generated in an empty data dir, no cache file written."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    env = {**os.environ, "MIXSEARCH_DATA_DIR": str(data), "MIXSEARCH_CACHE_DIR": str(cache),
           "MIXSEARCH_LOG_DIR": str(tmp_path / "logs"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "run.py", "fusion.alpha=1.5"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "fusion.alpha: 1.5 is out of range" in proc.stderr + proc.stdout
    assert list(data.iterdir()) == []
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
    [status] = (tmp_path / "logs").rglob("status.json")
    assert "fusion.alpha" in status.read_text()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=st"], r"^model\.name: required, not set; give a hub id or local folder"),
        (["model=mteb"], r"^model\.name: required, not set"),
        (["model=precomputed"], r"^model\.queries: required, not set; give the precomputed query"),
        (["model=precomputed", "model.queries=q.pt"], r"^model\.corpus: required"),
        (["metrics.ks=[10,1000]"], r"^metrics\.ks=\[10, 1000\] asks for cut-offs beyond retrieval\.k=100"),
        (["calibration=pushdown", "retrieval.merge=rrf"], r"^calibration=pushdown .*retrieval\.merge=rrf"),
    ],
)
def test_required_values_and_conflicts_fail_at_compose_time(
        overrides: list[str], message: str, tmp_path: Path) -> None:
    cfg = _resolved(overrides, tmp_path)
    with pytest.raises(ConfigError, match=message):
        validate(cfg, overrides=overrides)


def test_ks_within_k_and_a_named_model_pass(tmp_path: Path) -> None:
    overrides = ["metrics.ks=[10,1000]", "retrieval.k=1000", "model=st", "model.name=some/model"]
    assert validate(_resolved(overrides, tmp_path), overrides=overrides) == []


@pytest.mark.parametrize(("override", "named"), [("model=st", "model.name"),
                                                 ("metrics.ks=[10,1000]", "retrieval.k")])
def test_missing_name_and_ks_conflict_exit_2_creating_nothing(override: str, named: str, tmp_path: Path) -> None:
    """The acceptance case: one line naming the option, exit 2, no data or cache dir."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    env = {**os.environ, "MIXSEARCH_DATA_DIR": str(data), "MIXSEARCH_CACHE_DIR": str(cache),
           "MIXSEARCH_LOG_DIR": str(tmp_path / "logs"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "run.py", override], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("config error:")]
    assert named in line and override.split("=")[0].replace("model", "model.name") in line
    assert "Traceback" not in proc.stderr
    assert not data.exists() and not cache.exists()


def test_composed_config_pickles() -> None:
    """Launchers that run jobs in other processes (submitit, joblib) pickle the typed config."""
    import pickle

    cfg = _compose(["calibration=gr_paper", "fusion.alpha=0.3"])
    again = pickle.loads(pickle.dumps(cfg))
    assert again.fusion.alpha == 0.3 and again.embed.batch_size == defaults("embed")["batch_size"]
