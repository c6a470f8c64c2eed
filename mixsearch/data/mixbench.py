"""Loader for the MixBench releases (docs/formats.md §1-4 and §8).

Three sources give the same content:

* a local **MixBench25** folder: ``<subset>/{queries,corpus,mixed_corpus}.jsonl``,
  ``<subset>/qrels/qrels.tsv`` and image files named by relative paths;
* a local **parquet** folder (MixBench2025/2026 style): ``<subset>/{queries,mixed_corpus}.parquet``
  (``corpus.parquet`` optional) with embedded image bytes, and qrels taken from the MixBench25
  TSV because 2026 ships none;
* the **hub** (``root=None``): ``datasets.load_dataset`` plus the pinned MixBench25 qrels.

Images are never decoded here; records carry lazy :class:`ImageRef` objects.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from mixsearch.data.benchmark import Benchmark, DataError, ImageRef, Record
from mixsearch.data.io import (
    ImageResolver,
    MissingImageError,
    image_value,
    read_jsonl,
    read_qrels,
    record_id,
    text_value,
)
from mixsearch.data.validate import EXPECTED_COUNTS, validate_benchmark

if TYPE_CHECKING:
    import datasets  # imported lazily: it is slow and only the hub path needs it

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "mixbench25", "parquet")
_EXT = {"mixbench25": ".jsonl", "parquet": ".parquet"}
_MAIN_SPLITS = ("queries", "corpus", "mixed_corpus")
_CALIBRATION_SPLITS = ("queries", "corpus")

Rows = Iterable[tuple[str, dict]]  # (where: "file:line" or "file", row dict)


@dataclass
class _RecordBuilder:
    """Turns rows into records, applying the ``on_missing`` policy for image files."""

    resolver: ImageResolver | None
    on_missing: str
    skipped: dict[str, list[str]] = field(default_factory=dict)
    missing_files: dict[str, str] = field(default_factory=dict)

    def records(self, split: str, rows: Rows) -> list[Record]:
        out = []
        for where, row in rows:
            rid = record_id(row, where)
            origin = f"{where}#{rid}"
            text = text_value(row.get("text"), origin)
            try:
                image = image_value(row.get("image"), origin, self.resolver)
            except MissingImageError:
                if self.on_missing == "error":
                    raise
                # The record stays as released, its image pointing at the missing file: the
                # pipeline leaves it out of the evaluation (its qrels still count) and lists it
                # under ``skipped`` in metrics.json; the mix and the qrels stay consistent.
                path = self._likely_path(str(_image_path(row.get("image"))))
                self.skipped.setdefault(split, []).append(rid)
                self.missing_files[rid] = path
                image = ImageRef(path=path, origin=origin)
            out.append(Record(rid, text, image))
        return out


    def _likely_path(self, p: str) -> str:
        """Where a missing file should be: the candidate of the rule that found the most
        files so far (the release's convention), else the first candidate."""
        tried = self.resolver.candidates(p)  # type: ignore[union-attr]
        hits = self.resolver.hits  # type: ignore[union-attr]
        return str(max(tried, key=lambda rc: (hits[rc[0]], -tried.index(rc)))[1])


def _image_path(value: object) -> object:
    """The path of an image field (a path string or an HF ``{bytes, path}`` struct)."""
    return value.get("path") if isinstance(value, dict) else value


def _table_rows(table: pa.Table, source: str) -> Iterator[tuple[str, dict]]:
    """Rows of an ``id``/``text``/``image`` arrow table; absent text/image columns are None."""
    if "id" not in table.column_names:
        raise DataError(f"{source}: no 'id' column (columns: {table.column_names})")
    n = table.num_rows
    columns = {
        name: table.column(name).to_pylist() if name in table.column_names else [None] * n
        for name in ("id", "text", "image")
    }
    for i in range(n):
        yield source, {name: values[i] for name, values in columns.items()}


def _file_rows(path: Path) -> Rows:
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        raise DataError(f"{path}: cannot read parquet: {e}") from e
    return _table_rows(table, str(path))


def _detect_layout(subset_dir: Path) -> str:
    for layout, ext in _EXT.items():
        if (subset_dir / f"queries{ext}").is_file():
            return layout
    raise DataError(
        f"cannot tell the MixBench layout of {subset_dir}: expected queries.jsonl (MixBench25) or "
        f"queries.parquet (MixBench2025/2026); found {sorted(p.name for p in subset_dir.iterdir())}"
    )


def _find_qrels(root: Path, subset: str, qrels_repo: str, qrels_revision: str) -> Path:
    tried = [root / subset / "qrels" / "qrels.tsv", root / "qrels" / f"{subset}.tsv"]
    for path in tried:
        if path.is_file():
            return path
    raise DataError(
        f"no qrels for subset {subset!r}: looked for {', '.join(map(str, tried))}. MixBench2026 "
        f"ships no qrels; the MixBench25 qrels TSV is needed: `hf download {qrels_repo} "
        f"--repo-type dataset --revision {qrels_revision} --include '{subset}/qrels/*' "
        f"--local-dir {root}`"
    )


def _local_files(
    root: Path, subset: str, layout: str, qrels_repo: str, qrels_revision: str
) -> tuple[str, dict[str, Path]]:
    """The layout and the file of each split present under ``root/subset``."""
    subset_dir = root / subset
    if not subset_dir.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise DataError(f"subset folder not found: {subset_dir} (folders under {root}: {have})")
    if layout == "auto":
        layout = _detect_layout(subset_dir)
    ext = _EXT[layout]
    files = {s: subset_dir / f"{s}{ext}" for s in _MAIN_SPLITS}
    files.update(
        {f"calibration/{s}": subset_dir / "calibration" / f"{s}.jsonl" for s in _CALIBRATION_SPLITS}
    )
    files = {s: p for s, p in files.items() if p.is_file()}
    if "queries" not in files or not {"corpus", "mixed_corpus"} & files.keys():
        raise DataError(
            f"{subset_dir}: the {layout} layout needs queries{ext} and mixed_corpus{ext} "
            f"or corpus{ext}; found {sorted(p.name for p in subset_dir.iterdir())}"
        )
    files["qrels"] = _find_qrels(root, subset, qrels_repo, qrels_revision)
    return layout, files


def _offline_requested() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("HF_DATASETS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(
        f and f.upper() in {"1", "ON", "YES", "TRUE"} for f in flags
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A direct TCP connect to the hub endpoint: the hub clients retry for ~25 s otherwise."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may reach what a direct socket cannot; let the clients try
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """Force the hub clients offline (cache only). They read the env vars only at import."""
    if not enabled:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _hub_tables(
    repo: str,
    subset: str,
    revision: str | None,
    qrels_repo: str,
    qrels_revision: str,
    cache_dir: str | None,
) -> tuple[dict[str, pa.Table], Path]:
    """Arrow tables of the hub splits (images undecoded) and the cached qrels file."""
    import datasets
    from huggingface_hub import constants, hf_hub_download

    requested = _offline_requested()
    offline = requested or not _hub_reachable()
    hint = (
        f"Pre-download it on a machine with access: `hf download {repo} --repo-type dataset "
        + (f"--revision {revision} " if revision else "")
        + f"--local-dir DIR` and `hf download {qrels_repo} --repo-type dataset --revision "
        f"{qrels_revision} --include '{subset}/qrels/*' --local-dir DIR` (huggingface-cli "
        f"download takes the same arguments), then load with root=DIR (Hydra: dataset.root=DIR)."
    )
    if requested:
        state = "offline mode, not cached"
    elif offline:
        state = f"{constants.ENDPOINT} unreachable, not cached"
    else:
        state = "hub error"
    with _hub_offline(offline):
        try:
            dd = datasets.load_dataset(repo, name=subset, revision=revision, cache_dir=cache_dir)
            qrels_path = hf_hub_download(
                qrels_repo, f"{subset}/qrels/qrels.tsv", repo_type="dataset",
                revision=qrels_revision, cache_dir=cache_dir,
            )  # fmt: skip
        except (OSError, ValueError) as e:  # connection, not-found and offline errors
            raise DataError(
                f"cannot load MixBench subset {subset!r} from {repo} ({state}: {e}). {hint}"
            ) from e
    names = {
        "queries": ("queries", "query"),
        "mixed_corpus": ("mixed_corpus",),
        "corpus": ("corpus",),
    }
    tables = {}
    for split, candidates in names.items():
        found = next((c for c in candidates if c in dd), None)
        if found is not None:
            tables[split] = _dataset_table(dd[found])
    if "queries" not in tables or not {"corpus", "mixed_corpus"} & tables.keys():
        raise DataError(
            f"{repo} subset {subset!r} lacks queries/query or mixed_corpus/corpus splits: {list(dd)}"
        )
    return tables, Path(qrels_path)


def _dataset_table(ds: datasets.Dataset) -> pa.Table:
    """The arrow table of a ``datasets.Dataset``, the image column left as ``{bytes, path}``
    so that no image is decoded at load time."""
    from datasets import Image

    if "image" in ds.column_names and isinstance(ds.features["image"], Image):
        ds = ds.cast_column("image", Image(decode=False))
    return ds.with_format("arrow")[:]


def _identity(image: ImageRef) -> str:
    """The content key, or the path of a missing file (``on_missing=skip`` keeps such refs)."""
    try:
        return image.content_key()
    except DataError:
        return f"missing:{image.path}"


def _check_mixed_matches_corpus(bench: Benchmark) -> None:
    """The shipped mixed corpus must be the corpus with modalities dropped (docs/formats.md §5)."""
    files = bench.meta["files"]
    by_id = {r.id: r for r in bench.corpus}
    for r in bench.mixed_corpus or ():
        doc = by_id.get(r.id)
        if doc is None:
            raise DataError(f"{files['mixed_corpus']}: id {r.id!r} is not in {files['corpus']}")
        if r.text is not None and r.text != doc.text:
            raise DataError(
                f"{files['mixed_corpus']}: text of id {r.id!r} differs from {files['corpus']}"
            )
        if r.image is not None and (
            doc.image is None or _identity(r.image) != _identity(doc.image)
        ):
            raise DataError(
                f"{files['mixed_corpus']}: image of id {r.id!r} differs from {files['corpus']}"
            )


def load_mixbench(
    root: str | None,
    subset: str,
    *,
    layout: str = "auto",
    repo: str = "mixed-modality-search/MixBench2026",
    revision: str | None = None,
    qrels_repo: str = "mixed-modality-search/MixBench25",
    qrels_revision: str = "88e3916036ea0bdb205f4da885d6e947a565c1a0",
    image_root: str | None = None,
    on_missing: str = "error",
    check_counts: bool = True,
    cache_dir: str | None = None,
) -> Benchmark:
    """Load one MixBench subset from a local folder or the hub.

    Args:
        root: folder holding ``<subset>/`` folders, or None to load ``repo`` from the hub.
        subset: ``MSCOCO``, ``Google_WIT``, ``VisualNews``, ``OVEN`` (any folder name works).
        layout: ``auto`` (detect), ``mixbench25`` (jsonl + image files) or ``parquet``.
        repo: hub dataset used when ``root`` is None.
        revision: hub revision of ``repo``.
        qrels_repo: hub dataset with the qrels TSV (the hub path only).
        qrels_revision: revision of ``qrels_repo``.
        image_root: folder tried first when resolving relative image paths.
        on_missing: ``error`` (a missing image file raises) or ``skip`` (log it, list the ids
            per split in ``meta["skipped"]`` and id -> file in ``meta["missing_files"]``; the
            record keeps its image reference, so the pipeline leaves the item out of the
            evaluation and its qrels still count, docs/missing-files.md).
        check_counts: compare counts with the published ones (warnings only) for known subsets.
        cache_dir: ``datasets``/hub cache folder for the hub path.

    Returns:
        The benchmark; ``corpus`` is the mixed corpus when the release has no full corpus.
        Optional ``<subset>/calibration/{queries,corpus}.jsonl`` fill ``calibration``.

    Raises:
        DataError: missing or malformed files, missing images (``on_missing="error"``),
            inconsistent ids or qrels, a mixed corpus that differs from the corpus, or a hub
            load that fails (offline, not cached) with instructions to pre-download.
    """
    if on_missing not in ("error", "skip"):
        raise DataError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    # a local folder's revision is unknown: recording the configured one would mislead
    meta: dict = {"loader": "mixbench", "subset": subset, "root": root, "revision": None}
    if root is None:
        if layout != "auto":
            raise DataError(f"layout={layout!r} applies to a local root; root is None (hub)")
        tables, qrels_path = _hub_tables(
            repo, subset, revision, qrels_repo, qrels_revision, cache_dir
        )
        builder = _RecordBuilder(None, on_missing)
        files: dict[str, object] = {s: f"{repo}:{subset}/{s}" for s in tables}
        rows = {s: _table_rows(t, files[s]) for s, t in tables.items()}
        files["qrels"] = qrels_path
        meta.update(layout="hub", repo=repo, revision=revision, qrels_revision=qrels_revision)
    else:
        base = Path(root)
        layout, files = _local_files(base, subset, layout, qrels_repo, qrels_revision)
        builder = _RecordBuilder(ImageResolver(base, base / subset, image_root), on_missing)
        rows = {s: _file_rows(p) for s, p in files.items() if s != "qrels"}
        meta["layout"] = layout
    meta["files"] = {s: str(p) for s, p in files.items()}

    splits = {s: builder.records(s, r) for s, r in rows.items()}
    qrels = read_qrels(files["qrels"])
    corpus_split = "corpus" if "corpus" in splits else "mixed_corpus"
    if builder.skipped:
        logger.warning(
            "%s: on_missing='skip': %d item(s) whose image file is missing (records per split: "
            "%s), left out of the evaluation (their qrels still count; first: %s)",
            subset, len(builder.missing_files),
            {s: len(v) for s, v in builder.skipped.items()},
            ", ".join(f"{i} ({f})" for i, f in list(builder.missing_files.items())[:3]),
        )  # fmt: skip
    meta.update(
        image_resolution=dict(builder.resolver.hits) if builder.resolver else {},
        skipped=builder.skipped,
        missing_files=builder.missing_files,
    )
    bench = Benchmark(
        name=f"mixbench/{subset}",
        queries=splits["queries"],
        corpus=splits[corpus_split],
        qrels=qrels,
        mixed_corpus=splits.get("mixed_corpus"),
        calibration={
            s.split("/", 1)[1]: v for s, v in splits.items() if s.startswith("calibration/")
        },
        meta=meta,
    )
    meta["warnings"] = validate_benchmark(
        bench, EXPECTED_COUNTS.get(subset) if check_counts else None
    )
    if "corpus" in splits and "mixed_corpus" in splits:
        _check_mixed_matches_corpus(bench)
    return bench
