"""The paper's figures from our results (matplotlib, Agg): line panels and per-subset bars.

Each function takes a tidy data frame (one row per job) and writes ``<out>.png`` and
``<out>.pdf``. Paper values are drawn as hollow markers labelled as the paper's; our values
carry 95 % bootstrap CIs over queries (:mod:`mixsearch.stats`) as bands or error bars; models
are shown by their display name (:data:`mixsearch.jobinfo.MODEL_NAMES`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: compute nodes and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mixsearch.jobinfo import model_display_name  # noqa: E402

#: Line style per calibration method, the paper's colours where it has them.
STYLE = {
    "none": {"color": "tab:blue", "label": "no calibration"},
    "gr": {"color": "tab:red", "label": "GR"},
    "pushdown": {"color": "tab:gray", "label": "push-down simulation", "linestyle": "--"},
}
#: How swept values are written in labels.
_SYMBOL = {"alpha": "α"}
Readings = Callable[[str, str], dict[str, list[tuple[float, float]]]]


def _style(method: str) -> dict[str, str]:
    return STYLE.get(method, {"label": method})


def _method_order(method: str) -> tuple[int, str]:
    """Calibration methods in STYLE's order (none, gr, pushdown), others after by name."""
    keys = list(STYLE)
    return (keys.index(method), "") if method in keys else (len(keys), method)


def _name(panel: pd.DataFrame, model: object) -> str:
    """A panel's model display name: its ``model_name`` column, else from the config name."""
    if "model_name" in panel.columns and panel["model_name"].notna().any():
        return str(panel["model_name"].dropna().iloc[0])
    return model_display_name(str(model))


def _grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 7.0), 3.4 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(fig: plt.Figure, out: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    fig.tight_layout(rect=rect)
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def _near_one_axis(ax: plt.Axes) -> None:
    """Stretch the p axis near 1 (x' = -log10(1 - p + 10^-2.5)): 0 → 0, 0.9 → 1, 0.99 → 1.9,
    1 → 2.5, so the collapse at p = 0.95–0.99 gets as much room as p = 0–0.9."""
    eps = 10 ** -2.5

    def forward(p: np.ndarray) -> np.ndarray:
        return -np.log10(np.clip(1.0 - np.asarray(p, dtype=float), 0.0, None) + eps) + np.log10(1.0 + eps)

    def inverse(v: np.ndarray) -> np.ndarray:
        return 1.0 + eps - 10 ** (np.log10(1.0 + eps) - np.asarray(v, dtype=float))

    ax.set_xscale("function", functions=(forward, inverse))
    ax.set_xlim(0.0, 1.0)
    ticks = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
    # say so on the plot: the shaded part (p >= 0.9) is drawn wider than its share of [0, 1]
    # (the x label says so too: line_panels(near_one=True))
    ax.axvspan(0.9, 1.0, color="0.93", zorder=0, linewidth=0)


def _figure_legend(fig: plt.Figure, axes: list[plt.Axes]) -> float:
    """One legend for all panels, below them (never over a line or bar); returns the figure
    fraction it takes at the bottom."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if not seen:
        return 0.0
    ncol = min(len(seen), 4)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    rows = math.ceil(len(seen) / ncol)
    return (0.12 + 0.2 * rows) / fig.get_figheight()


def _unit_y(ax: plt.Axes) -> None:
    """A score axis from 0 to 1, whatever the data (panels compare at a glance)."""
    ax.set_ylim(-0.02, 1.02)
    ax.set_yticks(np.linspace(0.0, 1.0, 6))


def place_labels(ax: plt.Axes, items: list[tuple[float, float, str, dict[str, object]]]) -> None:
    """Annotate each ``(x, y, label, text style)`` at the first of a few offsets where it
    overlaps no label placed before it (labels of nearby points otherwise print over one
    another). Call it after the layout is final: offsets are measured on the drawn figure."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    offsets = [(4, 3, "left"), (4, -9, "left"), (-4, 3, "right"), (-4, -9, "right"),
               (4, 11, "left"), (4, -17, "left"), (-4, 11, "right"), (-4, -17, "right")]
    # the points themselves are obstacles too: a label must not cover another point's marker
    r = 3.5 * ax.figure.dpi / 72  # about a marker; a label at its own point's first offset clears it
    placed: list[object] = [Bbox.from_extents(px - r, py - r, px + r, py + r)
                            for px, py in ax.transData.transform([(x, y) for x, y, *_ in items] or
                                                                 np.empty((0, 2)))]
    for x, y, label, style in items:
        for dx, dy, ha in offsets:
            note = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, **style)  # type: ignore[arg-type]
            box = note.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            note.remove()
        else:  # every offset is taken: the first one, overlapping
            note = ax.annotate(label, (x, y), xytext=offsets[0][:2], textcoords="offset points",
                               **style)  # type: ignore[arg-type]
            box = note.get_window_extent(renderer)
        placed.append(box)


def _band(ax: plt.Axes, line: pd.DataFrame, x: str, metric: str, color: str | None) -> None:
    """The 95 % bootstrap CI of each point as a shaded band (when the data has it)."""
    low, high = f"{metric}_ci_low", f"{metric}_ci_high"
    if low in line.columns and line[low].notna().all() and len(line):
        ax.fill_between(line[x], line[low], line[high], color=color, alpha=0.18, linewidth=0)


def line_panels(
    data: pd.DataFrame, x: str, xlabel: str, title: str, out: Path, readings: Readings,
    metric: str = "ndcg@10", *, near_one: bool = False, mark_best: bool = False,
) -> list[Path]:
    """One panel per (model, benchmark): ``metric`` against ``x``, one line per calibration,
    with its 95 % bootstrap CI band.

    Args:
        data: columns model (config name), benchmark, calibration, ``x`` and ``metric``;
            optional ``<metric>_ci_low`` / ``_ci_high`` (bootstrap CI over queries).
        x: the swept value (``p`` for figure 2, ``alpha`` for figure 3).
        xlabel: axis label of ``x``.
        title: figure title.
        out: output path without suffix.
        readings: ``(model, benchmark) -> {calibration: [(x, y), ...]}`` paper points.
        metric: the plotted metric.
        near_one: stretch the x axis near 1 (setting 1's collapse at p → 1).
        mark_best: mark each line's best ``x`` with a star and its value.

    Returns:
        The PNG and PDF paths.
    """
    panels = list(data.groupby(["model", "benchmark"], sort=True))
    fig, axes = _grid(len(panels))
    best_labels: list[tuple[plt.Axes, tuple[float, float, str, dict[str, object]]]] = []
    for ax, ((model, bench), panel) in zip(axes, panels, strict=True):
        for method in sorted(panel["calibration"].unique(), key=_method_order):
            line = panel[panel["calibration"] == method].sort_values(x)
            style = _style(str(method))
            ax.plot(line[x], line[metric], marker="o", markersize=3, **style)
            _band(ax, line, x, metric, style.get("color"))
            if mark_best and len(line):
                best = line.loc[line[metric].idxmax()]
                ax.scatter([best[x]], [best[metric]], marker="*", s=140, zorder=4,
                           color=style.get("color", "k"), edgecolors="k", linewidths=0.5)
                best_labels.append((ax, (best[x], best[metric], f"best {_SYMBOL.get(x, x)}={best[x]:g}",
                                         {"fontsize": 7, "color": style.get("color", "k")})))
        for method, points in readings(str(model), str(bench)).items():
            px, py = zip(*points, strict=True)
            ax.scatter(px, py, facecolors="none", edgecolors=_style(method).get("color", "k"),
                       s=40, label=f"paper ≈ ({_style(method)['label']})")
        if near_one:
            _near_one_axis(ax)
        ax.set_title(f"{_name(panel, model)} · {bench}", fontsize=10)
        ax.set_xlabel(xlabel + ("\n(shaded: axis stretched for p ≥ 0.9)" if near_one else ""))
        ax.set_ylabel(metric.upper())
        _unit_y(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(title + "\n(bands: 95 % bootstrap CI over queries)", fontsize=11)
    bottom = _figure_legend(fig, axes)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    for ax in axes:  # after the layout: the labels' places are measured on the drawn panel
        place_labels(ax, [item for a, item in best_labels if a is ax])
    return _save(fig, out, rect=(0, bottom, 1, 1))


def _yerr(rows: pd.DataFrame, keys: list[str], metric: str) -> np.ndarray | None:
    """Error bar lengths (2 × n) from the ``<metric>_ci_low/high`` columns, None without them."""
    low, high = f"{metric}_ci_low", f"{metric}_ci_high"
    if low not in rows.columns:
        return None
    y = np.array([rows[metric].get(k, np.nan) for k in keys], dtype=float)
    lo = np.array([rows[low].get(k, np.nan) for k in keys], dtype=float)
    hi = np.array([rows[high].get(k, np.nan) for k in keys], dtype=float)
    return np.nan_to_num(np.vstack([y - lo, hi - y]), nan=0.0)


def bar_panels(
    data: pd.DataFrame, title: str, out: Path, paper: Callable[[str, str, str], float | None],
    metric: str = "ndcg@10", methods: tuple[str, ...] = ("none", "gr"), *,
    panel_by: tuple[str, ...] = ("model",), x: str = "benchmark",
) -> list[Path]:
    """One panel per ``panel_by`` value (model): ``metric`` per ``x`` value (benchmark), a bar
    per calibration method, with 95 % bootstrap CI error bars when the data has them.

    Args:
        data: columns ``panel_by``, ``x``, calibration and ``metric``; optional
            ``<metric>_ci_low`` / ``_ci_high``.
        title: figure title.
        out: output path without suffix.
        paper: ``(model, calibration, x value) -> value`` of the paper's Table 1, or None.
        metric: the plotted metric.
        methods: calibration methods drawn, in bar order.
        panel_by: columns that make a panel; the first is the model (config name).
        x: the column along each panel's x axis.

    Returns:
        The PNG and PDF paths.
    """
    panels = list(data.groupby(list(panel_by), sort=True))
    fig, axes = _grid(len(panels))
    width = 0.8 / len(methods)
    for ax, (key, panel) in zip(axes, panels, strict=True):
        key = key if isinstance(key, tuple) else (key,)
        model = str(key[0])
        ticks = sorted(panel[x].unique())
        for i, method in enumerate(methods):
            rows = panel[panel["calibration"] == method].set_index(x)
            xs = [b + (i - (len(methods) - 1) / 2) * width for b in range(len(ticks))]
            ys = [rows[metric].get(b, float("nan")) for b in ticks]
            ax.bar(xs, ys, width, yerr=_yerr(rows, ticks, metric), capsize=2,
                   error_kw={"elinewidth": 0.8}, **_style(method))
            ref = [(xv, paper(model, method, b)) for xv, b in zip(xs, ticks, strict=True)]
            ref = [(xv, v) for xv, v in ref if v is not None]
            if ref:
                ax.scatter(*zip(*ref, strict=True), marker="_", s=200, color="k", zorder=3,
                           label="paper (Table 1)" if i == 0 else None)
        ax.set_xticks(range(len(ticks)), ticks, rotation=20, fontsize=8)
        ax.set_title(" · ".join([_name(panel, model), *map(str, key[1:])]), fontsize=10)
        ax.set_ylabel(metric.upper())
        _unit_y(ax)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title + "\n(error bars: 95 % bootstrap CI over queries)", fontsize=11)
    bottom = _figure_legend(fig, axes)  # below the panels: bars reach 1.0
    return _save(fig, out, rect=(0, bottom, 1, 1))


def compute_scatter(
    points: pd.DataFrame, paper: list[tuple[str, float, float]], title: str, out: Path,
    *, separate: bool = False,
) -> list[Path]:
    """NDCG@10 against GFLOPs per document on a log axis: our runs filled and labelled, the
    paper's rows hollow (its compute axis is read off the figure, approximate).

    Args:
        points: columns method, calibration, gflops_per_doc, ndcg10.
        paper: ``(row name, GFLOPs, NDCG@10)`` of the paper's rows.
        title: figure title.
        out: output path without suffix.
        separate: our scores are not on the paper's benchmark (the toy): draw them on their
            own panel and y axis beside the paper's, never on one scale with its numbers.

    Returns:
        The PNG and PDF paths.
    """
    if separate:
        fig, (ours, theirs) = plt.subplots(1, 2, figsize=(11.0, 4.6), sharex=True)
        ours.set_title("ours (not the paper's benchmark)", fontsize=9)
        theirs.set_title("the paper (MixBench, Table 1 means; compute read off Fig. 4)", fontsize=9)
        axes = [ours, theirs]
    else:
        fig, ours = plt.subplots(figsize=(7.0, 4.6))
        theirs, axes = ours, [ours]
    labels: dict[plt.Axes, list[tuple[float, float, str, dict[str, object]]]] = {ax: [] for ax in axes}
    for r in points.itertuples():
        ours.scatter(r.gflops_per_doc, r.ndcg10, color=_style(str(r.calibration)).get("color", "k"), s=36)
        labels[ours].append((r.gflops_per_doc, r.ndcg10, str(r.method), {"fontsize": 7}))
    for name, gflops, ndcg in paper:
        theirs.scatter(gflops, ndcg, facecolors="none", edgecolors="tab:red" if name.startswith("GR-")
                       else "tab:blue", s=40)
        labels[theirs].append((gflops, ndcg, f"paper: {name}" if not separate else name,
                               {"fontsize": 6, "color": "0.4"}))
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per document (log scale; measured with torch's FLOP counter)"
                      if ax is ours else "GFLOPs per document (log scale; the paper's axis)")
        ax.set_ylabel("NDCG@10 (mean over benchmarks)")
        ax.grid(alpha=0.3, which="both")
        ax.margins(x=0.25, y=0.15)  # room for the labels right of the outermost points
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=_style(m).get("color", "k"),
                          label=_style(m)["label"]) for m in sorted(points["calibration"].unique(),
                                                                   key=_method_order)]
    handles.append(plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                              color="0.4", label="paper ≈ (Table 1, Fig. 4 axis)"))
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(title, fontsize=10)
    rect = (0, 0.07, 1, 1)
    fig.tight_layout(rect=rect)
    for ax in axes:
        place_labels(ax, labels[ax])
    return _save(fig, out, rect=rect)
