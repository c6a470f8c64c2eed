"""The paper's figures from our results (matplotlib, Agg): line panels and per-subset bars.

Each function takes a tidy data frame (one row per job) and writes ``<out>.png`` and
``<out>.pdf``. Paper values are drawn as hollow markers labelled as the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: compute nodes and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

#: Line style per calibration method, the paper's colours where it has them.
STYLE = {
    "none": {"color": "tab:blue", "label": "no calibration"},
    "gr": {"color": "tab:red", "label": "GR"},
    "pushdown": {"color": "tab:gray", "label": "push-down simulation", "linestyle": "--"},
}
Readings = Callable[[str, str], dict[str, list[tuple[float, float]]]]


def _style(method: str) -> dict[str, str]:
    return STYLE.get(method, {"label": method})


def _method_order(method: str) -> tuple[int, str]:
    """Calibration methods in STYLE's order (none, gr, pushdown), others after by name."""
    keys = list(STYLE)
    return (keys.index(method), "") if method in keys else (len(keys), method)


def _grid(n: int) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 7.0), 3.4 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(fig: plt.Figure, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def line_panels(
    data: pd.DataFrame, x: str, xlabel: str, title: str, out: Path, readings: Readings,
    metric: str = "ndcg@10",
) -> list[Path]:
    """One panel per (model, benchmark): ``metric`` against ``x``, one line per calibration.

    Args:
        data: columns model, benchmark, calibration, ``x`` and ``metric``.
        x: the swept value (``p`` for figure 2, ``alpha`` for figure 3).
        xlabel: axis label of ``x``.
        title: figure title.
        out: output path without suffix.
        readings: ``(model, benchmark) -> {calibration: [(x, y), ...]}`` paper points.
        metric: the plotted metric.

    Returns:
        The PNG and PDF paths.
    """
    panels = list(data.groupby(["model", "benchmark"], sort=True))
    fig, axes = _grid(len(panels))
    for ax, ((model, bench), panel) in zip(axes, panels, strict=True):
        for method in sorted(panel["calibration"].unique(), key=_method_order):
            line = panel[panel["calibration"] == method].sort_values(x)
            ax.plot(line[x], line[metric], marker="o", markersize=3, **_style(str(method)))
        for method, points in readings(str(model), str(bench)).items():
            px, py = zip(*points, strict=True)
            ax.scatter(px, py, facecolors="none", edgecolors=_style(method).get("color", "k"),
                       s=40, label=f"paper ≈ ({_style(method)['label']})")
        ax.set_title(f"{model} · {bench}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric.upper())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _save(fig, out)


def bar_panels(
    data: pd.DataFrame, title: str, out: Path, paper: Callable[[str, str, str], float | None],
    metric: str = "ndcg@10", methods: tuple[str, ...] = ("none", "gr"),
) -> list[Path]:
    """One panel per model: ``metric`` per benchmark, a bar per calibration method.

    Args:
        data: columns model, benchmark, calibration and ``metric``.
        title: figure title.
        out: output path without suffix.
        paper: ``(model, calibration, benchmark) -> value`` of the paper's Table 1, or None.
        metric: the plotted metric.
        methods: calibration methods drawn, in bar order.

    Returns:
        The PNG and PDF paths.
    """
    panels = list(data.groupby("model", sort=True))
    fig, axes = _grid(len(panels))
    width = 0.8 / len(methods)
    for ax, (model, panel) in zip(axes, panels, strict=True):
        benches = sorted(panel["benchmark"].unique())
        for i, method in enumerate(methods):
            rows = panel[panel["calibration"] == method].set_index("benchmark")
            xs = [b + (i - (len(methods) - 1) / 2) * width for b in range(len(benches))]
            ys = [rows[metric].get(b, float("nan")) for b in benches]
            ax.bar(xs, ys, width, **_style(method))
            ref = [(x, paper(str(model), method, b)) for x, b in zip(xs, benches, strict=True)]
            ref = [(x, v) for x, v in ref if v is not None]
            if ref:
                ax.scatter(*zip(*ref, strict=True), marker="_", s=200, color="k", zorder=3,
                           label="paper (Table 1)" if i == 0 else None)
        ax.set_xticks(range(len(benches)), benches, rotation=20, fontsize=8)
        ax.set_title(str(model), fontsize=10)
        ax.set_ylabel(metric.upper())
        ax.set_ylim(0, 1.2)  # headroom for the legend above the bars
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", ncol=3)
    fig.suptitle(title, fontsize=11)
    return _save(fig, out)


def compute_scatter(
    points: pd.DataFrame, paper: list[tuple[str, float, float]], title: str, out: Path
) -> list[Path]:
    """NDCG@10 against GFLOPs per document on a log axis: our runs filled and labelled, the
    paper's rows hollow (its compute axis is read off the figure, approximate).

    Args:
        points: columns method, calibration, gflops_per_doc, ndcg10.
        paper: ``(row name, GFLOPs, NDCG@10)`` of the paper's rows.
        title: figure title.
        out: output path without suffix.

    Returns:
        The PNG and PDF paths.
    """
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for r in points.itertuples():
        ax.scatter(r.gflops_per_doc, r.ndcg10, color=_style(str(r.calibration)).get("color", "k"), s=36)
        ax.annotate(str(r.method), (r.gflops_per_doc, r.ndcg10), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    for name, gflops, ndcg in paper:
        ax.scatter(gflops, ndcg, facecolors="none", edgecolors="tab:red" if name.startswith("GR-")
                   else "tab:blue", s=40)
        ax.annotate(f"paper: {name}", (gflops, ndcg), fontsize=6, color="0.4",
                    xytext=(4, -8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per document (log scale; measured with torch's FLOP counter)")
    ax.set_ylabel("NDCG@10 (mean over benchmarks)")
    ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=_style(m).get("color", "k"),
                          label=_style(m)["label"]) for m in sorted(points["calibration"].unique(),
                                                                   key=_method_order)]
    handles.append(plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                              color="0.4", label="paper ≈ (Table 1, Fig. 4 axis)"))
    ax.legend(handles=handles, fontsize=7)
    ax.set_title(title, fontsize=10)
    return _save(fig, out)
