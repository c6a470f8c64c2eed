"""Benchmark search() + evaluate_ranking() against a bare torch.topk(Q @ D.T).

Synthetic L2-normalised fp32 embeddings (d = 768) with string doc ids and one random positive
per query. Prints a markdown table; the target is a ratio of at most 1.3.

    python experiments/bench_retrieval.py            # (1000 x 4421) and (10k x 100k)
    python experiments/bench_retrieval.py --small    # skip the 10k x 100k case
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from mixsearch.metrics import evaluate_ranking
from mixsearch.retrieval import search

CASES = [(1000, 4421), (10_000, 100_000)]


def _normalised(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, dim, generator=gen)
    return x / x.norm(dim=1, keepdim=True)


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall time of one call (after a CUDA sync) and its result."""
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def _bare_topk(queries: torch.Tensor, docs: torch.Tensor, k: int, device: torch.device):
    """The baseline: one fp32 matmul on the device and torch.topk, no chunking, no ids."""
    with torch.inference_mode():
        return torch.topk(queries.to(device) @ docs.to(device).T, k, dim=1)


def bench_case(n_q: int, n_d: int, args: argparse.Namespace) -> dict[str, float]:
    """Time the bare baseline and the library path on one (queries, docs) size."""
    gen = torch.Generator().manual_seed(args.seed)
    queries, docs = _normalised(n_q, args.dim, gen), _normalised(n_d, args.dim, gen)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.device != "auto":
        device = torch.device(args.device)
    repeats = args.repeats if n_q * n_d <= 10**8 else args.repeats_large
    rng = np.random.default_rng(args.seed)
    doc_ids = [f"doc{i}" for i in rng.permutation(n_d)]
    qids = [f"q{i}" for i in range(n_q)]
    qrels = {q: {doc_ids[int(j)]: 1} for q, j in zip(qids, rng.integers(0, n_d, n_q), strict=True)}

    q_np, d_np = queries.numpy(), docs.numpy()
    ids_arr = np.array(doc_ids, dtype=object)

    def lib_search():
        return search(q_np, d_np, args.k, doc_ids=doc_ids, backend=args.backend, device=args.device)

    def lib_eval(top):
        ranked = dict(zip(qids, ids_arr[top.indices].tolist(), strict=True))
        return evaluate_ranking(ranked, qrels)

    # Interleaved repeats, best of each kept: the CPU may be shared with other work.
    t_bare = t_search = t_eval = float("inf")
    for _ in range(repeats):
        t_bare = min(t_bare, _timed(lambda: _bare_topk(queries, docs, args.k, device))[0])
        elapsed, top = _timed(lib_search)
        t_search = min(t_search, elapsed)
        t_eval = min(t_eval, _timed(partial(lib_eval, top))[0])
    return {
        "bare": t_bare,
        "search": t_search,
        "eval": t_eval,
        "total": t_search + t_eval,
        "ratio": (t_search + t_eval) / t_bare,
        "device": str(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="skip the 10k x 100k case")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3, help="runs per small case (best kept)")
    parser.add_argument("--repeats-large", type=int, default=1, help="runs of the 10k x 100k case")
    parser.add_argument("--backend", default="exact", choices=["exact", "faiss"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cases = CASES[:1] if args.small else CASES
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, k={args.k}")
    print(f"backend={args.backend}\n")
    print(
        "| queries x docs | device | bare topk(Q@D.T) s | search s | ids + evaluate s "
        "| search+eval s | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for n_q, n_d in cases:
        r = bench_case(n_q, n_d, args)
        print(
            f"| {n_q} x {n_d} | {r['device']} | {r['bare']:.3f} | {r['search']:.3f} "
            f"| {r['eval']:.3f} | {r['total']:.3f} | {r['ratio']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
