"""The "does GR help?" table: GR against no calibration on every benchmark of the sweeps.

One row per model × benchmark (an mteb task, a MixBench or toy subset, an M-BEIR task): NDCG@10
without calibration and with GR, each with its 95 % bootstrap CI over queries, the paired
difference GR − none with its bootstrap CI, and a paired randomisation test whose p-values are
Holm-corrected over the whole table. It reads the same job facts and runs the same tests as
the zoo table (:mod:`experiments.zoo`); ``experiments.report`` renders it as ``gr_help``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.zoo import LEVEL, METRIC, holm_compare
from mixsearch.callbacks import markdown_table, metric_ci
from mixsearch.tracking import atomic_write_text

#: What tells two runs of one benchmark apart besides the calibration method.
SETTING = ["model", "fusion", "corpus", "merge", "benchmark"]


def _pairs(facts: pd.DataFrame) -> tuple[list[dict], list[str]]:
    """For each setting with one ``none`` and one ``gr`` run: their run dirs; and the settings
    that lack one of the two (named, for the table's footnote)."""
    data = facts[facts["max_samples"].isna()] if "max_samples" in facts else facts
    data = data[data["calibration"].isin(["none", "gr"])]
    dup = data[data.duplicated([*SETTING, "calibration"], keep=False)]
    if not dup.empty:
        raise ValueError(f"gr_help: several jobs for one cell: {list(dup['run_dir'])[:2]}; "
                         "pass one sweep per setting")
    pairs, missing = [], []
    for key, group in data.groupby(SETTING, sort=False, dropna=False):
        runs = dict(zip(group["calibration"], group.to_dict("records"), strict=True))
        if set(runs) == {"none", "gr"}:
            pairs.append({"setting": dict(zip(SETTING, key, strict=True)),
                          "none": runs["none"], "gr": runs["gr"]})
        else:
            missing.append(f"{'/'.join(map(str, key))} has only calibration={next(iter(runs))}")
    if not pairs:
        raise ValueError("gr_help: no benchmark has both a calibration=none and a calibration=gr "
                         "job in the given sweeps (run e.g. -m calibration=none,gr)")
    return pairs, missing


def _cell(value: float, ci: tuple[float, float] | None) -> str:
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def gr_help_table(facts: pd.DataFrame, out: Path) -> list[Path]:
    """``gr_help.md`` / ``gr_help.csv`` from :func:`experiments.zoo.zoo_facts` rows.

    Raises:
        ValueError: no setting with both a ``none`` and a ``gr`` job, or two jobs for one cell.
    """
    pairs, missing = _pairs(facts)
    tests = holm_compare([(p["none"]["run_dir"], p["gr"]["run_dir"]) for p in pairs])
    rows, md = [], []
    for p, t in zip(pairs, tests, strict=True):
        ci_none, ci_gr = metric_ci(p["none"]["run_dir"]), metric_ci(p["gr"]["run_dir"])
        verdict = ("GR better" if t["delta"] > 0 else "GR worse") if t["significant"] else "no difference"
        rows.append({**p["setting"], "n_queries": t["n_queries"], "none": p["none"][METRIC],
                     "none_ci_low": ci_none and ci_none[0], "none_ci_high": ci_none and ci_none[1],
                     "gr": p["gr"][METRIC], "gr_ci_low": ci_gr and ci_gr[0],
                     "gr_ci_high": ci_gr and ci_gr[1], "delta": t["delta"],
                     "delta_ci_low": t["ci_low"], "delta_ci_high": t["ci_high"],
                     "p_value": t["p_value"], "p_holm": t["p_holm"], "verdict": verdict,
                     "run_dir_none": p["none"]["run_dir"], "run_dir_gr": p["gr"]["run_dir"]})
        md.append({"model": p["setting"]["model"], "benchmark": p["setting"]["benchmark"],
                   "queries": t["n_queries"], "none": _cell(p["none"][METRIC], ci_none),
                   "GR": _cell(p["gr"][METRIC], ci_gr),
                   "GR − none": _cell(t["delta"], (t["ci_low"], t["ci_high"])),
                   "p (Holm)": f"{t['p_holm']:.3g}", "GR helps?": verdict})
    atomic_write_text(out / "gr_help.csv", pd.DataFrame(rows).to_csv(index=False))
    helped = sum(r["verdict"] == "GR better" for r in rows)
    hurt = sum(r["verdict"] == "GR worse" for r in rows)
    text = (f"# Does GR help? {METRIC} without calibration vs GR [95 % bootstrap CI over queries]\n\n"
            f"GR − none: paired bootstrap CI; p: paired randomisation test, Holm-corrected over "
            f"{len(rows)} comparisons (level {LEVEL}). GR better on {helped}, worse on {hurt}, "
            f"no difference on {len(rows) - helped - hurt} of {len(rows)}.\n\n"
            + markdown_table(pd.DataFrame(md)))
    if missing:
        text += "\n\nNot compared: " + "; ".join(missing) + "\n"
    atomic_write_text(out / "gr_help.md", text)
    return [out / "gr_help.md", out / "gr_help.csv"]
