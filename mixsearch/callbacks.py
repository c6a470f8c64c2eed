"""Sweep summaries: every job of one or more multiruns as one table (``summary.csv``/``.md``).

:class:`SummaryCallback` writes them into the sweep dir when a Hydra multirun ends;
``python -m experiments.report summarize <sweep dirs...>`` rebuilds them at any time.
A job dir is ``<sweep dir>/<n>/`` holding ``status.json``, ``metrics.json`` and
``.hydra/{overrides,hydra}.yaml``; a job without ``status.json`` is listed as ``missing``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mixsearch import stats
from mixsearch.jobinfo import hydra_choices, read_yaml, swept_keys
from mixsearch.metrics import HIT_NOTE, display_name
from mixsearch.tracking import atomic_write_text

log = logging.getLogger(__name__)

#: Metrics shown first (and the only ones in ``summary.md``); the CSV has every metric.
MAIN_METRICS = ("ndcg@10", "ndcg@100", "recall@1", "mrr@10", "hit@5", "hit@10")
#: Metric whose 95 % bootstrap CI over queries (from ``per_query.csv``) the summary shows.
CI_METRIC = "ndcg@10"
#: Config groups whose choice gets a column of its own.
GROUPS = ("model", "dataset", "corpus", "calibration", "fusion")

# Jobs that did not end ok in the multiruns that ended in this process (None: none ended).
# run.py turns it into the exit status once Hydra returns, i.e. after every job ran and every
# callback (this summary included) is done.
_not_ok: int | None = None


@dataclass
class Job:
    """One job dir of a sweep and what it left behind."""

    run_dir: Path
    status: str
    error: str = ""
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] | None = None

    @property
    def sweep(self) -> str:
        return self.run_dir.parent.name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e


def read_job(run_dir: str | Path) -> Job:
    """Read one job dir. Unreadable result files make the job ``corrupt`` (error names the file)."""
    run_dir = Path(run_dir)
    job = Job(run_dir=run_dir, status="missing", error="no status.json (job killed or still running)")
    hydra_dir = run_dir / ".hydra"
    try:
        if (hydra_dir / "overrides.yaml").is_file():
            job.overrides = [str(o) for o in read_yaml(hydra_dir / "overrides.yaml") or []]
        if (hydra_dir / "hydra.yaml").is_file():
            job.choices = hydra_choices(hydra_dir / "hydra.yaml")
        status_path, metrics_path = run_dir / "status.json", run_dir / "metrics.json"
        if status_path.is_file():
            status = _read_json(status_path)
            job.status, job.error = str(status.get("status", "unknown")), str(status.get("error", ""))
        if metrics_path.is_file():
            job.result = _read_json(metrics_path)
        elif job.status == "ok":
            job.error = "no metrics.json (shard-only extraction job)"
    except (OSError, ValueError) as e:
        job.status, job.error = "corrupt", str(e)
    return job


def read_per_query(run_dir: str | Path) -> pd.DataFrame:
    """A run's ``per_query.csv`` (qids kept as strings).

    Raises:
        FileNotFoundError: the run dir has no ``per_query.csv`` (names it).
        ValueError: the file is not a CSV with a ``qid`` column (names it).
    """
    path = Path(run_dir) / "per_query.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (is {run_dir} a finished run dir?)")
    try:
        frame = pd.read_csv(path, dtype={"qid": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV: {e}") from e
    if "qid" not in frame.columns:
        raise ValueError(f"{path}: no 'qid' column")
    return frame


def metric_ci(run_dir: str | Path, metric: str = CI_METRIC, confidence: float = 0.95) -> tuple[float, float] | None:
    """Bootstrap CI over queries of a run's mean ``metric``; None when the run has no such
    per-query column (e.g. a run dir written before per-query files existed)."""
    try:
        frame = read_per_query(run_dir)
    except FileNotFoundError:
        return None
    if metric not in frame.columns:
        return None
    values = frame[metric].dropna()
    if len(values) < len(frame):
        raise ValueError(f"{Path(run_dir) / 'per_query.csv'}: {len(frame) - len(values)} "
                         f"queries have no {metric}")
    return stats.mean_ci(values.to_numpy(), confidence=confidence)


def _job_dirs(sweep_dir: Path) -> list[Path]:
    dirs = [p for p in sweep_dir.iterdir()
            if p.is_dir() and ((p / ".hydra").is_dir() or (p / "status.json").is_file())]
    # numeric job dirs in job order (2 before 10); anything else after them by name
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def collect_jobs(sweep_dirs: list[str | Path]) -> list[Job]:
    """Every job of the given sweep dirs, in sweep and job order.

    Raises:
        FileNotFoundError: a sweep dir does not exist or holds no job dirs (names it).
    """
    jobs: list[Job] = []
    for d in map(Path, sweep_dirs):
        if not d.is_dir():
            raise FileNotFoundError(f"sweep dir {d} does not exist")
        dirs = _job_dirs(d)
        if not dirs:
            raise FileNotFoundError(f"sweep dir {d} holds no job dirs (<n>/ with .hydra/ or status.json)")
        jobs.extend(read_job(p) for p in dirs)
    return jobs


def _split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def summary_frame(jobs: list[Job]) -> pd.DataFrame:
    """One row per job: sweep, job, status, error, overrides, group choices, swept values
    (non-group overrides such as ``corpus.p``), every metric (main ones first, NDCG@10 with its
    95 % bootstrap CI over queries as ``ndcg@10_ci_low``/``_ci_high``), gap, run dir."""
    rows = []
    for job in jobs:
        row: dict[str, Any] = {"sweep": job.sweep, "job": job.run_dir.name, "status": job.status,
                               "error": job.error, "overrides": " ".join(job.overrides)}
        row.update({g: job.choices[g] for g in GROUPS if g in job.choices})
        row.update({k: v for k, v in map(_split_override, job.overrides) if k not in job.choices})
        result = job.result or {}
        metrics = result.get("metrics") or {}
        for m in MAIN_METRICS:
            if m in metrics:
                row[m] = metrics[m]
            if m == CI_METRIC and job.status == "ok" and metrics:
                try:
                    ci = metric_ci(job.run_dir, m)
                except ValueError as e:  # the summary still lists the job; the CI stays blank
                    log.warning("no %s CI for job %s: %s", m, job.run_dir, e)
                    ci = None
                if ci is not None:
                    row[f"{m}_ci_low"], row[f"{m}_ci_high"] = ci
        row.update({m: v for m, v in sorted(metrics.items()) if m not in MAIN_METRICS})
        gap = result.get("gap") or {}
        for key in ("centroid_distance_before", "centroid_distance_after"):
            if key in gap:
                row[f"gap_{key.removeprefix('centroid_distance_')}"] = gap[key]
        if "seconds" in result:
            row["seconds"] = result["seconds"]
        row["run_dir"] = str(job.run_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table of ``frame`` (floats to 4 decimals, blanks for missing)."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def write_summary(sweep_dirs: list[str | Path], out_dir: str | Path) -> pd.DataFrame:
    """Collect the jobs of ``sweep_dirs`` into ``out_dir/summary.csv`` and ``summary.md``.

    Returns:
        The summary table (one row per job).
    """
    jobs = collect_jobs(sweep_dirs)
    frame = summary_frame(jobs)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "summary.csv", frame.to_csv(index=False))
    n_ok = int((frame["status"] == "ok").sum())
    shown = [c for c in frame.columns if c not in ("run_dir", "overrides", "sweep")
             and (c in MAIN_METRICS or not _is_metric_column(c, jobs))]
    table = frame[shown].rename(columns=display_name)  # hit@5 -> "Recall@5 (hit)", as M-BEIR
    lines = [f"# Sweep summary: {', '.join(str(d) for d in sweep_dirs)}", "",
             f"{len(frame)} jobs: {n_ok} ok, {len(frame) - n_ok} not ok. "
             "All metrics and run dirs are in summary.csv.", "", markdown_table(table)]
    if any(c.startswith("hit@") for c in shown):
        lines += ["", HIT_NOTE, ""]
    atomic_write_text(out_dir / "summary.md", "\n".join(lines))
    return frame


def _is_metric_column(column: str, jobs: list[Job]) -> bool:
    return column.startswith("gap_") or column == "seconds" or any(
        column in ((j.result or {}).get("metrics") or {}) for j in jobs)


def sweep_exit_code() -> int:
    """The exit status of this process's multiruns: 0 when every job ended ok, else 1.

    A sweep whose jobs left no job dir at all (they never started) counts as failed; a process
    that ran no multirun exits 0.
    """
    return 1 if _not_ok else 0


def _record(not_ok: int) -> None:
    global _not_ok
    _not_ok = (_not_ok or 0) + not_ok


class SweepDirInUse(RuntimeError):
    """A multirun was pointed at a sweep dir that already holds another multirun's jobs."""


class SummaryCallback(Callback):
    """Writes ``summary.csv`` and ``summary.md`` into the sweep dir when a multirun ends, and
    records how many jobs did not end ok (see :func:`sweep_exit_code`).

    A multirun must start in a sweep dir without job dirs: the summary lists every job dir
    there, so a second multirun in the same dir (a reused ``hydra.sweep.dir``) would mix its
    jobs with the first one's.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        old = _job_dirs(sweep_dir) if sweep_dir.is_dir() else []
        if old:
            raise SweepDirInUse(
                f"sweep dir {sweep_dir} already holds {len(old)} job dir(s) of another multirun "
                f"({', '.join(p.name for p in old[:5])}); its summary would mix the two: give "
                "hydra.sweep.dir a new folder (or remove the old one)")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            frame = write_summary([sweep_dir], sweep_dir)
        except FileNotFoundError as e:  # a sweep whose jobs never started: nothing to sum up
            log.error("no sweep summary: %s", e)
            _record(1)
            return
        failed = frame[frame["status"] != "ok"]
        _record(len(failed))
        log.info("sweep summary: %s (%d jobs, %d not ok)", sweep_dir / "summary.md", len(frame), len(failed))
        for row in failed.itertuples(index=False):
            log.warning("job %s %s: %s", row.job, row.status, row.error)
        logger_cfg = OmegaConf.to_container(config.logger, resolve=True) if "logger" in config else {}
        if (logger_cfg or {}).get("name") == "wandb":
            from mixsearch.tracking import log_sweep_to_wandb

            choices = {k: str(v) for k, v in config.hydra.runtime.choices.items()
                       if not k.startswith("hydra/") and v is not None}
            log_sweep_to_wandb(logger_cfg, sweep_dir, frame, choices,
                               swept_keys(sweep_dir / "multirun.yaml"),
                               metric=str(config.get("main_metric", "ndcg@10")))
