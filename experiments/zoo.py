"""The zoo table (calibration methods × document merges × subsets, with CIs and Holm-corrected
tests against a baseline) and the sample-count ablation figure.

Both read finished job dirs (``metrics.json`` + ``per_query.csv``); ``experiments.report``
renders them as the ``zoo`` and ``samples`` artefacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from experiments import plots
from mixsearch import stats
from mixsearch.callbacks import Job, markdown_table, metric_ci, read_per_query
from mixsearch.tracking import atomic_write_text

#: The zoo's baseline: GR on one index (the paper's method).
BASELINE = ("gr", "single")
#: Family-wise level of the Holm-corrected marks.
LEVEL = 0.05
MARK = "†"
METRIC = "ndcg@10"


def zoo_facts(jobs: list[Job]) -> pd.DataFrame:
    """One row per finished job: calibration, merge, benchmark, max_samples, calibration seed,
    NDCG@10 and run dir."""
    rows = []
    for job in jobs:
        if job.status != "ok" or not job.result:
            continue
        res: dict[str, Any] = job.result
        cfg = res.get("config") or {}
        cal = cfg.get("calibration") or {}
        rows.append({
            "model": job.choices.get("model"),
            "calibration": (res.get("calibration") or {}).get("method") or cal.get("method"),
            "merge": (cfg.get("retrieval") or {}).get("merge", "single"),
            "fusion": (cfg.get("fusion") or {}).get("method", "weighted"),
            "benchmark": (cfg.get("dataset") or {}).get("subset") or (res.get("benchmark") or {}).get("name"),
            "corpus": (cfg.get("corpus") or {}).get("mode"),
            "max_samples": cal.get("max_samples"),
            "seed": cal.get("seed", 0),
            METRIC: (res.get("metrics") or {}).get(METRIC),
            "run_dir": str(job.run_dir),
        })
    return pd.DataFrame(rows)


def holm_compare(pairs: list[tuple[str, str]], metric: str = METRIC) -> list[dict[str, Any]]:
    """Paired comparisons B vs A of run dirs, with Holm-adjusted p-values over the family.

    Returns:
        One dict per pair: the :class:`mixsearch.stats.Comparison` fields plus ``p_holm`` and
        ``significant`` (``p_holm < LEVEL``).
    """
    out = [stats.compare(read_per_query(a), read_per_query(b), metric,
                         names=(f"{a}/per_query.csv", f"{b}/per_query.csv")).to_dict() for a, b in pairs]
    for row, adj in zip(out, stats.holm([r["p_value"] for r in out]), strict=True):
        row.update(p_holm=float(adj), significant=bool(adj < LEVEL))
    return out


def zoo_table(facts: pd.DataFrame, out: Path, baseline: tuple[str, str] = BASELINE) -> list[Path]:
    """``zoo.md`` / ``zoo.csv``: rows = calibration × merge, columns = benchmarks, cells =
    NDCG@10 with its 95 % bootstrap CI; † = differs from the baseline (same benchmark and
    model) under a paired randomisation test, Holm-corrected over the whole table.

    Raises:
        ValueError: no finished jobs, two jobs for one cell, or a benchmark without a baseline.
    """
    if facts.empty:
        raise ValueError("zoo: no finished jobs in the given sweeps")
    keys = ["model", "fusion", "corpus", "benchmark", "calibration", "merge"]
    data = facts[facts["max_samples"].isna()] if "max_samples" in facts else facts
    if data.empty:
        raise ValueError("zoo: every finished job caps calibration.max_samples (a sample-count "
                         "ablation); the zoo compares full-sample runs")
    dup = data[data.duplicated(keys, keep=False)]
    if not dup.empty:
        raise ValueError(f"zoo: several jobs for one cell: {list(dup['run_dir'])[:2]}; pass one sweep per setting")
    pairs, where = [], []
    for group_key, group in data.groupby(["model", "fusion", "corpus", "benchmark"], sort=False):
        base = group[(group["calibration"] == baseline[0]) & (group["merge"] == baseline[1])]
        if base.empty:
            raise ValueError(f"zoo: {'/'.join(map(str, group_key))} has no baseline job "
                             f"(calibration={baseline[0]}, retrieval.merge={baseline[1]})")
        for r in group.itertuples(index=False):
            if (r.calibration, r.merge) != baseline:
                pairs.append((base["run_dir"].iloc[0], r.run_dir))
                where.append(r.run_dir)
    tests = dict(zip(where, holm_compare(pairs), strict=True))
    long, cells = [], {}
    for r in data.to_dict("records"):
        ci = metric_ci(r["run_dir"]) or (float("nan"), float("nan"))
        t = tests.get(r["run_dir"], {})
        long.append({**{k: r[k] for k in keys}, METRIC: r[METRIC], "ci_low": ci[0], "ci_high": ci[1],
                     "delta_vs_baseline": t.get("delta"), "p_value": t.get("p_value"),
                     "p_holm": t.get("p_holm"), "significant": t.get("significant"),
                     "run_dir": r["run_dir"]})
        row = cells.setdefault((r["calibration"], r["merge"]), {"calibration": r["calibration"],
                                                                "merge": r["merge"]})
        mark = MARK if t.get("significant") else ""
        sign = "" if not t else (" ▲" if t["delta"] > 0 else " ▼") if t.get("significant") else ""
        row[r["benchmark"]] = f"{r[METRIC]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]{mark}{sign}"
    frame = pd.DataFrame(long)
    atomic_write_text(out / "zoo.csv", frame.to_csv(index=False))
    order = {m: n for n, m in enumerate(["none", "gr", "i0t", "project", "procrustes"])}
    rows = sorted(cells.values(), key=lambda c: (order.get(c["calibration"], 99), c["calibration"],
                                                 ["single", "zscore", "rrf"].index(c["merge"])
                                                 if c["merge"] in ("single", "zscore", "rrf") else 9))
    benches = list(dict.fromkeys(frame["benchmark"]))
    md = pd.DataFrame(rows).reindex(columns=["calibration", "merge", *benches]).fillna("")
    text = (f"# Zoo: {METRIC} [95 % bootstrap CI over queries]\n\n"
            f"{MARK} = differs from calibration={baseline[0]}, retrieval.merge={baseline[1]} (paired "
            f"randomisation test, Holm-corrected over {len(pairs)} comparisons, level {LEVEL}); "
            "▲ better, ▼ worse.\n\n" + markdown_table(md))
    atomic_write_text(out / "zoo.md", text)
    return [out / "zoo.md", out / "zoo.csv"]


def samples_figure(facts: pd.DataFrame, out: Path) -> list[Path]:
    """``samples.{png,pdf,csv}``: NDCG@10 against the calibration sample count (log x), one
    line per method and benchmark, mean ± sd over calibration seeds as a band.

    Raises:
        ValueError: no finished job with ``calibration.max_samples`` set.
    """
    data = facts[facts["max_samples"].notna()] if "max_samples" in facts else facts.iloc[:0]
    if data.empty:
        raise ValueError("samples: no finished job with calibration.max_samples set "
                         "(run experiment=ablation/samples)")
    agg = (data.groupby(["benchmark", "calibration", "max_samples"])[METRIC]
           .agg(mean="mean", sd="std", n_seeds="count").reset_index())
    agg["sd"] = agg["sd"].fillna(0.0)
    atomic_write_text(out / "samples.csv", agg.to_csv(index=False))
    fig, axes = plots.plt.subplots(1, agg["benchmark"].nunique(), squeeze=False,
                                   figsize=(5 * agg["benchmark"].nunique(), 3.6))
    for ax, (bench, panel) in zip(axes[0], agg.groupby("benchmark", sort=False), strict=True):
        for method, line in panel.groupby("calibration", sort=False):
            line = line.sort_values("max_samples")
            style = plots._style(method)
            (drawn,) = ax.plot(line["max_samples"], line["mean"], marker="o", ms=3,
                               color=style.get("color"), label=style.get("label", method))
            ax.fill_between(line["max_samples"], line["mean"] - line["sd"], line["mean"] + line["sd"],
                            color=drawn.get_color(), alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        ax.set_xlabel("calibration samples per role")
        ax.set_ylabel(f"{METRIC.upper()} (mean ± sd over seeds)")
        ax.set_title(str(bench))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [out / "samples.png", out / "samples.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150)
    plots.plt.close(fig)
    return [*paths, out / "samples.csv"]
