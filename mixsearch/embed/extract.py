"""Batched extraction of embeddings through the content-keyed cache.

Images are decoded and preprocessed in DataLoader worker processes and encoded in batches in
the main process; texts are encoded in batches of strings. An entry is computed in parts of
``part_size`` rows: finished parts stay in the cache, so a killed job resumes where it stopped
and ``shard``/``num_shards`` split one entry across jobs (e.g. SLURM array tasks) that share a
cache directory. Whoever completes the last part seals the entry; the evaluation then reads it.

Autocast: ``amp="auto"`` is bf16 on CUDA devices that support it and none elsewhere; explicit
``"bf16"`` also works on CPU (CPU autocast, useful only on CPUs with bf16 units); ``"fp16"``
needs CUDA. The resolved mode is part of the cache key, since it changes the vectors.

Fields: ``text``, ``image`` and ``joint`` (an image+text item embedded as one input by a
universal embedder, :meth:`Encoder.encode_joint`). Every call embeds for a role, ``query`` or
``document`` (:func:`role_of_split`), which universal embedders turn into instructions. The
role follows from the split name, which is part of the cache key; a role that differs from the
split's own (a calibration pool of queries used as documents, say) is added to the key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mixsearch.data.benchmark import Benchmark, DataError, Record
from mixsearch.embed.cache import STORE_DTYPES, CacheEntry, EmbeddingCache, Part
from mixsearch.embed.cache import image_key as _image_key
from mixsearch.embed.embeddings import Embeddings, check_vectors
from mixsearch.encoders.base import Encoder, EncoderError, check_role, joint_unsupported_message
from mixsearch.logs import progress_bars_off

log = logging.getLogger(__name__)

FIELDS = ("text", "image", "joint")
AMP_MODES = ("auto", "bf16", "fp16", "none")
ON_MISSING = ("error", "skip")


def role_of_split(split: str) -> str:
    """``query`` for query splits (``queries``, ``calibration/queries``, ``*:queries``),
    ``document`` for everything else."""
    return "query" if split.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] in (
        "queries", "query") else "document"


def has_field(record: Record, field: str) -> bool:
    """Whether ``record`` has the content ``field`` embeds (``joint``: both text and image)."""
    if field == "joint":
        return record.text is not None and record.image is not None
    return getattr(record, field) is not None


def resolve_amp(amp: str, device: torch.device | str) -> str:
    """The autocast mode actually used: ``"none"``, ``"bf16"`` or ``"fp16"``."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp={amp!r}: expected one of {AMP_MODES}")
    cuda = torch.device(device).type == "cuda"
    if amp == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "none"
    if amp == "fp16" and not cuda:
        raise ValueError(
            f"amp='fp16' needs a CUDA encoder (device is {device}); use 'bf16' or 'none'"
        )
    return amp


class _ImageItems(Dataset):
    """Decodes and preprocesses images in DataLoader workers; a DataError becomes a value so
    the main process can raise it cleanly or skip the item."""

    def __init__(self, records: Sequence[Record], transform: Callable[[Image.Image], torch.Tensor],
                 max_side: int | None = None):
        self.records = records
        self.transform = transform
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor | None, str | None]:
        rec = self.records[i]
        try:
            return rec.id, self.transform(rec.image.load(self.max_side)), None  # type: ignore[union-attr]
        except DataError as e:
            return rec.id, None, str(e)


def _collate(batch: list[tuple[str, torch.Tensor | None, str | None]]):
    """Stacks the images in the worker (the default :meth:`Encoder.collate_images`)."""
    ok = [(i, x) for i, x, err in batch if err is None]
    failed = [(i, err) for i, _, err in batch if err is not None]
    pixels = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], pixels, failed


def _collate_list(batch: list[tuple[str, Any, str | None]]):
    """Leaves the images as a list; the encoder's own ``collate_images`` runs in the main
    process (VLM processors batch variable-size images themselves)."""
    ok = [(i, x) for i, x, err in batch if err is None]
    failed = [(i, err) for i, _, err in batch if err is not None]
    return [i for i, _ in ok], ([x for _, x in ok] if ok else None), failed


class _Extractor:
    """Encodes lists of records into :class:`Part` objects with one set of options."""

    def __init__(
        self,
        encoder: Encoder,
        field: str,
        *,
        batch_size: int,
        num_workers: int,
        autocast: str,
        store_dtype: str,
        on_missing: str,
        bar: tqdm,
        role: str = "document",
        max_image_side: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.field = field
        self.role = check_role(role)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = torch.device(encoder.device)
        self.autocast = autocast
        self.store_dtype = store_dtype
        self.on_missing = on_missing
        self.bar = bar
        self.max_image_side = max_image_side

    def _amp(self) -> AbstractContextManager:
        if self.autocast == "none":
            return nullcontext()
        dtype = torch.bfloat16 if self.autocast == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _rows(self, out: torch.Tensor, n: int, what: str) -> np.ndarray:
        if out.ndim != 2 or tuple(out.shape) != (n, self.encoder.dim):
            raise EncoderError(
                f"{self.encoder.name}.{what} returned shape {tuple(out.shape)} for {n} items; "
                f"expected ({n}, {self.encoder.dim})"
            )
        return out.detach().float().cpu().numpy().astype(self.store_dtype)

    def encode(self, records: Sequence[Record]) -> Part:
        """Embeddings of ``records`` (all carrying the field), skipping unreadable images when
        ``on_missing="skip"``."""
        ids: list[str] = []
        chunks: list[np.ndarray] = [np.zeros((0, self.encoder.dim), self.store_dtype)]
        skipped: list[str] = []
        reasons: dict[str, str] = {}
        with torch.inference_mode(), self._amp():
            for batch_ids, rows, failed in self._batches(records):
                for item_id, msg in failed:
                    if self.on_missing == "error":
                        raise DataError(f"record {item_id!r}: {msg}")
                    log.warning("skipping record %r (on_missing='skip'): %s", item_id, msg)
                    skipped.append(item_id)
                    reasons[item_id] = msg
                ids += batch_ids
                if rows is not None:
                    chunks.append(rows)
                self.bar.update(len(batch_ids) + len(failed))
        vectors = np.concatenate(chunks)
        gone = set(skipped)
        order = [r.id for r in records if r.id not in gone]
        if ids != order:  # text batches were bucketed by length
            row = {item_id: n for n, item_id in enumerate(ids)}
            vectors, ids = vectors[[row[i] for i in order]], order
        return Part(ids, vectors, skipped, reasons)

    def _batches(self, records: Sequence[Record]):
        enc = self.encoder
        if self.field == "text":
            # Length buckets: a batch of similar lengths pads little (dynamic-padding
            # tokenizers); encode() puts the rows back in record order.
            by_length = sorted(records, key=lambda r: len(r.text))  # type: ignore[arg-type]
            for s in range(0, len(by_length), self.batch_size):
                batch = by_length[s : s + self.batch_size]
                out = enc.encode_text([r.text for r in batch], role=self.role)  # type: ignore[misc]
                yield [r.id for r in batch], self._rows(out, len(batch), "encode_text"), []
            return
        # Overridden collate_images (VLMs): batch in the main process; else stack in workers.
        stacked = type(enc).collate_images is Encoder.collate_images
        loader = DataLoader(
            _ImageItems(records, enc.image_transform(), self.max_image_side),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_collate if stacked else _collate_list,
            pin_memory=stacked and self.device.type == "cuda",
            persistent_workers=False,
        )
        texts = {r.id: r.text for r in records} if self.field == "joint" else {}
        for ids, pixels, failed in loader:
            rows = None
            if pixels is not None:
                batch = (pixels.to(self.device, non_blocking=True) if stacked
                         else enc.collate_images(pixels))
                if self.field == "joint":
                    out = enc.encode_joint([texts[i] for i in ids], batch, role=self.role)
                else:
                    out = enc.encode_image(batch, role=self.role)
                rows = self._rows(out, len(ids), f"encode_{self.field}")
            yield ids, rows, failed


def _content(record: Record, field: str, on_missing: str, key_mode: str) -> str:
    if field == "text":
        return record.text  # type: ignore[return-value]
    try:
        image = _image_key(record.image, key_mode)  # type: ignore[arg-type]
    except DataError as e:
        if on_missing == "error":
            raise DataError(f"record {record.id!r}: {e}") from e
        # The key changes once the file appears, so a skipped entry is never reused then.
        image = f"missing:{record.image.path}"  # type: ignore[union-attr]
    # json framing keeps (text, image) pairs from colliding with other pairs
    return json.dumps([record.text, image], ensure_ascii=False) if field == "joint" else image


def _warn_blank_texts(items: list[Record], split: str) -> None:
    """One warning for texts that are empty or whitespace only: they are embedded as given,
    but are rarely what a benchmark meant."""
    blank = [r.id for r in items if not r.text.strip()]  # type: ignore[union-attr]
    if blank:
        log.warning("%d text(s) of split %r are whitespace only (first ids: %s); embedded as given",
                    len(blank), split, ", ".join(map(repr, blank[:5])))


def _fill(
    entry: CacheEntry, items: list[Record], ex: _Extractor, shard: int, num_shards: int
) -> tuple[dict[int, Part], int, int]:
    """Compute this shard's missing parts; returns every part now present and the numbers
    of rows encoded and read from the cache."""
    entry.claim_layout()
    done: dict[int, Part] = {}
    encoded = cached = 0

    def attempt(p: int, blocking: bool) -> bool:
        nonlocal encoded, cached
        part = entry.read_part(p, warn=False)
        if part is None:
            with entry.lock(entry.part_name(p), blocking=blocking) as held:
                if not held:
                    return False
                part = entry.read_part(p)  # another job may have finished it meanwhile
                if part is None:
                    part = ex.encode(items[entry.part_slice(p)])
                    entry.write_part(p, part)
                    encoded += len(part.ids)
                    done[p] = part
                    return True
        cached += len(part.ids)
        ex.bar.update(len(part.ids) + len(part.skipped))
        done[p] = part
        return True

    mine = [p for p in range(entry.n_parts) if p % num_shards == shard]
    # First pass skips parts another job is computing right now; the second waits for them.
    busy = [p for p in mine if not attempt(p, blocking=False)]
    for p in busy:
        attempt(p, blocking=True)
    for p in range(entry.n_parts):
        if p not in done and (part := entry.read_part(p, warn=False)) is not None:
            done[p] = part
    return done, encoded, cached


def embed_records(
    encoder: Encoder,
    records: list[Record],
    field: str,
    *,
    cache: EmbeddingCache | None,
    dataset_key: str,
    split: str,
    role: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    amp: str = "auto",
    store_dtype: str = "float32",
    part_size: int = 4096,
    shard: int = 0,
    num_shards: int = 1,
    on_missing: str = "error",
    image_key: str = "content",
    max_image_side: int | None = None,
    lock_timeout: float | None = None,
    progress: bool = True,
    stats: dict | None = None,
) -> Embeddings | None:
    """Embed one field of the records that have it, through the cache.

    Args:
        encoder: the encoder.
        records: records of one split; those without ``field`` are not part of the entry.
        field: ``"text"``, ``"image"`` or ``"joint"`` (records with both, embedded as one
            input; needs an encoder with ``supports_joint``).
        cache: the cache, or None to compute everything in memory (``num_shards`` must be 1).
        dataset_key: dataset name and revision (part of the cache key).
        split: split name (part of the cache key).
        role: ``"query"`` or ``"document"``; default :func:`role_of_split` of ``split``.
        batch_size: items per encoder call.
        num_workers: DataLoader workers decoding and preprocessing images.
        amp: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"none"`` (see the module docstring).
        store_dtype: ``"float32"`` or ``"float16"`` storage; returned vectors are float32.
        part_size: rows per cache part (the unit of resumption and sharding).
        shard: index of this job's shard, ``0 <= shard < num_shards``.
        num_shards: number of jobs sharing the entry; part ``p`` belongs to shard
            ``p % num_shards``.
        on_missing: ``"error"`` raises the DataError of an unreadable image; ``"skip"`` leaves
            it out with a warning and records its id and the reason in the manifest and
            ``stats``.
        image_key: cache identity of image files: ``"content"`` (hash of the bytes) or
            ``"stat"`` (path, size, mtime; see :func:`~mixsearch.embed.cache.image_key`).
        max_image_side: shrink images to this longer side while decoding (the dataset's
            ``max_image_side``; part of the cache key of image and joint entries); None:
            decode at full size and let the encoder's processor resize.
        lock_timeout: seconds to wait for a cache lock held by another process before
            failing with :class:`~mixsearch.embed.cache.CacheLockTimeout` (None: no limit).
        progress: show a tqdm progress bar.
        stats: if given, updated with ``key``, ``path``, ``items``, ``cached_items``,
            ``encoded_items`` (rows encoded now), ``seconds``, ``items_per_s`` (encoded rows
            per second), ``skipped`` (ids without a row), ``skip_reasons`` (id -> why) and
            ``complete``.

    Returns:
        Embeddings of the items in record order (minus skipped ones), or None when the
        entry is still incomplete after this shard's parts.

    Raises:
        DataError: duplicate ids, an unreadable image with ``on_missing="error"``, a cached
            entry that skipped items when ``on_missing="error"``, or all-zero or non-finite
            embeddings (names the ids).
        ValueError: an invalid option (named in the message).
    """
    if field not in FIELDS:
        raise ValueError(f"field={field!r}: expected one of {FIELDS}")
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing={on_missing!r}: expected one of {ON_MISSING}")
    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"store_dtype={store_dtype!r}: expected one of {STORE_DTYPES}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard={shard}, num_shards={num_shards}: need 0 <= shard < num_shards")
    if cache is None and num_shards != 1:
        raise ValueError(f"num_shards={num_shards} needs a cache to collect the parts in")
    if field == "joint" and not encoder.supports_joint:
        raise EncoderError(joint_unsupported_message(encoder.name))
    own_role = role_of_split(split)
    role = check_role(role or own_role)
    # The split is in the cache key and implies its role; any other role joins the key.
    split_key = split if role == own_role else f"{split}#{role}"
    autocast = resolve_amp(amp, encoder.device)
    items = [r for r in records if has_field(r, field)]
    seen: set[str] = set()
    for r in items:
        if r.id in seen:
            raise DataError(f"duplicate id {r.id!r} in split {split!r} ({field})")
        seen.add(r.id)
    if field == "text":
        _warn_blank_texts(items, split)

    t0 = time.perf_counter()
    # delay: a cache hit finishes in milliseconds and should not draw a bar
    bar = tqdm(total=len(items), desc=f"embed {split}/{field}", unit="item",
               disable=not progress, delay=0.5)
    ex = _Extractor(
        encoder,
        field,
        batch_size=batch_size,
        num_workers=num_workers,
        autocast=autocast,
        store_dtype=store_dtype,
        on_missing=on_missing,
        bar=bar,
        role=role,
        max_image_side=max_image_side,
    )
    entry: CacheEntry | None = None
    with bar, progress_bars_off(not progress):
        if cache is None:
            parts = {0: ex.encode(items)}
            encoded, cached = len(parts[0].ids), 0
        else:
            entry = cache.entry(
                encoder,
                dataset_key=dataset_key,
                split=split_key,
                field=field,
                store_dtype=store_dtype,
                autocast=autocast,
                items=[(r.id, _content(r, field, on_missing, image_key)) for r in items],
                dim=encoder.dim,
                part_size=part_size,
                lock_timeout=lock_timeout,
                preprocess=None if field == "text" else {"max_image_side": max_image_side},
            )
            parts, encoded, cached = _fill(entry, items, ex, shard, num_shards)
    complete = entry is None or len(parts) == entry.n_parts
    merged = [parts[p] for p in sorted(parts)] if complete else []
    skipped = [i for part in merged for i in part.skipped]
    reasons = {i: why for part in merged for i, why in part.reasons.items()}
    if entry is not None and complete and entry.read_manifest() is None:
        with entry.lock("manifest"):
            if entry.read_manifest() is None:
                entry.write_manifest(skipped, reasons)
    seconds = time.perf_counter() - t0
    if stats is not None:
        stats.update(
            key=entry.key if entry else None,
            path=str(entry.path) if entry else None,
            items=len(items),
            cached_items=cached,
            encoded_items=encoded,
            seconds=seconds,
            items_per_s=encoded / seconds if encoded else 0.0,
            skipped=skipped,
            skip_reasons=reasons,
            complete=complete,
        )
    if not complete:
        return None
    if skipped and on_missing == "error":
        raise DataError(
            f"{len(skipped)} {field} item(s) of split {split!r} were skipped as unreadable "
            f"(first: {skipped[0]!r}, cache entry {entry.path if entry else '-'}); fix them "
            "or pass on_missing='skip'"
        )
    ids = [i for part in merged for i in part.ids]
    empty = np.zeros((0, encoder.dim), np.float32)
    vectors = np.concatenate([empty, *(part.vectors for part in merged)]).astype(np.float32)
    emb = Embeddings(ids, vectors)
    check_vectors(emb, f"{encoder.name} embeddings of split {split!r} ({field})")
    return emb


def _from_precomputed(
    source: Any, split: str, field: str, needed: list[Record], stats: dict
) -> Embeddings:
    emb: Embeddings = source.get(split, field)
    pos = emb.index()
    missing = [r.id for r in needed if r.id not in pos]
    if missing:
        raise DataError(
            f"precomputed embeddings for {split}/{field} have no row for id {missing[0]!r} "
            f"({len(missing)} of {len(needed)} missing)"
        )
    wanted = {r.id for r in needed}
    # The source's row order, kept so that corpus.order=embeddings can follow it.
    ids = [i for i in emb.ids if i in wanted]
    stats.update(
        key=None,
        path=None,
        items=len(ids),
        cached_items=len(ids),
        encoded_items=0,
        seconds=0.0,
        items_per_s=0.0,
        skipped=[],
        skip_reasons={},
        complete=True,
    )
    out = Embeddings(ids, np.asarray(emb.vectors[[pos[i] for i in ids]], dtype=np.float32))
    check_vectors(out, f"precomputed embeddings for {split}/{field}")
    return out


def embed_benchmark(
    encoder: Encoder | Any,
    bench: Benchmark,
    *,
    splits: Sequence[str] = ("queries", "corpus"),
    joint_splits: Sequence[str] = (),
    cache: EmbeddingCache | None,
    **kw: Any,
) -> tuple[dict[str, Embeddings], list[dict]]:
    """Embed the text and image fields of each split that has at least one such item, and the
    joint field of the ``joint_splits``.

    Args:
        encoder: an :class:`Encoder`, or a precomputed source with ``get(split, field) ->
            Embeddings`` (then nothing is encoded and the cache is not used; its ``joint``
            field is the file's ``mixed`` one, e.g. the seed's ``vlm_mixed_embedding``).
        bench: the benchmark; its cache ``dataset_key`` is :meth:`Benchmark.cache_key`.
        splits: split names as :meth:`Benchmark.split` takes them.
        joint_splits: splits whose image+text records are also embedded jointly
            (``fusion=joint``); the role of each split is :func:`role_of_split`.
        cache: the embedding cache, or None.
        **kw: options of :func:`embed_records` (batch size, workers, amp, sharding, ...).

    Returns:
        Embeddings by ``"<split>/<field>"`` (entries a shard job left incomplete are absent)
        and one stats dict per entry (with ``"entry"``: that name).

    Raises:
        DataError: a precomputed source lacks a row for a record that needs it (names the id).
    """
    dataset_key = bench.cache_key()
    precomputed = callable(getattr(encoder, "get", None))
    out: dict[str, Embeddings] = {}
    all_stats: list[dict] = []
    for split in splits:
        records = bench.split(split)
        for field in FIELDS if split in joint_splits else ("text", "image"):
            needed = [r for r in records if has_field(r, field)]
            if not needed:
                continue
            name = f"{split}/{field}"
            stats: dict[str, Any] = {"entry": name}
            if precomputed:
                source_field = "mixed" if field == "joint" else field
                emb = _from_precomputed(encoder, split, source_field, needed, stats)
            else:
                emb = embed_records(
                    encoder,
                    records,
                    field,
                    cache=cache,
                    dataset_key=dataset_key,
                    split=split,
                    stats=stats,
                    **kw,
                )
            all_stats.append(stats)
            if emb is not None:
                out[name] = emb
    return out, all_stats
