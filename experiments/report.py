"""Paper-style report from sweep results: Table 1 beside the paper's numbers, figures 2–4.

    python -m experiments.report <sweep dirs...> [--out DIR] [--figures table1 figure4 ...]
    python -m experiments.report summarize <sweep dirs...> [--out DIR]   # summary.csv/.md only
    python -m experiments.report compare RUN_A RUN_B [--metric ndcg@10] [--json] [--allow-different]
    python -m experiments.report export-mteb RUN_OR_SWEEP_DIR... --out DIR   # mteb result files

Artefacts in ``--out`` (default: the single sweep dir): ``summary.{csv,md}``,
``table1.{md,csv}``, ``figure2..4.{png,pdf,csv}``, ``zoo.{md,csv}`` (calibration × merge,
CIs, Holm-corrected tests against GR; experiment=zoo), ``gr_help.{md,csv}`` ("does GR help?":
none vs GR per model and benchmark, CIs, Holm; docs/mteb.md), ``samples.{png,pdf,csv}`` (NDCG@10 vs
calibration sample count; experiment=ablation/samples) and ``report.md``. Jobs are matched to the
paper by their model config name, ``calibration.method`` and ``dataset.subset``; results the
paper has no number for (the toy benchmark, other models) show "–" in the paper columns.
``compare`` tests two run dirs (``per_query.csv``) on their common queries: B − A, its 95 %
paired bootstrap CI and a paired two-sided randomisation test (:mod:`mixsearch.stats`); it
refuses runs whose benchmark, subset, split, revision or query set differ (``metrics.json``,
``per_query.csv``) unless ``--allow-different`` is given.
Exit status: 0, or 1 when some job of the sweeps did not finish ok (everything is still
written), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from experiments import gr_help, paper, plots, zoo
from mixsearch import stats
from mixsearch.callbacks import Job, collect_jobs, markdown_table, read_per_query, write_summary
from mixsearch.jobinfo import benchmark_kind, model_display_name, sweep_group
from mixsearch.tracking import atomic_write_text

ARTEFACTS = ("table1", "figure2", "figure3", "figure4", "modality", "compute", "zoo", "samples",
             "gr_help")
#: Which corpus mode each artefact reads (released = MixBench setting 3).
CORPUS_MODE = {"table1": "released", "figure2": "replace", "figure3": "all_multimodal",
               "figure4": "released", "modality": "released", "compute": "released"}
#: How Table 1 labels the means behind a GR row, by ``calibration.source`` as run.
GR_MEANS = {"train": "training-split means (the paper's recipe)",
            "crossfit": "cross-fitted means (not the paper's recipe)",
            "transductive": "evaluation-set means (transductive, not the paper's recipe)",
            "files": "means from files"}
NA = "–"


def job_facts(jobs: list[Job]) -> pd.DataFrame:
    """One row per finished job: model, calibration, benchmark, corpus, p, alpha, metrics.

    Raises:
        ValueError: a finished job has no ``.hydra/hydra.yaml`` naming its model, or its
            ``metrics.json`` has no metrics (names the file).
    """
    rows = []
    for job in jobs:
        if job.status != "ok" or job.result is None:
            continue
        if "model" not in job.choices:
            raise ValueError(f"{job.run_dir}/.hydra/hydra.yaml: missing; cannot tell the job's model")
        res: dict[str, Any] = job.result
        if not isinstance(res.get("metrics"), dict):
            raise ValueError(f"{job.run_dir}/metrics.json: no 'metrics' section")
        cfg = res.get("config") or {}
        dataset = cfg.get("dataset") or {}
        rows.append({
            "model": job.choices["model"],
            "model_name": model_display_name(job.choices["model"], cfg.get("model")),
            "calibration": (res.get("calibration") or {}).get("method")
            or (cfg.get("calibration") or {}).get("method"),
            "benchmark": dataset.get("subset") or (res.get("benchmark") or {}).get("name"),
            "corpus": (res.get("corpus") or {}).get("mode") or (cfg.get("corpus") or {}).get("mode"),
            "p": (cfg.get("corpus") or {}).get("p"),
            "alpha": (cfg.get("fusion") or {}).get("alpha"),
            "fusion": (cfg.get("fusion") or {}).get("method", "weighted"),
            "gflops_per_doc": ((res.get("encoder") or {}).get("compute") or {}).get("gflops_per_doc"),
            "calibration_source": (res.get("calibration") or {}).get("source"),
            "kind": benchmark_kind(job.choices.get("dataset"), dataset),
            "by_target_modality": res.get("by_target_modality") or {},
            **res["metrics"],
            "run_dir": str(job.run_dir),
        })
    return pd.DataFrame(rows)


def select(facts: pd.DataFrame, artefact: str, keys: list[str]) -> pd.DataFrame:
    """The jobs an artefact reads, one per ``keys`` combination.

    Raises:
        ValueError: no job has the artefact's corpus mode, or two jobs share a key (names both).
    """
    mode = CORPUS_MODE[artefact]
    data = facts[facts["corpus"] == mode] if len(facts) else facts
    if data.empty:
        raise ValueError(f"{artefact}: no finished job with corpus.mode={mode} in the given sweeps")
    dup = data[data.duplicated(keys, keep=False)]
    if not dup.empty:
        first = dup.groupby(keys, sort=False)["run_dir"].apply(list).iloc[0]
        raise ValueError(f"{artefact}: several jobs for the same {'/'.join(keys)}: {first}; "
                         "pass sweeps that do not overlap")
    return data


def table1(facts: pd.DataFrame, out: Path) -> list[Path]:
    """Table 1 in the paper's layout (rows = methods, cells = NDCG@10/NDCG@100/Recall@1) with
    the paper's cell and the difference beside ours; plus the long-format CSV."""
    data = select(facts, "table1", ["model", "calibration", "fusion", "benchmark"])
    long = []
    for r in data.to_dict("records"):
        for metric in paper.TABLE1_METRICS:
            ref = paper.table1_value(r["model"], r["calibration"], r["benchmark"], metric, r["fusion"])
            ours = r.get(metric)
            long.append({"method": _method(r["model"], r["calibration"], r["fusion"], r["model_name"]),
                         "model": r["model"], "calibration": r["calibration"],
                         "fusion": r["fusion"], "benchmark": r["benchmark"],
                         "calibration_source": r["calibration_source"],
                         "metric": metric, "ours": ours, "paper": ref,
                         "diff": None if ref is None or ours is None else ours - ref,
                         "run_dir": r["run_dir"]})
    frame = pd.DataFrame(long)
    atomic_write_text(out / "table1.csv", frame.to_csv(index=False))
    benches = [b for b in paper.SUBSETS if b in set(frame["benchmark"])]
    benches += sorted(set(frame["benchmark"]) - set(benches))
    cells: dict[str, dict[str, str]] = {}
    for (method, bench), group in frame.groupby(["method", "benchmark"], sort=False):
        g = group.set_index("metric")
        row = cells.setdefault(method, {"method": method, "means": _means_label(group)})
        row[f"{bench} ours"] = _triple(g["ours"])
        row[f"{bench} paper"] = _triple(g["paper"])
        row[f"{bench} Δ"] = _triple(g["diff"], signed=True)
    marked = _holm_marks(data)
    if marked:
        for r in frame.drop_duplicates("run_dir").to_dict("records"):
            if r["run_dir"] in marked:
                cells[r["method"]][f"{r['benchmark']} ours"] += zoo.MARK
    columns = ["method", "means"] + [f"{b} {c}" for b in benches for c in ("ours", "paper", "Δ")]
    pairs = frame.drop_duplicates("method").set_index("method")[["model", "calibration"]]
    order = sorted(cells, key=lambda m: _row_order(m, *pairs.loc[m]))
    md = pd.DataFrame([cells[m] for m in order]).reindex(columns=columns).fillna("")
    if frame["paper"].notna().any():
        note = (f"Paper columns: appendix Table 1 of arXiv 2507.19054; Δ = ours − paper; "
                f"{NA} = the paper has no such cell.")
    else:
        note = (f"**Not comparable with the paper** (benchmarks {', '.join(benches)}; models "
                f"{', '.join(sorted(set(frame['model'])))}): the paper columns are shown as {NA}.")
    if marked is not None:
        note += (f" {zoo.MARK} = NDCG@10 differs from the same model without calibration (paired "
                 f"randomisation test over queries, Holm-corrected over the table, level {zoo.LEVEL}).")
    if (frame["calibration_source"] == "crossfit").any():
        note += ("\n\nGR rows marked \"cross-fitted means (not the paper's recipe)\" fit their means "
                 "on held-out folds of the evaluation data: MixBench has no training split. The "
                 "paper's recipe (calibration=gr_paper) needs the training pools of "
                 "`make calibration-sets`.")
    toy = " (toy benchmark, not the paper's data)" if (data["kind"] == "toy").any() else ""
    text = (f"# Table 1{toy}: NDCG@10 / NDCG@100 / Recall@1\n\n" + note + "\n\n" + markdown_table(md))
    atomic_write_text(out / "table1.md", text)
    return [out / "table1.md", out / "table1.csv"]


def _holm_marks(data: pd.DataFrame) -> set[str] | None:
    """Run dirs of calibrated rows whose NDCG@10 differs from the same model, fusion and
    benchmark without calibration, Holm-corrected over the table; None when some run has no
    ``per_query.csv`` (no test possible)."""
    base = {(r["model"], r["fusion"], r["benchmark"]): r["run_dir"]
            for r in data.to_dict("records") if r["calibration"] == "none"}
    pairs = [(base[(r["model"], r["fusion"], r["benchmark"])], r["run_dir"])
             for r in data.to_dict("records")
             if r["calibration"] != "none" and (r["model"], r["fusion"], r["benchmark"]) in base]
    if not pairs or not all((Path(d) / "per_query.csv").is_file() for pair in pairs for d in pair):
        return None
    return {b for (_, b), t in zip(pairs, zoo.holm_compare(pairs), strict=True) if t["significant"]}


def _method(model: str, calibration: str, fusion: str = "weighted", name: str | None = None) -> str:
    """A Table 1 row name in the paper's style from the model's display name (``CLIP-B/16``,
    ``GR-toy CLIP``, ``toy CLIP [pushdown]``, ``GR-VLM2Vec-Qwen``); a fusion other than the
    paper's for that model (VLM2Vec: joint, the others: weighted) is named in brackets
    (``VLM2Vec-Qwen [weighted]``). Paper models get exactly the paper's row names. ``name``:
    the model's display name when known (else derived from the config name)."""
    prefix = paper.CALIBRATION_PREFIX.get(calibration)
    base = name or model_display_name(model)
    name = f"{prefix}{base}" if prefix is not None else f"{base} [{calibration}]"
    row_fusion = paper.ROW_FUSION.get(paper.MODELS.get(model, base), "weighted")
    return name if fusion == row_fusion else f"{name} [{fusion}]"


def _means_label(rows: pd.DataFrame) -> str:
    """What the means of a calibrated row are (GR_MEANS), "–" for uncalibrated rows."""
    if (rows["calibration"] == "none").all():
        return NA
    sources = sorted({str(s) for s in rows["calibration_source"].dropna()})
    return "; ".join(GR_MEANS.get(s, s) for s in sources) or NA


def _row_order(method: str, model: str, calibration: str) -> tuple[int, int, str]:
    """Paper rows in the paper's order, then ours: uncalibrated first, then GR, then others."""
    rows = list(paper.TABLE1)
    if method in rows:
        return rows.index(method), 0, ""
    return len(rows), {"none": 0, "gr": 1}.get(calibration, 2), method


def _triple(values: pd.Series, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    parts = [NA if pd.isna(values.get(m)) else fmt.format(values[m]) for m in paper.TABLE1_METRICS]
    return NA if all(p == NA for p in parts) else "/".join(parts)


def compute_figure(facts: pd.DataFrame, out: Path) -> list[Path]:
    """NDCG@10 (mean over the sweep's benchmarks) against GFLOPs per document (log x), one
    point per model × calibration × fusion, beside the paper's compute axis: the "75× less
    compute" claim, measured. Also writes ``compute.csv``."""
    data = select(facts, "compute", ["model", "calibration", "fusion", "benchmark"])
    data = data[data["gflops_per_doc"].notna()]
    if data.empty:
        raise ValueError("compute: no job recorded encoder.compute.gflops_per_doc")
    points = (data.groupby(["model", "calibration", "fusion"], sort=True)
              .agg(gflops_per_doc=("gflops_per_doc", "mean"), ndcg10=("ndcg@10", "mean"),
                   model_name=("model_name", "first"),
                   benchmarks=("benchmark", "nunique")).reset_index())
    points["method"] = [_method(m, c, f, n) for m, c, f, n in zip(
        points["model"], points["calibration"], points["fusion"], points["model_name"], strict=True)]
    ref = []  # the paper's rows: (name, GFLOPs read off its axis, 4-subset mean NDCG@10)
    for row, gflops in paper.GFLOPS.items():
        for name in (row, f"GR-{row}"):
            if name in paper.TABLE1:
                cells = [paper.TABLE1[name][b]["ndcg@10"] for b in paper.SUBSETS.values()]
                ref.append((name, gflops, sum(cells) / len(cells)))
    title = "NDCG@10 against compute per document"
    elsewhere = (data["kind"] == "toy").any() or not points["method"].isin(paper.TABLE1).any()
    if elsewhere:
        title += " (ours: not the paper's benchmark, on its own axis)"
    paths = plots.compute_scatter(points, ref, title, out / "compute", separate=bool(elsewhere))
    atomic_write_text(out / "compute.csv", points.to_csv(index=False))
    return [*paths, out / "compute.csv"]


def _title(title: str, data: pd.DataFrame) -> str:
    """A figure title that says so when its data is the toy benchmark."""
    if (data["kind"] == "toy").any():
        return title.replace("MixBench ", "") + " (toy benchmark)"
    return title


def _ci_columns(data: pd.DataFrame, metric: str = "ndcg@10") -> list[str]:
    return [c for c in (f"{metric}_ci_low", f"{metric}_ci_high") if c in data.columns]


def modality_figure(facts: pd.DataFrame, out: Path, metric: str = "ndcg@10") -> list[Path]:
    """NDCG@10 per target modality (text, image, image+text docs as the relevant one), no
    calibration vs GR, one panel per model × benchmark of the released corpus, with 95 %
    bootstrap CIs over each modality's queries. Also writes ``modality.csv``."""
    data = select(facts, "modality", ["model", "calibration", "benchmark"])
    rows = []
    for r in data.to_dict("records"):
        if not r["by_target_modality"]:
            continue
        try:
            per_query = read_per_query(r["run_dir"])
        except FileNotFoundError:  # a run without per-query scores: bars without CIs
            per_query = pd.DataFrame(columns=["target_modality", metric])
        if "target_modality" not in per_query.columns or metric not in per_query.columns:
            raise ValueError(f"{r['run_dir']}/per_query.csv: no target_modality or {metric} column")
        for modality, values in r["by_target_modality"].items():
            scores = per_query.loc[per_query["target_modality"] == modality, metric].dropna()
            low, high = stats.mean_ci(scores.to_numpy()) if len(scores) else (None, None)
            rows.append({"model": r["model"], "model_name": r["model_name"], "benchmark": r["benchmark"],
                         "calibration": r["calibration"], "target_modality": modality,
                         "n_queries": values.get("n_queries", len(scores)), metric: values.get(metric),
                         f"{metric}_ci_low": low, f"{metric}_ci_high": high, "kind": r["kind"],
                         "run_dir": r["run_dir"]})
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError("modality: no job recorded by_target_modality")
    title = _title("NDCG@10 by the relevant document's modality, no calibration vs GR", frame)
    paths = plots.bar_panels(frame, title, out / "modality", lambda m, c, b: None, metric,
                             panel_by=("model", "benchmark"), x="target_modality")
    atomic_write_text(out / "modality.csv", frame.drop(columns=["kind"]).to_csv(index=False))
    return [*paths, out / "modality.csv"]


def figure(facts: pd.DataFrame, name: str, out: Path) -> list[Path]:
    """Figure 2 (NDCG@10 vs p), 3 (NDCG@10 vs α), 4 (per-subset bars) or the compute figure:
    PNG, PDF and CSV."""
    if name == "compute":
        return compute_figure(facts, out)
    if name == "figure4":
        data = select(facts, name, ["model", "calibration", "benchmark"])
        paths = plots.bar_panels(
            data, _title("Figure 4: MixBench NDCG@10, no calibration vs GR", data), out / name,
            lambda m, c, b: paper.table1_value(m, c, b, "ndcg@10"))
        columns = ["model", "benchmark", "calibration", "ndcg@10", *_ci_columns(data), "run_dir"]
    elif name == "modality":
        return modality_figure(facts, out)
    else:
        x, xlabel, readings, title = {
            "figure2": ("p", "ratio p of docs shown as images", paper.FIGURE2,
                        "Figure 2: setting 1 (heterogeneous corpus), NDCG@10 vs p"),
            "figure3": ("alpha", "text weight α of image+text docs", paper.FIGURE3,
                        "Figure 3: setting 2 (all docs image+text), NDCG@10 vs α"),
        }[name]
        data = select(facts, name, ["model", "calibration", "benchmark", x])
        paths = plots.line_panels(data, x, xlabel, _title(title, data), out / name,
                                  lambda m, b, fig=readings: paper.figure_readings(fig, m, b),
                                  near_one=name == "figure2", mark_best=name == "figure3")
        columns = ["model", "benchmark", "calibration", x, "ndcg@10", *_ci_columns(data), "run_dir"]
    atomic_write_text(out / f"{name}.csv", data[columns].to_csv(index=False))
    return [*paths, out / f"{name}.csv"]


def render(sweeps: list[Path], out: Path, artefacts: list[str] | None) -> tuple[list[Path], list[Job]]:
    """Write the summary, the requested artefacts (default: those the sweeps have data for)
    and ``report.md``. Returns the written paths and the jobs that did not finish ok.

    Raises:
        ValueError: a requested artefact has no data in the sweeps.
    """
    summary = write_summary(sweeps, out)
    jobs = collect_jobs(sweeps)
    facts = job_facts(jobs)
    ci = [c for c in summary.columns if c.endswith(("_ci_low", "_ci_high"))]
    if len(facts) and ci:
        facts = facts.merge(summary[["run_dir", *ci]], on="run_dir", how="left")
    written: list[Path] = [out / "summary.csv", out / "summary.md"]
    skipped = []
    for name in artefacts or ARTEFACTS:
        try:
            if name in ("zoo", "samples", "gr_help"):  # tables and figures over zoo_facts
                ablation = zoo.zoo_facts(jobs)
                written += {"zoo": zoo.zoo_table, "samples": zoo.samples_figure,
                            "gr_help": gr_help.gr_help_table}[name](ablation, out)
                continue
            written += table1(facts, out) if name == "table1" else figure(facts, name, out)
        except ValueError as e:
            if artefacts:  # asked for explicitly: its data must be there
                raise
            skipped.append(str(e))
    failed = [j for j in jobs if j.status != "ok"]
    lines = [f"# Report: {', '.join(map(str, sweeps))}", "",
             f"{len(jobs)} jobs, {len(failed)} not ok (see summary.md).", "", "## Artefacts", ""]
    lines += [f"- [{p.name}]({p.name})" for p in written]
    figures = [p for p in written if p.suffix == ".png"]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{p.stem}]({p.name})\n" for p in figures]
    lines += ["", "Figure markers labelled 'paper ≈' are read off the paper's figures by eye "
              "(±0.01); Table 1 numbers are exact."]
    if skipped:
        lines += ["", "## Not rendered", "", *[f"- {s}" for s in skipped]]
    if failed:
        lines += ["", "## Jobs not ok", "", markdown_table(pd.DataFrame(
            [{"run_dir": str(j.run_dir), "status": j.status, "error": j.error} for j in failed]))]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return [*written, out / "report.md"], failed


def log_to_wandb(paths: list[Path], out: Path, sweeps: list[Path], args: argparse.Namespace) -> None:
    """Mirror the report to one W&B run (job_type=report) grouped with the first sweep."""
    from mixsearch.tracking import WandbTracker

    group = sweep_group(sweeps[0])
    tracker = WandbTracker(out, project=args.wandb_project, entity=args.wandb_entity,
                           mode=args.wandb_mode, group=group, tags=["report"],
                           name=f"report {group}", job_type="report")
    for p in paths:
        if p.suffix == ".png":
            tracker.log_figure(p.stem, p)
        elif p.suffix == ".csv":
            tracker.log_table(p.stem, pd.read_csv(p))
    tracker.finish(ok=True)


#: ``metrics.json`` benchmark fields that must agree for two runs' queries to be paired.
PAIRING_FIELDS = ("name", "subset", "split", "revision", "qrels_revision")


def pairing_problems(run_a: Path, run_b: Path, frames: list[pd.DataFrame]) -> list[str]:
    """Why the per-query rows of two runs are not the same queries: a different benchmark,
    subset, split or revision (``metrics.json``), or a different query set
    (``per_query.csv``). Empty when they pair."""
    problems = []
    benches = []
    for d in (run_a, run_b):
        path = d / "metrics.json"
        try:
            benches.append(json.loads(path.read_text(encoding="utf-8")).get("benchmark") or {})
        except (OSError, json.JSONDecodeError) as e:
            problems.append(f"{path}: unreadable ({e}); cannot tell the run's benchmark")
            benches.append(None)
    if None not in benches:
        for key in PAIRING_FIELDS:
            va, vb = (b.get(key) for b in benches)  # type: ignore[union-attr]
            if va != vb:
                problems.append(f"benchmark {key} differs: A {va!r}, B {vb!r}")
    qa, qb = (set(f["qid"].astype(str)) for f in frames)
    if qa != qb:
        only_a, only_b = sorted(qa - qb), sorted(qb - qa)
        problems.append(f"query sets differ: {len(only_a)} only in A (first {only_a[:3]}), "
                        f"{len(only_b)} only in B (first {only_b[:3]})")
    return problems


def compare_runs(run_a: Path, run_b: Path, metric: str = "ndcg@10", *,
                 n_resamples: int = stats.N_RESAMPLES, seed: int = 0,
                 allow_different: bool = False) -> stats.Comparison:
    """Paired comparison of run B against run A on ``metric`` over their common queries.

    Args:
        allow_different: pair the common query ids even when :func:`pairing_problems` finds
            that the runs differ in benchmark or query set (the problems are then printed as
            warnings).

    Raises:
        FileNotFoundError: a run dir has no ``per_query.csv``.
        ValueError: the tables cannot be paired (see :func:`mixsearch.stats.compare`), or the
            runs differ (names each difference) and ``allow_different`` is False.
    """
    frames = [read_per_query(d) for d in (run_a, run_b)]
    problems = pairing_problems(run_a, run_b, frames)
    if problems and not allow_different:
        raise ValueError(f"{run_a} and {run_b} are not runs on the same queries: "
                         + "; ".join(problems) + " (pass --allow-different to pair their "
                         "common query ids anyway)")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return stats.compare(*frames, metric, n_resamples=n_resamples, seed=seed,
                         names=(f"{run_a}/per_query.csv", f"{run_b}/per_query.csv"))


def compare_main(argv: list[str]) -> int:
    """``compare RUN_A RUN_B``: prints the comparison (one JSON object with ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m experiments.report compare",
                                     description="Compare run B against run A on common queries.")
    parser.add_argument("run_a", type=Path, help="run dir of the baseline A")
    parser.add_argument("run_b", type=Path, help="run dir of B")
    parser.add_argument("--metric", default="ndcg@10", help="per_query.csv column (default ndcg@10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--resamples", type=int, default=stats.N_RESAMPLES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-different", action="store_true",
                        help="pair the common query ids even if benchmark, split or query set differ")
    args = parser.parse_args(argv)
    try:
        c = compare_runs(args.run_a, args.run_b, args.metric, n_resamples=args.resamples,
                         seed=args.seed, allow_different=args.allow_different)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(c.to_dict()))
    else:
        print(f"{c.metric} on {c.n_queries} common queries: A {c.a:.4f}, B {c.b:.4f}\n"
              f"B - A = {c.delta:+.4f}, 95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}], "
              f"p = {c.p_value:.4g} ({c.test})")
    return 0


#: The other commands, listed under the report's ``--help``.
COMMANDS = """other commands:
  summarize SWEEP [SWEEP ...] [--out DIR]
                        only rebuild summary.csv / summary.md of the sweeps
  compare RUN_A RUN_B [--metric ndcg@10] [--json]
                        B - A on the common queries: 95 % paired bootstrap CI and a paired
                        randomisation test (python -m experiments.report compare --help)"""


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        return compare_main(argv[1:])
    if argv and argv[0] == "export-mteb":
        from mixsearch.mteb_export import main as export_main

        return export_main(argv[1:])
    summarize_only = bool(argv) and argv[0] == "summarize"
    parser = argparse.ArgumentParser(prog="python -m experiments.report" + (" summarize" if summarize_only else ""),
                                     description=__doc__.split("\n\n")[0],
                                     epilog=None if summarize_only else COMMANDS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep dirs (<dir>/<n>/ job dirs)")
    parser.add_argument("--out", type=Path, help="output dir (default: the single sweep dir)")
    if not summarize_only:
        parser.add_argument("--figures", nargs="+", choices=ARTEFACTS,
                            help="artefacts to render (default: all the sweeps have data for)")
        parser.add_argument("--wandb", action="store_true", help="also log the report to W&B")
        parser.add_argument("--wandb-project", default=None, help="default: $WANDB_PROJECT, else mixsearch")
        parser.add_argument("--wandb-entity", default=None, help="default: $WANDB_ENTITY")
        parser.add_argument("--wandb-mode", default=None, choices=["online", "offline", "disabled"],
                            help="default: $WANDB_MODE, else online")
    args = parser.parse_args(argv[1:] if summarize_only else argv)
    if args.out is None and len(args.sweeps) > 1:
        parser.error("--out is required with several sweep dirs")
    out = args.out or args.sweeps[0]
    try:
        if summarize_only:
            frame = write_summary(args.sweeps, out)
            print(f"{out / 'summary.md'}: {len(frame)} jobs, {(frame['status'] != 'ok').sum()} not ok")
            return int((frame["status"] != "ok").any())
        paths, failed = render(args.sweeps, out, args.figures)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.wandb:
        log_to_wandb(paths, out, args.sweeps, args)
    print("\n".join(f"wrote {p}" for p in paths))
    for j in failed:
        print(f"job {j.run_dir} {j.status}: {j.error}", file=sys.stderr)
    return int(bool(failed))


if __name__ == "__main__":
    sys.exit(main())
