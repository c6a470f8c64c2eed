"""Small local copies of mteb any-to-any retrieval datasets, in the hub repo layout mteb reads.

The layout is what ``push_to_hub`` writes for mteb's retrieval tasks (and what ``hf download
<repo> --repo-type dataset --local-dir DIR`` gives back): a README.md whose YAML ``configs:``
name the ``corpus``, ``queries`` and ``qrels`` configs, each ``<config>/<split>-00000-of-00001.parquet``
with the HF features (``Image`` columns as ``{bytes, path}`` structs) in the parquet metadata.
Columns are the v2 retrieval schema: ``id`` plus a column per modality (``text``, ``image``),
qrels ``query-id``, ``corpus-id``, ``score``. Content comes from the toy world, so the toy CLIP
retrieves it better than chance.

``python -m mixsearch.data.mteb_fixture DIR --task OVENIT2ITRetrieval|Flickr30kT2IRetrieval``
writes one such copy for trying ``dataset=mteb`` offline.
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

import datasets

from mixsearch.toymodel.world import caption, description, render, sample_scene, sibling

_README = "---\nconfigs:\n{configs}---\n"
_CONFIG = "- config_name: {name}\n  data_files:\n  - split: {split}\n    path: {name}/{split}-*\n"


def _png(scene, rng: random.Random) -> dict:
    buf = io.BytesIO()
    render(scene, rng).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def write_hub_layout(out: Path, tables: dict[str, dict[str, list]], split: str = "test") -> Path:
    """Write ``{config: columns}`` as parquet files plus the README configs; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name, columns in tables.items():
        features = {c: datasets.Image() if c == "image" else
                    datasets.Value("int64") if c == "score" else datasets.Value("string")
                    for c in columns}
        ds = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
        (out / name).mkdir(exist_ok=True)
        ds.to_parquet(str(out / name / f"{split}-00000-of-00001.parquet"))
    configs = "".join(_CONFIG.format(name=n, split=split) for n in tables)
    (out / "README.md").write_text(_README.format(configs=configs))
    return out


def write_it2it(out: Path, n: int = 24, seed: int = 0, absent: int = 0) -> Path:
    """An OVENIT2ITRetrieval-style copy: image+text queries, image+text documents; every fifth
    document is image-only and every seventh text-only (rows keep their own modality). The
    last ``n`` documents are near-duplicates of the queried scenes that no query judges.

    ``absent``: judgements of docs the corpus lacks, as real tasks have them: the first
    ``absent`` queries also judge ``oven_gone_<i>`` (grade 1), and the last query judges only
    ``oven_gone_last``."""
    rng = random.Random(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    docs = {"id": [], "text": [], "image": []}
    for i, s in enumerate(scenes + [sibling(s, rng) for s in scenes]):
        docs["id"].append(f"oven_doc_{i}")
        docs["text"].append(None if i % 5 == 4 else description(s, rng))
        docs["image"].append(None if i % 7 == 6 and i % 5 != 4 else _png(s, rng))
    queries = {"id": [f"oven_q_{i}" for i in range(n)],
               "text": ["Which scene is shown here?"] * n,
               "image": [_png(s, rng) for s in scenes]}
    qrels = {"query-id": [f"oven_q_{i}" for i in range(n)],
             "corpus-id": [f"oven_doc_{i}" for i in range(n)], "score": [1] * n}
    if absent:
        qrels["corpus-id"][-1] = "oven_gone_last"
        qrels["query-id"] += [f"oven_q_{i}" for i in range(absent)]
        qrels["corpus-id"] += [f"oven_gone_{i}" for i in range(absent)]
        qrels["score"] += [1] * absent
    return write_hub_layout(out, {"corpus": docs, "queries": queries, "qrels": qrels})


def write_t2i(out: Path, n: int = 24, seed: int = 1) -> Path:
    """A Flickr30kT2IRetrieval-style copy: caption queries (two per image), image documents,
    and ``n`` unjudged near-duplicate images as distractors."""
    rng = random.Random(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    shown = scenes + [sibling(s, rng) for s in scenes]
    docs = {"id": [f"{i}.jpg" for i in range(2 * n)], "image": [_png(s, rng) for s in shown]}
    queries = {"id": [f"q{i}_{j}" for i in range(n) for j in range(2)],
               "text": [caption(s, rng) for s in scenes for _ in range(2)]}
    qrels = {"query-id": queries["id"], "corpus-id": [f"{i}.jpg" for i in range(n) for _ in range(2)],
             "score": [1] * (2 * n)}
    return write_hub_layout(out, {"corpus": docs, "queries": queries, "qrels": qrels})


WRITERS = {"OVENIT2ITRetrieval": write_it2it, "Flickr30kT2IRetrieval": write_t2i}


def main(argv: list[str] | None = None) -> None:
    """Write a small local copy of an mteb task in its hub layout (for ``dataset.root``)."""
    p = argparse.ArgumentParser(prog="python -m mixsearch.data.mteb_fixture", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="the folder to write")
    p.add_argument("--task", choices=sorted(WRITERS), default="OVENIT2ITRetrieval")
    p.add_argument("-n", type=int, default=24, help="scenes (queries) to write")
    args = p.parse_args(argv)
    datasets.disable_progress_bars()
    print(WRITERS[args.task](args.out, n=args.n))


if __name__ == "__main__":
    main()
