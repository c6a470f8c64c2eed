"""Precomputed embeddings: seed ``.pt``, ``.npz`` and ``.npy`` round trips and bad files."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import write_seed_pt

from mixsearch.encoders import EncoderError, build_encoder
from mixsearch.encoders.precomputed import PrecomputedEncoder, load_precomputed

D = 6


def _rows(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def seed_files(tmp_path: Path) -> dict[str, object]:
    qids = ["q1", "q2", "q3"]
    cids = [f"d{i}" for i in range(5)]
    q_text, c_text, c_image, c_mixed = _rows(3, 0), _rows(5, 1), _rows(5, 2), _rows(5, 3)
    write_seed_pt(tmp_path / "q.pt", "query_id", qids, text=q_text)
    write_seed_pt(
        tmp_path / "c.pt",
        "corpus_id",
        cids,
        text=c_text,
        image=c_image,
        mixed=c_mixed,
        missing_image=["d1", "d3"],
    )
    return {
        "dir": tmp_path,
        "qids": qids,
        "cids": cids,
        "q_text": q_text,
        "c_text": c_text,
        "c_image": c_image,
        "c_mixed": c_mixed,
    }


def test_seed_pt_round_trip(seed_files: dict) -> None:
    d = seed_files["dir"]
    enc = load_precomputed(str(d / "q.pt"), str(d / "c.pt"))
    assert enc.dim == D
    q = enc.get("queries", "text")
    assert q.ids == seed_files["qids"] and q.vectors.dtype == np.float32
    np.testing.assert_array_equal(q.vectors, seed_files["q_text"].numpy())
    np.testing.assert_array_equal(enc.get("corpus", "text").vectors, seed_files["c_text"].numpy())
    np.testing.assert_array_equal(enc.get("corpus", "mixed").vectors, seed_files["c_mixed"].numpy())
    image = enc.get("corpus", "image")
    assert image.ids == ["d0", "d2", "d4"]  # d1, d3 had image_embedding=None
    np.testing.assert_array_equal(image.vectors, seed_files["c_image"].numpy()[[0, 2, 4]])
    assert enc.describe()["missing"] == {"corpus": {"image": 2}}
    assert enc.describe()["items"]["corpus"] == {"text": 5, "image": 3, "mixed": 5}
    assert enc.has("corpus", "image") and not enc.has("queries", "image")
    with pytest.raises(
        EncoderError, match=re.escape(f"{d / 'q.pt'}: no 'image' embeddings for split 'queries'")
    ):
        enc.get("queries", "image")
    with pytest.raises(
        EncoderError, match=r"no precomputed split 'train'; loaded: \['corpus', 'queries'\]"
    ):
        enc.get("train", "text")


def test_setting1_ids_and_row_shapes(tmp_path: Path) -> None:
    text, image = _rows(2, 4), _rows(2, 5)
    items = [
        {"id": "a", "text_embedding": text[0][None], "img_embedding": image[0]},
        {"id": "b", "text_embedding": text[1][None], "img_embedding": image[1]},
    ]
    torch.save(items, tmp_path / "beir.pt")
    enc = load_precomputed(
        str(tmp_path / "beir.pt"),
        str(tmp_path / "beir.pt"),
        calibration={"coco_train": str(tmp_path / "beir.pt")},
    )
    np.testing.assert_array_equal(enc.get("corpus", "image").vectors, image.numpy())
    np.testing.assert_array_equal(enc.get("coco_train", "text").vectors, text.numpy())


def test_npz_and_npy_round_trip(tmp_path: Path) -> None:
    text, image = _rows(4, 6).numpy(), _rows(2, 7).numpy()
    np.savez(
        tmp_path / "c.npz",
        ids=np.array(["a", "b", "c", "d"]),
        text=text,
        image=image,
        image_ids=np.array(["b", "d"]),
    )
    np.save(tmp_path / "q.text.npy", text[:3])
    (tmp_path / "q.text.ids.txt").write_text("q1\nq2\nq3\n")
    np.save(tmp_path / "cal.mixed.npy", image)
    (tmp_path / "cal.mixed.ids.json").write_text(json.dumps(["x", "y"]))
    enc = build_encoder(
        "precomputed",
        queries=str(tmp_path / "q.text.npy"),
        corpus=str(tmp_path / "c.npz"),
        calibration={"cal": str(tmp_path / "cal.mixed.npy")},
    )
    assert isinstance(enc, PrecomputedEncoder)
    assert enc.get("queries", "text").ids == ["q1", "q2", "q3"]
    np.testing.assert_array_equal(enc.get("queries", "text").vectors, text[:3])
    np.testing.assert_array_equal(enc.get("corpus", "text").vectors, text)
    assert enc.get("corpus", "image").ids == ["b", "d"]
    np.testing.assert_array_equal(enc.get("corpus", "image").take(["d"]), image[[1]])
    assert enc.get("cal", "mixed").ids == ["x", "y"]


def test_cannot_encode_and_fingerprint_tracks_files(seed_files: dict) -> None:
    d = seed_files["dir"]
    enc = load_precomputed(str(d / "q.pt"), str(d / "c.pt"))
    for call in (
        lambda: enc.encode_text(["x"]),
        enc.image_transform,
        lambda: enc.encode_image(torch.zeros(1, 3, 2, 2)),
    ):
        with pytest.raises(EncoderError, match="precomputed embeddings cannot encode new items"):
            call()
    same = load_precomputed(str(d / "q.pt"), str(d / "c.pt"))
    assert same.fingerprint_hash() == enc.fingerprint_hash()
    assert enc.fingerprint()["files"]["corpus"]["path"] == str((d / "c.pt").resolve())
    write_seed_pt(d / "q.pt", "query_id", ["q1", "q2", "q3"], text=_rows(3, 9))
    os.utime(d / "q.pt", ns=(1, 1))
    assert (
        load_precomputed(str(d / "q.pt"), str(d / "c.pt")).fingerprint_hash()
        != enc.fingerprint_hash()
    )


class Payload:
    """An arbitrary class: ``weights_only`` loading must refuse it."""


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x00garbage, not a torch file", "cannot read as a weights-only torch file"),
        ([argparse.Namespace(x=1)], "cannot read as a weights-only torch file"),
        ([Payload()], "cannot read as a weights-only torch file"),
        ({"corpus_id": "d0"}, "expected a non-empty list of dicts, got dict"),
        ([], "expected a non-empty list of dicts"),
        (
            [{"corpus_id": "d0", "text_embedding": torch.ones(3)}] * 3
            + [{"text_embedding": torch.ones(3)}],
            "item 3 lacks 'corpus_id' or 'id'",
        ),
        (["d0"], "item 0 is a str, expected a dict"),
        (
            [
                {"corpus_id": "a", "text_embedding": torch.ones(3)},
                {"corpus_id": "b", "text_embedding": torch.ones(4)},
            ],
            "field 'text' mixes dimensions [3, 4]",
        ),
        (
            [
                {"corpus_id": "a", "text_embedding": torch.ones(3)},
                {"corpus_id": "a", "text_embedding": torch.ones(3)},
            ],
            "duplicate id 'a' in field 'text'",
        ),
        (
            [{"corpus_id": "a", "txt_embedding": torch.ones(3)}],
            "item 0 ('a') has unknown embedding key 'txt_embedding'",
        ),
        (
            [{"corpus_id": "a", "text_embedding": torch.ones(2, 3)}],
            "item 0 ('a') 'text_embedding' has shape (2, 3)",
        ),
        (
            [{"corpus_id": "a", "text_embedding": "oops"}],
            "item 0 ('a') has a non-numeric 'text_embedding'",
        ),
        (
            [{"corpus_id": "a", "text_embedding": torch.tensor([1.0, float("nan")])}],
            "field 'text' has non-finite values for 1 items (first: 'a')",
        ),
    ],
)
def test_bad_pt_files_name_the_file(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "corpus_bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    np.save(tmp_path / "q.text.npy", np.ones((1, 3), np.float32))
    (tmp_path / "q.text.ids.txt").write_text("q\n")
    with pytest.raises(EncoderError) as err:
        load_precomputed(str(tmp_path / "q.text.npy"), str(path))
    assert str(path) in str(err.value) and message in str(err.value)


def test_bad_array_files_name_the_file(tmp_path: Path) -> None:
    def fails(path: Path, message: str) -> None:
        with pytest.raises(EncoderError) as err:
            PrecomputedEncoder({"corpus": path})
        assert str(path) in str(err.value) and message in str(err.value), str(err.value)

    np.savez(tmp_path / "obj.npz", ids=np.array(["a"], dtype=object), text=np.ones((1, 2)))
    fails(tmp_path / "obj.npz", "cannot read as .npz without pickles")
    np.savez(tmp_path / "extra.npz", ids=np.array(["a"]), text=np.ones((1, 2)), txt=np.ones((1, 2)))
    fails(tmp_path / "extra.npz", "unknown: ['txt']")
    np.savez(tmp_path / "rows.npz", ids=np.array(["a", "b"]), text=np.ones((3, 2)))
    fails(tmp_path / "rows.npz", "field 'text' has shape (3, 2), expected (2, dim)")
    np.save(tmp_path / "corpus.npy", np.ones((1, 2)))
    fails(tmp_path / "corpus.npy", "must be named <stem>.<field>.npy")
    np.save(tmp_path / "corpus.image.npy", np.ones((1, 2)))
    fails(
        tmp_path / "corpus.image.npy",
        "no ids file beside it (corpus.image.ids.txt or corpus.image.ids.json)",
    )
    (tmp_path / "c.csv").write_text("a,b\n")
    fails(tmp_path / "c.csv", "unsupported embeddings format '.csv'")
    fails(tmp_path / "absent.pt", "precomputed corpus embeddings file not found")


def test_dimension_mismatch_and_reserved_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "q.npz", ids=np.array(["q"]), text=np.ones((1, 3)))
    np.savez(tmp_path / "c.npz", ids=np.array(["c"]), text=np.ones((1, 4)))
    with pytest.raises(EncoderError, match="disagree on dimension"):
        load_precomputed(str(tmp_path / "q.npz"), str(tmp_path / "c.npz"))
    with pytest.raises(EncoderError, match=r"calibration set name\(s\) \['corpus'\] clash"):
        load_precomputed(
            str(tmp_path / "q.npz"), str(tmp_path / "q.npz"), calibration={"corpus": "x.pt"}
        )
