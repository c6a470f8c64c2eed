"""``python -m mixsearch.viewer RUN_DIR [BASELINE_RUN_DIR] --out view.html``."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from mixsearch.data.benchmark import DataError
from mixsearch.viewer import build_view, write_view
from mixsearch.viewer.runs import RunDirError


def main(argv: list[str] | None = None) -> int:
    """Command line of the viewer; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m mixsearch.viewer", description=(
        "Write a self-contained HTML page of a run's rankings, optionally side by side with a "
        "baseline run (queries sorted by NDCG@10 gain over the baseline)."))
    p.add_argument("run", help="run dir (metrics.json, per_query.csv, run.trec), e.g. the GR run")
    p.add_argument("baseline", nargs="?", help="baseline run dir, e.g. the calibration=none run")
    p.add_argument("--out", default="view.html", help="HTML file to write (default view.html)")
    p.add_argument("-k", type=int, default=10, help="documents shown per run and query (default 10)")
    p.add_argument("--thumb", type=int, default=96, help="thumbnail side in pixels (default 96)")
    p.add_argument("--sample", type=int, default=300, help="items per modality in the projection")
    p.add_argument("--no-projection", action="store_true",
                   help="skip the embedding-space picture (no model or cache needed)")
    p.add_argument("--root", help="dataset root, when the data moved since the run")
    p.add_argument("--wandb", action="store_true",
                   help="also add the page to the run's W&B run as an HTML panel 'viewer' "
                        "(resumed by the id the run recorded; WANDB_MODE applies)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        page = build_view(args.run, args.baseline, k=args.k, thumb_side=args.thumb,
                          projection=not args.no_projection, sample=args.sample, root=args.root)
    except (RunDirError, DataError) as e:
        print(f"viewer: {e}", file=sys.stderr)
        return 2
    out = write_view(args.out, page)
    print(f"viewer: wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")
    if args.wandb:
        from mixsearch.tracking import log_html_to_wandb

        run_id = log_html_to_wandb(args.run, page)
        print(f"viewer: logged as the HTML panel 'viewer' of W&B run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
