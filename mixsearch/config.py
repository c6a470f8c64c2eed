"""Config helpers that work on plain dicts (no Hydra import): ``_target_`` building."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """A config option is missing or wrong. The message names the option."""


#: Keys of the ``dataset`` section that are options of the run, not of its loader: they are
#: taken out before the loader is called (``dataset.max_image_side``: decode images at most
#: this many pixels on the longer side; null = full size).
DATASET_RUN_OPTIONS = ("max_image_side",)


def split_dataset_section(spec: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(loader section, run options)`` of a ``dataset`` section (see :data:`DATASET_RUN_OPTIONS`)."""
    loader = {k: v for k, v in spec.items() if k not in DATASET_RUN_OPTIONS}
    return loader, {k: spec.get(k) for k in DATASET_RUN_OPTIONS}


def locate(path: str, option: str = "_target_") -> Any:
    """Import ``package.module.attr`` and return the attribute."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ConfigError(f"{option}: {path!r} is not a dotted path to a callable")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{option}: cannot import {module_name!r} for {path!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise ConfigError(f"{option}: {module_name!r} has no attribute {attr!r}") from e


def check_target(spec: Any, option: str) -> None:
    """Check a ``_target_`` section without calling it: the target imports, and the section's
    options bind to its signature (a misspelt or missing option is named before anything loads).

    Raises:
        ConfigError: no ``_target_``, an unimportable target or options the target does not take.
    """
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ConfigError(f"{option}: the config section has no _target_ (got {spec!r})")
    fn = locate(str(spec["_target_"]), option=f"{option}._target_")
    kwargs = {k: v for k, v in spec.items() if not str(k).startswith("_")}
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: checked when called
        return
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{option}: {spec['_target_']} does not take these options: {e}") from e


def build(spec: Mapping[str, Any], option: str, **extra: Any) -> Any:
    """Call the ``_target_`` of a config section with its other keys as keyword arguments.

    Args:
        spec: the section, e.g. ``{"_target_": "mixsearch.data.toy.load_toy", "root": ...}``.
        option: the section's name for error messages (``"dataset"``, ``"model"``).
        extra: keyword arguments added to (and overriding) the section's keys.
    """
    if not isinstance(spec, Mapping) or "_target_" not in spec:
        raise ConfigError(f"{option}: the config section has no _target_ (got {spec!r})")
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_")}
    kwargs.update(extra)
    fn = locate(str(spec["_target_"]), option=f"{option}._target_")
    try:
        return fn(**kwargs)
    except TypeError as e:
        # A wrong key in the YAML shows up as an unexpected keyword argument: name the section.
        if "argument" in str(e):
            raise ConfigError(f"{option}: {e}") from e
        raise


def section(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A config section as a plain dict without ``_target_``-style private keys."""
    value = cfg.get(name) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a config section, got {value!r}")
    return {k: v for k, v in value.items() if not str(k).startswith("_")}
