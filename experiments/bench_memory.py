"""Peak memory of one in-memory evaluation (what a ``run.py`` job does after extraction).

Usage: ``python experiments/bench_memory.py [--docs 200000] [--queries 1000] [--dim 768]``

A MixBench-like corpus (released 1:1:1 mix of text, image and image+text docs; every doc has a
text and an image embedding, as MixBench's do) is built as float32 arrays part by part, so the
process's peak before the evaluation is its inputs. Then ``Evaluator(...).run()`` with GR
(transductive means) and weighted fusion, as ``run.py`` runs it. Printed: the peak resident set
above the inputs, in GB, in copies of one ``docs x dim`` float32 matrix and per document; the
last line is ``matrices=<x> per_doc_kb=<y> peak_rss_gb=<z>``.

The in-memory path keeps the shown parts, their calibrated copies and the fused vectors, with
temporaries on top; ``experiments/bench_scale.py`` measures the bounded-memory path (memory-mapped
float16 cache parts, streamed means and search) that a pool of millions needs.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from mixsearch.data.synthetic import released_mix
from mixsearch.embed.embeddings import Embeddings
from mixsearch.evaluation import Evaluator

PART = 50_000


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def inputs(n_q: int, n_docs: int, dim: int, seed: int = 0):
    """Benchmark and float32 embeddings, written part by part into preallocated arrays."""
    rng = np.random.default_rng(seed)
    offsets = {k: np.float32(3.0) * rng.standard_normal(dim, dtype=np.float32) / np.float32(np.sqrt(dim))
               for k in ("q", "t", "i")}
    text = np.empty((n_docs, dim), np.float32)
    image = np.empty((n_docs, dim), np.float32)
    queries = np.empty((n_q, dim), np.float32)
    scale = np.float32(1.0 / np.sqrt(dim))
    for lo in range(0, n_docs, PART):
        hi = min(lo + PART, n_docs)
        sem = rng.standard_normal((hi - lo, dim), dtype=np.float32)
        text[lo:hi] = sem * scale + offsets["t"]
        image[lo:hi] = sem * scale + offsets["i"]
        if lo < n_q:
            m = min(hi, n_q) - lo
            queries[lo:lo + m] = sem[:m] * scale + offsets["q"] + np.float32(0.5) * scale * \
                rng.standard_normal((m, dim), dtype=np.float32)
    bench, qids, dids = released_mix(n_q, n_docs, name="bench", origin="bench")
    embs = {"queries/text": Embeddings(qids, queries), "corpus/text": Embeddings(dids, text),
            "corpus/image": Embeddings(dids, image)}
    return bench, embs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    bench, embs = inputs(args.queries, args.docs, args.dim)
    before = rss_gb()
    t0 = time.perf_counter()
    ev = Evaluator(bench, embs, corpus={"mode": "released"},
                   calibration={"method": "gr", "source": "transductive"}, retrieval={"k": 100})
    result = ev.run({"alpha": 0.5})
    seconds = time.perf_counter() - t0
    peak = rss_gb()
    matrix_gb = args.docs * args.dim * 4 / 1e9
    extra = peak - before
    print(f"docs={args.docs} queries={args.queries} dim={args.dim}: one docs x dim float32 matrix "
          f"is {matrix_gb:.3f} GB; the inputs (two per doc) {2 * matrix_gb:.3f} GB")
    print(f"peak RSS {before:.3f} GB before the evaluation, {peak:.3f} GB at its peak "
          f"({seconds:.1f} s, ndcg@10={result.metrics['ndcg@10']:.4f})")
    print(f"evaluation above its inputs: {extra:.3f} GB = {extra / matrix_gb:.2f} matrices = "
          f"{extra * 1e6 / args.docs:.2f} KB per doc")
    print(f"matrices={extra / matrix_gb:.2f} per_doc_kb={extra * 1e6 / args.docs:.2f} peak_rss_gb={peak:.3f}")


if __name__ == "__main__":
    main()
