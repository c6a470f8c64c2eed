"""Size of the viewer's HTML and its time to open in headless Chromium.

    python experiments/bench_viewer.py RUN_DIR BASELINE_DIR [--out view.html] [--repeat 3]

Builds the page (``mixsearch.viewer.build_view``), then opens it ``--repeat`` times in a fresh
headless Chromium page and reports the time from navigation to the first rows being built
(the page sets ``data-ready``), the JS heap, and the rows in the DOM. Ends with one
``name=value`` line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixsearch.viewer import build_view, write_view  # noqa: E402
from mixsearch.viewer.chromium import launch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("baseline", nargs="?")
    p.add_argument("--out", default="outputs/bench_viewer/view.html")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-projection", action="store_true")
    a = p.parse_args()
    t0 = time.perf_counter()
    page = write_view(a.out, build_view(a.run, a.baseline, projection=not a.no_projection))
    build_s = time.perf_counter() - t0
    size_mb = page.stat().st_size / 1e6
    from playwright.sync_api import sync_playwright

    times, heap, rows, queries = [], 0.0, 0, 0
    with sync_playwright() as pw:
        browser = launch(pw)
        for _ in range(a.repeat):
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            t = time.perf_counter()
            tab.goto(page.resolve().as_uri())
            tab.wait_for_selector("body[data-ready='1']")
            times.append(time.perf_counter() - t)
            heap = tab.evaluate("performance.memory ? performance.memory.usedJSHeapSize / 1e6 : 0")
            rows = tab.locator("section.q").count()
            queries = tab.evaluate("D.queries.length")
            tab.close()
        browser.close()
    open_s = statistics.median(times)
    print(f"page: {page} ({size_mb:.2f} MB, {queries} queries), built in {build_s:.1f} s")
    print(f"open (navigation to first {rows} rows): median {open_s:.2f} s over {a.repeat} "
          f"({', '.join(f'{x:.2f}' for x in times)}); JS heap {heap:.0f} MB")
    print(f"html_mb={size_mb:.2f} queries={queries} open_s={open_s:.3f} rows_built={rows} "
          f"heap_mb={heap:.0f} build_s={build_s:.1f}")


if __name__ == "__main__":
    main()
