"""experiments/bench_scale.py on a tiny corpus: memory-mapped parts, streamed exact search,
metrics, the float16 check and FAISS, ending with the figures line."""

from __future__ import annotations

import re

import numpy as np

from experiments import bench_scale
from mixsearch.retrieval import search


def test_tiny_run_prints_the_figures_line(capsys, tmp_path):
    bench_scale.main(["--docs", "3000", "--queries", "40", "--dim", "16", "--part-size", "700",
                      "--k", "20", "--check-queries", "10", "--faiss-docs", "2000",
                      "--faiss-queries", "20", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"peak_rss_gb=(\d+\.\d+) seconds=(\d+\.\d+)", last)
    assert m and 0 < float(m.group(1)) < 6 and float(m.group(2)) > 0
    assert "in 5 parts" in out and "top-20 overlap" in out
    assert re.search(r"\| hnsw \| hnsw_m=32, ef_search=256 \| [\d.]+ \| [\d.]+ \| [01]\.\d{4} \|", out)
    assert not any(tmp_path.iterdir())  # the temporary cache is removed


def test_mapped_parts_are_the_written_vectors(tmp_path):
    args = bench_scale.argparse.Namespace(docs=1000, queries=10, dim=32, part_size=300, seed=1,
                                          dtype="float16", noise=0.5)
    entry, queries = bench_scale.write_entry(tmp_path, args)
    parts = list(bench_scale.mapped_parts(entry))
    assert [len(p) for p in parts] == [300, 300, 300, 100]
    assert all(isinstance(p, np.memmap) and p.dtype == np.float16 for p in parts)
    originals = [bench_scale.doc_part(p, 300, 1000, 32, 1) for p in range(4)]
    for got, ref in zip(parts, originals, strict=True):
        np.testing.assert_array_equal(got, ref.astype(np.float16))
    # at this noise level the planted doc is (mostly) the nearest neighbour
    top = search(queries, np.concatenate(originals), 1)
    assert np.mean(top.indices[:, 0] == bench_scale.planted(10, 1000)) >= 0.5
