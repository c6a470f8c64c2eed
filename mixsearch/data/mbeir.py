"""Loader for M-BEIR (UniIR; hub ``TIGER-Lab/M-BEIR``): 16 retrieval tasks over 10 datasets and
a global candidate pool of 5.6M text, image and image+text items (docs/mbeir.md).

The loader reads a local copy in the hub's layout (``root``)::

    query/{split}/mbeir_<task>_{split}.jsonl          qid, query_txt, query_img_path,
                                                      query_modality, pos_cand_list, task_id
    cand_pool/global/mbeir_union_{split}_cand_pool.jsonl    did, txt, img_path, modality
    cand_pool/local/mbeir_<task>[_{split}]_cand_pool.jsonl  (MSCOCO's carry the split)
    qrels/{split}/mbeir_<task>_{split}_qrels.txt      "qid 0 did relevance task_id"
    instructions/query_instructions.tsv               query_modality, cand_modality,
                                                      dataset_name, dataset_id, prompt_1..4
    mbeir_images/...                                  img_path is relative to root

``modality`` is ``text``, ``image`` or ``image,text``; each row becomes a :class:`Record`
holding exactly the fields its modality names (text, image, or both), so extraction batches
by modality and the content-keyed cache reuses every embedding it holds. Every task's
benchmark shares one cache name per pool (``meta["cache_name"]``), so the 5.6M-item global
pool is embedded once for all tasks. The pool is parsed line by line into records (no list of
row dicts). Images are never decoded here.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Collection, Iterator
from pathlib import Path

from mixsearch.data.benchmark import Benchmark, DataError, ImageRef, Qrels, Record
from mixsearch.data.io import read_jsonl
from mixsearch.data.registry import register_loader
from mixsearch.data.validate import validate_benchmark

logger = logging.getLogger(__name__)

#: The hub dataset and the revision whose layout this loader reads (also the revision the
#: calibration sets are built from, experiments/calibration_sets.py).
MBEIR_REPO = "TIGER-Lab/M-BEIR"
MBEIR_REVISION = "92556916c7fff9630a34094dcfa1da49296c2663"
POOLS = ("global", "local")
INSTRUCTION_MODES = ("none", "prepend")
#: M-BEIR's modality strings -> which Record fields a row has
_MODALITY_FIELDS = {
    "text": (True, False),
    "image": (False, True),
    "image,text": (True, True),
    "text,image": (True, True),  # the order UniIR's task table also uses ("image -> text,image")
}
#: Tasks whose headline metric is Recall@10 rather than Recall@5 (UniIR's retrieval configs)
RECALL10_DATASETS = ("fashion200k", "fashioniq")
INSTRUCTIONS_FILE = "instructions/query_instructions.tsv"


def download_command(root: str, split: str = "test", revision: str = MBEIR_REVISION) -> str:
    """The shell commands that fetch what :func:`load_mbeir` reads into ``root``."""
    include = " ".join(
        f"'{p}'" for p in (f"query/{split}/*", f"qrels/{split}/*", "cand_pool/*",
                           "instructions/*", "mbeir_images.tar.gz.part-*"))
    return (f"hf download {MBEIR_REPO} --repo-type dataset --revision {revision} --include "
            f"{include} --local-dir {root} && cat {root}/mbeir_images.tar.gz.part-* | tar xz -C {root}")


def _fields(row: dict, prefix: str, where: str, rid: str) -> tuple[str, str | None, str | None]:
    """``(modality, text, image path)`` of a query (``prefix="query_"``) or pool row."""
    mod_key = "query_modality" if prefix else "modality"
    modality = row.get(mod_key)
    if modality not in _MODALITY_FIELDS:
        raise DataError(f"{where}: id {rid!r}: unknown {mod_key} {modality!r}; "
                        f"expected one of {sorted(_MODALITY_FIELDS)}")
    has_text, has_image = _MODALITY_FIELDS[modality]
    text, image = row.get(f"{prefix}txt"), row.get(f"{prefix}img_path")
    for name, value, needed in (("txt", text, has_text), ("img_path", image, has_image)):
        if value is not None and not isinstance(value, str):
            raise DataError(f"{where}: id {rid!r}: {prefix}{name} must be a string or null")
        if needed and not (value or "").strip():
            raise DataError(f"{where}: id {rid!r}: {mod_key} {modality!r} but {prefix}{name} is empty")
    # the modality decides: a pool row marked "image" may still carry a caption it does not show
    return modality, text if has_text else None, image if has_image else None


class _Rows:
    """Turns M-BEIR rows into records: ids checked unique, images resolved under ``root``."""

    def __init__(self, root: Path, on_missing: str) -> None:
        self.root = root
        self.on_missing = on_missing
        self.missing: list[str] = []

    def image(self, path: str, where: str, rid: str) -> ImageRef | None:
        full = self.root / path
        if full.is_file():
            return ImageRef(path=str(full), origin=f"{where}#{rid}")
        if self.on_missing == "error":
            raise DataError(f"{where}: id {rid!r}: image file not found: {full} (extract "
                            "mbeir_images.tar.gz.part-* under dataset.root, or pass "
                            "dataset.on_missing=skip)")
        self.missing.append(rid)
        return None

    def records(self, path: Path, id_key: str, prefix: str, seen: dict[str, str], *,
                lines: bool = True) -> Iterator[tuple[Record, str, dict]]:
        """``(record, modality, row)`` per row. ``seen`` maps every id read (across files,
        dropped rows included) to its ``file:line``, or only to its file with ``lines=False``
        (the 5.6M-row pool: one shared string instead of millions)."""
        source = str(path)
        for where, row in read_jsonl(path):
            rid = row.get(id_key)
            if not isinstance(rid, str) or not rid:
                raise DataError(f"{where}: no {id_key!r} (a non-empty string)")
            if rid in seen:
                raise DataError(f"{where}: duplicate id {rid!r} (first in {seen[rid]})")
            seen[rid] = where if lines else source
            modality, text, img = _fields(row, prefix, where, rid)
            image = self.image(img, where, rid) if img is not None else None
            if text is None and image is None:
                continue  # on_missing=skip dropped the only content: counted in self.missing
            yield Record(rid, text, image), modality, row


def read_mbeir_qrels(path: Path, query_ids: set[str], doc_ids: Collection[str]
                     ) -> tuple[Qrels, dict[str, str]]:
    """Read a five-column M-BEIR qrels file (``qid 0 did relevance task_id``).

    Returns:
        ``(qrels, task_of_query)``; every line is kept (grades as written; UniIR counts
        relevance > 0 as relevant).

    Raises:
        DataError: missing file, a line without five columns, a non-integer relevance, a
            duplicate pair, or an id that is not a query / not in the pool (names ``file:line``).
    """
    if not path.is_file():
        raise DataError(f"M-BEIR qrels file not found: {path}")
    qrels: Qrels = {}
    tasks: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            cols = line.split()
            if len(cols) != 5:
                raise DataError(f"{where}: expected 5 columns 'qid 0 did relevance task_id', got {len(cols)}")
            qid, _, did, grade, task = cols
            if qid not in query_ids:
                raise DataError(f"{where}: qrels name query {qid!r}, which is not in the query file")
            if did not in doc_ids:
                raise DataError(f"{where}: qrels of query {qid!r} name candidate {did!r}, which is "
                                "not in the candidate pool")
            try:
                score = int(grade)
            except ValueError:
                raise DataError(f"{where}: relevance {grade!r} is not an integer") from None
            judged = qrels.setdefault(qid, {})
            if did in judged:
                raise DataError(f"{where}: duplicate qrels pair (query {qid!r}, candidate {did!r})")
            judged[did] = score
            tasks[qid] = task
    if not qrels:
        raise DataError(f"{path}: qrels file has no judgement rows")
    return qrels, tasks


def read_instructions(path: Path) -> dict[tuple[str, str, str], list[str]]:
    """``{(dataset_id, query_modality, cand_modality): [prompt, ...]}`` from the TSV (header
    ``query_modality cand_modality dataset_name dataset_id prompt_1 ...``), as UniIR keys it."""
    if not path.is_file():
        raise DataError(f"M-BEIR instructions not found: {path} (needed by dataset.instructions=prepend)")
    out: dict[tuple[str, str, str], list[str]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        header = next(rows, None)
        if not header or [h.strip() for h in header[:4]] != [
                "query_modality", "cand_modality", "dataset_name", "dataset_id"]:
            raise DataError(f"{path}:1: expected the header query_modality, cand_modality, "
                            f"dataset_name, dataset_id, prompt_1, ...; got {header}")
        for lineno, cols in enumerate(rows, 2):
            if not any(c.strip() for c in cols):
                continue
            prompts = [p.strip() for p in cols[4:] if p.strip()]
            if len(cols) < 5 or not prompts:
                raise DataError(f"{path}:{lineno}: a row needs 4 key columns and at least one prompt")
            out[(cols[3].strip(), cols[0].strip(), cols[1].strip())] = prompts
    return out


def _task_files(base: Path, task: str, split: str) -> list[tuple[str, Path]]:
    folder = base / "query" / split
    available = sorted(p.name[len("mbeir_"):-len(f"_{split}.jsonl")]
                       for p in folder.glob(f"mbeir_*_{split}.jsonl")) if folder.is_dir() else []
    if task == "all":
        if not available:
            raise DataError(f"no M-BEIR query files in {folder} (split={split!r})")
        return [(t, folder / f"mbeir_{t}_{split}.jsonl") for t in available]
    path = folder / f"mbeir_{task}_{split}.jsonl"
    if not path.is_file():
        raise DataError(f"M-BEIR task {task!r}: {path} not found; tasks of split {split!r} "
                        f"there: {available or 'none'} (or task=all)")
    return [(task, path)]


def _pool_file(base: Path, pool: str, tasks: list[str], split: str) -> Path:
    if pool == "global":
        path = base / "cand_pool" / "global" / f"mbeir_union_{split}_cand_pool.jsonl"
        if not path.is_file():
            raise DataError(f"M-BEIR global pool not found: {path}")
        return path
    if len(tasks) != 1:
        raise DataError("dataset.pool=local needs one task (each task has its own local pool); "
                        "task=all searches the global pool (dataset.pool=global)")
    folder = base / "cand_pool" / "local"
    # MSCOCO's local pools carry the split (mbeir_mscoco_task0_test_cand_pool.jsonl), the others not
    tried = [folder / f"mbeir_{tasks[0]}_{split}_cand_pool.jsonl",
             folder / f"mbeir_{tasks[0]}_cand_pool.jsonl"]
    for path in tried:
        if path.is_file():
            return path
    raise DataError(f"M-BEIR local pool of task {tasks[0]!r} not found: tried "
                    f"{', '.join(map(str, tried))}")


def check_layout(root: str | None, *, task: str = "all", pool: str = "global", split: str = "test",
                 instructions: str = "none", revision: str = MBEIR_REVISION) -> None:
    """The files a run of these options reads, checked without reading them (a sweep's
    preflight): the query and qrels files of each task, the pool, and the instructions.

    Raises:
        DataError: the first missing file or bad option, with the download command.
    """
    if root is None or not Path(root).is_dir():
        raise DataError(f"dataset.root={root!r} is not an M-BEIR copy; pre-download it with `"
                        + download_command(str(root or "DIR"), split, revision) + "`")
    if pool not in POOLS:
        raise DataError(f"dataset.pool must be one of {POOLS}, got {pool!r}")
    base = Path(root)
    tasks = [t for t, _ in _task_files(base, task, split)]
    _pool_file(base, pool, tasks, split)
    for t in tasks:
        qrels = base / "qrels" / split / f"mbeir_{t}_{split}_qrels.txt"
        if not qrels.is_file():
            raise DataError(f"M-BEIR task {t!r}: qrels file {qrels} not found")
    if instructions == "prepend" and not (base / INSTRUCTIONS_FILE).is_file():
        raise DataError(f"dataset.instructions=prepend: {base / INSTRUCTIONS_FILE} not found")


def _positive(row: dict, where: str) -> str | None:
    """The first positive candidate id (``pos_cand_list`` holds ids, or ``{"did": id}``)."""
    for item in row.get("pos_cand_list") or ():
        did = item.get("did") if isinstance(item, dict) else item
        if isinstance(did, str) and did:
            return did
    return None


def _instructed(record: Record, row: dict, modality: str, where: str,
                prompts: dict[tuple[str, str, str], list[str]], pool_modality: dict[str, str]) -> Record:
    """The query with UniIR's instruction for its (dataset, query modality, positive's
    modality) prepended to its text: the first prompt, so runs are deterministic."""
    did = _positive(row, where)
    if did is None or did not in pool_modality:
        raise DataError(f"{where}: query {record.id!r}: dataset.instructions=prepend needs a "
                        f"positive candidate in the pool (pos_cand_list: {row.get('pos_cand_list')!r})")
    key = (record.id.split(":")[0], modality, pool_modality[did])
    if key not in prompts:
        raise DataError(f"{where}: query {record.id!r}: no instruction for dataset_id={key[0]}, "
                        f"query_modality={key[1]!r}, cand_modality={key[2]!r} in {INSTRUCTIONS_FILE}")
    text = f"{prompts[key][0]} {record.text or ''}".strip()
    return Record(record.id, text, record.image)


def load_mbeir(
    root: str | None,
    task: str = "all",
    *,
    pool: str = "global",
    split: str = "test",
    instructions: str = "none",
    on_missing: str = "error",
    revision: str = MBEIR_REVISION,
) -> Benchmark:
    """Load M-BEIR queries of one task (or all) with the global or the task's local pool.

    Args:
        root: local copy of ``TIGER-Lab/M-BEIR`` (hub layout, images extracted under it).
            None fails at once with the download command (the images are 170 GB of tar parts,
            so there is no implicit hub download).
        task: a query file stem without ``mbeir_`` and the split (``mscoco_task0``,
            ``webqa_task2``, ...) or ``all`` (every task of the split, one ranking each over
            the global pool; metrics average over all queries).
        pool: ``global`` (``mbeir_union_{split}_cand_pool.jsonl``, mixed modalities) or
            ``local`` (the task's own pool).
        split: ``test`` (default), ``val`` or ``train``.
        instructions: ``none`` or ``prepend`` (UniIR's query instruction for the task, its first
            prompt, prepended to the query text; an image query then becomes image+text).
        on_missing: ``error`` (a missing image file raises) or ``skip`` (the row loses its
            image; a row left empty is dropped with its judgements; ids in ``meta``).
        revision: the hub revision the local copy is of (recorded, and in the cache key).

    Returns:
        The benchmark; ``meta`` has the task(s), pool, files, ``cache_name`` (shared by every
        task over the same pool), ``headline`` (``hit@5``, or ``hit@10`` for Fashion200K and
        FashionIQ) and ``measures`` (``["hit"]``: the pipeline adds M-BEIR's metric).

    Raises:
        DataError: no root, missing files, an unknown modality, an empty field the modality
            needs, a missing image (``on_missing=error``), duplicate ids, qrels naming unknown
            ids, or an instruction that is not in the TSV; each names ``file:line`` and the id.
    """
    if root is None:
        raise DataError("M-BEIR is read from a local copy: pre-download it with `"
                        + download_command("DIR", split, revision) + "` and pass dataset.root=DIR")
    if pool not in POOLS:
        raise DataError(f"dataset.pool must be one of {POOLS}, got {pool!r}")
    if instructions not in INSTRUCTION_MODES:
        raise DataError(f"dataset.instructions must be one of {INSTRUCTION_MODES}, got {instructions!r}")
    if on_missing not in ("error", "skip"):
        raise DataError(f"dataset.on_missing must be 'error' or 'skip', got {on_missing!r}")
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"dataset.root={root!r} is not a folder; pre-download M-BEIR with `"
                        + download_command(str(root), split, revision) + "`")
    task_files = _task_files(base, task, split)
    tasks = [t for t, _ in task_files]
    pool_path = _pool_file(base, pool, tasks, split)
    rows = _Rows(base, on_missing)

    corpus, pool_modality, pool_ids = [], {}, {}
    for record, modality, _ in rows.records(pool_path, "did", "", pool_ids, lines=False):
        corpus.append(record)
        pool_modality[record.id] = modality
    prompts = read_instructions(base / INSTRUCTIONS_FILE) if instructions == "prepend" else {}
    queries: list[Record] = []
    qrels: Qrels = {}
    query_task: dict[str, str] = {}
    seen: dict[str, str] = {}
    files: dict[str, str] = {"corpus": str(pool_path)}
    for name, path in task_files:
        mine: set[str] = set()
        for record, modality, row in rows.records(path, "qid", "query_", seen):
            if prompts:
                record = _instructed(record, row, modality, seen[record.id], prompts, pool_modality)
            queries.append(record)
            mine.add(record.id)
            query_task[record.id] = name
        qrels_path = base / "qrels" / split / f"mbeir_{name}_{split}_qrels.txt"
        judged, _ = read_mbeir_qrels(qrels_path, mine | set(_skipped(rows, seen, path)), pool_ids)
        qrels.update(judged)
        files[f"queries:{name}"], files[f"qrels:{name}"] = str(path), str(qrels_path)
    qrels = _without(qrels, set(rows.missing))
    bench = Benchmark(
        name=f"mbeir/{task}/{pool}",
        queries=queries,
        corpus=corpus,
        qrels=qrels,
        meta={
            "loader": "mbeir", "task": task, "tasks": ",".join(tasks), "pool": pool, "split": split,
            "root": str(root), "repo": MBEIR_REPO, "revision": revision,
            "instructions": instructions, "files": files,
            "cache_name": f"mbeir/{pool}/{split}",
            "headline": "hit@10" if all(t.split("_")[0] in RECALL10_DATASETS for t in tasks) else "hit@5",
            "measures": ["hit"],
            "dropped_records": list(rows.missing),
            # per query its task, and per task UniIR's headline (task=all: metrics.json by_task)
            "query_task": query_task,
            "task_headline": {t: "hit@10" if t.split("_")[0] in RECALL10_DATASETS else "hit@5"
                              for t in tasks},
        },
    )
    if rows.missing:
        logger.warning("M-BEIR: on_missing=skip: %d row(s) without their image file (first: %s)",
                       len(rows.missing), rows.missing[:5])
    bench.meta["warnings"] = validate_benchmark(bench)
    # the pool as shipped is the released mix: each candidate shows its own modality (set
    # after validation, which would otherwise check the same 5.6M records twice)
    bench.mixed_corpus = bench.corpus
    return bench


def _skipped(rows: _Rows, seen: dict[str, str], path: Path) -> list[str]:
    """Ids of ``path`` that ``on_missing=skip`` dropped (their qrels lines stay valid)."""
    prefix = f"{path}:"
    return [i for i in rows.missing if seen.get(i, "").startswith(prefix)]


def _without(qrels: Qrels, dropped: set[str]) -> Qrels:
    """Qrels minus dropped queries and candidates; queries left without judgements go."""
    if not dropped:
        return qrels
    out: Qrels = {}
    for qid, judged in qrels.items():
        keep = {d: g for d, g in judged.items() if d not in dropped}
        if qid not in dropped and keep:
            out[qid] = keep
    return out


register_loader("mbeir", load_mbeir)
