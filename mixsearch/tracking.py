"""Local result files of a run: metrics.json, per_query.csv, status.json, package versions."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from mixsearch.jobinfo import (
    benchmark_kind,
    model_display_name,
    override_key,
    read_job_info,
    sweep_group,
)

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


class RunDirInUse(RuntimeError):
    """Another live run holds the run dir: two runs must never write one dir's results."""


@contextmanager
def claim_run_dir(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir`` for one run: an exclusive lock (``.run.lock``, released when the run
    ends or its process dies), so two runs that resolved the same dir (a fixed
    ``hydra.run.dir``, clocks of two hosts) never mix their results. A later run may reuse a
    dir once the earlier one has ended.

    Raises:
        RunDirInUse: another process holds the dir (names it).
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / ".run.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunDirInUse(f"run dir {run_dir} is in use by another run; give this run its own "
                          "dir (hydra.run.dir / paths.output_dir)") from None
    try:
        yield
    finally:
        lock.release()


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
    for section in ("gap", "calibration", "corpus", "by_target_modality", "topk_modality_share",
                    "by_task", "task_macro", "task_headline_macro"):  # the last three: M-BEIR task=all
        value = result.get(section)
        if isinstance(value, dict):
            out.update({k: v for k, v in flatten(value, section).items()
                        if isinstance(v, (int, float, str, bool)) or v is None})
    if "seconds" in result:
        out["seconds"] = result["seconds"]
    return out


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
    """One W&B run per job: config, summary metrics, per-modality tables, figures and the
    result files as an artifact.

    W&B's own environment variables apply to what is left unset (None): ``WANDB_MODE``
    (default online), ``WANDB_PROJECT`` (default ``mixsearch``), ``WANDB_ENTITY`` (default:
    the logged-in user's) and ``WANDB_DIR`` (default: the run dir). A value given here wins.

    Args:
        run_dir: the job's directory; W&B files go to ``<dir or WANDB_DIR or run_dir>/wandb``.
        project: W&B project.
        entity: W&B entity (team or user).
        mode: ``online`` | ``offline`` | ``disabled`` (also W&B's aliases ``dryrun``, ``run``,
            ``shared``).
        group: runs of one sweep share a group.
        tags: run tags (benchmark, experiment, ...).
        name: run name.
        job_type: ``eval`` for jobs, ``sweep`` for a multirun's summary, ``report`` for the
            paper report.
        config: the config recorded with the run.
        dir: where W&B writes its files, overriding ``WANDB_DIR``.
        run_id: resume this W&B run (``resume="allow"``) instead of starting a new one.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        project: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        group: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        name: str | None = None,
        job_type: str = "eval",
        config: dict[str, Any] | None = None,
        dir: str | Path | None = None,
        run_id: str | None = None,
    ) -> None:
        import wandb

        option = "logger.mode" if mode else "WANDB_MODE"
        mode = mode or os.environ.get("WANDB_MODE") or "online"
        if mode not in _WANDB_MODES:
            raise ValueError(f"{option}: {mode!r} is not one of {', '.join(_WANDB_MODES)}")
        self._wandb = wandb
        self.run_dir = Path(run_dir)
        wandb_dir = Path(dir or os.environ.get("WANDB_DIR") or run_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project or os.environ.get("WANDB_PROJECT") or "mixsearch",
            entity=entity or os.environ.get("WANDB_ENTITY") or None, mode=mode, group=group,
            tags=list(tags), name=name, job_type=job_type, config=config, dir=str(wandb_dir),
            **({"id": run_id, "resume": "allow"} if run_id else {}),
        )
        if mode != "disabled":  # what a later step needs to add to this run (the viewer's page)
            write_json(self.run_dir / WANDB_RUN_FILE, {
                "id": self.run.id, "project": self.run.project, "entity": self.run.entity or None,
                "mode": mode, "dir": str(wandb_dir)})

    def log_result(self, result: dict[str, Any], per_query: pd.DataFrame) -> None:
        # fusion=auto is resolved only once the encoder is built: record what ran
        self.run.config.update(result_facts(result), allow_val_change=True)
        self.run.summary.update(_scalars(result))
        by_mod = result.get("by_target_modality") or {}
        if by_mod:
            self.log_table("by_target_modality", pd.DataFrame.from_dict(by_mod, orient="index")
                           .rename_axis("target_modality").reset_index())
        share = result.get("topk_modality_share") or {}
        if isinstance(share.get("topk"), dict):
            frame = pd.DataFrame({"topk": share["topk"], "corpus": share.get("corpus", {})})
            self.log_table("topk_modality_share", frame.rename_axis("modality").reset_index())
        self.log_files("results", "results", result_files(self.run_dir))

    def log_table(self, name: str, frame: pd.DataFrame) -> None:
        """Log a data frame as a ``wandb.Table``."""
        self.run.log({name: self._wandb.Table(dataframe=frame)})

    def log_files(self, name: str, kind: str, files: list[Path]) -> None:
        """Log ``files`` as one artifact ``<name>-<run id>`` of type ``kind``; paths keep their
        place under the run dir (``means/doc_text.npy``)."""
        if not files:
            return
        art = self._wandb.Artifact(f"{name}-{self.run.id}", type=kind)
        for path in files:
            art.add_file(str(path), name=_relative(path, self.run_dir))
        self.run.log_artifact(art)

    def log_curves(self, sweep: pd.DataFrame, x: str, metric: str, series: list[str]) -> None:
        """Line plots of ``metric`` against the swept value ``x``, one line per combination of
        the ``series`` columns: logged as history (``x`` is the step metric of
        ``curves/<x>/<series>``, so the workspace draws native line charts) and as one
        ``wandb.plot.line`` chart ``curves/<x>/chart`` (dots in ``x`` become ``_``)."""
        data = sweep.assign(_x=pd.to_numeric(sweep[x], errors="coerce")).dropna(subset=["_x", metric])
        if data.empty:
            return
        if series:
            label = data[series].astype(str).apply(
                lambda r: ",".join(f"{k}={v}" for k, v in r.items()), axis=1)
        else:
            label = pd.Series(metric, index=data.index)
        data = data.assign(_series=label.str.replace("/", ":"))
        # W&B reads dots in metric names as nesting: fusion.alpha -> fusion_alpha
        step = x.replace(".", "_")
        self.run.define_metric(step, hidden=False)
        self.run.define_metric(f"curves/{step}/*", step_metric=step)
        for xv, rows in data.sort_values("_x").groupby("_x", sort=True):
            row = {f"curves/{step}/{s}": float(v) for s, v in zip(rows["_series"], rows[metric], strict=True)}
            self.run.log({step: float(xv), **row})
        table = self._wandb.Table(dataframe=pd.DataFrame(
            {step: data["_x"], metric: data[metric].astype(float), "series": data["_series"]}))
        self.run.log({f"curves/{step}/chart": self._wandb.plot.line(
            table, step, metric, stroke="series", title=f"{metric} vs {x}")})

    def log_figure(self, name: str, path: str | Path) -> None:
        self.run.log({f"figures/{name}": self._wandb.Image(str(path))})

    def finish(self, ok: bool, error: BaseException | None = None) -> None:
        self.run.summary["status"] = "ok" if ok else "failed"
        if error is not None:
            self.run.summary["error"] = f"{type(error).__name__}: {error}"
        # a non-zero exit code marks the run as failed in the W&B UI
        self.run.finish(exit_code=0 if ok else 1)


_WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")
#: The W&B run of a run dir (id, project, entity, mode, dir), written when it is tracked.
WANDB_RUN_FILE = "wandb_run.json"


def log_html_to_wandb(run_dir: str | Path, html_text: str, key: str = "viewer") -> str:
    """Add an HTML page (the viewer's) to the W&B run of ``run_dir`` as a ``wandb.Html`` panel
    under ``key``: the run is resumed by the id in its :data:`WANDB_RUN_FILE`; a run dir that
    was not tracked gets a run of its own (``job_type=viewer``). ``WANDB_MODE`` overrides the
    recorded mode (e.g. offline on a machine without network). Returns the W&B run id."""
    run_dir = Path(run_dir)
    record = run_dir / WANDB_RUN_FILE
    info = json.loads(record.read_text()) if record.is_file() else {}
    tracker = WandbTracker(
        run_dir, project=info.get("project"), entity=info.get("entity"),
        mode=os.environ.get("WANDB_MODE") or info.get("mode"), dir=info.get("dir"),
        job_type="viewer", name=None if info.get("id") else f"viewer {run_dir.name}",
        run_id=info.get("id"))
    # inject=False: W&B would otherwise add its stylesheet to the self-contained page
    tracker.run.log({key: tracker._wandb.Html(html_text, inject=False)})
    run_id = tracker.run.id
    tracker.run.finish()
    return run_id


#: Result files of a run dir that go into its W&B artifact (when present).
RESULT_FILES = ("metrics.json", "per_query.csv", "run.trec")


def result_files(run_dir: str | Path) -> list[Path]:
    """The result files of a run: :data:`RESULT_FILES` and the fitted calibration state (GR's
    ``means/*.npy``, other methods' ``calibration_state/*.npy``)."""
    run_dir = Path(run_dir)
    files = [run_dir / f for f in RESULT_FILES if (run_dir / f).is_file()]
    return files + sorted((run_dir / "means").glob("*.npy")) + sorted((run_dir / "calibration_state").glob("*.npy"))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


#: Override keys that say where and how a run was logged, not what ran: left out of run names.
_NOT_IN_NAMES = ("logger", "paths", "hydra", "embed.progress")


def wandb_run_facts(cfg: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Group, tags, name and config of a job's W&B run from its config and Hydra files.

    The config gains ``choices`` (Hydra's config-group choices: ``choices.model``,
    ``choices.dataset``, ...), ``model_name`` (readable), ``model_calibration``
    (``CLIP-B/16 · gr``, what dashboards group by) and ``overrides``. Tags add
    ``bench:<toy|mixbench|beir|...>`` and ``experiment:<name>``; the group is the sweep's
    (unique per sweep dir); the name is the swept overrides only (a single run's overrides but
    ``logger``, ``paths``, ``hydra`` ones). ``logger.group``, ``logger.tags`` (added to) and ``logger.run_name`` win.
    """
    lg = cfg.get("logger") or {}
    info = read_job_info(run_dir)
    tags = list(lg.get("tags") or [])
    tags.append(f"bench:{benchmark_kind(info.choices.get('dataset'), cfg.get('dataset'))}")
    if info.choices.get("experiment"):
        tags.append(f"experiment:{info.choices['experiment']}")
    own = [o for o in info.overrides if not override_key(o).startswith(_NOT_IN_NAMES)]
    name = lg.get("run_name") or ",".join(info.swept_overrides or own) or Path(run_dir).name
    model_name = model_display_name(info.choices.get("model"), cfg.get("model"))
    calibration = info.choices.get("calibration") or (cfg.get("calibration") or {}).get("method") or "none"
    bench = benchmark_kind(info.choices.get("dataset"), cfg.get("dataset"))
    # flat keys a dashboard filters on (mixsearch.dashboard): the experiment, the benchmark kind
    config = {**cfg, "choices": info.choices, "overrides": info.overrides, "model_name": model_name,
              "model_calibration": f"{model_name} · {calibration}",
              "experiment": info.choices.get("experiment") or "", "bench": bench}
    group = lg.get("group") or (sweep_group(info.sweep_dir) if info.sweep_dir else None)
    return {"group": group, "tags": list(dict.fromkeys(tags)), "name": name, "config": config}


def result_facts(result: dict[str, Any]) -> dict[str, Any]:
    """Config facts known only after a run: the fusion that ran (``fusion=auto`` resolved) and
    ``paper_fusion``, whether it is the model's own recipe in the paper (joint for an encoder
    that embeds image+text items jointly, VLM2Vec's rows; α-weighted for the CLIP family)."""
    fusion = dict((result.get("config") or {}).get("fusion") or {})
    joint = bool((result.get("encoder") or {}).get("supports_joint"))
    paper = fusion.get("method") == ("joint" if joint else "weighted")
    return {"fusion": fusion, "paper_fusion": paper} if fusion else {"paper_fusion": False}


def _wandb_from_cfg(cfg: dict[str, Any], run_dir: str | Path) -> WandbTracker:
    lg = cfg["logger"]
    return WandbTracker(
        run_dir, project=lg.get("project"), entity=lg.get("entity"), mode=lg.get("mode"),
        job_type=lg.get("job_type", "eval"),
        # a sweep's runs in one folder (its own summary run's too): one `wandb sync` for all
        dir=lg.get("dir") or os.environ.get("WANDB_DIR") or read_job_info(run_dir).sweep_dir,
        **wandb_run_facts(cfg, run_dir),
    )


def log_sweep_to_wandb(
    logger_cfg: dict[str, Any], sweep_dir: str | Path, summary: pd.DataFrame,
    choices: dict[str, str], swept: list[str], metric: str = "ndcg@10",
) -> None:
    """One W&B run (``job_type=sweep``) in the sweep's group: the sweep table, a line plot of
    ``metric`` against each numeric swept value (one line per combination of the other swept
    values) and the summary files as an artifact.

    Args:
        logger_cfg: the multirun's ``logger`` section.
        sweep_dir: the sweep dir (holds ``summary.csv``).
        summary: the sweep table (:func:`mixsearch.callbacks.summary_frame`).
        choices: the multirun's config-group choices.
        swept: the swept keys (:func:`mixsearch.jobinfo.swept_keys`).
        metric: the metric of the curves.
    """
    sweep_dir = Path(sweep_dir)
    tags = list(logger_cfg.get("tags") or [])
    # the jobs' datasets (a swept dataset is not the multirun's own choice)
    datasets = summary["dataset"].dropna().unique() if "dataset" in summary.columns else ()
    kinds = sorted({benchmark_kind(str(d)) for d in datasets} or {benchmark_kind(choices.get("dataset"))})
    bench = kinds[0] if len(kinds) == 1 else "mixed"
    tags += [f"bench:{k}" for k in kinds]
    if choices.get("experiment"):
        tags.append(f"experiment:{choices['experiment']}")
    group = logger_cfg.get("group") or sweep_group(sweep_dir)
    tracker = WandbTracker(
        sweep_dir, project=logger_cfg.get("project"), entity=logger_cfg.get("entity"),
        mode=logger_cfg.get("mode"), group=group, tags=list(dict.fromkeys(tags)),
        name=f"sweep {group}", job_type="sweep", dir=logger_cfg.get("dir"),
        config={"choices": {k: v for k, v in choices.items() if k not in swept}, "swept": swept,
                "sweep_dir": str(sweep_dir), "experiment": choices.get("experiment") or "",
                "bench": bench},
    )
    ok = summary[summary["status"] == "ok"]
    tracker.run.summary.update({"jobs": len(summary), "jobs_not_ok": int(len(summary) - len(ok))})
    tracker.log_table("sweep", summary.astype({c: str for c in summary.columns
                                               if summary[c].dtype == object}))
    columns = [k for k in swept if k in ok.columns]
    if metric in ok.columns:
        for x in columns:
            if pd.to_numeric(ok[x], errors="coerce").notna().all():
                tracker.log_curves(ok, x, metric, [c for c in columns if c != x])
    tracker.log_files("sweep", "sweep", [p for p in (sweep_dir / "summary.csv", sweep_dir / "summary.md",
                                                     sweep_dir / "multirun.yaml") if p.is_file()])
    tracker.finish(ok=len(ok) == len(summary))


def _csv_from_cfg(cfg: dict[str, Any], run_dir: str | Path) -> CsvTracker:
    path = cfg["logger"].get("path")
    if not path:
        raise ValueError("logger.path: the csv logger needs the path of its ledger file")
    return CsvTracker(path, run_dir)


register_tracker("wandb", _wandb_from_cfg)
register_tracker("csv", _csv_from_cfg)
