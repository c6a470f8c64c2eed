"""Cost of ``embed.image_key=content`` (hashing image files) against extracting the images.

On the toy benchmark (generated under ``--root`` if missing) with the shipped toy CLIP, for the
images of one subset (corpus, queries and calibration splits, as a default run embeds them):

* ``stat``: path, size and mtime per file (the old key);
* ``content``: xxh3-128 of every file's bytes, in a process that has not hashed them before
  (page cache warm, as it is right after the images were decoded once);
* ``extract``: :func:`mixsearch.embed.embed_records` on the same images without a cache.

Example::

    python experiments/bench_image_key.py --root data/toy --subset ToyCOCO

The last line is ``stat_seconds=<s> content_seconds=<s> extract_seconds=<s> ratio=<content /
extract>``.
"""

from __future__ import annotations

import argparse
import os
import time

from mixsearch.data.toy import load_toy
from mixsearch.embed import cache as cache_mod
from mixsearch.embed.cache import image_key
from mixsearch.embed.extract import embed_records
from mixsearch.encoders.toy import ToyEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data/toy")
    ap.add_argument("--subset", default="ToyCOCO")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    bench = load_toy(args.root, args.subset)
    splits = ["queries", "corpus", *(f"calibration/{k}" for k in sorted(bench.calibration))]
    images = [r for s in splits for r in bench.split(s) if r.image is not None]
    for r in images:  # warm the page cache, as extraction leaves it
        with open(r.image.path, "rb") as f:
            f.read()

    def keys(mode: str) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            cache_mod._IMAGE_HASHES.clear()
            t = time.perf_counter()
            for r in images:
                image_key(r.image, mode)
            best = min(best, time.perf_counter() - t)
        return best

    stat_s, content_s = keys("stat"), keys("content")
    encoder = ToyEncoder(device="cpu")
    t = time.perf_counter()
    embed_records(encoder, images, "image", cache=None, dataset_key="bench", split="bench",
                  amp="none", progress=False)
    extract_s = time.perf_counter() - t
    mb = sum(os.path.getsize(r.image.path) for r in images) / 1e6
    print(f"{len(images)} images ({mb:.1f} MB) of toy/{args.subset}")
    print(f"keys by stat:    {stat_s * 1e3:.1f} ms")
    print(f"keys by content: {content_s * 1e3:.1f} ms")
    print(f"extraction (toy CLIP, CPU, no cache): {extract_s:.2f} s")
    print(f"stat_seconds={stat_s:.4f} content_seconds={content_s:.4f} "
          f"extract_seconds={extract_s:.3f} ratio={content_s / extract_s:.4f}")


if __name__ == "__main__":
    main()
