"""What Hydra recorded about a job in its run dir: config-group choices, overrides, sweep.

Hydra writes ``<run dir>/.hydra/{hydra,overrides}.yaml`` before the job starts and
``<sweep dir>/multirun.yaml`` before a multirun launches its jobs, so trackers and summaries can
read the job's context from files, without importing Hydra's global state. A run dir without
them (``mixsearch.evaluate`` from a notebook) has an empty context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Readable model names, one per model config; tables, figures and W&B all use these. The
#: paper's models get the paper's names; clip_l14_336 is the paper's CLIP-L/14, so the seed
#: code's 224-px checkpoint is named apart. Family configs name the size they load.
MODEL_NAMES: dict[str, str] = {
    "clip_b16": "CLIP-B/16",
    "clip_l14": "CLIP-L/14-224",
    "clip_l14_336": "CLIP-L/14",
    "openclip_b16": "OpenCLIP-B/16",
    "openclip_l14": "OpenCLIP-L/14",
    "siglip_so400m": "SigLIP-400m",
    "clip": "CLIP-L/14",
    "openclip": "OpenCLIP-L/14",
    "siglip": "SigLIP-400m",
    "vlm2vec_qwen2vl_7b": "VLM2Vec-Qwen",
    "vlm2vec_llava_next": "VLM2Vec-LLaVA-Next",
    "toy": "toy CLIP",
}


def model_display_name(choice: str | None, model_cfg: dict[str, Any] | None = None) -> str:
    """The readable name of a model: :data:`MODEL_NAMES` for our configs, else the ``name`` of
    a generic config (``model=st model.name=BAAI/bge-m3``), else the config name, else the
    checkpoint or encoder class.

    Args:
        choice: the ``model=`` config name (Hydra's choice), None outside Hydra.
        model_cfg: the resolved ``model`` section.
    """
    cfg = model_cfg or {}
    if choice in MODEL_NAMES:
        return MODEL_NAMES[choice]
    if cfg.get("name"):
        return str(cfg["name"])
    if choice:
        return choice
    for key in ("model_id_or_path", "model_name", "checkpoint"):
        if cfg.get(key):
            return str(cfg[key])
    return str(cfg.get("_target_", "unknown")).rpartition(".")[2]


def benchmark_kind(choice: str | None, dataset_cfg: dict[str, Any] | None = None) -> str:
    """``toy``, ``mixbench``, ``beir`` or the dataset config name: what a tag should say."""
    target = str((dataset_cfg or {}).get("_target_", ""))
    name = choice or ""
    if name == "toy" or target.endswith(".load_toy"):
        return "toy"
    if name.startswith("mixbench") or target.endswith(".load_mixbench"):
        return "mixbench"
    if name.startswith("beir") or target.endswith(".load_beir"):
        return "beir"
    return name or target.rpartition(".")[2] or "unknown"


def read_yaml(path: Path) -> Any:
    """A YAML file's content; a parse error names the file."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e


@dataclass
class JobInfo:
    """A job's Hydra context.

    Attributes:
        choices: config-group choices (``model``, ``dataset``, ``experiment``, ...), Hydra's
            own ``hydra`` and ``hydra/*`` groups left out; unset optional groups are absent.
        overrides: the job's overrides (``calibration=gr``, ``fusion.alpha=0.25``).
        swept: keys that vary across the job's multirun (empty for a single run).
        sweep_dir: the multirun's dir, None for a single run.
    """

    choices: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    sweep_dir: Path | None = None

    @property
    def swept_overrides(self) -> list[str]:
        """The job's overrides of swept keys, in the job's order."""
        return [o for o in self.overrides if override_key(o) in self.swept]


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``."""
    return override.partition("=")[0].lstrip("+~")


def hydra_choices(hydra_yaml: Path) -> dict[str, str]:
    """``hydra.runtime.choices`` of a ``.hydra/hydra.yaml``, without ``hydra/*`` and unset groups."""
    runtime = ((read_yaml(hydra_yaml) or {}).get("hydra") or {}).get("runtime") or {}
    return {k: str(v) for k, v in (runtime.get("choices") or {}).items()
            if k != "hydra" and not k.startswith("hydra/") and v is not None}


def swept_keys(multirun_yaml: Path) -> list[str]:
    """Keys a multirun sweeps (``a=1,2``, ``range(...)``): the sweeper's ``params`` (from an
    experiment config), then the command line, whose value for a key replaces the params' one
    as in Hydra's basic sweeper (``experiment=paper/setting2 dataset=toy`` sweeps no dataset)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra = (read_yaml(multirun_yaml) or {}).get("hydra") or {}
    params = (hydra.get("sweeper") or {}).get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()]
    lines += [str(o) for o in ((hydra.get("overrides") or {}).get("task") or [])]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception as e:  # noqa: BLE001 - hydra raises its own OverrideParseException
        raise ValueError(f"{multirun_yaml}: cannot parse the sweep's overrides: {e}") from e
    sweeps: dict[str, bool] = {}
    for o in parsed:
        sweeps[override_key(o.input_line)] = o.is_sweep_override()
    return [k for k, is_sweep in sweeps.items() if is_sweep]


def read_job_info(run_dir: str | Path) -> JobInfo:
    """The Hydra context of the job in ``run_dir`` (empty when Hydra left no files there).

    Raises:
        ValueError: a Hydra file is not valid YAML (names the file).
    """
    run_dir = Path(run_dir)
    info = JobInfo()
    hydra_dir = run_dir / ".hydra"
    if (hydra_dir / "hydra.yaml").is_file():
        info.choices = hydra_choices(hydra_dir / "hydra.yaml")
    if (hydra_dir / "overrides.yaml").is_file():
        info.overrides = [str(o) for o in read_yaml(hydra_dir / "overrides.yaml") or []]
    parent = run_dir.resolve().parent
    if (parent / "multirun.yaml").is_file():
        info.sweep_dir = parent
        info.swept = swept_keys(parent / "multirun.yaml")
    return info


def sweep_group(sweep_dir: str | Path) -> str:
    """W&B group of a sweep: its dir's last two parts (``<stamp>/setting1`` under ``make``,
    ``multiruns/<stamp>`` by default), so two invocations never share a group while a
    re-launch into the same dir does."""
    path = Path(sweep_dir).resolve()
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
