"""The config's one source of defaults, types and allowed values (structured configs).

Each section the library reads (``corpus``, ``calibration``, ``fusion``, ``retrieval``,
``metrics``, ``embed``) is a dataclass: its fields are the options, with their defaults and
types; each field's metadata holds its rules (allowed values, range, the mode it belongs to).

* **Hydra.** :func:`register_configs` stores the root schema :class:`RunConfig` in Hydra's
  ConfigStore as ``mixsearch_schema``; ``conf/config.yaml`` extends it, so the YAML files of
  the groups only choose and override, and OmegaConf checks every value's type while
  composing (``fusion.alpha=abc`` fails there, naming ``fusion.alpha``).
* **Values.** :func:`validate` checks ranges, allowed values (registered names come from the
  registries), and the ``_target_`` sections (model, dataset, calibration training sets) by
  binding their options to the callable's signature. ``run.py`` calls it (through
  :func:`mixsearch.pipeline.run`) before any model or data is loaded; a
  :class:`~mixsearch.config.ConfigError` names the option.
* **Library.** :func:`section_options` merges a plain dict over the same defaults and applies
  the same checks, so ``mixsearch.evaluate`` and ``Evaluator`` share them.

**Options of an inactive mode** (``corpus.p`` without ``corpus=replace``,
``calibration.folds`` with ``calibration=none``) change nothing. Set on the command line while
the mode was left at its default, such an option is an error (the user forgot the mode:
``python run.py corpus.p=0.3`` fails, naming ``corpus.p`` and ``corpus=replace``). When the mode
itself was chosen or swept too (``-m calibration=none,gr calibration.source=crossfit``, the
paper's sweeps), the jobs where it does not apply log a warning naming it and record it in
``metrics.json`` (``config_warnings``) and ``status.json``.

Adding an option: add a field to the section's dataclass below (``opt(default, ...)``), and
its YAML default disappears. The ``embed`` section is derived from the signature of
:func:`mixsearch.embed.extract.embed_records`: a new keyword argument there is a new option.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import os
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from mixsearch.calibration import ROLES
from mixsearch.config import ConfigError, check_target

log = logging.getLogger(__name__)

# ---- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class When:
    """An option applies only when option ``key`` of its section is (not) one of ``values``,
    or, given ``test``, when ``test(value of key)`` holds (``label`` says which values)."""

    key: str
    values: tuple[str, ...] = ()
    negate: bool = False
    test: Callable[[Any], bool] | None = None
    label: str = ""

    def holds(self, values: Mapping[str, Any]) -> bool:
        if self.test is not None:
            return self.test(values.get(self.key))
        return (values.get(self.key) in self.values) != self.negate

    def describe(self, section: str) -> str:
        if self.label:
            return f"{section}.{self.key} {self.label}"
        if self.negate:
            return f"{section}.{self.key} other than {' / '.join(self.values)}"
        if self.key in ("mode", "method") and len(self.values) == 1:
            return f"{section}={self.values[0]}"
        return f"{section}.{self.key}={' / '.join(self.values)}"


def opt(
    default: Any,
    *,
    choices: Iterable[str] | Callable[[], Iterable[str]] | None = None,
    lo: float | None = None,
    hi: float | None = None,
    when: When | tuple[When, ...] = (),
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A dataclass field: ``default`` plus its rules.

    Args:
        default: the default value (lists and dicts are copied per instance).
        choices: allowed values, or a function returning them (a registry's names).
        lo, hi: inclusive bounds of a number (each element of a list of numbers).
        when: the mode(s) in which the option applies.
        check: returns a message when the value is wrong, else None.
    """
    meta = {"choices": choices, "lo": lo, "hi": hi, "check": check,
            "when": (when,) if isinstance(when, When) else tuple(when)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _registry(module: str, attr: str) -> Callable[[], Iterable[str]]:
    """Allowed values read from a registry when checked (imports stay lazy)."""

    def names() -> Iterable[str]:
        import importlib

        value = getattr(importlib.import_module(module), attr)
        return value() if callable(value) else value

    return names


def _ratio(value: Any) -> str | None:
    if len(value) != 3 or min(value) < 0 or sum(value) <= 0:
        return f"expected three non-negative weights text:image:image+text with a positive sum, got {list(value)}"
    return None


def _files(value: Any) -> str | None:
    unknown = [k for k in value if k not in ROLES]
    return f"unknown role {unknown[0]!r}; roles are {list(ROLES)}" if unknown else None


def _device(value: Any) -> str | None:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(value)):
        return None
    return f"{value!r} is not auto, cpu, mps, cuda or cuda:<n>"


# ---- sections ------------------------------------------------------------------------------

def _fits_state(method: Any) -> bool:
    """The calibration method fits a state (so sources, folds, files apply); from its registry.
    An unknown method counts as fitting: its own check names it."""
    from mixsearch.calibrators import available_calibrators, build_calibrator

    if method not in available_calibrators():
        return True
    try:
        return bool(build_calibrator(method).fits_state)
    except ValueError:  # parameters required: the class attribute says it
        return True


def _with_auto(module: str, attr: str) -> Callable[[], Iterable[str]]:
    """A registry's names plus ``auto`` (resolved per encoder by the pipeline)."""
    names = _registry(module, attr)
    return lambda: (*names(), "auto")


_FITS = When("method", test=_fits_state, label="that fits a state (not none / pushdown)")


@dataclass
class CorpusConfig:
    """Which modality each document shows (:func:`mixsearch.corpus.mix_corpus`)."""

    mode: str = opt("released", choices=_registry("mixsearch.corpus", "CORPUS_MODES"))
    ratio: list[float] = opt([1, 1, 1], when=When("mode", ("remix",)), check=_ratio)
    seed: int = opt(42, when=When("mode", ("remix", "replace")))
    p: float = opt(0.0, lo=0.0, hi=1.0, when=When("mode", ("replace",)))
    replace_with: str = opt("auto", choices=_registry("mixsearch.corpus", "REPLACE_WITH"),
                            when=When("mode", ("replace",)))
    # document order the seeded permutation runs over: records (corpus.jsonl) | embeddings (the
    # row order of precomputed embeddings, as the seed code's .pt files)
    order: str = opt("records", choices=_registry("mixsearch.corpus", "CORPUS_ORDERS"),
                     when=When("mode", ("remix", "replace")))


@dataclass
class CalibrationConfig:
    """Modality-gap calibration (:mod:`mixsearch.calibration`). ``train_sets`` is read by the
    pipeline, which turns it into calibration pools."""

    method: str = opt("none", choices=_registry("mixsearch.calibrators", "available_calibrators"))
    # options of the method (checked against its signature by validate)
    params: dict[str, Any] = opt({})
    source: str = opt("auto", choices=_registry("mixsearch.calibration", "SOURCES"), when=_FITS)
    folds: int = opt(5, lo=2, when=(_FITS, When("source", ("auto", "crossfit"))))
    seed: int = opt(0, when=(_FITS, When("source", ("auto", "crossfit"))))
    files: dict[str, str | None] = opt(
        dict.fromkeys(ROLES), when=(_FITS, When("source", ("files",))), check=_files)
    train_sets: list[Any] = opt([], when=(_FITS, When("source", ("auto", "train"))))
    # source=files, any method: the folder of .npy state files a run wrote
    state_dir: str | None = opt(None, when=(_FITS, When("source", ("files",))))
    # train / transductive: fit on at most this many random rows per role (and pairs)
    max_samples: int | None = opt(None, lo=1, when=(_FITS, When("source", ("auto", "train", "transductive"))))


@dataclass
class FusionConfig:
    """Image+text fusion (:mod:`mixsearch.fusion`); ``alpha`` is the text weight."""

    # auto: joint for encoders that embed image+text jointly, weighted otherwise (pipeline)
    method: str = opt("weighted", choices=_with_auto("mixsearch.fusion", "available_fusions"))
    alpha: float = opt(0.5, lo=0.0, hi=1.0, when=When("method", ("joint",), negate=True))
    query: str = opt("weighted", choices=_with_auto("mixsearch.fusion", "QUERY_MODES"))
    query_alpha: float = opt(0.5, lo=0.0, hi=1.0, when=When("query", ("weighted",)))


_FAISS = When("backend", ("faiss",))


@dataclass
class RetrievalConfig:
    """Top-k search (:func:`mixsearch.retrieval.search`)."""

    backend: str = opt("exact", choices=_registry("mixsearch.retrieval", "BACKENDS"))
    k: int = opt(100, lo=1)
    chunk_size: int | None = opt(None, lo=1)
    device: str = opt("auto", check=_device)
    # order of equal scores: trec (doc id descending, as trec_eval sorts) | id_asc | first
    # (corpus position, the seed's setting 2) | numpy_desc (np.argsort(scores)[::-1], the seed's
    # setting 1; exact backend, merge=single)
    ties: str = opt("trec", choices=_registry("mixsearch.retrieval", "TIES"))
    # single (one index over every doc) | zscore | rrf: per-modality lists merged (merge.py)
    merge: str = opt("single", choices=_registry("mixsearch.merge", "available_merges"))
    # the k of reciprocal rank fusion, 1 / (rrf_k + rank)
    rrf_k: int = opt(60, lo=1, when=When("merge", ("rrf",)))
    # backend=faiss: flat (exact) | ivf (nlist cells, nprobe searched) | hnsw (hnsw_m, ef_search)
    index: str = opt("flat", choices=_registry("mixsearch.retrieval", "INDEXES"), when=_FAISS)
    nlist: int | None = opt(None, lo=1, when=(_FAISS, When("index", ("ivf",))))
    nprobe: int = opt(32, lo=1, when=(_FAISS, When("index", ("ivf",))))
    hnsw_m: int = opt(32, lo=1, when=(_FAISS, When("index", ("hnsw",))))
    ef_search: int = opt(256, lo=1, when=(_FAISS, When("index", ("hnsw",))))


@dataclass
class MetricsConfig:
    """Scoring (:func:`mixsearch.metrics.evaluate_ranking`)."""

    ks: list[int] = opt([1, 5, 10, 100], lo=1)
    gain: str = opt("linear", choices=_registry("mixsearch.metrics", "GAINS"))
    ndcg_variant: str = opt("trec", choices=_registry("mixsearch.metrics", "NDCG_VARIANTS"))
    measures: list[str] = opt(["ndcg", "recall", "mrr"],
                              choices=_registry("mixsearch.metrics", "MEASURES"))
    # judgements of docs the release's corpus lacks (mteb tasks): count them as relevant docs
    # never retrieved (trec_eval's and mteb's reading) or drop them (score retrievable docs only)
    absent_qrels: str = opt("count", choices=("count", "drop"))


# Rules of embed_records' options (the defaults and types are its signature's).
_EMBED_RULES: dict[str, dict[str, Any]] = {
    "batch_size": {"lo": 1},
    "num_workers": {"lo": 0},
    "amp": {"choices": ("auto", "bf16", "fp16", "none")},
    "store_dtype": {"choices": ("float32", "float16")},
    "part_size": {"lo": 1},
    "shard": {"lo": 0},
    "num_shards": {"lo": 1},
    "on_missing": {"choices": ("error", "skip")},
    "image_key": {"choices": _registry("mixsearch.embed.cache", "IMAGE_KEYS")},
    "lock_timeout": {"lo": 0},
}
# embed_records arguments that the pipeline supplies, not the config
# (max_image_side: the dataset's option, dataset.max_image_side)
_EMBED_INTERNAL = {"encoder", "records", "field", "cache", "dataset_key", "split", "role", "stats",
                   "max_image_side"}


def _embed_devices(value: Any) -> str | None:
    from mixsearch.embed.devices import check_devices

    return check_devices(value)


def _here(cls: type) -> type:
    """A generated class named as an attribute of this module (``make_dataclass`` of Python
    < 3.12 cannot say so), which pickle needs."""
    cls.__module__ = __name__
    return cls


def _embed_schema() -> type:
    """``EmbedConfig``: the keyword options of ``embed_records`` with their defaults and types."""
    from mixsearch.embed.extract import embed_records

    hints = typing.get_type_hints(embed_records)
    fields = []
    for name, param in inspect.signature(embed_records).parameters.items():
        if name in _EMBED_INTERNAL or param.default is inspect.Parameter.empty:
            continue
        fields.append((name, hints.get(name, Any), opt(param.default, **_EMBED_RULES.get(name, {}))))
    # read by the pipeline, not embed_records: one extraction process per device (embed/devices.py)
    fields.append(("devices", Any, opt(None, check=_embed_devices)))
    # a module attribute (EmbedConfig below), so configs typed by it pickle (submitit, joblib)
    return _here(dataclasses.make_dataclass("EmbedConfig", fields))


_SECTIONS: dict[str, type] = {
    "corpus": CorpusConfig,
    "calibration": CalibrationConfig,
    "fusion": FusionConfig,
    "retrieval": RetrievalConfig,
    "metrics": MetricsConfig,
    "embed": _embed_schema(),
}
EmbedConfig = _SECTIONS["embed"]


def schema(section: str) -> type:
    """The dataclass of a config section."""
    if section not in _SECTIONS:
        raise ConfigError(f"{section}: not a config section with a schema ({sorted(_SECTIONS)})")
    return _SECTIONS[section]


def defaults(section: str) -> dict[str, Any]:
    """The default options of a section as a plain dict."""
    return dataclasses.asdict(schema(section)())


# OmegaConf's "missing" marker: a value conf/paths/default.yaml must provide
_SET_IN_YAML = "???"


@dataclass
class PathsConfig:
    """Folders; the values (with their environment overrides) are in conf/paths/default.yaml."""

    root_dir: str = _SET_IN_YAML
    data_dir: str = _SET_IN_YAML
    cache_dir: str | None = _SET_IN_YAML
    hf_cache: str | None = _SET_IN_YAML
    log_dir: str = _SET_IN_YAML
    output_dir: str = _SET_IN_YAML


def _root_schema() -> type:
    """The whole run config. ``model`` and ``dataset`` are ``_target_`` sections checked by
    signature; ``logger`` sections differ per tracker; ``slurm`` holds site settings."""
    sections = [(name, schema(name), field(default_factory=schema(name))) for name in _SECTIONS]
    return _here(dataclasses.make_dataclass("RunConfig", [
        ("paths", PathsConfig, field(default_factory=PathsConfig)),
        ("dataset", Any, None),
        ("model", Any, None),
        *sections,
        ("logger", Any, None),
        ("slurm", Any, None),
        ("task_name", str, "mixsearch"),
        # the metric a multirun returns (and sweepers optimise): <measure>@<k> of metrics
        ("main_metric", str, "ndcg@10"),
        ("seed", int, 0),
        # cpu | cuda | cuda:1 | auto (cuda if available)
        ("device", str, opt("auto", check=_device)),
        # a multirun first checks every job's config, models and data once (mixsearch.preflight)
        ("preflight", bool, True),
    ]))


# module attributes, so that configs typed by them pickle (submitit and joblib launchers)
RunConfig = _root_schema()


def register_configs() -> None:
    """Store the root schema in Hydra's ConfigStore as ``mixsearch_schema`` (conf/config.yaml
    extends it) and register the ``pid`` resolver of the run dir names. Safe to call more
    than once."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="mixsearch_schema", node=RunConfig)
    # ${pid:} in conf/hydra/default.yaml: runs started in the same second get different dirs
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)


def _seed_ties(variant: str, order: str) -> str:
    """``${seed_ties:${metrics.ndcg_variant},<order>}``: the seed's tie order when the seed's
    metrics are chosen (``metrics=seed_topk``), else the default order
    (conf/experiment/paper/setting1.yaml, setting2.yaml)."""
    return order if variant == "seed_topk" else RetrievalConfig.ties


# at import: saved job configs (.hydra/config.yaml) resolve wherever the schema is imported
if not OmegaConf.has_resolver("seed_ties"):
    OmegaConf.register_new_resolver("seed_ties", _seed_ties)


# ---- checks --------------------------------------------------------------------------------


def _check_value(option: str, value: Any, meta: Mapping[str, Any]) -> None:
    items = value if isinstance(value, (list, tuple)) else [value]
    choices = meta.get("choices")
    if choices is not None and value is not None:
        allowed = list(choices() if callable(choices) else choices)
        bad = [v for v in items if v not in allowed]
        if bad:
            raise ConfigError(f"{option}: {bad[0]!r} is not one of {allowed}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None or hi is not None) and value is not None:
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{option}: expected a number, got {v!r}")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                span = f"[{lo}, {hi}]" if lo is not None and hi is not None else (
                    f">= {lo}" if lo is not None else f"<= {hi}")
                raise ConfigError(f"{option}: {v!r} is out of range (allowed: {span})")
    check = meta.get("check")
    if check is not None and value is not None:
        problem = check(value)
        if problem:
            raise ConfigError(f"{option}: {problem}")


def _explicit_keys(overrides: Sequence[str]) -> set[str]:
    """Dotted keys set by command-line overrides (``corpus.p=0.3`` -> ``corpus.p``; a group
    choice ``corpus=replace`` -> ``corpus``)."""
    keys = set()
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        keys.add(key.split("@", 1)[0])
    return keys


def section_options(
    section: str,
    values: Mapping[str, Any] | None,
    *,
    overrides: Sequence[str] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """A section merged over its defaults and checked.

    Args:
        section: ``corpus``, ``calibration``, ``fusion``, ``retrieval``, ``metrics`` or ``embed``.
        values: the section's options (private ``_``-keys are ignored).
        overrides: the command line's overrides, when known; an inactive option set there
            without choosing its mode is an error (module docstring).
        warnings: inactive options are appended here (and logged) instead of being ignored.

    Returns:
        Every option of the section.

    Raises:
        ConfigError: an unknown option or a bad value, naming ``section.option``.
    """
    cls = schema(section)
    given = {k: v for k, v in (values or {}).items() if not str(k).startswith("_")}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in given if k not in fields]
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown option; known: {sorted(fields)}")
    merged = {**defaults(section), **given}
    for name, f in fields.items():
        _check_value(f"{section}.{name}", merged[name], f.metadata)
    explicit = _explicit_keys(overrides or ())
    for name, f in fields.items():
        inactive = [w for w in f.metadata.get("when", ()) if not w.holds(merged)]
        if not inactive or name not in given or merged[name] == defaults(section)[name]:
            continue
        option = f"{section}.{name}"
        mode = inactive[0]
        message = (f"{option}={merged[name]!r} has no effect: it applies with "
                   f"{mode.describe(section)}, but {section}.{mode.key}={merged[mode.key]!r}")
        if option in explicit and not ({section, f"{section}.{mode.key}"} & explicit):
            raise ConfigError(message + f"; choose the mode too (e.g. {mode.describe(section)})")
        log.warning("%s (ignored)", message)
        if warnings is not None:
            warnings.append(message)
    return merged


def _main_metric(cfg: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    name = str(cfg.get("main_metric", "ndcg@10"))
    measure, _, k = name.partition("@")
    if measure not in metrics["measures"] or not k.isdigit() or int(k) not in metrics["ks"]:
        raise ConfigError(f"main_metric: {name!r} is not computed; metrics.measures="
                          f"{list(metrics['measures'])}, metrics.ks={list(metrics['ks'])}")


# How to give a required value, per option (others get the generic ``option=<value>``).
_REQUIRED_HINTS = {
    "model.name": "a hub id or local folder, e.g. model=st model.name=sentence-transformers/clip-ViT-B-32"
                  " or model=mteb model.name=mteb/baseline-random-encoder",
    "model.queries": "the precomputed query embeddings, e.g. model.queries=q.pt (and model.corpus=c.pt)",
    "model.corpus": "the precomputed corpus embeddings, e.g. model.corpus=c.pt (and model.queries=q.pt)",
}


def _missing_values(value: Any, option: str) -> Iterable[str]:
    """Dotted names of OmegaConf's unset ``???`` values under ``value``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _missing_values(item, f"{option}.{key}" if option else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _missing_values(item, f"{option}[{i}]")
    elif value == _SET_IN_YAML:
        yield option


def _required(cfg: Mapping[str, Any]) -> None:
    """Every required value (``???`` in a YAML file, e.g. ``model.name`` of ``model=st``) is set.

    Raises:
        ConfigError: names the first unset option and how to set it.
    """
    for option in _missing_values({k: v for k, v in cfg.items() if k != "paths"}, ""):
        hint = _REQUIRED_HINTS.get(option, f"{option}=<value>")
        raise ConfigError(f"{option}: required, not set; give {hint}")


def _conflicts(checked: Mapping[str, Mapping[str, Any]]) -> None:
    """Options that are each valid but contradict one another."""
    metrics, retrieval = checked.get("metrics"), checked.get("retrieval")
    if metrics and retrieval and metrics["ks"] and max(metrics["ks"]) > retrieval["k"]:
        raise ConfigError(f"metrics.ks={list(metrics['ks'])} asks for cut-offs beyond "
                          f"retrieval.k={retrieval['k']} (the number of documents retrieved); "
                          f"raise retrieval.k to at least {max(metrics['ks'])} or lower metrics.ks")
    calibration = checked.get("calibration") or {}
    if retrieval and calibration.get("method") == "pushdown" and retrieval["merge"] != "single":
        raise ConfigError(f"calibration=pushdown ranks by its own rule; it takes no "
                          f"retrieval.merge={retrieval['merge']} (use retrieval.merge=single)")


def validate(cfg: Mapping[str, Any], *, overrides: Sequence[str] | None = None) -> list[str]:
    """Check a resolved run config before anything is loaded.

    Args:
        cfg: the run config as plain dicts (``OmegaConf.to_container(cfg, resolve=True)``).
        overrides: the job's command-line overrides (Hydra's ``overrides.task``), which decide
            whether an inactive option is an error or a warning.

    Returns:
        Warnings about options that have no effect in this job.

    Raises:
        ConfigError: the first wrong option, named.
    """
    warnings: list[str] = []
    _required(cfg)
    # the top-level device first: the sections' devices interpolate it
    _check_value("device", cfg.get("device", "auto"), {"check": _device})
    checked = {name: section_options(name, cfg.get(name) or {}, overrides=overrides, warnings=warnings)
               for name in _SECTIONS if name in cfg}
    if "metrics" in checked:
        _main_metric(cfg, checked["metrics"])
    _conflicts(checked)
    logger = cfg.get("logger") or {}
    if isinstance(logger, Mapping) and "name" in logger:
        _check_value("logger.name", logger["name"], {"choices": _registry("mixsearch.tracking", "available_trackers")})
    if isinstance(cfg.get("dataset"), Mapping):
        from mixsearch.config import split_dataset_section

        loader, opts = split_dataset_section(cfg["dataset"])
        _check_value("dataset.max_image_side", opts["max_image_side"],
                     {"lo": 1, "check": lambda v: None if isinstance(v, int) else f"expected an integer, got {v!r}"})
        check_target(loader, "dataset")
    if cfg.get("model") is not None:
        check_target(cfg["model"], "model")
    dataset = cfg.get("dataset") or {}
    if isinstance(dataset, Mapping) and "on_missing" in dataset:
        # one option for unreadable images (docs/missing-files.md); every loader takes it
        _check_value("dataset.on_missing", dataset["on_missing"], {"choices": ("error", "skip")})
    calibration = checked.get("calibration") or {}
    if calibration:
        from mixsearch.calibrators import build_calibrator

        try:  # the method's parameters bind to its signature
            build_calibrator(calibration["method"], calibration["params"])
        except ValueError as e:
            raise ConfigError(str(e)) from e
    for i, item in enumerate(calibration.get("train_sets") or []):
        _train_set(item, f"calibration.train_sets[{i}]")
    return warnings


def _train_set(item: Any, option: str) -> None:
    if not isinstance(item, Mapping) or "dataset" not in item:
        raise ConfigError(f"{option}: expected {{dataset: <loader section>, split, role, n, seed}}, got {item!r}")
    unknown = sorted(set(item) - {"dataset", "split", "role", "n", "seed"})
    if unknown:
        raise ConfigError(f"{option}.{unknown[0]}: unknown option; known: dataset, split, role, n, seed")
    _check_value(f"{option}.role", item.get("role"), {"choices": ROLES})
    splits = ("queries", "corpus", "mixed_corpus", "calibration/queries", "calibration/corpus")
    _check_value(f"{option}.split", item.get("split", "queries"), {"choices": splits})
    _check_value(f"{option}.n", item.get("n"), {"lo": 1})
    check_target(item["dataset"], f"{option}.dataset")
