"""The paper's W&B workspace as code (wandb-workspaces): one view of a project's mixsearch runs.

    python -m mixsearch.dashboard --entity TEAM --project mixsearch     # saves the view, prints its URL
    python -m mixsearch.dashboard --dry-run --out spec.json            # the view's spec, no network

Sections, all read from what :mod:`mixsearch.tracking` logs:

* **NDCG@10 by model × calibration** (Table 1): bars of ``ndcg@10``, ``ndcg@100`` and
  ``recall@1`` per ``config.model_calibration`` (``CLIP-B/16 · gr``), mean ± stderr over the
  benchmarks of the filtered runs.
* **α curves** (setting 2) and **p curves** (setting 1): the sweep runs' line plots
  (``curves/fusion_alpha/*`` against ``fusion_alpha``, ``curves/corpus_p/*`` against
  ``corpus_p``), plus every job as a point (config value against summary ``ndcg@10``).
* **Per target modality**: ``by_target_modality/<text|image|image+text>/ndcg@10`` bars.
* **Modality gap before and after calibration**: ``gap/centroid_distance_before|after`` bars.

``--filters`` takes a W&B filter expression for the run set, e.g.
``"Config('corpus.mode') = 'released'"`` or ``"Group = '2026-12-02_13-00-00/mixbench'"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

#: Metrics and config keys the sections plot (as logged by mixsearch.tracking).
TABLE1_METRICS = ("ndcg@10", "ndcg@100", "recall@1")
MODALITIES = ("text", "image", "image+text")
GROUP_KEY = "model_calibration"
CURVES = {"fusion.alpha": "α curves (setting 2: all docs image+text, text weight α)",
          "corpus.p": "p curves (setting 1: ratio p of docs shown as images)"}


def build_workspace(entity: str, project: str, *, name: str = "mixsearch: closing the modality gap",
                    filters: str = "") -> Any:
    """The paper's workspace (a ``wandb_workspaces.workspaces.Workspace``, not saved).

    Args:
        entity: W&B entity (team or user) the view is saved to.
        project: W&B project holding the runs.
        name: the view's name.
        filters: W&B filter expression selecting the runs ("" = all runs of the project).
    """
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    by_method = wr.Config(GROUP_KEY)

    def bars(title: str, metrics: list[str]) -> Any:
        return wr.BarPlot(title=title, metrics=metrics, orientation="v", groupby=by_method,
                          groupby_aggfunc="mean", groupby_rangefunc="stderr")

    sections = [ws.Section(name="NDCG@10 by model × calibration (Table 1)", is_open=True, panels=[
        bars(f"{m.upper()} by model × calibration (mean ± stderr over benchmarks)", [m])
        for m in TABLE1_METRICS])]
    for key, title in CURVES.items():
        step = key.replace(".", "_")  # the sweep runs' step metric (dots read as nesting)
        sections.append(ws.Section(name=title, is_open=True, panels=[
            wr.LinePlot(title=f"NDCG@10 vs {key} (one line per sweep series)", x=step,
                        metric_regex=f"^curves/{step}/.*", title_x=key, title_y="NDCG@10"),
            wr.ScatterPlot(title=f"NDCG@10 vs {key}, every job", x=wr.Config(key),
                           y=wr.SummaryMetric("ndcg@10")),
        ]))
    sections.append(ws.Section(name="NDCG@10 per target modality", is_open=True, panels=[
        bars("NDCG@10 by the relevant document's modality",
             [f"by_target_modality/{m}/ndcg@10" for m in MODALITIES])]))
    sections.append(ws.Section(name="Modality gap before and after calibration", is_open=True, panels=[
        bars("text-image centroid distance, before and after",
             ["gap/centroid_distance_before", "gap/centroid_distance_after"])]))
    return ws.Workspace(
        entity=entity, project=project, name=name, sections=sections,
        runset_settings=ws.RunsetSettings(
            filters=filters,
            pinned_columns=["config:model_name", "config:choices.calibration", "config:choices.dataset",
                            "summary:ndcg@10"]),
    )


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
    parser.add_argument("--name", default="mixsearch: closing the modality gap", help="view name")
    parser.add_argument("--filters", default="", help="W&B filter expression for the run set")
    parser.add_argument("--dry-run", action="store_true", help="build the spec only, never touch the network")
    parser.add_argument("--out", type=Path, help="write the spec as JSON to this file")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.entity:
        parser.error("--entity (or WANDB_ENTITY) is required to save the workspace; "
                     "use --dry-run --out FILE to write its spec offline")
    try:
        workspace = build_workspace(args.entity or "", args.project, name=args.name, filters=args.filters)
        spec = workspace_spec(workspace)
    except (ValueError, SyntaxError) as e:  # a bad --filters expression
        print(f"error: --filters: {e}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}: {len(workspace.sections)} sections, "
              f"{sum(len(s.panels) for s in workspace.sections)} panels")
    if not args.dry_run:
        workspace.save()
        print(workspace.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
