"""`python -m mixsearch index` / `search` on a toy folder: cache reuse per file, unreadable
files, calibration against a hand computation, and refusal of another model's index."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mixsearch.__main__ import main
from mixsearch.toymodel import CHECKPOINT_DIR
from mixsearch.toymodel.folder import write_toy_folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("collection")
    folder = write_toy_folder(tmp / "docs", images=6, texts=6)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    pair_img = folder / "pairs" / "p.png"
    pair_img.parent.mkdir()
    shutil.copy(folder / "images" / "scene_003.png", pair_img)
    (folder / "pairs" / "pairs.jsonl").write_text(json.dumps({"image": "p.png", "text": "a picture"}) + "\n")
    return {"folder": folder, "index": tmp / "idx", "cache": tmp / "cache", "tmp": tmp}


def index(b: dict[str, Path], *extra: str) -> int:
    return main(["index", str(b["folder"]), "--out", str(b["index"]), "--cache", str(b["cache"]),
                 "--set", "device=cpu", *extra])


def test_index_then_reindex_encodes_only_the_new_file(built, capsys) -> None:
    assert index(built) == 0
    out, err = capsys.readouterr()
    # found: 7 images (broken.jpg among them), 6 texts, 1 pair; embedded parts: 6 + 1 images
    # (broken.jpg fails to decode and is skipped) and 6 + 1 texts
    assert "7 images, 6 texts, 1 image+text pairs" in out
    assert "encoded 14 items, 0 taken from the cache" in out
    assert "broken.jpg" in err and "cannot decode" in err
    meta = json.loads((built["index"] / "index.json").read_text())
    assert [s["path"] for s in meta["skipped"]] == ["broken.jpg"]
    assert len(meta["items"]) == 13 and meta["calibration"]["source"] == "transductive"
    (built["folder"] / "texts" / "new.md").write_text("A large red circle on a white background.")
    assert index(built) == 0
    assert "encoded 1 items, 14 taken from the cache" in capsys.readouterr().out
    assert index(built) == 0
    assert "encoded 0 items, 15 taken from the cache" in capsys.readouterr().out


def test_search_prints_ranked_rows_of_both_modalities(built, capsys) -> None:
    if not (built["index"] / "index.json").exists():
        index(built)
    capsys.readouterr()
    assert main(["search", str(built["index"]), "a red circle", "-k", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln.split() for ln in lines[2:]]
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    scores = [float(r[1]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r[2] for r in rows} >= {"text", "image"}


def test_gr_scores_equal_a_hand_computation(built) -> None:
    """normalise -> subtract the collection's role means -> fuse (alpha) -> normalise -> dot."""
    from mixsearch.collection import embed_query, read_index, search
    from mixsearch.config import build

    if not (built["index"] / "index.json").exists():
        index(built)
    ix = read_index(built["index"])
    enc = build(ix.meta["model"]["spec"], "model")
    qt, qi = embed_query(enc, "a red circle", None)
    got = dict(search(ix, qt, qi, k=100, calibration="gr"))
    has_t = np.array([it["text"] is not None for it in ix.items])
    has_i = np.array([it["image"] is not None for it in ix.items])

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    t, i = unit(ix.text[has_t]), unit(ix.image[has_i])
    mt, mi = t.mean(0), i.mean(0)  # transductive: the collection's own means
    dt, di = np.zeros_like(ix.text), np.zeros_like(ix.image)
    dt[has_t], di[has_i] = t - mt, i - mi
    both = (has_t & has_i)[:, None]
    docs = unit(np.where(both, 0.5 * dt + 0.5 * di, dt + di))
    q = unit(unit(qt[0]) - mt)  # the query-text mean is the documents' text mean
    want = docs @ q
    assert len(got) == len(ix.items)
    for row, score in got.items():
        assert score == pytest.approx(want[row], abs=1e-5)


def test_query_with_another_model_is_refused(built, tmp_path: Path, capsys) -> None:
    if not (built["index"] / "index.json").exists():
        index(built)
    other = tmp_path / "toy_clip_v2"
    shutil.copytree(CHECKPOINT_DIR, other)
    cfg = other / "open_clip_config.json"
    cfg.write_text(cfg.read_text() + "\n")  # same weights, another file: another fingerprint
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                   for p in sorted(other.iterdir()) if p.name != "SHA256SUMS")
    (other / "SHA256SUMS").write_text(sums)
    capsys.readouterr()
    code = main(["search", str(built["index"]), "a red circle", "--model", "toy",
                 "--set", f"model.checkpoint={other}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "toy:toy_clip (fingerprint" in err and "toy:toy_clip_v2 (fingerprint" in err


def test_search_of_a_missing_index_names_it(tmp_path: Path, capsys) -> None:
    assert main(["search", str(tmp_path / "nope"), "x"]) == 2
    assert "no index.json" in capsys.readouterr().err


def test_shared_means_from_files_and_a_wrong_dimension(built, tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    good, bad = tmp_path / "means", tmp_path / "bad"
    for folder, dim in ((good, 64), (bad, 32)):  # the toy CLIP embeds in 64 dimensions
        folder.mkdir()
        for role in ("query_text", "doc_text", "doc_image"):
            np.save(folder / f"{role}.npy", rng.normal(size=dim).astype(np.float32))
    out = str(tmp_path / "idx")
    args = ["index", str(built["folder"]), "--out", out, "--cache", str(built["cache"])]
    assert main([*args, "--means", str(good)]) == 0
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["calibration"]["source"] == "files"
    capsys.readouterr()
    assert main(["search", out, "a red circle", "-k", "3"]) == 0
    assert "calibration=gr" in capsys.readouterr().out
    assert main([*args, "--means", str(bad)]) == 2
    assert f"--means {bad}: query_text has dim 32" in capsys.readouterr().err
