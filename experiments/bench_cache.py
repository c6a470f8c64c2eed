"""Cost of verifying cache parts on read: checksums of a 100k x 768 float32 entry.

Writes one entry of random vectors into a temporary cache with
:meth:`mixsearch.embed.cache.CacheEntry.write_part`, then times reading every part three ways:
``np.load`` alone (what a read costs without integrity checks), :meth:`CacheEntry.read_part`
in a process that has not verified the parts yet (load + xxh3 checksum), and ``read_part`` again
(the process remembers verified files, so only the load is paid). The page cache is warm in all
three, which makes the ratio an upper bound: a cold read from disk costs more and the checksum
the same. The checksum itself is also timed alone, on the loaded arrays.

Example::

    python experiments/bench_cache.py --n 100000 --dim 768

The last line is ``read_seconds=<np.load> verify_seconds=<xxh3 checksum of the loaded parts>
overhead=<verify/read>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mixsearch.embed import cache as cache_mod
from mixsearch.embed.cache import CacheEntry, Part, checksum


def _entry(root: Path, n: int, dim: int, part_size: int) -> CacheEntry:
    inputs = {"encoder": {}, "autocast": "none", "dataset": "bench", "split": "corpus",
              "field": "image", "store_dtype": "float32", "content": "-"}
    return CacheEntry(root / "entry", "bench", inputs, [str(i) for i in range(n)], dim, part_size)


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--part-size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        entry = _entry(Path(tmp), args.n, args.dim, args.part_size)
        for p in range(entry.n_parts):
            ids = entry.ids[entry.part_slice(p)]
            entry.write_part(p, Part(ids, rng.standard_normal((len(ids), args.dim), np.float32), []))
        parts = range(entry.n_parts)
        files = [entry.path / f"{entry.part_name(p)}.npy" for p in parts]

        def load() -> None:
            for f in files:
                np.load(f, allow_pickle=False)

        def read() -> None:
            for p in parts:
                assert entry.read_part(p) is not None

        def read_unverified() -> None:
            cache_mod._VERIFIED.clear()  # a fresh process: every part is checksummed
            read()

        load()  # warm the page cache
        load_s = _best(load, args.repeat)
        arrays = [np.load(f, allow_pickle=False) for f in files]
        verify_s = _best(lambda: [checksum(a) for a in arrays], args.repeat)
        first_s = _best(read_unverified, args.repeat)
        again_s = _best(read, args.repeat)
    gb = args.n * args.dim * 4 / 1e9
    print(f"entry: {args.n} x {args.dim} float32 ({gb:.2f} GB) in {entry.n_parts} parts")
    print(f"np.load only:                 {load_s:.3f} s")
    print(f"xxh3 checksums alone:         {verify_s:.3f} s")
    print(f"read_part, first in process:  {first_s:.3f} s (load, ids, checks, checksum)")
    print(f"read_part, already verified:  {again_s:.3f} s (load, ids, checks)")
    print(f"read_seconds={load_s:.4f} verify_seconds={verify_s:.4f} "
          f"overhead={verify_s / load_s:.3f}")


if __name__ == "__main__":
    main()
