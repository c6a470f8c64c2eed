"""Two small real runs (toy benchmark, toy CLIP, calibration none and gr) for the viewer tests,
made in-process through mixsearch.pipeline.run, and the headless Chromium they open pages in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mixsearch.viewer.chromium import CHROMIUM

TOY = ["+dataset.n_queries=40", "+dataset.n_distractors=20", "+dataset.n_calibration=60",
       "+dataset.n_train=10"]


def make_runs(tmp: Path) -> dict[str, Path]:
    """Run the toy benchmark with calibration none and gr; returns the run dirs by method."""
    from mixsearch.compose import compose_config
    from mixsearch.pipeline import run

    out = {}
    for method in ("none", "gr"):
        overrides = [f"calibration={method}", f"paths.data_dir={tmp}",  # the toy in tmp/toy
                     f"paths.cache_dir={tmp / 'cache'}", "embed.progress=false", "device=cpu", *TOY]
        cfg = compose_config(overrides)
        cfg["paths"]["output_dir"] = str(tmp / f"run_{method}")
        run(cfg, overrides=overrides)
        out[method] = tmp / f"run_{method}"
    return out


def need_browser() -> Any:
    """The playwright module, or skip (locally) / fail (CI=true) naming what is missing."""
    problem = None
    try:
        from playwright import sync_api
    except ImportError:
        problem = "the playwright package is not installed (pip install -e '.[dev]')"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"no Chromium at {CHROMIUM} (make install puts it there as root: apt-get install -y chromium)"
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser test in CI: {problem}")
        pytest.skip(problem)
    return sync_api


class Page:
    """A page opened in headless Chromium, with its console errors and network requests."""

    def __init__(self, browser: Any, path: Path, width: int = 1280, height: int = 900) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']")

    def thumbnail_widths(self) -> list[int]:
        """``naturalWidth`` of every ``<img>`` in the DOM once decoded (lazy ones are made
        eager first: off-screen, they would not load at all)."""
        return self.page.evaluate("""async () => {
            const imgs = [...document.images];
            imgs.forEach((i) => { i.loading = "eager"; });
            await Promise.all(imgs.map((i) => i.decode().catch(() => null)));
            return imgs.map((i) => i.naturalWidth);
        }""")

    def render_all(self) -> int:
        """Scroll until every row of the current filter is built; returns the rows in the DOM."""
        for _ in range(1000):
            done = self.page.evaluate("shown.length === next")
            if done:
                break
            self.page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            self.page.wait_for_timeout(30)
        return self.page.locator("section.q").count()
