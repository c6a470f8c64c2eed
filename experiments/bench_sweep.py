"""Time a 21-point α sweep of ``evaluate`` against one run on cached (synthetic) embeddings.

Usage: ``python experiments/bench_sweep.py [--queries 1000] [--docs 4421] [--dim 768]``

Prints the cost of one ``evaluate`` call, of the sweep done naively (21 ``evaluate`` calls), of
the sweep through one :class:`~mixsearch.evaluation.Evaluator` (prepared once, 21 ``run``
calls) and of ``Evaluator.sweep`` (prepared once, all α at once), with the ratios sweep total /
one run. The corpus is MixBench-like (released 1:1:1 mix, one relevant doc per query) and
calibration is GR with cross-fitted means. The last line is ``sweep_ratio=<x>``: the
``Evaluator.sweep`` time over one ``evaluate`` (target <= 1.5).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mixsearch.data.synthetic import released_mix
from mixsearch.embed.embeddings import Embeddings
from mixsearch.evaluation import Evaluator, evaluate

ALPHAS = [round(a, 2) for a in np.arange(0.0, 1.01, 0.05)]  # the seed's setting-2 grid


def synthetic(n_q: int, n_docs: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sem = rng.standard_normal((n_docs, dim), dtype=np.float32)

    def emb(rows):
        offset = 3 * rng.standard_normal(dim, dtype=np.float32) / np.sqrt(dim)
        return rows / np.sqrt(dim) + offset + 0.5 * rng.standard_normal(rows.shape, dtype=np.float32) / np.sqrt(dim)

    bench, qids, dids = released_mix(n_q, n_docs, name="bench", origin="bench")
    embs = {"queries/text": Embeddings(qids, emb(sem[:n_q])),
            "corpus/text": Embeddings(dids, emb(sem)), "corpus/image": Embeddings(dids, emb(sem))}
    return bench, embs


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--docs", type=int, default=4421)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved repeats of the ratio")
    args = parser.parse_args()

    bench, embs = synthetic(args.queries, args.docs, args.dim)
    cfg = {"corpus": {"mode": "released"}, "calibration": {"method": "gr", "source": "crossfit"},
           "retrieval": {"k": 100, "device": args.device}}
    evaluate(bench, embs, fusion={"alpha": 0.5}, **cfg)  # warm-up (imports, torch threads)

    single = timed(lambda: evaluate(bench, embs, fusion={"alpha": 0.5}, **cfg), repeat=3)
    naive = timed(lambda: [evaluate(bench, embs, fusion={"alpha": a}, **cfg) for a in ALPHAS])

    def sweep():
        ev = Evaluator(bench, embs, **cfg)
        return [ev.run({"alpha": a}) for a in ALPHAS]

    prepared = timed(sweep)

    def fast():
        ev = Evaluator(bench, embs, **cfg)
        return ev.sweep([{"alpha": a} for a in ALPHAS])

    fast()  # warm-up of the sweep path
    # Interleaved repeats, best of each: on a shared machine load comes and goes, and the
    # ratio should compare the two under the same conditions.
    singles, sweeps = [], []
    for _ in range(args.repeat):
        singles.append(timed(lambda: evaluate(bench, embs, fusion={"alpha": 0.5}, **cfg)))
        sweeps.append(timed(fast))
    single, swept = min(single, *singles), min(sweeps)
    ev = Evaluator(bench, embs, **cfg)
    prepare = timed(lambda: Evaluator(bench, embs, **cfg), repeat=3)
    point = timed(lambda: ev.run({"alpha": 0.5}), repeat=3)

    n = len(ALPHAS)
    print(f"Q={args.queries} D={args.docs} d={args.dim} device={args.device}, {n} alphas")
    print(f"one evaluate():                  {single * 1e3:8.1f} ms")
    print(f"  of which Evaluator prepare:    {prepare * 1e3:8.1f} ms")
    print(f"  of which one run() (per alpha):{point * 1e3:8.1f} ms")
    print(f"sweep, {n} x evaluate():          {naive * 1e3:8.1f} ms  = {naive / single:5.2f} x one run")
    print(f"sweep, Evaluator + {n} x run():   {prepared * 1e3:8.1f} ms  = {prepared / single:5.2f} x one run")
    print(f"marginal cost of a sweep point:  {(prepared - single) / (n - 1) / single:5.2f} x one run")
    print(f"sweep, Evaluator.sweep({n}):      {swept * 1e3:8.1f} ms  = {swept / single:5.2f} x one run")
    print(f"sweep_ratio={swept / single:.3f}")


if __name__ == "__main__":
    main()
