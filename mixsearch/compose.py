"""Compose sections of the repository's Hydra config tree (``conf/``) outside ``run.py``, for
command-line tools that take a config name (``python -m mixsearch index --model clip_b16``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixsearch.config import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str]) -> dict[str, Any]:
    """The run config that ``python run.py <overrides>`` would compose, as plain dicts, with
    the sections that need Hydra's runtime (``paths.output_dir``, ``hydra``) left out.

    Raises:
        ConfigError: no conf/ folder (a non-editable install) or a bad override (named).
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from mixsearch.schema import register_configs

    if not (CONF / "config.yaml").is_file():
        raise ConfigError(f"{CONF}/config.yaml not found: model configs need a source checkout "
                          "(pip install -e .)")
    register_configs()  # conf/config.yaml extends the structured schema
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
        cfg.paths.output_dir = ""  # a Hydra runtime value; no tool run here has one
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"config overrides {' '.join(overrides)}: {e}") from e
