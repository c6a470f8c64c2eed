"""Image-caption pairs files as calibration data (the paper's training-set means)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_encoder import FakeEncoder
from PIL import Image

from mixsearch.calibration import fit_means
from mixsearch.data.benchmark import DataError
from mixsearch.data.pairs import load_pairs
from mixsearch.embed import EmbeddingCache, embed_records
from mixsearch.pipeline import calibration_pools


def _write_pairs(folder: Path, n: int, name: str = "train.jsonl") -> Path:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 20 % 256, 50, 200)).save(folder / "img" / f"{i}.png")
        rows.append({"id": i, "text": f"a caption number {i}", "image": f"img/{i}.png"})
    rows.append({"id": "t", "text": "a text-only row", "image": None})
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pairs_round_trip(tmp_path: Path) -> None:
    bench = load_pairs(str(_write_pairs(tmp_path, 4)))
    assert [r.id for r in bench.corpus] == ["0", "1", "2", "3", "t"]
    assert [r.modality for r in bench.corpus] == ["image+text"] * 4 + ["text"]
    assert len(bench.queries) == 5 and all(r.image is None for r in bench.queries)
    assert bench.corpus[2].image.load().getpixel((0, 0)) == (40, 50, 200)


@pytest.mark.parametrize(
    "row,message",
    [
        ({"id": "0", "text": "x"}, "duplicate id '0'"),
        ({"id": "9", "text": None, "image": None}, "record '9' has neither text nor image"),
        ({"id": "9", "text": "x", "image": "img/missing.png"}, "missing.png"),
    ],
)
def test_pairs_bad_rows_name_the_line_and_id(tmp_path: Path, row: dict, message: str) -> None:
    path = _write_pairs(tmp_path, 2)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message) as err:
        load_pairs(str(path))
    assert "train.jsonl" in str(err.value)


def test_train_sets_feed_the_means(tmp_path: Path) -> None:
    """calibration.train_sets: each role's pool is the sampled records' embeddings."""
    path = _write_pairs(tmp_path, 6)
    spec = {"_target_": "mixsearch.data.pairs.load_pairs", "path": str(path)}
    cal = {"method": "gr", "source": "train", "train_sets": [
        {"dataset": spec, "split": "queries", "role": "query_text", "n": 3, "seed": 1},
        {"dataset": spec, "split": "corpus", "role": "doc_image", "n": 4, "seed": 1},
        {"dataset": spec, "split": "corpus", "role": "doc_text"},
    ]}
    enc = FakeEncoder()
    bench = load_pairs(str(path))
    pools = calibration_pools(enc, bench, {}, cal, EmbeddingCache(tmp_path / "cache"),
                              {"progress": False})
    assert {k: len(v) for k, v in pools.items()} == {"query_text": 3, "doc_image": 4, "doc_text": 7}
    # the doc_text pool is every text of the file, so its mean is the mean of those embeddings
    texts = embed_records(enc, bench.corpus, "text", cache=None, dataset_key="x", split="s",
                          progress=False)
    expect = texts.vectors / np.linalg.norm(texts.vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(fit_means(pools, "train").get("doc_text"), expect.mean(0), rtol=1e-5)


def test_unknown_role_is_named(tmp_path: Path) -> None:
    spec = {"_target_": "mixsearch.data.pairs.load_pairs", "path": str(_write_pairs(tmp_path, 2))}
    cal = {"method": "gr", "source": "train",
           "train_sets": [{"dataset": spec, "split": "queries", "role": "doc_txt"}]}
    with pytest.raises(ValueError, match=r"calibration.train_sets\[0\].role"):
        calibration_pools(FakeEncoder(), load_pairs(spec["path"]), {}, cal, None, {})
