"""The toy CLIP: training from scratch, the shipped checkpoint, and the phenomena it must show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mixsearch.data.toy import load_toy
from mixsearch.encoders.base import EncoderError
from mixsearch.encoders.toy import ToyEncoder
from mixsearch.toymodel import CHECKPOINT_DIR, CHECKSUMS
from mixsearch.toymodel.train import WEIGHTS, TrainConfig, train

TINY = TrainConfig(
    n_train=24, batch_size=24, steps=12, warmup=2, lr=3e-3, image_layers=1, text_layers=1
)
# Benchmark items depend only on the seed and the subset sizes, not n_train: skip the train split.
BENCH = {"n_train": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toydata") / "toy"


def test_training_decreases_the_loss_and_is_deterministic(data: Path, tmp_path: Path) -> None:
    a = train(TINY, tmp_path / "a", data, progress=False)
    train(TINY, tmp_path / "b", data, progress=False)
    assert a["final_loss"] < a["initial_loss"] - 0.3
    wa, wb = load_file(tmp_path / "a" / WEIGHTS), load_file(tmp_path / "b" / WEIGHTS)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    train(TrainConfig(**{**TINY.__dict__, "seed": 1}), tmp_path / "c", data, progress=False)
    wc = load_file(tmp_path / "c" / WEIGHTS)
    assert not torch.equal(wa["text_projection"], wc["text_projection"])
    recorded = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert recorded["config"]["seed"] == 0 and recorded["final_loss"] == a["final_loss"]
    enc = ToyEncoder(tmp_path / "a", device="cpu")  # what train writes loads as local-dir
    assert enc.encode_text(["a small red circle on a blue background"]).shape == (1, TINY.embed_dim)


def test_shipped_checkpoint_is_small_and_verified(tmp_path: Path) -> None:
    size = sum(p.stat().st_size for p in CHECKPOINT_DIR.iterdir())
    assert size < 5 * 2**20
    listed = {line.split("  ")[1] for line in (CHECKPOINT_DIR / CHECKSUMS).read_text().splitlines()}
    assert listed == {"open_clip_config.json", WEIGHTS, "train_config.json"}
    bad = tmp_path / "toy_clip"
    shutil.copytree(CHECKPOINT_DIR, bad)
    weights = bytearray((bad / WEIGHTS).read_bytes())
    weights[-1] ^= 0xFF
    (bad / WEIGHTS).write_bytes(bytes(weights))
    with pytest.raises(EncoderError, match=f"checksum mismatch for {bad / WEIGHTS}"):
        ToyEncoder(bad, device="cpu")
    (bad / CHECKSUMS).unlink()
    with pytest.raises(EncoderError, match=f"checksum file missing: {bad / CHECKSUMS}"):
        ToyEncoder(bad, device="cpu")


def _unit(x: torch.Tensor) -> np.ndarray:
    x = x.numpy().astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_shipped_checkpoint_retrieves_and_has_a_modality_gap(data: Path) -> None:
    enc = ToyEncoder(device="cpu")
    bench = load_toy(data, "ToyCOCO", **BENCH)
    transform = enc.image_transform()

    def images(records: list) -> np.ndarray:
        return _unit(enc.encode_image(torch.stack([transform(r.image.load()) for r in records])))

    def texts(records: list) -> np.ndarray:
        return _unit(enc.encode_text([r.text for r in records]))

    queries, doc_text, doc_image = texts(bench.queries), texts(bench.corpus), images(bench.corpus)
    cal_text, cal_image = texts(bench.calibration["corpus"]), images(bench.calibration["corpus"])
    cal_query = texts(bench.calibration["queries"])

    position = {r.id: i for i, r in enumerate(bench.corpus)}
    gold = np.array([position[next(iter(bench.qrels[q.id]))] for q in bench.queries])
    recall1 = np.mean((queries @ doc_image.T).argmax(1) == gold)
    assert recall1 >= 10 / len(bench.corpus)

    def gap(t: np.ndarray, i: np.ndarray) -> float:
        return float(np.linalg.norm(t.mean(0) - i.mean(0)))

    def gr(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        y = x - mean
        return y / np.linalg.norm(y, axis=1, keepdims=True)

    t_mean, i_mean = cal_text.mean(0), cal_image.mean(0)
    assert gap(doc_text, doc_image) >= 0.3
    assert gap(gr(doc_text, t_mean), gr(doc_image, i_mean)) <= 0.05
    # GR keeps text->image ranking essentially unchanged (it only re-centres)
    recall1_gr = np.mean(
        (gr(queries, cal_query.mean(0)) @ gr(doc_image, i_mean).T).argmax(1) == gold
    )
    assert abs(recall1_gr - recall1) < 0.05
