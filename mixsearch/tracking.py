"""Local result files of a run: metrics.json, per_query.csv, status.json, package versions."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

_PACKAGES = (
    "mixsearch", "torch", "torchvision", "open_clip_torch", "transformers", "datasets",
    "numpy", "hydra-core", "faiss-cpu", "wandb",
)


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that change results, plus Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def write_results(run_dir: str | Path, result: dict[str, Any], per_query: pd.DataFrame) -> None:
    """Write the result contract of a run: ``metrics.json`` and ``per_query.csv``."""
    run_dir = Path(run_dir)
    write_json(run_dir / "metrics.json", result)
    atomic_write_text(run_dir / "per_query.csv", per_query.to_csv(index=False))


def write_status(
    run_dir: str | Path, *, ok: bool, error: BaseException | None = None, **extra: Any
) -> dict[str, Any]:
    """Write ``status.json``: ok, or failed with the exception and its traceback."""
    status: dict[str, Any] = {
        "status": "ok" if ok else "failed",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if error is not None:
        status["error"] = f"{type(error).__name__}: {error}"
        status["traceback"] = "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )
    status.update(extra)
    write_json(Path(run_dir) / "status.json", status)
    return status


class Tracker:
    """Mirror of a run's results to an experiment tracker. The base class tracks nothing:
    local files are always written by :func:`write_results`."""

    def log_result(self, result: dict[str, Any], per_query: pd.DataFrame) -> None:
        """Called once with the result contract and the per-query table."""

    def log_figure(self, name: str, path: str | Path) -> None:
        """Called for each figure a job produces."""

    def finish(self, ok: bool, error: BaseException | None = None) -> None:
        """Always called, also when the job failed."""


_TRACKERS: dict[str, Any] = {"none": lambda cfg, run_dir: Tracker()}


def register_tracker(name: str, factory: Any) -> None:
    """Make ``logger.name=<name>`` build ``factory(cfg, run_dir)``."""
    _TRACKERS[name] = factory


def start_tracker(cfg: dict[str, Any], run_dir: str | Path) -> Tracker:
    """Build the tracker named by ``cfg['logger']['name']`` (default: none)."""
    name = (cfg.get("logger") or {}).get("name", "none")
    if name not in _TRACKERS:
        raise ValueError(f"logger.name: unknown tracker {name!r}; choose from {sorted(_TRACKERS)}")
    return _TRACKERS[name](cfg, run_dir)
