"""Exact search and metrics over a million documents in bounded memory, plus FAISS recall.

Usage::

    python experiments/bench_scale.py --docs 1000000 --queries 1000
    python experiments/bench_scale.py --docs 1000000 --queries 10000 --dtype float16

Steps, each timed:

1. **write**: synthetic unit-norm doc embeddings (``--dim``, seeded per part) are written as
   cache parts of ``--part-size`` rows through :class:`mixsearch.embed.cache.CacheEntry`, in
   ``--dtype`` (float16 halves the disk and page-cache footprint). Queries are noisy copies of
   planted relevant docs (query i: doc ``i * docs // queries``), so the metrics mean something.
2. **evaluate** (the figure that counts): the parts are read back memory-mapped
   (``read_part(mmap=True)``), one at a time. With ``--calibrate gr`` (default) a first pass
   computes GR's doc mean by :func:`mixsearch.calibration.streamed_mean` (float64 sums of
   normalised float32 chunks; the pool is never in memory) and the search reads the parts again
   through :func:`mixsearch.calibration.gr_blocks` (normalise, subtract, renormalise per chunk);
   queries get their own mean subtracted. The search is exact,
   :func:`mixsearch.retrieval.search_blocks` (float32 arithmetic on float32 copies of one
   chunk at a time; no queries x docs matrix, no stacked copy of the docs); then
   NDCG/Recall/MRR/hit through :func:`mixsearch.metrics.evaluate_ranking`.
3. **float16 error** (``--dtype float16``): for ``--check-queries`` queries, the same search over
   the float32 originals (regenerated from the seeds): the largest score difference and the
   overlap of the two top-k lists.
4. **FAISS** (``--faiss-docs`` > 0): IVF and HNSW indexes over the first ``--faiss-docs`` docs,
   recall@k against exact search for ``--faiss-queries`` queries, with build and search times.

The last line is ``peak_rss_gb=<x> seconds=<y>``: the process's peak resident set (all steps)
and the seconds of step 2.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mixsearch.calibration import gr_blocks, streamed_mean
from mixsearch.embed.cache import CacheEntry, Part
from mixsearch.fusion import l2_normalise
from mixsearch.metrics import evaluate_ranking
from mixsearch.retrieval import build_faiss_index, search, search_blocks

N_TOPICS = 1024
TOPIC_WEIGHT = 1.5


def doc_part(p: int, part_size: int, n_docs: int, dim: int, seed: int) -> np.ndarray:
    """Unit-norm float32 docs of part ``p`` (seeded per part, so any part can be regenerated).

    Each doc is a random topic direction plus its own noise: clustered like real embeddings
    (uniform random vectors would leave an IVF index nothing to cluster).
    """
    rows = min(part_size, n_docs - p * part_size)
    topics = np.random.default_rng([seed, 1 << 31]).standard_normal((N_TOPICS, dim), np.float32)
    rng = np.random.default_rng([seed, p])
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    x += TOPIC_WEIGHT * topics[rng.integers(0, N_TOPICS, rows)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def doc_ids(n_docs: int) -> list[str]:
    return [f"d{i:07d}" for i in range(n_docs)]


def planted(n_queries: int, n_docs: int) -> np.ndarray:
    """The relevant doc row of each query."""
    return np.arange(n_queries, dtype=np.int64) * n_docs // n_queries


def write_entry(root: Path, args: argparse.Namespace) -> tuple[CacheEntry, np.ndarray]:
    """Write the doc parts; returns the entry and the queries (noisy copies of planted docs)."""
    ids = doc_ids(args.docs)
    key_inputs = {"encoder": {"backend": "synthetic", "seed": args.seed}, "autocast": "none",
                  "dataset": f"scale-{args.docs}", "split": "corpus", "field": "text",
                  "store_dtype": args.dtype, "content": f"seed={args.seed}"}
    entry = CacheEntry(root / "entry", f"scale-{args.docs}-{args.seed}", key_inputs, ids,
                       args.dim, args.part_size)
    targets = planted(args.queries, args.docs)
    queries = np.empty((args.queries, args.dim), np.float32)
    rng = np.random.default_rng([args.seed, 1 << 30])
    for p in range(entry.n_parts):
        part = doc_part(p, args.part_size, args.docs, args.dim, args.seed)
        lo = p * args.part_size
        mine = (targets >= lo) & (targets < lo + len(part))
        noise = rng.standard_normal((int(mine.sum()), args.dim), dtype=np.float32)
        q = part[targets[mine] - lo] + args.noise * noise / np.sqrt(args.dim)
        queries[mine] = q / np.linalg.norm(q, axis=1, keepdims=True)
        entry.write_part(p, Part(ids[entry.part_slice(p)], part, []))
    entry.write_manifest([])
    return entry, queries


def mapped_parts(entry: CacheEntry):
    """Each part's vectors as a read-only memory map, one at a time (freed after use)."""
    for p in range(entry.n_parts):
        part = entry.read_part(p, mmap=True)
        if part is None:
            raise SystemExit(f"cache part {p} of {entry.path} is missing or corrupt")
        yield part.vectors


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def recall(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, ref, strict=True)]))


def calibrate(args: argparse.Namespace, entry: CacheEntry, queries: np.ndarray):
    """``(queries, doc transform)`` for ``--calibrate``: GR with the doc mean streamed over the
    memory-mapped parts and the queries' own mean, or the identity."""
    if args.calibrate == "none":
        return queries, lambda blocks: blocks
    t0 = time.perf_counter()
    doc_mean, n = streamed_mean(mapped_parts(entry))
    q = l2_normalise(queries)
    q = l2_normalise(q - q.mean(axis=0))
    print(f"calibrate: GR doc mean streamed over {entry.n_parts} parts ({n} rows) in "
          f"{time.perf_counter() - t0:.1f}s; |mean| {np.linalg.norm(doc_mean):.3f}; "
          f"peak RSS so far {peak_rss_gb():.2f} GB")
    return q, lambda blocks: gr_blocks(blocks, doc_mean)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                    help="storage dtype of the cache parts (scores are float32 either way)")
    ap.add_argument("--part-size", type=int, default=65536)
    ap.add_argument("--noise", type=float, default=2.0, help="query noise (relative norm)")
    ap.add_argument("--check-queries", type=int, default=50)
    ap.add_argument("--faiss-docs", type=int, default=50_000)
    ap.add_argument("--faiss-queries", type=int, default=200)
    ap.add_argument("--cache-dir", default=None, help="where to write the parts (default: temp)")
    ap.add_argument("--calibrate", choices=("gr", "none"), default="gr",
                    help="GR with the doc mean streamed over the parts (default), or none")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_scale_", dir=args.cache_dir) as tmp:
        t0 = time.perf_counter()
        entry, queries = write_entry(Path(tmp), args)
        t_write = time.perf_counter() - t0
        size_gb = sum(f.stat().st_size for f in Path(entry.path).glob("*.npy")) / 2**30
        print(f"write: {args.docs} docs x {args.dim} ({args.dtype}) in {entry.n_parts} parts, "
              f"{size_gb:.2f} GiB, {t_write:.1f}s; peak RSS so far {peak_rss_gb():.2f} GB")

        t0 = time.perf_counter()
        queries, prep = calibrate(args, entry, queries)
        ids = doc_ids(args.docs)
        top = search_blocks(queries, prep(mapped_parts(entry)), args.k, n_docs=args.docs,
                            doc_ids=ids, device="cpu")
        t_search = time.perf_counter() - t0
        id_array = np.array(ids, dtype=object)
        qids = [f"q{i}" for i in range(args.queries)]
        ranked = dict(zip(qids, id_array[top.indices].tolist(), strict=True))
        qrels = {q: {ids[t]: 1} for q, t in zip(qids, planted(args.queries, args.docs), strict=True)}
        ks = [k for k in (1, 10, 100) if k <= args.k]
        metrics, _ = evaluate_ranking(ranked, qrels, ks=ks, measures=("ndcg", "recall", "mrr", "hit"))
        seconds = time.perf_counter() - t0
        print(f"evaluate: Q={args.queries} x D={args.docs} exact top-{args.k} in {t_search:.1f}s, "
              f"with metrics {seconds:.1f}s; peak RSS so far {peak_rss_gb():.2f} GB")
        print("  " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

        if args.dtype == "float16" and args.check_queries > 0:
            n = min(args.check_queries, args.queries)
            originals = (doc_part(p, args.part_size, args.docs, args.dim, args.seed)
                         for p in range(entry.n_parts))
            ref = search_blocks(queries[:n], prep(originals), args.k, n_docs=args.docs,
                                doc_ids=ids, device="cpu")
            exact_of_found = {}
            for p in range(entry.n_parts):  # float32 scores of the docs the float16 run found
                lo, part = p * args.part_size, None
                rows = top.indices[:n]
                hit = (rows >= lo) & (rows < lo + args.part_size)
                if hit.any():
                    part = np.concatenate(list(prep(
                        [doc_part(p, args.part_size, args.docs, args.dim, args.seed)])))
                    for r, c in zip(*np.nonzero(hit), strict=True):
                        exact_of_found[r, c] = float(queries[r] @ part[rows[r, c] - lo])
            err = max(abs(float(top.scores[r, c]) - v) for (r, c), v in exact_of_found.items())
            print(f"float16 storage vs float32 ({n} queries): max |score error| {err:.2e}, "
                  f"top-{args.k} overlap {recall(top.indices[:n], ref.indices):.4f}, "
                  f"same top-1 {float(np.mean(top.indices[:n, 0] == ref.indices[:, 0])):.3f}")

        if args.faiss_docs > 0:
            nf, nq = min(args.faiss_docs, args.docs), min(args.faiss_queries, args.queries)
            parts = [doc_part(p, args.part_size, args.docs, args.dim, args.seed)
                     for p in range(-(-nf // args.part_size))]
            sub = np.concatenate(parts)[:nf]
            del parts
            q = queries[:nq]
            exact = search(q, sub, args.k, device="cpu")
            print(f"\nFAISS over the first {nf} docs, {nq} queries, recall@{args.k} vs exact:\n")
            print("| index | parameters | build s | search ms/query | recall |")
            print("|---|---|---:|---:|---:|")
            rows = []
            t0 = time.perf_counter()
            ivf = build_faiss_index(sub, "ivf")
            rows.append(("ivf", ivf, time.perf_counter() - t0, {"nprobe": 8}))
            rows.append(("ivf", ivf, 0.0, {"nprobe": 32}))
            t0 = time.perf_counter()
            hnsw = build_faiss_index(sub, "hnsw", hnsw_m=32, ef_search=256)
            rows.append(("hnsw", hnsw, time.perf_counter() - t0, {"hnsw_m": 32, "ef_search": 256}))
            for index, idx, t_build, params in rows:
                if index == "ivf":
                    idx.nprobe = params["nprobe"]
                t0 = time.perf_counter()
                _, found = idx.search(q, args.k)
                t_q = (time.perf_counter() - t0) / nq * 1e3
                shown = ", ".join(f"{k}={v}" for k, v in params.items())
                if index == "ivf":
                    shown = f"nlist={idx.nlist}, {shown}"
                built = f"{t_build:.1f}" if t_build else "(same)"
                print(f"| {index} | {shown} | {built} | {t_q:.2f} | "
                      f"{recall(found, exact.indices):.4f} |")
            del sub, ivf, hnsw
        sys.stdout.flush()
    print(f"peak_rss_gb={peak_rss_gb():.3f} seconds={seconds:.2f}")


if __name__ == "__main__":
    main()
