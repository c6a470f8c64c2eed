"""A tiny synthetic MixBench replica (docs/formats.md §9) for the data loader tests.

Same subset names, file names, column names, dtypes and null conventions as the real releases,
at a few records per subset. Images are tiny solid-colour files, so a test can check that the
right image reached the right record by decoding it and comparing the colour.

Layouts: ``"mixbench25"`` (jsonl + image files + ``<subset>/qrels/qrels.tsv``) and ``"parquet"``
(MixBench2025/2026 style ``.parquet`` files with embedded image bytes, written through
``datasets`` like the real upload; qrels in ``<root>/qrels/<subset>.tsv`` as a user would add
them). Both carry a small calibration split for MSCOCO whose images live under
``<root>/calibration_images/`` (found by the ``root`` resolution rule).
"""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from pathlib import Path

from PIL import Image

_WORDS = (
    "a man red helmet small moped dirt road church tower river bridge old city green field "
    "dog running beach sunset market people street night light building stone museum park"
).split()
_QUESTIONS = ("What is this building?", "What is the name of this place?")
# Mixed-corpus modality of each doc, as in the shipped files (docs/formats.md §9 counts).
_MIXED = {
    "MSCOCO": ["image+text", "image", "text", "text", "image", "image+text"],
    "Google_WIT": ["text", "image", "image+text", "image+text", "image", "text",
                   "image+text", "text", "image", "image+text", "image+text"],
    "VisualNews": ["image", "image+text", "text"],
    "OVEN": ["text", "image", "text", "image+text", "image+text", "image"],
}  # fmt: skip
_N_QUERIES = {"MSCOCO": 6, "Google_WIT": 4, "VisualNews": 3, "OVEN": 6}
# How an absent field is written, cycling per subset: JSON null, "" and a missing key.
_ABSENT = ("null", "empty", "missing")
# Image path forms in the jsonl files and the resolution rule each one hits.
_PATH_FORMS = (("images/{f}", "subset_dir"), ("{f}", "subset_dir/images/basename"))


def _text(rng: random.Random, lo: int, hi: int) -> str:
    target = rng.randint(lo, hi)
    words: list[str] = []
    while len(" ".join(words)) < target:
        words.append(rng.choice(_WORDS))
    return (" ".join(words)[: hi - 1].rstrip() + ".").capitalize()


def _encode(colour: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(
        buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})
    )
    return buf.getvalue()


def _image(
    rng: random.Random, name: str, size: tuple[int, int] | None = None, fmt: str = "JPEG"
) -> dict:
    colour = tuple(rng.randrange(20, 236) for _ in range(3))
    size = size or rng.choice([(8, 8), (16, 16)])
    ext = ".png" if fmt == "PNG" else ".jpg"
    return {"file": name + ext, "colour": colour, "size": size, "bytes": _encode(colour, size, fmt)}


def _ids(n: int, identity: bool, start: int, step: int) -> list[str]:
    return [str(i) for i in range(n)] if identity else [str(start + step * i) for i in range(n)]


def _subset(name: str, identity: bool) -> dict:
    """Records of one subset as plain dicts (text None = absent, image dict or None)."""
    rng = random.Random(f"replica:{name}")
    n_q, modes = _N_QUERIES[name], _MIXED[name]
    n_d = len(modes)
    doc_ids = _ids(n_d, identity, 1000, 7)
    lo, hi = (100, 600) if name == "MSCOCO" else (20, 300)
    docs = []
    for j, cid in enumerate(doc_ids):
        size, fmt = {
            ("VisualNews", 1): (None, "PNG"),
            ("Google_WIT", 10): ((2000, 50), "JPEG"),
        }.get((name, j), (None, "JPEG"))
        docs.append(
            {"id": cid, "text": _text(rng, lo, hi), "image": _image(rng, f"d_{cid}", size, fmt)}
        )
    if name == "OVEN":  # docs 3 and 4: identical content under different ids
        docs[4] = {**docs[3], "id": doc_ids[4]}
    mixed = [
        {
            "id": d["id"],
            "text": None if m == "image" else d["text"],
            "image": None if m == "text" else d["image"],
        }
        for d, m in zip(docs, modes, strict=True)
    ]
    query_ids = _ids(n_q, identity, 3, 4)
    queries = []
    for k, qid in enumerate(query_ids):
        if name == "OVEN":
            queries.append({"id": qid, "text": _QUESTIONS[k % 2], "image": _image(rng, f"q_{qid}")})
        else:
            # MSCOCO captions may end with a space; the loader must keep texts verbatim
            queries.append(
                {"id": qid, "text": _text(rng, 10, 80) + (" " if k == 0 else ""), "image": None}
            )
    if identity:
        targets = list(range(n_q))
    else:
        targets = list(range(n_d))
        while any(t == k for k, t in enumerate(targets[:n_q])):
            rng.shuffle(targets)
    qrels = {qid: {doc_ids[targets[k]]: 1} for k, qid in enumerate(query_ids)}
    return {"queries": queries, "corpus": docs, "mixed_corpus": mixed, "qrels": qrels}


def _calibration() -> dict:
    rng = random.Random("replica:calibration")
    return {
        "queries": [{"id": f"cq{i}", "text": _text(rng, 10, 60), "image": None} for i in range(2)],
        "corpus": [
            {"id": f"cd{i}", "text": _text(rng, 50, 200), "image": _image(rng, f"c_{i}")}
            for i in range(3)
        ],
    }


def _jsonl_row(rec: dict, id_key: str, counter: Counter, image_path: str | None) -> dict:
    row = {id_key: rec["id"]}
    for key, value in (("text", rec["text"]), ("image", image_path)):
        if value is not None:
            row[key] = value
            continue
        form = _ABSENT[counter[key] % len(_ABSENT)]
        counter[key] += 1
        if form != "missing":
            row[key] = None if form == "null" else ""
    return row


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _write_qrels(path: Path, qrels: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["query_id\tcorpus_id\tscore"] + [
        f"{q}\t{c}\t{s}" for q, j in qrels.items() for c, s in j.items()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_parquet(path: Path, records: list[dict], int_ids: bool) -> None:
    from datasets import Dataset, Features, Value
    from datasets import Image as HFImage

    features = Features(
        {"id": Value("int64" if int_ids else "string"), "text": Value("string"), "image": HFImage()}
    )
    data = {
        "id": [int(r["id"]) if int_ids else r["id"] for r in records],
        "text": [r["text"] for r in records],
        "image": [
            {"bytes": r["image"]["bytes"], "path": r["image"]["file"]} if r["image"] else None
            for r in records
        ],
    }
    Dataset.from_dict(data, features=features).to_parquet(str(path))


def write_replica(
    root: Path, layout: str = "mixbench25", identity_qrels: bool = True, int_ids: bool = False
) -> dict:
    """Write the replica under ``root`` and return what was written.

    Args:
        root: output folder (created).
        layout: ``"mixbench25"`` or ``"parquet"``.
        identity_qrels: query k -> doc k with ids ``"0".."n-1"``; False gives non-contiguous
            ids (queries 3, 7, 11, ...; docs 1000, 1007, ...) and a shuffled pairing.
        int_ids: parquet only: write ``id`` as int64 (the loader must cast it to str).

    Returns:
        ``{"subsets": {name: {"queries", "corpus", "mixed_corpus": [record dicts], "qrels",
        "mixed_modalities": Counter, "image_resolution": Counter}}, "calibration": {...}}``.
        A record dict has ``id``, ``text`` (None = absent) and ``image`` (None or a dict with
        ``file``, ``colour``, ``size``, ``bytes``).
    """
    if layout not in ("mixbench25", "parquet"):
        raise ValueError(f"unknown replica layout {layout!r}")
    root = Path(root)
    out: dict = {"subsets": {}, "calibration": _calibration()}
    for name in _MIXED:
        sub = _subset(name, identity_qrels)
        sub["mixed_modalities"] = Counter(_MIXED[name])
        sub["image_resolution"] = Counter()
        sdir = root / name
        sdir.mkdir(parents=True, exist_ok=True)
        if layout == "parquet":
            for split in ("queries", "corpus", "mixed_corpus"):
                _write_parquet(sdir / f"{split}.parquet", sub[split], int_ids)
            _write_qrels(root / "qrels" / f"{name}.tsv", sub["qrels"])
        else:
            (sdir / "images").mkdir(exist_ok=True)
            counter: Counter = Counter()
            for split, id_key in (
                ("queries", "query_id"),
                ("corpus", "corpus_id"),
                ("mixed_corpus", "corpus_id"),
            ):
                rows = []
                for i, rec in enumerate(sub[split]):
                    path = None
                    if rec["image"] is not None:
                        form, rule = _PATH_FORMS[i % len(_PATH_FORMS)]
                        (sdir / "images" / rec["image"]["file"]).write_bytes(rec["image"]["bytes"])
                        path = form.format(f=rec["image"]["file"])
                        sub["image_resolution"][rule] += 1
                    rows.append(_jsonl_row(rec, id_key, counter, path))
                _write_jsonl(sdir / f"{split}.jsonl", rows)
            _write_qrels(sdir / "qrels" / "qrels.tsv", sub["qrels"])
        out["subsets"][name] = sub
    cal_dir = root / "calibration_images"
    cal_dir.mkdir(exist_ok=True)
    cal = out["calibration"]
    for rec in cal["corpus"]:
        (cal_dir / rec["image"]["file"]).write_bytes(rec["image"]["bytes"])
    for split, id_key in (("queries", "query_id"), ("corpus", "corpus_id")):
        rows = [
            _jsonl_row(
                r,
                id_key,
                Counter(),
                f"calibration_images/{r['image']['file']}" if r["image"] else None,
            )
            for r in cal[split]
        ]
        _write_jsonl(root / "MSCOCO" / "calibration" / f"{split}.jsonl", rows)
    out["subsets"]["MSCOCO"]["image_resolution"]["root"] += len(cal["corpus"])
    return out
