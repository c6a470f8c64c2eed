"""Local result files of a run: metrics.json, per_query.csv, status.json, package versions."""

from __future__ import annotations

import json
import os
import platform
import subprocess
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


def git_commit(folder: str | Path | None = None) -> dict[str, Any] | None:
    """The checkout's commit and whether tracked files differ from it; None outside a checkout.

    Args:
        folder: a folder inside the checkout (default: the one holding the mixsearch package).
    """
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a half.

    The file gets the permissions of a plainly created file (0666 minus the umask: 0644 under
    umask 022), not the 0600 of the temp file it is written through, so teammates on shared
    storage can read results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
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


def trec_run_text(
    ranked: dict[str, list[str]], scores: dict[str, list[float]], tag: str = "mixsearch"
) -> str:
    """A TREC run: one line ``qid Q0 docid rank score tag`` per retrieved doc, best first.

    Ranks start at 1; scores are written with every digit (``repr``), so tools that re-sort
    by score see exactly the ranking's order and ties.

    Raises:
        ValueError: an id or the tag contains whitespace (the format splits on it).
    """
    for name in (tag, *ranked):
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"run.trec: {name!r} cannot be written: ids and tag must be non-empty without whitespace")
    lines = []
    for qid, docs in ranked.items():
        for rank, (doc, score) in enumerate(zip(docs, scores[qid], strict=True), start=1):
            if any(c.isspace() for c in doc):
                raise ValueError(f"run.trec: doc id {doc!r} (query {qid!r}) contains whitespace")
            lines.append(f"{qid} Q0 {doc} {rank} {float(score)!r} {tag}\n")
    return "".join(lines)


def write_results(
    run_dir: str | Path,
    result: dict[str, Any],
    per_query: pd.DataFrame,
    run: str | None = None,
) -> None:
    """Write the result contract of a run: ``metrics.json``, ``per_query.csv`` and, given
    its text (:func:`trec_run_text`), the TREC run file ``run.trec``."""
    run_dir = Path(run_dir)
    if run is not None:
        atomic_write_text(run_dir / "run.trec", run)
    atomic_write_text(run_dir / "per_query.csv", per_query.to_csv(index=False))
    write_json(run_dir / "metrics.json", result)  # last: its presence means the run is complete


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


def available_trackers() -> list[str]:
    """Names ``logger.name`` takes."""
    return sorted(_TRACKERS)


def start_tracker(cfg: dict[str, Any], run_dir: str | Path) -> Tracker:
    """Build the tracker named by ``cfg['logger']['name']`` (default: none)."""
    name = (cfg.get("logger") or {}).get("name", "none")
    if name not in _TRACKERS:
        raise ValueError(f"logger.name: unknown tracker {name!r}; choose from {sorted(_TRACKERS)}")
    return _TRACKERS[name](cfg, run_dir)


def flatten(tree: dict[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested dicts as one level: ``{"gap": {"after": 0.1}}`` -> ``{"gap/after": 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def _scalars(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a result worth a dashboard: metrics top level, diagnostics prefixed."""
    out = dict(result.get("metrics") or {})
    for section in ("gap", "calibration", "corpus", "by_target_modality", "topk_modality_share"):
        value = result.get(section)
        if isinstance(value, dict):
            out.update({k: v for k, v in flatten(value, section).items()
                        if isinstance(v, (int, float, str, bool)) or v is None})
    if "seconds" in result:
        out["seconds"] = result["seconds"]
    return out


def sweep_group(run_dir: str | Path) -> str | None:
    """Name of the sweep a job dir belongs to (its parent holds Hydra's ``multirun.yaml``)."""
    parent = Path(run_dir).resolve().parent
    return parent.name if (parent / "multirun.yaml").is_file() else None


class CsvTracker(Tracker):
    """Appends every run's results to one long-format CSV ledger shared by all jobs.

    Columns ``time, run_dir, key, value``: one row per metric, diagnostic, figure and final
    status, so runs with different metric sets share a header. Parallel jobs append under a
    file lock.
    """

    COLUMNS = ("time", "run_dir", "key", "value")

    def __init__(self, path: str | Path, run_dir: str | Path) -> None:
        self.path = Path(path)
        self.run_dir = str(run_dir)

    def _append(self, items: dict[str, Any]) -> None:
        from filelock import FileLock

        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rows = pd.DataFrame([(now, self.run_dir, k, v) for k, v in items.items()], columns=self.COLUMNS)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            new = not self.path.exists() or self.path.stat().st_size == 0
            rows.to_csv(self.path, mode="a", header=new, index=False)

    def log_result(self, result: dict[str, Any], per_query: pd.DataFrame) -> None:
        self._append(_scalars(result))

    def log_figure(self, name: str, path: str | Path) -> None:
        self._append({f"figure/{name}": str(path)})

    def finish(self, ok: bool, error: BaseException | None = None) -> None:
        items: dict[str, Any] = {"status": "ok" if ok else "failed"}
        if error is not None:
            items["error"] = f"{type(error).__name__}: {error}"
        self._append(items)


class WandbTracker(Tracker):
    """One W&B run per job: config, summary metrics, per-modality tables and figures.

    Args:
        run_dir: the job's directory; W&B files go to ``<dir or WANDB_DIR or run_dir>/wandb``.
        project: W&B project.
        entity: W&B entity (team or user); None = the default of the logged-in user.
        mode: ``online`` | ``offline`` | ``disabled``.
        group: runs of one sweep share a group (default: the sweep dir's name).
        tags: run tags (e.g. the experiment's name).
        name: run name (default: the job's overrides).
        job_type: ``eval`` for jobs, ``report`` for the paper report.
        config: the resolved config recorded with the run.
        dir: where W&B writes its files, overriding ``WANDB_DIR``.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        project: str,
        entity: str | None = None,
        mode: str = "online",
        group: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        name: str | None = None,
        job_type: str = "eval",
        config: dict[str, Any] | None = None,
        dir: str | Path | None = None,
    ) -> None:
        import wandb

        if mode not in ("online", "offline", "disabled"):
            raise ValueError(f"logger.mode: {mode!r} is not one of online, offline, disabled")
        self._wandb = wandb
        wandb_dir = Path(dir or os.environ.get("WANDB_DIR") or run_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project, entity=entity, mode=mode, group=group, tags=list(tags), name=name,
            job_type=job_type, config=config, dir=str(wandb_dir),
        )

    def log_result(self, result: dict[str, Any], per_query: pd.DataFrame) -> None:
        self.run.summary.update(_scalars(result))
        by_mod = result.get("by_target_modality") or {}
        if by_mod:
            self.log_table("by_target_modality", pd.DataFrame.from_dict(by_mod, orient="index")
                           .rename_axis("target_modality").reset_index())
        share = result.get("topk_modality_share") or {}
        if isinstance(share.get("topk"), dict):
            frame = pd.DataFrame({"topk": share["topk"], "corpus": share.get("corpus", {})})
            self.log_table("topk_modality_share", frame.rename_axis("modality").reset_index())

    def log_table(self, name: str, frame: pd.DataFrame) -> None:
        """Log a data frame as a ``wandb.Table``."""
        self.run.log({name: self._wandb.Table(dataframe=frame)})

    def log_figure(self, name: str, path: str | Path) -> None:
        self.run.log({f"figures/{name}": self._wandb.Image(str(path))})

    def finish(self, ok: bool, error: BaseException | None = None) -> None:
        self.run.summary["status"] = "ok" if ok else "failed"
        if error is not None:
            self.run.summary["error"] = f"{type(error).__name__}: {error}"
        # a non-zero exit code marks the run as failed in the W&B UI
        self.run.finish(exit_code=0 if ok else 1)


def _job_name(run_dir: Path) -> str:
    """The job's Hydra overrides (``calibration=gr,corpus.p=0.5``), else the run dir's name."""
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        import yaml

        items = yaml.safe_load(overrides.read_text(encoding="utf-8")) or []
        if items:
            return ",".join(str(i) for i in items)
    return run_dir.name


def _wandb_from_cfg(cfg: dict[str, Any], run_dir: str | Path) -> WandbTracker:
    lg = cfg["logger"]
    run_dir = Path(run_dir)
    return WandbTracker(
        run_dir, project=lg.get("project") or "mixsearch", entity=lg.get("entity"),
        mode=lg.get("mode", "online"), group=lg.get("group") or sweep_group(run_dir),
        tags=lg.get("tags") or (), name=lg.get("run_name") or _job_name(run_dir),
        job_type=lg.get("job_type", "eval"), config=cfg, dir=lg.get("dir"),
    )


def _csv_from_cfg(cfg: dict[str, Any], run_dir: str | Path) -> CsvTracker:
    path = cfg["logger"].get("path")
    if not path:
        raise ValueError("logger.path: the csv logger needs the path of its ledger file")
    return CsvTracker(path, run_dir)


register_tracker("wandb", _wandb_from_cfg)
register_tracker("csv", _csv_from_cfg)
