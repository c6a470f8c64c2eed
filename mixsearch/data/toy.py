"""The toy benchmark: MixBench-style subsets generated from the procedural shapes world.

``write_toy_benchmark`` writes, in the MixBench25 layout (``<subset>/{queries,corpus,
mixed_corpus}.jsonl``, ``<subset>/qrels/qrels.tsv``, ``<subset>/images/``):

* ``ToyCOCO``: short caption queries; documents are an image + a long description; distractor
  documents without queries (half of them near-duplicates of queried scenes); shuffled
  (non-identity) document ids.
* ``ToyOVEN``: queries are an image + a short question about a named entity; documents are
  another rendering of the entity + its name and description.

Each subset also has a calibration split (``calibration/{queries,corpus}.jsonl``) and the root a
training split of image-caption pairs (``train/pairs.jsonl``) for the toy CLIP. Every scene in
the whole benchmark has a distinct meaning (:attr:`Scene.key`), so the calibration and training
items are disjoint from the evaluation items. Generation is deterministic for a seed (files are
byte-identical), atomic (temp dir + rename) and recorded in a marker file, so a matching
benchmark is reused and a mismatching one regenerated.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from mixsearch.data.benchmark import Benchmark, DataError
from mixsearch.data.mixbench import load_mixbench
from mixsearch.data.registry import register_loader
from mixsearch.toymodel.world import Scene, caption, description, render, sample_scene, sibling

GENERATOR_VERSION = 1
TOY_SUBSETS = ("ToyCOCO", "ToyOVEN")
MARKER = "toy_benchmark.json"
_PNG_EVERY = 50  # images 7, 57, 107, ... are PNG, the rest JPEG, like a real scrape
_KINDS = ("flag", "sign", "badge", "mural", "tile", "poster")
_QUESTIONS = (
    "What is the name of this {kind}?",
    "Which {kind} is shown here?",
    "What is this {kind} called?",
    "Name this {kind}.",
)
_SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "vos", "zel", "dra", "pim", "sor", "nax", "bel")


class _Scenes:
    """Draws scenes whose keys were never drawn before, so splits never share a scene."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"toy-scenes:{seed}")
        self._seen: set[tuple] = set()

    def take(self, n: int) -> list[Scene]:
        return [self._new(lambda: sample_scene(self._rng)) for _ in range(n)]

    def siblings(self, scenes: list[Scene], n: int) -> list[Scene]:
        """``n`` near-duplicates of ``scenes`` (cycling through them): hard distractors."""
        return [
            self._new(lambda k=k: sibling(scenes[k % len(scenes)], self._rng)) for k in range(n)
        ]

    def _new(self, draw: Callable[[], Scene]) -> Scene:
        # a scene's near-duplicates are few (one attribute of one group changed): once all are
        # taken, drawing again would loop for ever, so a benchmark too large for the world fails
        for _ in range(_MAX_DRAWS):
            scene = draw()
            if scene.key not in self._seen:
                self._seen.add(scene.key)
                return scene
        raise DataError(f"toy: no new distinct scene in {_MAX_DRAWS} draws after "
                        f"{len(self._seen)} scenes; ask for fewer queries or distractors")


_MAX_DRAWS = 10_000


def _rng(seed: int, *parts: object) -> random.Random:
    # str seeds are hashed with SHA-512 by random.Random: stable across processes and platforms
    return random.Random(":".join(map(str, (seed, *parts))))


def _save_image(scene: Scene, rng: random.Random, folder: Path, stem: str, index: int) -> str:
    name = f"{stem}.png" if index % _PNG_EVERY == 7 else f"{stem}.jpg"
    render(scene, rng).save(folder / name, quality=92)
    return f"images/{name}"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _entity_name(rng: random.Random, used: set[str]) -> str:
    while True:
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        name += " " + rng.choice(("Gate", "Crest", "Stone", "Banner", "Seal", "Tower"))
        if name not in used:
            used.add(name)
            return name


def _kind(seed: int, subset: str, split: str, i: int) -> str:
    """What an OVEN-style entity is; its query and its document agree on it."""
    return _rng(seed, subset, split, "kind", i).choice(_KINDS)


def _query(
    subset: str, scene: Scene, seed: int, split: str, i: int, images: Path, qid: str
) -> dict:
    rng = _rng(seed, subset, split, "query", i)
    if subset == "ToyCOCO":
        return {"query_id": qid, "text": caption(scene, rng), "image": None}
    question = rng.choice(_QUESTIONS).format(kind=_kind(seed, subset, split, i))
    return {
        "query_id": qid,
        "text": question,
        "image": _save_image(scene, rng, images, f"q{qid}", i),
    }


def _doc(
    subset: str,
    scene: Scene,
    seed: int,
    split: str,
    i: int,
    images: Path,
    cid: str,
    names: set[str],
) -> dict:
    rng = _rng(seed, subset, split, "doc", i)
    text = description(scene, rng)
    if subset == "ToyOVEN":
        name = _entity_name(rng, names)
        text = f"{name}. The {name} is a {_kind(seed, subset, split, i)}. {text}"
    return {"corpus_id": cid, "text": text, "image": _save_image(scene, rng, images, f"d{cid}", i)}


def _write_subset(
    out: Path,
    subset: str,
    scenes: _Scenes,
    seed: int,
    n_queries: int,
    n_distractors: int,
    n_calibration: int,
) -> None:
    images = out / "images"
    images.mkdir(parents=True)
    names: set[str] = set()
    n_docs = n_queries + n_distractors
    order = _rng(seed, subset, "ids")
    doc_ids = [str(i) for i in order.sample(range(n_docs), n_docs)]  # scene k -> doc_ids[k]
    # queried scenes, then distractors: half near-duplicates of queried scenes (real corpora are
    # full of similar items), half random scenes
    bench = scenes.take(n_queries)
    half = n_distractors // 2
    bench += scenes.siblings(bench, half) + scenes.take(n_distractors - half)
    docs = [
        _doc(subset, s, seed, "test", k, images, doc_ids[k], names) for k, s in enumerate(bench)
    ]
    docs.sort(key=lambda d: int(d["corpus_id"]))  # file order must not reveal the pairing
    queries = [_query(subset, bench[k], seed, "test", k, images, str(k)) for k in range(n_queries)]
    _write_jsonl(out / "queries.jsonl", queries)
    _write_jsonl(out / "corpus.jsonl", docs)

    # 1:1:1 text / image / image+text with the remainder to image+text, as the real release
    modes = ["text"] * (n_docs // 3) + ["image"] * (n_docs // 3)
    modes += ["image+text"] * (n_docs - len(modes))
    order.shuffle(modes)
    mixed = [
        {
            **d,
            "text": None if m == "image" else d["text"],
            "image": None if m == "text" else d["image"],
        }
        for d, m in zip(docs, modes, strict=True)
    ]
    _write_jsonl(out / "mixed_corpus.jsonl", mixed)
    (out / "qrels").mkdir()
    with open(out / "qrels" / "qrels.tsv", "w", encoding="utf-8") as f:
        f.write("query_id\tcorpus_id\tscore\n")
        f.writelines(f"{k}\t{doc_ids[k]}\t1\n" for k in range(n_queries))

    cal_q, cal_d = scenes.take(n_calibration), scenes.take(n_calibration)
    cal_queries = [_query(subset, s, seed, "cal", i, images, f"cq{i}") for i, s in enumerate(cal_q)]
    cal_docs = [
        _doc(subset, s, seed, "cal", i, images, f"cd{i}", names) for i, s in enumerate(cal_d)
    ]
    _write_jsonl(out / "calibration" / "queries.jsonl", cal_queries)
    _write_jsonl(out / "calibration" / "corpus.jsonl", cal_docs)


def _write_train(out: Path, scenes: _Scenes, seed: int, n_train: int) -> None:
    (out / "images").mkdir(parents=True)
    rows = []
    for i, scene in enumerate(scenes.take(n_train)):
        rng = _rng(seed, "train", i)
        image = _save_image(scene, rng, out / "images", f"t{i}", i)
        rows.append(
            {
                "id": f"t{i}",
                "image": image,
                "caption": caption(scene, rng),
                "description": description(scene, rng),
            }
        )
    _write_jsonl(out / "pairs.jsonl", rows)


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_toy_benchmark(
    root: str | Path,
    *,
    seed: int = 0,
    n_queries: int = 300,
    n_distractors: int = 300,
    n_calibration: int = 500,
    n_train: int = 12000,
) -> Path:
    """Generate the toy benchmark under ``root`` unless a matching one is already there.

    Args:
        root: benchmark folder (created; its parent holds a ``<name>.lock`` file while writing;
            a complete matching benchmark is reused without taking the lock or writing).
        seed: fixes every scene, pixel, word and id.
        n_queries: queries (and relevant documents) per subset.
        n_distractors: extra documents without queries per subset.
        n_calibration: calibration queries and, separately, calibration documents per subset.
        n_train: image-caption pairs in ``train/pairs.jsonl`` (for training the toy CLIP).

    Returns:
        ``root`` as a Path.

    Raises:
        DataError: a count is invalid (names the option), or ``root`` is a non-empty folder that
            is not a toy benchmark (it is never deleted).
    """
    params = {
        "seed": seed,
        "n_queries": n_queries,
        "n_distractors": n_distractors,
        "n_calibration": n_calibration,
        "n_train": n_train,
    }
    for option, value in params.items():
        minimum = 1 if option == "n_queries" else 0
        if option != "seed" and (not isinstance(value, int) or value < minimum):
            raise DataError(
                f"write_toy_benchmark: {option} must be an integer >= {minimum}, got {value!r}"
            )
    marker = {"generator": "mixsearch.data.toy", "version": GENERATOR_VERSION, "params": params}
    root = Path(root)
    # A complete benchmark needs no lock, so it loads from a read-only filesystem. The marker
    # is written last, inside the temp dir that is renamed into place, so it implies the rest.
    if _read_marker(root) == marker:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if _read_marker(root) == marker:
            return root
        if root.exists() and any(root.iterdir()) and not (root / MARKER).is_file():
            raise DataError(
                f"{root} exists and is not a toy benchmark (no {MARKER}); refusing to overwrite it"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.new-", dir=root.parent))
        try:
            os.chmod(tmp, 0o755)
            scenes = _Scenes(seed)
            for subset in TOY_SUBSETS:
                _write_subset(
                    tmp / subset, subset, scenes, seed, n_queries, n_distractors, n_calibration
                )
            _write_train(tmp / "train", scenes, seed, n_train)
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            if root.exists():  # a stale or mismatching benchmark: swap it out, then delete it
                old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
                root.rename(old / "stale")
                tmp.rename(root)
                shutil.rmtree(old)
            else:
                tmp.rename(root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return root


def load_toy(
    root: str | Path | None = None,
    subset: str = "ToyCOCO",
    *,
    default_root: str | Path | None = None,
    on_missing: str = "error",
    **gen_kwargs: int,
) -> Benchmark:
    """Generate the toy benchmark if needed, then load ``subset`` with the MixBench loader.

    Args:
        root: benchmark folder (see :func:`write_toy_benchmark`); None = ``default_root``.
        subset: ``"ToyCOCO"`` or ``"ToyOVEN"``.
        default_root: the one location where a config generates the toy on first use
            (``${paths.data_dir}/toy``). When it is given, a different ``root`` must already
            hold a toy benchmark: a mistyped ``dataset.root`` fails instead of generating a
            new toy there. A plain ``load_toy(folder)`` call generates into ``folder``.
        on_missing: ``error`` or ``skip`` items whose image file is missing
            (:func:`~mixsearch.data.mixbench.load_mixbench`).
        **gen_kwargs: generator parameters passed to :func:`write_toy_benchmark`.

    Raises:
        DataError: unknown subset (names it), invalid generator parameters, no root at all, or
            a ``root`` other than ``default_root`` that holds no toy benchmark.
    """
    if subset not in TOY_SUBSETS:
        raise DataError(f"unknown toy subset {subset!r}; choose one of {', '.join(TOY_SUBSETS)}")
    if root is None and default_root is None:
        raise DataError("load_toy: no root (give root, or default_root to generate the toy there)")
    if root is None:
        root = default_root
    elif default_root is not None and Path(root).resolve() != Path(default_root).resolve() \
            and _read_marker(Path(root)) is None:
        raise DataError(
            f"dataset.root={root} holds no toy benchmark (no {MARKER}); the toy is generated only "
            f"at its default location {default_root} (leave dataset.root unset, or move it with "
            "paths.data_dir=...)")
    path = write_toy_benchmark(root, **gen_kwargs)
    bench = load_mixbench(str(path), subset, layout="mixbench25", check_counts=False,
                          on_missing=on_missing)
    bench.name = f"toy/{subset}"
    bench.meta["generator"] = _read_marker(path)
    return bench


register_loader("toy", load_toy)
