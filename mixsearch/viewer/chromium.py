"""The headless system Chromium that opens viewer pages in tests and benchmarks (playwright
drives it; playwright's own browser downloads are never used). ``make chromium`` installs it."""

from __future__ import annotations

import os
from typing import Any

#: the browser binary; ``MIXSEARCH_CHROMIUM`` (``make test CHROMIUM=...``) points elsewhere
CHROMIUM = os.environ.get("MIXSEARCH_CHROMIUM", "/usr/bin/chromium")
#: offline and quiet: no GPU, sandbox, first-run pages, background or component traffic
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch(playwright: Any) -> Any:
    """A headless browser from a started ``sync_playwright()`` context."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
