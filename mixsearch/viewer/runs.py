"""What the viewer reads from a run directory: the result contract (metrics.json,
per_query.csv, run.trec) and the benchmark the run scored, reloaded from its own config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mixsearch.config import build, split_dataset_section
from mixsearch.data.benchmark import Benchmark, DataError


class RunDirError(ValueError):
    """A run directory the viewer cannot read. The message names the file at fault."""


@dataclass
class RunData:
    """One finished run as the viewer sees it.

    Attributes:
        path: the run directory.
        label: short name shown in the page (the calibration method, made unique by the caller).
        result: the parsed metrics.json (config, metrics, gap, calibration, corpus, ...).
        per_query: per_query.csv (one row per scored query; ``qid`` as str).
        ranked: query id -> [(doc id, score)] best first, from run.trec.
    """

    path: Path
    label: str
    result: dict[str, Any]
    per_query: pd.DataFrame
    ranked: dict[str, list[tuple[str, float]]]

    @property
    def config(self) -> dict[str, Any]:
        return self.result.get("config") or {}


def read_trec(path: Path) -> dict[str, list[tuple[str, float]]]:
    """A TREC run file as query id -> [(doc id, score)] in rank order.

    Raises:
        RunDirError: a line without the six columns (names the file and line).
    """
    out: dict[str, list[tuple[int, str, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise RunDirError(f"{path}:{n}: expected 'qid Q0 docid rank score tag', got {line!r}")
            qid, _, doc, rank, score, _ = parts
            out.setdefault(qid, []).append((int(rank), doc, float(score)))
    return {q: [(d, s) for _, d, s in sorted(rows)] for q, rows in out.items()}


def read_run(path: str | Path, label: str | None = None) -> RunData:
    """Read a finished run directory (metrics.json, per_query.csv, run.trec).

    Raises:
        RunDirError: the folder or one of its files is missing or unreadable (named).
    """
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory (give a run dir holding metrics.json)")
    files = {name: path / name for name in ("metrics.json", "per_query.csv", "run.trec")}
    for name, f in files.items():
        if not f.is_file():
            raise RunDirError(f"{path}: no {name} (is this a finished mixsearch run?)")
    try:
        result = json.loads(files["metrics.json"].read_text())
    except ValueError as e:
        raise RunDirError(f"{files['metrics.json']}: not JSON ({e})") from e
    per_query = pd.read_csv(files["per_query.csv"], dtype={"qid": str})
    if "qid" not in per_query or "ndcg@10" not in per_query:
        raise RunDirError(f"{files['per_query.csv']}: needs the columns qid and ndcg@10")
    cal = (result.get("calibration") or {}).get("method") or "run"
    return RunData(path, label or cal, result, per_query, read_trec(files["run.trec"]))


def load_benchmark_of(run: RunData, root: str | Path | None = None) -> Benchmark:
    """The benchmark a run scored, rebuilt from its config's ``dataset`` section.

    Args:
        run: the run.
        root: overrides ``dataset.root`` (a run moved to another machine or folder).

    Raises:
        RunDirError: the run has no dataset config, or the rebuilt benchmark is not the one
            the run scored (names both).
    """
    spec = split_dataset_section(run.config.get("dataset") or {})[0]  # the loader's options
    if not spec:
        raise RunDirError(f"{run.path}/metrics.json: no config.dataset to reload the benchmark from")
    if root is not None:
        spec["root"] = str(root)
    try:
        bench = build(spec, "dataset")
    except (DataError, OSError) as e:
        raise RunDirError(f"{run.path}: cannot reload the benchmark ({e}); "
                          "pass --root DIR if the data moved") from e
    want = (run.result.get("benchmark") or {}).get("name")
    if want and bench.name != want:
        raise RunDirError(f"{run.path}: config.dataset loads {bench.name}, the run scored {want}")
    return bench


def check_same_benchmark(a: RunData, b: RunData) -> None:
    """Two runs can be compared only on the same benchmark and queries.

    Raises:
        RunDirError: names both runs and what differs.
    """
    na = (a.result.get("benchmark") or {}).get("name")
    nb = (b.result.get("benchmark") or {}).get("name")
    if na != nb:
        raise RunDirError(f"{a.path} scored {na}, {b.path} scored {nb}: compare runs of one benchmark")
    qa, qb = set(a.per_query["qid"]), set(b.per_query["qid"])
    if qa != qb:
        only = sorted(qa ^ qb)[:3]
        raise RunDirError(f"{a.path} and {b.path} scored different queries (e.g. {', '.join(only)})")
