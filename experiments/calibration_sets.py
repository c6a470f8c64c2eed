"""Build the paper's calibration pools (``make calibration-sets``): the pairs files that
``calibration=gr_paper`` / ``gr_paper_oven`` read from ``<data dir>/calibration/``.

    python -m experiments.calibration_sets                       # from the hub caches (pinned)
    python -m experiments.calibration_sets --mbeir DIR --mbeir-images DIR --wit DIR   # local copies

The paper (appendix; docs/ notes §2) fits GR-CLIP's means on the TRAINING splits of several
datasets, never on test data: the query mean on MSCOCO, Google WIT, NFCorpus and VisualNews
queries; the document text and image means on MSCOCO, OVEN, Google WIT and VisualNews
documents; OVEN's own query mean on 2,000 OVEN training queries. Sources, pinned:

* MSCOCO, VisualNews and OVEN training splits: M-BEIR (:data:`MBEIR`), whose
  ``query/train/mbeir_<dataset>_train.jsonl`` holds the training queries and
  ``cand_pool/global/mbeir_union_train_cand_pool.jsonl`` their positive candidates. A query
  text of a text→image task (MSCOCO, VisualNews captions) goes to the query pool. A document
  is a text DOCUMENT of the candidate pool (the positive of an image→text query) with the image
  it describes, so the document-text pool is drawn from documents, not from the query
  population, and shares no text with the sampled queries; OVEN's documents are an entity's
  own text and image. The paper names only the datasets ("document texts" of their training
  splits): MixBench's MSCOCO and VisualNews document texts are GPT-4o paragraphs with no
  training-split counterpart, so which training texts count as documents is our choice
  (docs/paper.md §2). OVEN queries (question + image) make OVEN's query pool. Images are M-BEIR's ``mbeir_images.tar.gz.part-*``,
  extracted (``--mbeir-images``; ``img_path`` is relative to it).
* Google WIT training split: ``wikimedia/wit_base`` (:data:`WIT`), English entries: query =
  page title + ", " + reference description (MixBench's WIT queries); document = the page
  description + the image (written to ``calibration/images/google_wit/``).
* NFCorpus training queries: read by ``gr_paper`` itself from ``<data dir>/beir/nfcorpus``
  (BEIR layout, ``qrels/train.tsv``); checked here.

Each pool is a seeded sample of ``--n`` items (2,500 per source, OVEN queries 2,000: the paper's
≈10k per role over four sources). Without hub access the hub path fails at once, naming the
files to pre-download. ``calibration/MANIFEST.json`` records sources, revisions, counts and
seeds; it is written last, so its presence means the pools are complete.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixsearch.data.benchmark import DataError
from mixsearch.data.io import read_jsonl
from mixsearch.data.mbeir import MBEIR_REPO, MBEIR_REVISION
from mixsearch.tracking import atomic_write_text, write_json


@dataclass(frozen=True)
class HubSource:
    """A pinned hub dataset: repo, revision and the files a build reads."""

    repo: str
    revision: str
    files: tuple[str, ...]


#: M-BEIR (UniIR, MIT license); train queries and the union training pool at one revision.
MBEIR = HubSource(
    MBEIR_REPO, MBEIR_REVISION,  # the revision dataset=mbeir reads (mixsearch/data/mbeir.py)
    ("query/train/mbeir_mscoco_train.jsonl", "query/train/mbeir_visualnews_train.jsonl",
     "query/train/mbeir_oven_train.jsonl", "cand_pool/global/mbeir_union_train_cand_pool.jsonl"))
MBEIR_IMAGES = "mbeir_images.tar.gz.part-0[0-3] (about 170 GB; cat the parts, extract)"
#: Wikipedia-based Image Text (WIT) base set; the first shards give far more than 2,500 English rows.
WIT = HubSource("wikimedia/wit_base", "c73b61df5d052752895099695914a7e2ac16b6c2",
                tuple(f"data/train-{i:05d}-of-00330.parquet" for i in range(2)))
#: Output files (names gr_paper*.yaml read) and their default sizes.
N_DEFAULT, N_OVEN_QUERIES = 2500, 2000


def _snapshot(source: HubSource, local: Path | None, hf_cache: str | None) -> Path:
    """The folder holding ``source.files``: ``local`` when given, else the hub cache.

    Raises:
        DataError: files missing (locally, or in the cache without hub access), naming each
            file and how to pre-download it.
    """
    if local is not None:
        missing = [f for f in source.files if not (local / f).is_file()]
        if missing:
            raise DataError(f"{local}: not a copy of {source.repo}; missing {', '.join(missing)}")
        return local
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    from huggingface_hub.utils import HfHubHTTPError

    try:
        return Path(snapshot_download(source.repo, repo_type="dataset", revision=source.revision,
                                      allow_patterns=list(source.files), cache_dir=hf_cache))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        include = " ".join(f"--include {f}" for f in source.files)
        raise DataError(
            f"{source.repo}@{source.revision[:7]} is not in the hub cache and the hub is not "
            f"reachable ({type(e).__name__}). Pre-download on a machine with hub access:\n"
            f"  huggingface-cli download --repo-type dataset {source.repo} --revision "
            f"{source.revision} {include}\n  or pass a local copy of those files") from e


def _sample(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    if len(rows) <= n:
        return rows
    return random.Random(seed).sample(rows, n)


def _mbeir_image(path: str | None, root: Path, where: str) -> str | None:
    if not path:
        return None
    full = root / path
    if not full.is_file():
        raise DataError(f"{where}: image {path} not found under {root} (extract {MBEIR_IMAGES})")
    return str(full.resolve())


def mbeir_pools(
    root: Path, images: Path, dataset: str, *, n: int, n_queries: int, seed: int,
    pool: dict[str, dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    """Query and document pools of one M-BEIR dataset's training split.

    Args:
        root: the M-BEIR folder (``query/train/...``).
        images: the extracted M-BEIR image root.
        dataset: ``mscoco``, ``visualnews`` or ``oven``.
        n: documents (and text queries) to sample.
        n_queries: OVEN image+text queries to sample.
        seed: sampling seed.
        pool: the union training pool, ``did -> record``.

    Returns:
        ``{"queries": [...], "docs": [...]}`` rows ``{id, text, image}``; ``queries`` holds
        text-only queries (MSCOCO, VisualNews) or image+text ones (OVEN).

    Raises:
        DataError: a positive candidate missing from the pool or an image missing on disk
            (names the query), or no usable rows.
    """
    queries, docs = [], []
    path = root / f"query/train/mbeir_{dataset}_train.jsonl"
    for where, row in read_jsonl(path):
        qid, text = str(row.get("qid")), row.get("query_txt") or None
        image = row.get("query_img_path") or None
        if dataset == "oven" and text and image:
            queries.append({"id": qid, "text": text, "image": image, "_where": where})
        elif dataset != "oven" and text and not image:
            queries.append({"id": qid, "text": text, "image": None, "_where": where})
        for did in row.get("pos_cand_list") or []:
            cand = pool.get(str(did))
            if cand is None:
                raise DataError(f"{where}: positive candidate {did!r} of query {qid!r} is not in "
                                "mbeir_union_train_cand_pool.jsonl")
            if dataset == "oven":  # the entity's own text and image, never the query photo
                doc_text, doc_image = cand.get("txt"), cand.get("img_path")
            else:  # a candidate-pool text document with the image it describes (image->text
                # queries); a text->image query's own caption is a query, never a document
                doc_text, doc_image = cand.get("txt"), (image if cand.get("txt") else None)
            if doc_text and doc_image:  # a document with one text and one image
                docs.append({"id": f"{qid}/{did}", "text": doc_text, "image": doc_image, "_where": where})
            break
    if not docs:
        raise DataError(f"{path}: no training query with a text+image document")
    picked = {"queries": _sample(queries, n_queries if dataset == "oven" else n, seed)}
    # the two pools never share a text (MSCOCO's captions serve as queries and as documents)
    asked = {q["text"] for q in picked["queries"]}
    picked["docs"] = _sample([d for d in docs if d["text"] not in asked], n, seed)
    for rows in picked.values():  # only the sampled images must exist: never all of M-BEIR
        for r in rows:
            r["image"] = _mbeir_image(r["image"], images, r.pop("_where"))
    return picked


def read_pool(path: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The records of M-BEIR's union training pool whose ``did`` is in ``wanted`` (streamed)."""
    return {str(row["did"]): row for _, row in read_jsonl(path) if str(row.get("did")) in wanted}


def _positives(root: Path, datasets: tuple[str, ...]) -> set[str]:
    return {str(d) for ds in datasets
            for _, row in read_jsonl(root / f"query/train/mbeir_{ds}_train.jsonl")
            for d in (row.get("pos_cand_list") or [])[:1]}


def _wit_rows(folder: Path, files: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any], bytes]]:
    """``(where, English wit_features entry, image bytes)`` of WIT parquet shards."""
    import pyarrow.parquet as pq

    for name in files:
        table = pq.read_table(folder / name, columns=["image", "wit_features"])
        for i, (image, features) in enumerate(zip(table.column("image").to_pylist(),
                                                  table.column("wit_features").to_pylist(), strict=True)):
            if isinstance(features, dict):  # datasets' Sequence(dict) layout: dict of lists
                features = [dict(zip(features, v, strict=True)) for v in zip(*features.values(), strict=True)]
            entry = next((f for f in features or [] if f.get("language") == "en"), None)
            data = (image or {}).get("bytes")
            if entry and data:
                yield f"{folder / name}:row {i}", entry, data


def wit_pools(folder: Path, out: Path, *, n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Query and document pools from WIT shards; the sampled images are written as files.

    Raises:
        DataError: no English entry with a title, reference description, page description
            and image.
    """
    queries, docs = [], []
    for where, f, data in _wit_rows(folder, WIT.files):
        title, ref, page = f.get("page_title"), f.get("caption_reference_description"), f.get("context_page_description")
        if title and ref:
            queries.append({"id": f"wit{len(queries)}", "text": f"{title}, {ref}", "image": None})
        if page:
            docs.append({"id": f"wit{len(docs)}", "text": page, "image": data, "_where": where})
    if not queries or not docs:
        raise DataError(f"{folder}: no English WIT entries with title, reference and page descriptions")
    picked = {"queries": _sample(queries, n, seed), "docs": _sample(docs, n, seed)}
    image_dir = out / "images" / "google_wit"
    image_dir.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for r in picked["docs"]:
        path = image_dir / f"{r['id']}.png"
        try:
            Image.open(io.BytesIO(r.pop("image"))).convert("RGB").save(path)
        except OSError as e:
            raise DataError(f"{r.pop('_where')}: image does not decode: {e}") from e
        r.pop("_where", None)
        r["image"] = str(path.resolve())
    return picked


def write_pairs(path: Path, rows: list[dict[str, Any]]) -> None:
    """A pairs file (``mixsearch.data.pairs``): JSON lines ``{id, text, image}``."""
    atomic_write_text(path, "".join(json.dumps({k: r[k] for k in ("id", "text", "image")}) + "\n"
                                    for r in rows))


def build(out: Path, *, mbeir: Path | None, mbeir_images: Path | None, wit: Path | None,
          data_dir: Path, hf_cache: str | None = None, n: int = N_DEFAULT,
          n_oven_queries: int = N_OVEN_QUERIES, seed: int = 0) -> dict[str, Any]:
    """Write every pool of ``gr_paper`` / ``gr_paper_oven`` into ``out`` and the manifest.

    Returns:
        The manifest (files and row counts, sources, revisions, seed).

    Raises:
        DataError: a source is missing or broken (names it and how to get it).
    """
    (out / "MANIFEST.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    nfcorpus = data_dir / "beir" / "nfcorpus" / "qrels" / "train.tsv"
    if not nfcorpus.is_file():
        raise DataError(f"{nfcorpus}: NFCorpus training queries are missing (BEIR nfcorpus.zip, "
                        f"extracted into {nfcorpus.parents[1]})")
    if mbeir_images is None:
        raise DataError(f"--mbeir-images: the extracted M-BEIR images are needed ({MBEIR_IMAGES})")
    mbeir_root = _snapshot(MBEIR, mbeir, hf_cache)
    wit_root = _snapshot(WIT, wit, hf_cache)
    datasets = ("mscoco", "visualnews", "oven")
    pool = read_pool(mbeir_root / MBEIR.files[-1], _positives(mbeir_root, datasets))
    files: dict[str, list[dict[str, Any]]] = {}
    for ds in datasets:
        got = mbeir_pools(mbeir_root, mbeir_images, ds, n=n, n_queries=n_oven_queries, seed=seed, pool=pool)
        files[f"{ds}_train_queries.jsonl" if ds == "oven" else f"{ds}_train.jsonl"] = got["queries"]
        files[f"{ds}_train_docs.jsonl"] = got["docs"]
    got = wit_pools(wit_root, out, n=n, seed=seed)
    files["google_wit_train.jsonl"], files["google_wit_train_docs.jsonl"] = got["queries"], got["docs"]
    for name, rows in files.items():
        write_pairs(out / name, rows)
    manifest = {
        "files": {name: len(rows) for name, rows in sorted(files.items())},
        "sources": {"mbeir": {"repo": MBEIR.repo, "revision": MBEIR.revision, "images": str(mbeir_images)},
                    "google_wit": {"repo": WIT.repo, "revision": WIT.revision, "files": list(WIT.files)},
                    "nfcorpus": str(nfcorpus.parents[1])},
        "n": n, "n_oven_queries": n_oven_queries, "seed": seed,
    }
    write_json(out / "MANIFEST.json", manifest)  # last: its presence means complete
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status (2 when a source is missing)."""
    parser = argparse.ArgumentParser(prog="python -m experiments.calibration_sets",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="mixsearch data dir (default: data; pools go to <data dir>/calibration)")
    parser.add_argument("--mbeir", type=Path, help="local copy of M-BEIR's query/ and cand_pool/ files")
    parser.add_argument("--mbeir-images", type=Path, help="extracted M-BEIR image root")
    parser.add_argument("--wit", type=Path, help="local copy of wit_base's data/ shards")
    parser.add_argument("--hf-cache", help="hub cache dir (default: HF_HOME)")
    parser.add_argument("--n", type=int, default=N_DEFAULT, help="items per source and role")
    parser.add_argument("--n-oven-queries", type=int, default=N_OVEN_QUERIES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.data_dir / "calibration"
    try:
        manifest = build(out, mbeir=args.mbeir, mbeir_images=args.mbeir_images, wit=args.wit,
                         data_dir=args.data_dir, hf_cache=args.hf_cache, n=args.n,
                         n_oven_queries=args.n_oven_queries, seed=args.seed)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, count in manifest["files"].items():
        print(f"{out / name}: {count} rows")
    print(f"{out / 'MANIFEST.json'}: the paper's calibration pools are complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
