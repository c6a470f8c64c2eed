"""Loader for mteb retrieval tasks (``dataset=mteb dataset.task=<mteb task name>``).

The task's data comes through mteb itself: :func:`mteb.get_task` gives the task metadata (hub
path, pinned revision, eval splits, subsets, query/document modalities from the category such
as ``it2it``) and ``task.load_data()`` runs mteb's own retrieval loader (``corpus``, ``queries``
and ``qrels`` configs of the dataset repo). Nothing here re-implements mteb's data loading.

Offline: ``root=`` is a local copy of the task's dataset repo in the hub's layout (a README.md
whose ``configs:`` name the corpus / queries / qrels parquet files), e.g. made with
``hf download <path> --repo-type dataset --revision <rev> --local-dir <root>``. The task's
metadata then points at ``root`` for this load only (a copy of the metadata; mteb's registry is
untouched), so mteb's loader reads it exactly as it reads the hub. docs/mteb.md has the details.

Per row, a record keeps the modalities it has: a document with an image and a text is
image+text, one with only an image is an image, and so on. Images stay encoded bytes
(:class:`~mixsearch.data.benchmark.ImageRef` keyed by their SHA-1 in the embedding cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixsearch.data.benchmark import Benchmark, DataError, ImageRef, Record
from mixsearch.data.io import image_value
from mixsearch.data.validate import validate_benchmark

log = logging.getLogger(__name__)

LIST_COMMAND = ("python -c \"import mteb; print('\\n'.join(t.metadata.name for t in "
                "mteb.get_tasks(task_types=['Any2AnyRetrieval'])))\"")


def get_retrieval_task(name: str, split: str | None = None, subset: str | None = None) -> Any:
    """The mteb task object for ``name``, checked to be a retrieval task.

    Raises:
        DataError: unknown name (with mteb's suggestion and the command listing valid names),
            a task that is not a retrieval task, or a split / subset the task does not have.
    """
    import mteb
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    if not name or name == "???":  # conf/dataset/mteb.yaml leaves the task to the user
        raise DataError(f"dataset.task: required with dataset=mteb (e.g. dataset.task=OVENIT2ITRetrieval); "
                        f"list the any-to-any retrieval tasks with: {LIST_COMMAND}")
    try:
        task = mteb.get_task(name)
    except KeyError as e:
        raise DataError(f"dataset.task={name!r}: not an mteb task ({e.args[0]}); list the "
                        f"any-to-any retrieval tasks with: {LIST_COMMAND}") from None
    if not isinstance(task, AbsTaskRetrieval):
        raise DataError(f"dataset.task={name!r}: mteb task of type {task.metadata.type!r}, not a "
                        f"retrieval task; list the retrieval tasks with: {LIST_COMMAND}")
    # mteb scores these tasks after removing results from each ranking; mixsearch ranks the
    # whole corpus and would report other numbers under the same name
    for flag in ("ignore_identical_ids", "skip_first_result"):
        if getattr(task, flag, False):
            raise DataError(f"dataset.task={name!r}: mteb scores it with {flag}=True (results "
                            "removed from each ranking before scoring), which mixsearch does not "
                            f"do; its figures would not be mteb's. List the tasks it runs with: "
                            f"{LIST_COMMAND}")
    splits, subsets = list(task.eval_splits), list(task.hf_subsets)
    if split is not None and split not in splits:
        raise DataError(f"dataset.split={split!r}: task {name} evaluates on {splits}")
    if subset is not None and subset not in subsets:
        raise DataError(f"dataset.hf_subset={subset!r}: task {name} has the subsets {subsets}")
    if subset is None and len(subsets) > 1:
        raise DataError(f"task {name} has {len(subsets)} subsets; choose one with dataset.hf_subset= "
                        f"(one of {subsets})")
    return mteb.get_task(name, eval_splits=[split or splits[0]],
                         hf_subsets=[subset] if subset else None)


def download_command(task: Any, root: str = "<dir>") -> str:
    """The shell command that saves the task's pinned dataset revision to ``root``."""
    ds = task.metadata.dataset
    return (f"hf download {ds['path']} --repo-type dataset --revision {ds['revision']} "
            f"--local-dir {root}")


def _point_at(task: Any, root: str | None) -> None:
    """Make ``task`` read its dataset from ``root`` (a copy of the metadata, on this object)."""
    if root is None:
        return
    if not (Path(root) / "README.md").is_file():
        raise DataError(f"dataset.root={root!r}: no README.md there; expected a local copy of "
                        f"{task.metadata.dataset['path']} in the hub's layout, made with: "
                        f"{download_command(task, root)}")
    dataset = {**task.metadata.dataset, "path": str(Path(root).resolve())}
    task.metadata = task.metadata.model_copy(update={"dataset": dataset})


def copy_revision(root: str | Path, pinned: str) -> tuple[str, str]:
    """``(revision, how it is known)`` of a local copy of a task's dataset repo.

    ``hf download --local-dir`` records, per file, ``.cache/huggingface/download/<file>.metadata``
    whose lines are the commit, the etag and the download time. When every file of the copy has
    one, all name the same commit and none was modified after its download, that commit is the
    copy's revision (``how``: ``download metadata``). Otherwise the copy cannot be dated: the
    pinned revision is reported, with ``how`` saying why it is unverified.
    """
    root = Path(root)
    meta_dir = root / ".cache" / "huggingface" / "download"
    commits: set[str] = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.relative_to(root).parts):
        rel = path.relative_to(root).as_posix()
        record = meta_dir / f"{rel}.metadata"
        if not record.is_file():
            return pinned, f"unverified: {rel} has no download metadata (not made by hf download)"
        lines = record.read_text(encoding="utf-8").splitlines()
        try:
            commit, downloaded = lines[0].strip(), float(lines[2])
        except (IndexError, ValueError):
            return pinned, f"unverified: {record} is not hf download metadata"
        if path.stat().st_mtime > downloaded + 1.0:
            return pinned, f"unverified: {rel} was modified after its download"
        commits.add(commit)
    if len(commits) != 1:
        how = "no files" if not commits else f"files from {len(commits)} commits"
        return pinned, f"unverified: {how}"
    return commits.pop(), "download metadata"


def _root_fingerprint(root: str) -> str:
    """SHA-1 over every file of ``root`` (relative path, size, mtime)."""
    h = hashlib.sha1()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and ".cache" not in p.parts:
            st = p.stat()
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _datasets_cache_for(root: str | None) -> Iterator[None]:
    """For a local copy, a datasets cache folder named by the copy's files.

    datasets names the Arrow cache of a local folder by the folder's base name and the data
    file patterns only, so a changed copy, or another copy with the same base name, would be
    served the old Arrow tables. Keying the folder by the files' fingerprint prevents that."""
    if root is None:
        yield
        return
    import datasets

    saved = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = Path(saved) / "mixsearch-local" / _root_fingerprint(root)
    try:
        yield
    finally:
        datasets.config.HF_DATASETS_CACHE = saved


def _load_split(task: Any, root: str | None, split: str, subset: str) -> dict[str, Any]:
    """mteb's retrieval data of one split and subset (corpus, queries, relevant_docs)."""
    meta = task.metadata
    where = root or f"{meta.dataset['path']}@{meta.dataset['revision']}"
    try:
        with _datasets_cache_for(root):
            task.load_data()
    except Exception as e:  # datasets raises many types; each names the task and the fix
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = ("check the local copy's README.md configs and parquet files" if root else
                f"{'offline and ' if offline else ''}not in the datasets cache; pre-download it "
                f"with: {download_command(task)} and pass dataset.root=<dir>")
        raise DataError(f"cannot load mteb task {meta.name} (revision {meta.dataset['revision']}) "
                        f"from {where}: {type(e).__name__}: {e}; {hint}") from e
    return task.dataset[subset][split]


def _text(row: dict[str, Any], columns: set[str], kind: str) -> str | None:
    """The text a model reads, joined as mteb does: ``title text`` for documents and
    ``text instruction`` for queries."""
    if "text" not in columns:
        return None
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise DataError(f"{kind} {row.get('id')!r}: text is a {type(text).__name__}, expected a string")
    text = (text or "").strip()
    if kind == "document" and row.get("title"):
        text = f"{row['title']} {text}".strip()
    if kind == "query" and row.get("instruction"):
        text = f"{text} {row['instruction']}".strip()
    return text or None


def _image(value: Any, where: str) -> ImageRef | None:
    """An image cell as a content-keyed :class:`ImageRef` (PIL images are PNG-encoded)."""
    if value is not None and hasattr(value, "save") and hasattr(value, "mode"):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return ImageRef(data=buf.getvalue(), origin=where)
    return image_value(value, where, None)


def records(ds: Any, modalities: list[str], kind: str, origin: str) -> list[Record]:
    """Records of an mteb corpus or query dataset, each with the modalities its row has.

    Args:
        ds: a ``datasets.Dataset`` with ``id`` and the modality columns.
        modalities: the modalities mteb shows for this side (``text`` and/or ``image``).
        kind: ``document`` or ``query`` (how the text is joined, as mteb joins it).
        origin: the task, split and side, for image origins and messages.
    """
    import datasets

    if "image" in modalities and "image" in ds.column_names \
            and isinstance(ds.features["image"], datasets.Image):
        ds = ds.cast_column("image", datasets.Image(decode=False))  # bytes, not decoded pixels
    wanted = [c for c in ("id", "title", "text", "instruction", "image") if c in ds.column_names]
    columns = set(wanted) & (set(modalities) | {"id", "title", "instruction"})
    if "id" not in columns:
        raise DataError(f"{origin}: no id column (columns: {ds.column_names})")
    out = []
    for row in ds.select_columns(wanted):
        rid = str(row["id"])
        image = _image(row.get("image"), f"{origin}#{rid}") if "image" in columns else None
        out.append(Record(rid, text=_text(row, columns, kind), image=image))
    return out


def _judged(
    relevant: dict[str, dict[str, int]], corpus: list[Record], bench_name: str
) -> tuple[dict, dict, dict]:
    """``(qrels, absent_qrels, counts)``: the judgements of corpus docs for queries with a
    positive among them; the judgements of docs the corpus lacks (mteb keeps them in its
    denominators; see :attr:`Benchmark.absent_qrels`); and the counts. A query with no
    positive judgement at all is removed (logged; mteb would score it 0 on every measure)."""
    doc_ids = {r.id for r in corpus}
    qrels: dict[str, dict[str, int]] = {}
    absent: dict[str, dict[str, int]] = {}
    counts = {"judgements_of_docs_not_in_corpus": 0, "queries_judging_only_absent_docs": 0,
              "queries_without_positive_removed": 0}
    for qid, judged in relevant.items():
        judged = {str(d): int(s) for d, s in judged.items()}
        if not any(s > 0 for s in judged.values()):
            counts["queries_without_positive_removed"] += 1
            continue
        kept = {d: s for d, s in judged.items() if d in doc_ids}
        gone = {d: s for d, s in judged.items() if d not in doc_ids}
        if gone:
            absent[str(qid)] = gone
            counts["judgements_of_docs_not_in_corpus"] += len(gone)
        if any(s > 0 for s in kept.values()):
            qrels[str(qid)] = kept
        else:
            counts["queries_judging_only_absent_docs"] += 1
    if counts["judgements_of_docs_not_in_corpus"]:
        log.warning("%s: %d judgements name docs the corpus lacks (%d queries judge only such "
                    "docs); the metrics count them as relevant docs never retrieved, as mteb "
                    "does (metrics.absent_qrels=drop scores retrievable docs only)", bench_name,
                    counts["judgements_of_docs_not_in_corpus"],
                    counts["queries_judging_only_absent_docs"])
    if counts["queries_without_positive_removed"]:
        log.warning("%s: removed %d queries without a positive judgement", bench_name,
                    counts["queries_without_positive_removed"])
    return qrels, absent, counts


def load_mteb_task(
    task: str,
    *,
    root: str | None = None,
    split: str | None = None,
    hf_subset: str | None = None,
    on_missing: str = "error",
) -> Benchmark:
    """Load an mteb retrieval task (any-to-any or text) as a :class:`Benchmark`.

    Args:
        task: the mteb task name, e.g. ``OVENIT2ITRetrieval``, ``Flickr30kT2IRetrieval``.
        root: a local copy of the task's dataset repo (hub layout); None loads the pinned
            revision from the hub or the datasets cache.
        split: the eval split (default: the task's first).
        hf_subset: the hf subset (required when the task has several).
        on_missing: ``error`` or ``skip``, as every loader takes it (docs/missing-files.md):
            the task's images are embedded bytes, so none is missing here; one that does not
            decode is skipped at extraction under ``skip``.

    Returns:
        The benchmark ``mteb/<task>``; ``meta`` holds the mteb task name, revision, split,
        subset, languages and main score (what ``export-mteb`` writes). Judgements of documents
        missing from the corpus go to ``absent_qrels`` and count, as in mteb, as relevant docs
        never retrieved; queries without any positive judgement are removed (counts in
        ``meta["judgements"]``, each logged).

    Raises:
        DataError: unknown or non-retrieval task, bad split / subset, a local copy or hub
            dataset that cannot be read (naming the task, revision and pre-download command).
    """
    from mteb.types import PromptType

    if on_missing not in ("error", "skip"):
        raise DataError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    subset = hf_subset
    mtask = get_retrieval_task(task, split, subset)
    hub_path = mtask.metadata.dataset["path"]
    _point_at(mtask, root)
    split = split or mtask.eval_splits[0]
    subset = subset or mtask.hf_subsets[0]
    data = _load_split(mtask, root, split, subset)
    meta = mtask.metadata
    origin = f"mteb/{meta.name}/{subset}/{split}"
    corpus = records(data["corpus"], meta.get_modalities(PromptType.document), "document",
                     f"{origin}/corpus")
    queries = records(data["queries"], meta.get_modalities(PromptType.query), "query",
                      f"{origin}/queries")
    name = f"mteb/{meta.name}" + (f"/{subset}" if subset != "default" else "")
    qrels, absent, counts = _judged(data["relevant_docs"], corpus, name)
    pinned = meta.dataset["revision"]
    revision, revision_check = (pinned, "pinned (hub)") if root is None else copy_revision(root, pinned)
    if revision_check.startswith("unverified"):
        log.warning("%s: the local copy's revision is %s; reporting mteb's pinned %s", name,
                    revision_check, pinned)
    elif revision != pinned:
        log.warning("%s: the local copy is revision %s, mteb pins %s; its results carry %s",
                    name, revision, pinned, revision)
    # the task's corpus is already mixed: each row shows what it has (corpus=released)
    bench = Benchmark(name=name, queries=queries, corpus=corpus, qrels=qrels,
                      mixed_corpus=list(corpus), absent_qrels=absent, meta={
        "loader": "mteb", "mteb_task": meta.name, "revision": revision, "revision_check": revision_check, "pinned_revision": pinned,
        "hub_path": hub_path,
        "root": str(root) if root else None, "split": split, "hf_subset": subset,
        "languages": list(meta.hf_subsets_to_langscripts.get(subset, meta.languages)),
        "main_score": meta.main_score, "category": meta.category, "judgements": counts,
        "files": {"queries": f"{origin}/queries", "corpus": f"{origin}/corpus",
                  "mixed_corpus": f"{origin}/corpus", "qrels": f"{origin}/qrels"}})
    if data.get("top_ranked"):
        log.warning("%s: the task ships top_ranked candidates; mixsearch ranks the whole corpus", name)
    bench.meta["warnings"] = validate_benchmark(bench)
    return bench
