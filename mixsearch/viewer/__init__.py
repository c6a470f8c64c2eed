"""A self-contained HTML results viewer: one run, or a run against a baseline, side by side.

``python -m mixsearch.viewer RUN_DIR [BASELINE_RUN_DIR] --out view.html`` writes one HTML file
with the data inline (JSON) and thumbnails as de-duplicated data URIs: it opens offline, needs
no server and has no external URL. Rows are built by the page's script as the reader scrolls,
so a 5,000-query run opens quickly. See docs/viewer.md.
"""

from __future__ import annotations

import html
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

from mixsearch.config import ConfigError
from mixsearch.encoders.base import EncoderError
from mixsearch.viewer.payload import build_payload
from mixsearch.viewer.projection import cloud_svg, prepare_evaluator, sample_cloud
from mixsearch.viewer.runs import RunData, check_same_benchmark, load_benchmark_of, read_run

log = logging.getLogger(__name__)

__all__ = ["build_view", "render_page", "write_view"]


def render_page(payload: dict[str, Any], svg: str = "", title: str = "mixsearch viewer") -> str:
    """The HTML page: the template with the payload as inline JSON and the projection SVG."""
    template = resources.files("mixsearch.viewer").joinpath("page.html").read_text(encoding="utf-8")
    # "<" escaped as \u003c: no "</script>" or "<!--" in the data can end the script element
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    if not svg:
        svg = '<p class="sub" id="no-projection">no projection (see the viewer\'s log)</p>'
    return (template.replace("__TITLE__", html.escape(title))
            .replace("__SVG__", svg).replace("__DATA__", data))


def _labels(runs: list[RunData]) -> None:
    if len(runs) == 2 and runs[0].label == runs[1].label:
        for r in runs:
            r.label = f"{r.label} · {r.path.name}"


def projection_svg(run: RunData, bench: Any, n: int = 300) -> str:
    """The before/after PCA picture of ``run``'s embeddings (cached by the run)."""
    evaluator, fusion_cfg = prepare_evaluator(run.config, bench)
    return cloud_svg(sample_cloud(evaluator, fusion_cfg, n=n))


def build_view(
    run_dir: str | Path,
    baseline_dir: str | Path | None = None,
    *,
    k: int = 10,
    thumb_side: int = 96,
    projection: bool = True,
    sample: int = 300,
    root: str | Path | None = None,
) -> str:
    """The viewer page for a run (and optionally its baseline) as an HTML string.

    Args:
        run_dir: the run under study (e.g. ``calibration=gr``).
        baseline_dir: the run it is compared with (e.g. ``calibration=none``); queries are
            sorted by NDCG@10 of the run minus the baseline's.
        k: documents shown per run and query.
        thumb_side: thumbnail size in pixels (longest side).
        projection: draw the embedding space (loads the model and reads the cached
            embeddings of the calibrated run).
        sample: items per modality in the projection.
        root: overrides the runs' ``dataset.root`` (data moved since the run).

    Raises:
        RunDirError: a run dir is incomplete, or the two runs scored different benchmarks.
    """
    runs = [read_run(run_dir)] + ([read_run(baseline_dir)] if baseline_dir is not None else [])
    if len(runs) == 2:
        check_same_benchmark(runs[0], runs[1])
    _labels(runs)
    bench = load_benchmark_of(runs[0], root)
    payload = build_payload(runs, bench, k=k, thumb_side=thumb_side)
    svg = ""
    if projection:
        calibrated = [r for r in runs if (r.result.get("calibration") or {}).get("method") not in (None, "none")]
        try:
            svg = projection_svg((calibrated or runs)[0], bench, n=sample)
        except (EncoderError, ConfigError, OSError) as e:
            # the rankings are still worth a page: say why the picture is missing
            log.warning("viewer: no embedding-space picture (%s); --no-projection skips it", e)
    names = " vs ".join(r.label for r in runs)
    return render_page(payload, svg, title=f"mixsearch · {names} · {payload['runs'][0]['dataset']}")


def write_view(out: str | Path, html_text: str) -> Path:
    """Write the page (parent folders created)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_text, encoding="utf-8")
    return out
