"""Preflight of a multirun: before any job starts, check once that every job's config composes
and validates and that every model and dataset the jobs need is present (a local path or the hub
cache). Anything wrong is printed as one list, with the commands that fetch what is missing, and
the sweep exits with status 2 without starting a job (instead of N jobs failing the same way).

:class:`PreflightCallback` (``conf/hydra/default.yaml``) runs it when a multirun starts; skip it
with ``preflight=false`` (e.g. a launcher whose nodes, not this machine, hold the hub cache).
``python -m experiments.download --check`` uses the same presence checks.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

#: files of which one must be cached for a hub repo to count as present, by kind
_CONFIGS = {"hf": ("config.json",), "openclip": ("open_clip_config.json",),
            "st": ("modules.json", "config.json"), "adapter": ("adapter_config.json",)}
_WEIGHTS = {"hf": ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"),
            "openclip": ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
            "st": ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"),
            "adapter": ("adapter_model.safetensors", "adapter_model.bin")}


def _hub_id(value: Any) -> str | None:
    """``value`` when it names a hub repo (``org/name``, not an existing local path)."""
    text = str(value or "")
    return text if "/" in text and not Path(text).exists() else None


def model_files(name: str, spec: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """``(kind, hub repo, revision)`` of every hub repo a model config loads, [] for local ones.

    Kinds: ``hf`` (transformers), ``openclip``, ``st`` (Sentence Transformers or an mteb model's
    repo) and ``adapter`` (a LoRA adapter merged into its base, e.g. VLM2Vec-Qwen2VL-7B).
    """
    target = str(spec.get("_target_", ""))
    hub_name = str(spec.get("model_name") or "")
    if hub_name.startswith("hf-hub:"):
        return [("openclip", hub_name.removeprefix("hf-hub:"), None)]
    if target.endswith("MtebEncoder"):
        mteb_name = str(spec.get("name"))
        if mteb_name.startswith("mteb/"):  # mteb's baselines are computed, not downloaded
            return []
        revision = spec.get("revision")
        if revision is None:
            import mteb

            meta = mteb.get_model_meta(mteb_name, fetch_from_hf=False)
            if not meta.open_weights:
                return []
            revision = meta.revision
        return [("st", mteb_name, revision)]
    if target.endswith("STEncoder"):
        repo = _hub_id(spec.get("name"))
        return [("st", repo, spec.get("revision"))] if repo else []
    out = []
    repo = _hub_id(spec.get("model_id_or_path"))
    if repo:
        out.append(("hf", repo, spec.get("revision")))
    adapter = _hub_id(spec.get("adapter"))
    if adapter:
        out.append(("adapter", adapter, spec.get("adapter_revision")))
    return out


def download_commands(name: str, spec: dict[str, Any]) -> list[str]:
    """The exact shell commands that pre-download model config ``name`` (empty when local)."""
    cmds = []
    for kind, repo, rev in model_files(name, spec):
        if kind == "openclip":
            cmds.append(f"python -c \"import open_clip; open_clip.create_model_from_pretrained("
                        f"'hf-hub:{repo}')\"")
        else:
            cmds.append(f"hf download {repo}" + (f" --revision {rev}" if rev else ""))
    return cmds


def check_model(name: str, spec: dict[str, Any]) -> str | None:
    """None when the model is usable offline, else what is missing and how to fetch it."""
    from mixsearch.encoders.offline import hub_cached

    cache = spec.get("cache_dir")
    missing = []
    for kind, repo, rev in model_files(name, spec):
        present = any(hub_cached(repo, f, revision=rev, cache_dir=cache) for f in _CONFIGS[kind])
        if present and any(hub_cached(repo, w, revision=rev, cache_dir=cache) for w in _WEIGHTS[kind]):
            continue
        missing.append(repo)
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return (f"model {name}: {', '.join(missing)} {verb} not in the hub cache ({cache or 'HF_HOME'}); "
            f"run: {' && '.join(download_commands(name, spec))}")


def is_hub_dataset(spec: dict[str, Any]) -> bool:
    """The dataset section loads from the hub (MixBench or an mteb task, no local ``root``)."""
    target = str(spec.get("_target_", ""))
    return target.endswith(("load_mixbench", "load_mteb_task")) and not spec.get("root")


def check_dataset(name: str, spec: dict[str, Any]) -> str | None:
    """None when the dataset loads from local files and caches only, else what is missing (a
    local ``root`` that does not exist, or the hub loader's error with its pre-download hint)."""
    from mixsearch.config import build, split_dataset_section
    from mixsearch.data.benchmark import DataError

    root = spec.get("root")
    if str(spec.get("_target_", "")).endswith("load_mbeir"):  # a local copy, always
        from mixsearch.data.mbeir import MBEIR_REVISION, check_layout

        try:
            check_layout(root, task=str(spec.get("task", "all")), pool=str(spec.get("pool", "global")),
                         split=str(spec.get("split", "test")),
                         instructions=str(spec.get("instructions", "none")),
                         revision=str(spec.get("revision") or MBEIR_REVISION))
        except DataError as e:
            return f"dataset {name}: {e}"
        return None
    if root is not None and not Path(str(root)).exists():
        return f"dataset {name}: dataset.root={root} does not exist"
    if not is_hub_dataset(spec):
        return None
    try:
        build(split_dataset_section(spec)[0], f"dataset ({name})")
    except DataError as e:
        return f"dataset {name}: {e}"
    return None


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every job of the multirun ``config`` describes, in launch order, as
    Hydra's basic sweeper expands them (``hydra.sweeper.params`` then the command line); None
    for another sweeper (its jobs are chosen while it runs)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [list(job) for job in BasicSweeper.split_arguments(overrides, None)[0]]


def job_problems(
    jobs: Sequence[Sequence[str]], compose: Callable[[list[str]], DictConfig]
) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Compose and validate each job; collect the model and dataset sections they use.

    Returns:
        ``(problems, {model choice: section}, {dataset choice: section})``; a problem is one
        line per distinct error, naming the first job it stops and how many it stops.
    """
    from mixsearch.schema import validate

    errors: dict[str, list[str]] = {}
    models: dict[str, dict[str, Any]] = {}
    datasets: dict[str, dict[str, Any]] = {}
    for job in jobs:
        try:
            cfg = compose(list(job))
            choices = dict(cfg.hydra.runtime.choices)
            with open_dict(cfg):
                del cfg["hydra"]
            container = OmegaConf.to_container(cfg, resolve=True)
            validate(container, overrides=list(job))
        except Exception as e:  # noqa: BLE001 - every job's error is reported, once per cause
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            errors.setdefault(message, []).append(" ".join(job))
            continue
        for group, found in (("model", models), ("dataset", datasets)):
            name = str(choices.get(group))
            key = f"{name} ({_section_key(container[group])})"
            found.setdefault(key, container[group])
    problems = [f"config: {msg} (job: {jobs_[0] or '(no overrides)'}"
                + (f"; {len(jobs_)} jobs" if len(jobs_) > 1 else "") + ")"
                for msg, jobs_ in errors.items()]
    return problems, models, datasets


def _section_key(spec: dict[str, Any]) -> str:
    """Sections of one group option that differ by an override (``model.name=...``) are checked
    each; identical ones once."""
    import json

    return json.dumps(spec, sort_keys=True, default=str)


def missing_files(models: dict[str, dict[str, Any]], datasets: dict[str, dict[str, Any]]) -> list[str]:
    """What :func:`check_model` and :func:`check_dataset` find missing, one line each."""
    problems = []
    for sections, check in ((models, check_model), (datasets, check_dataset)):
        seen = set()
        for key, spec in sections.items():
            name = key.split(" (", 1)[0]
            problem = check(name, spec)
            if problem and problem not in seen:
                seen.add(problem)
                problems.append(problem)
    return problems


def preflight(config: DictConfig, compose: Callable[[list[str]], DictConfig]) -> list[str]:
    """Every problem that would stop a job of the multirun ``config``, one line each ([] = go)."""
    t0 = time.perf_counter()
    jobs = sweep_jobs(config)
    if jobs is None:
        log.info("preflight: skipped (sweeper %s chooses its jobs while it runs)",
                 config.hydra.sweeper.get("_target_"))
        return []
    problems, models, datasets = job_problems(jobs, compose)
    problems += missing_files(models, datasets)
    log.info("preflight: %d jobs, %d model(s), %d dataset(s) checked in %.1f s: %s",
             len(jobs), len(models), len(datasets), time.perf_counter() - t0,
             f"{len(problems)} problem(s)" if problems else "ok")
    return problems


def fetch_command(problems: Sequence[str]) -> str | None:
    """One command that fetches every missing model and dataset named in ``problems``."""
    names: dict[str, list[str]] = {"model": [], "dataset": []}
    for line in problems:
        group, _, rest = line.partition(" ")
        if group in names and ":" in rest:
            names[group].append(rest.split(":", 1)[0])
    parts = [f"--{g}s {','.join(dict.fromkeys(n))}" for g, n in names.items() if n]
    return f"python -m experiments.download {' '.join(parts)}" if parts else None


def _compose_job(config: DictConfig) -> Callable[[list[str]], DictConfig]:
    from hydra import compose

    # paths.output_dir reads the job's run dir, which is set only once the job starts
    out = str(Path(str(config.hydra.sweep.dir)) / "preflight")
    # the command line's hydra.* overrides (hydra.searchpath: config groups outside conf/)
    # apply to every job, as Hydra composes them
    hydra_overrides = [str(o) for o in config.hydra.overrides.get("hydra") or ()]
    return lambda job: compose("config", overrides=[*hydra_overrides, *job, f"paths.output_dir={out}"],
                               return_hydra_config=True)


class PreflightCallback(Callback):
    """Runs :func:`preflight` when a multirun starts; on any problem prints one list and exits
    with status 2 before a job starts. ``preflight=false`` skips it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.get("preflight", True):
            log.info("preflight: skipped (preflight=false)")
            return
        problems = preflight(config, _compose_job(config))
        if not problems:
            return
        lines = [f"preflight: the sweep cannot run; {len(problems)} problem(s), no job started:"]
        lines += [f"  - {p}" for p in problems]
        command = fetch_command(problems)
        if command:
            lines.append(f"fetch the missing models/datasets (on a machine with hub access): {command}")
        lines.append("skip this check with preflight=false")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2)
