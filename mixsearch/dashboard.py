"""mixsearch's W&B views as code (wandb-workspaces): each view shows only the runs its numbers
are about.

    python -m mixsearch.dashboard --entity TEAM --project mixsearch     # saves the views, prints their URLs
    python -m mixsearch.dashboard --dry-run --out spec.json            # the views' specs, no network

A W&B view has one run filter for all its panels, so there is one view per kind of number:

* **Table 1** (:data:`TABLE1_FILTER`): only the runs that make the paper's Table 1: experiment
  ``paper/mixbench`` on MixBench, the released corpus, α = 0.5, calibration none or GR, and the
  model's paper fusion (``paper_fusion``: joint for VLM2Vec, α-weighted for the CLIP family).
  Bars of ``ndcg@10``, ``ndcg@100``, ``recall@1`` per ``model_calibration`` (``CLIP-B/16 ·
  gr``): the mean over the runs of each bar, error bars the standard error over those runs
  (one per MixBench subset when each subset ran once; a repeated run counts twice). Also
  NDCG@10 per target modality and the modality gap before/after calibration, same runs.
* **Sweeps** (:data:`SWEEP_FILTER`): MixBench and BEIR runs (no toy), grouped by sweep (W&B
  group = sweep dir): α curves (setting 2) and p curves (setting 1) as the sweep runs logged
  them (``curves/fusion_alpha/*`` against ``fusion_alpha``, ``curves/corpus_p/*`` against
  ``corpus_p``), plus every job as a point.
* **Toy** (:data:`TOY_FILTER`): the offline toy benchmark's runs, grouped by sweep, under
  titles that say "toy": checks of the machinery, not numbers comparable with the paper's.

The filters read config keys :mod:`mixsearch.tracking` writes: ``experiment`` and ``bench``
(flat), ``corpus.mode``, ``fusion.alpha``, ``calibration.method`` and ``paper_fusion``.
``--filters`` adds a W&B filter expression to every view, e.g. ``"Config('model_name') =
'CLIP-B/16'"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Metrics and config keys the sections plot (as logged by mixsearch.tracking).
TABLE1_METRICS = ("ndcg@10", "ndcg@100", "recall@1")
MODALITIES = ("text", "image", "image+text")
GROUP_KEY = "model_calibration"
CURVES = {"fusion.alpha": "α curves (setting 2: all docs image+text, text weight α)",
          "corpus.p": "p curves (setting 1: ratio p of docs shown as images)"}

#: The runs of the paper's Table 1 (mixsearch.tracking writes every key used here).
TABLE1_FILTER = ("Config('experiment') = 'paper/mixbench' and Config('bench') = 'mixbench' "
                 "and Config('corpus.mode') = 'released' and Config('fusion.alpha') = 0.5 "
                 "and Config('calibration.method') in ['none', 'gr'] "
                 "and Config('paper_fusion') = True and JobType = 'eval'")
#: Sweeps on real benchmarks: the jobs and the sweep runs that hold the curves; no toy.
SWEEP_FILTER = "Config('bench') in ['mixbench', 'beir', 'mixed']"
#: The toy benchmark's runs only.
TOY_FILTER = "Config('bench') = 'toy'"
ERROR_BARS = "mean ± standard error over the runs of each bar: one per MixBench subset"


@dataclass(frozen=True)
class View:
    """One saved view: its name, run filter, grouping and sections."""

    key: str
    name: str
    filters: str
    group_by_sweep: bool


VIEWS = (
    View("table1", "mixsearch: Table 1 (MixBench, released corpus, alpha 0.5, paper fusion)",
         TABLE1_FILTER, False),
    View("sweeps", "mixsearch: sweeps on MixBench / BEIR, grouped by sweep", SWEEP_FILTER, True),
    View("toy", "mixsearch: toy benchmark (offline checks, not paper numbers)", TOY_FILTER, True),
)


def _bars(wr: Any, title: str, metrics: list[str], rangefunc: str = "stderr") -> Any:
    return wr.BarPlot(title=title, metrics=metrics, orientation="v", groupby=wr.Config(GROUP_KEY),
                      groupby_aggfunc="mean", groupby_rangefunc=rangefunc)


def _table1_sections(ws: Any, wr: Any) -> list[Any]:
    return [
        ws.Section(name="Table 1: NDCG@10, NDCG@100, Recall@1 by model × calibration", is_open=True,
                   panels=[_bars(wr, f"{m.upper()} by model × calibration ({ERROR_BARS})", [m])
                           for m in TABLE1_METRICS]),
        ws.Section(name="NDCG@10 per target modality (Table 1 runs)", is_open=True, panels=[
            _bars(wr, f"NDCG@10 by the relevant document's modality ({ERROR_BARS})",
                  [f"by_target_modality/{m}/ndcg@10" for m in MODALITIES])]),
        ws.Section(name="Modality gap before and after calibration (Table 1 runs)", is_open=True, panels=[
            _bars(wr, f"text-image centroid distance, before and after ({ERROR_BARS})",
                  ["gap/centroid_distance_before", "gap/centroid_distance_after"])]),
    ]


def _curve_sections(ws: Any, wr: Any, label: str) -> list[Any]:
    sections = []
    for key, title in CURVES.items():
        step = key.replace(".", "_")  # the sweep runs' step metric (dots read as nesting)
        sections.append(ws.Section(name=f"{label}{title}", is_open=True, panels=[
            wr.LinePlot(title=f"{label}NDCG@10 vs {key} (one line per series of each sweep)", x=step,
                        metric_regex=f"^curves/{step}/.*", title_x=key, title_y="NDCG@10"),
            wr.ScatterPlot(title=f"{label}NDCG@10 vs {key}, every job (no error bars: one run each)",
                           x=wr.Config(key), y=wr.SummaryMetric("ndcg@10")),
        ]))
    return sections


def _and(*expressions: str) -> str:
    return " and ".join(e for e in expressions if e)


def build_workspace(entity: str, project: str, view: View | str = "table1", *, filters: str = "") -> Any:
    """One view (a ``wandb_workspaces.workspaces.Workspace``, not saved).

    Args:
        entity: W&B entity (team or user) the view is saved to.
        project: W&B project holding the runs.
        view: a :data:`VIEWS` entry or its key (``table1``, ``sweeps``, ``toy``).
        filters: a W&B filter expression added to the view's own filter ("" = none).
    """
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    if isinstance(view, str):
        view = next(v for v in VIEWS if v.key == view)
    if view.key == "table1":
        sections = _table1_sections(ws, wr)
    else:
        sections = _curve_sections(ws, wr, "toy: " if view.key == "toy" else "")
    return ws.Workspace(
        entity=entity, project=project, name=view.name, sections=sections,
        runset_settings=ws.RunsetSettings(
            filters=_and(view.filters, filters),
            groupby=[ws.Metric("Group")] if view.group_by_sweep else [],
            pinned_columns=["config:model_name", "config:choices.calibration", "config:choices.dataset",
                            "summary:ndcg@10"]),
    )


def build_workspaces(entity: str, project: str, *, filters: str = "") -> list[Any]:
    """Every view of :data:`VIEWS`, in order."""
    return [build_workspace(entity, project, v, filters=filters) for v in VIEWS]


def workspace_spec(workspace: Any) -> dict[str, Any]:
    """The view as W&B stores it (JSON-ready); building it needs no network."""
    return workspace._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mixsearch.dashboard",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--entity", default=os.environ.get("WANDB_ENTITY"),
                        help="W&B entity (default: $WANDB_ENTITY)")
    parser.add_argument("--project", default=os.environ.get("WANDB_PROJECT") or "mixsearch",
                        help="W&B project (default: $WANDB_PROJECT, else mixsearch)")
    parser.add_argument("--views", default=",".join(v.key for v in VIEWS),
                        help="comma-separated views to build (default: all: table1,sweeps,toy)")
    parser.add_argument("--filters", default="", help="W&B filter expression added to every view's filter")
    parser.add_argument("--dry-run", action="store_true", help="build the specs only, never touch the network")
    parser.add_argument("--out", type=Path, help="write the specs as JSON to this file ({view: spec})")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.entity:
        parser.error("--entity (or WANDB_ENTITY) is required to save the views; "
                     "use --dry-run --out FILE to write their specs offline")
    keys = [k for k in args.views.split(",") if k]
    unknown = [k for k in keys if k not in {v.key for v in VIEWS}]
    if unknown:
        parser.error(f"--views: unknown view {unknown[0]!r}; views: {', '.join(v.key for v in VIEWS)}")
    try:
        workspaces = {k: build_workspace(args.entity or "", args.project, k, filters=args.filters)
                      for k in keys}
        specs = {k: workspace_spec(w) for k, w in workspaces.items()}
    except (ValueError, SyntaxError) as e:  # a bad --filters expression
        print(f"error: --filters: {e}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(specs, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}: {len(specs)} views, "
              f"{sum(len(w.sections) for w in workspaces.values())} sections, "
              f"{sum(len(s.panels) for w in workspaces.values() for s in w.sections)} panels")
    if not args.dry_run:
        for workspace in workspaces.values():
            workspace.save()
            print(f"{workspace.name}: {workspace.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
