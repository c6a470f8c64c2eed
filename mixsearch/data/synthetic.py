"""A benchmark shaped like a MixBench subset, without content: for benchmarks and tests that
bring their own embeddings.

Query ``i`` judges doc ``i`` (grade 1); every doc has a text and an image, and the released
mix shows them 1:1:1 as text, image and image+text (doc ``i``: ``("text", "image",
"image+text")[i % 3]``).
"""

from __future__ import annotations

from mixsearch.data.benchmark import Benchmark, ImageRef, Record

KINDS = ("text", "image", "image+text")


def released_mix(n_q: int, n_docs: int, *, name: str = "synthetic", query_prefix: str = "",
                 origin: str = "synthetic") -> tuple[Benchmark, list[str], list[str]]:
    """``(benchmark, query ids, doc ids)``: ``n_q`` text queries (ids ``<prefix><i>``) over
    ``n_docs`` docs (ids ``d<i>``), each query judging the doc of its own number."""
    if n_q > n_docs:
        raise ValueError(f"released_mix: {n_q} queries need at least as many docs, got {n_docs}")
    img = ImageRef(data=b"-", origin=origin)
    qids, dids = [f"{query_prefix}{i}" for i in range(n_q)], [f"d{i}" for i in range(n_docs)]
    mixed = [Record(d, text="t" if KINDS[i % 3] != "image" else None,
                    image=img if KINDS[i % 3] != "text" else None) for i, d in enumerate(dids)]
    bench = Benchmark(name, [Record(q, text="q") for q in qids],
                      [Record(d, text="t", image=img) for d in dids],
                      {q: {dids[i]: 1} for i, q in enumerate(qids)}, mixed_corpus=mixed)
    return bench, qids, dids
