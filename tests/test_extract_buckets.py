"""Text extraction in length buckets: batches of similar lengths, rows in record order."""

from __future__ import annotations

import numpy as np

from mixsearch.data.benchmark import Record
from mixsearch.embed.cache import EmbeddingCache
from mixsearch.embed.extract import embed_records
from tests.fake_encoder import FakeEncoder


class SpyEncoder(FakeEncoder):
    """Records the texts of every encode_text call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode_text(self, texts, role="document"):
        self.calls.append(list(texts))
        return super().encode_text(texts, role)


def _records(n=23, seed=0):
    rng = np.random.default_rng(seed)
    return [Record(id=f"t{i:02d}", text="w" * int(rng.integers(1, 60)) + f" {i}") for i in range(n)]


def test_batches_are_length_buckets_and_rows_stay_in_record_order(tmp_path):
    recs = _records()
    spy = SpyEncoder()
    emb = embed_records(spy, recs, "text", cache=None, dataset_key="d", split="s", batch_size=5,
                        progress=False)
    lengths = [len(t) for call in spy.calls for t in call]
    assert lengths == sorted(lengths) and lengths != [len(r.text) for r in recs]
    assert [len(c) for c in spy.calls] == [5, 5, 5, 5, 3]
    assert emb.ids == [r.id for r in recs]
    one_by_one = np.concatenate([FakeEncoder().encode_text([r.text]).numpy() for r in recs])
    np.testing.assert_allclose(emb.vectors, one_by_one, rtol=1e-5, atol=1e-5)
    # through the cache, in parts: every part is stored in record order and read back so
    cached = embed_records(FakeEncoder(), recs, "text", cache=EmbeddingCache(tmp_path),
                           dataset_key="d", split="s", batch_size=4, part_size=7, progress=False)
    assert cached.ids == emb.ids
    np.testing.assert_array_equal(cached.vectors, emb.vectors)
    again = embed_records(FakeEncoder(), recs, "text", cache=EmbeddingCache(tmp_path),
                          dataset_key="d", split="s", batch_size=4, part_size=7, progress=False)
    np.testing.assert_array_equal(again.vectors, emb.vectors)
