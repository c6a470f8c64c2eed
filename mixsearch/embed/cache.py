"""Content-keyed, atomic and resumable on-disk cache of embeddings.

An *entry* holds the embeddings of one encoder for one exact, ordered list of items of one
(dataset, split, field). Its key hashes everything that changes the vectors: the encoder
fingerprint, the autocast mode, the dataset key, split, field, storage dtype and a content hash
over ``(id, content)`` of the items in order. Layout::

    <root>/<encoder-hash>/<dataset-slug>/<split>-<field>-<key16>/
        part-00000.ids.json   {"ids": [...], "skipped": [...]} of rows [0, part_size)
        part-00000.npy        the vectors of those ids (float32 or float16)
        part-00000.lock       file lock held while part 0 is being computed
        manifest.json         written last, once every part exists: the entry is complete

Every file is written to a temp file in the same directory, fsynced and renamed into place,
so a crash leaves only ``*.tmp`` files, which are ignored and removed by the next holder of
that part's lock. A part exists once its ``.npy`` exists (its ids are written first).

Corrupt parts (truncated ``.npy``, wrong shape or dtype, ids that do not match the items) are
treated as missing: a warning names the file and the part is recomputed. Reading a complete
entry never takes a lock, creates or rewrites a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from filelock import FileLock, Timeout

from mixsearch.encoders.base import Encoder
from mixsearch.tracking import package_versions

log = logging.getLogger(__name__)

STORE_DTYPES = ("float32", "float16")
MANIFEST = "manifest.json"
_TMP_SUFFIX = ".tmp"


@dataclass
class Part:
    """Rows of one part: ``vectors[i]`` belongs to ``ids[i]``; ``skipped`` ids have no row."""

    ids: list[str]
    vectors: np.ndarray
    skipped: list[str]


def content_hash(items: Sequence[tuple[str, str]]) -> str:
    """SHA-256 over ``(id, content)`` pairs in order (JSON-framed, so no two lists collide)."""
    h = hashlib.sha256()
    for item_id, content in items:
        h.update(json.dumps([item_id, content], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse fsync on directories.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` via a temp file in the same directory, fsync and ``os.replace``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, ensure_ascii=False).encode()))


class CacheEntry:
    """One cache entry: the parts of an ordered item list and the manifest that seals them.

    Built by :meth:`EmbeddingCache.entry`; ``ids`` are the ids of all items in row order.
    """

    def __init__(
        self,
        path: Path,
        key: str,
        key_inputs: dict[str, Any],
        ids: list[str],
        dim: int,
        part_size: int,
    ) -> None:
        self.path = path
        self.key = key
        self.key_inputs = key_inputs
        self.ids = ids
        self.dim = dim
        self.store_dtype = key_inputs["store_dtype"]
        self.part_size = part_size
        manifest = self.read_manifest()
        if manifest is not None and manifest.get("part_size") != part_size:
            # A complete entry keeps the layout it was written with.
            self.part_size = int(manifest["part_size"])

    @property
    def n_parts(self) -> int:
        return -(-len(self.ids) // self.part_size)

    def part_slice(self, p: int) -> slice:
        """Positions of part ``p`` in the item list."""
        return slice(p * self.part_size, min((p + 1) * self.part_size, len(self.ids)))

    def _file(self, p: int, suffix: str) -> Path:
        return self.path / f"{self.part_name(p)}{suffix}"

    @staticmethod
    def part_name(p: int) -> str:
        """File stem (and lock name) of part ``p``."""
        return f"part-{p:05d}"

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the entry is incomplete or the manifest unreadable."""
        try:
            return json.loads((self.path / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning(
                "embedding cache: unreadable %s (%s); rewriting it", self.path / MANIFEST, e
            )
            return None

    def read_part(self, p: int, *, warn: bool = True, mmap: bool = False) -> Part | None:
        """Part ``p`` if it exists and is sound, else None (a corrupt part logs a warning
        naming the file when ``warn``). ``mmap``: the vectors are a read-only memory map of
        the ``.npy`` file (pages are read on use, and freed with the array)."""
        npy = self._file(p, ".npy")
        if not npy.is_file():
            return None
        try:
            meta = json.loads(self._file(p, ".ids.json").read_text())
            vectors = np.load(npy, allow_pickle=False, mmap_mode="r" if mmap else None)
            problem = self._check_part(p, meta["ids"], meta["skipped"], vectors)
        except (OSError, ValueError, EOFError, KeyError, TypeError) as e:
            problem = f"unreadable: {e}"
        if problem:
            if warn:
                log.warning("embedding cache: corrupt part %s (%s); recomputing it", npy, problem)
            return None
        return Part(list(meta["ids"]), vectors, list(meta["skipped"]))

    def _check_part(self, p: int, ids: list, skipped: list, vectors: np.ndarray) -> str:
        expected = self.ids[self.part_slice(p)]
        gone = set(skipped)
        if not gone <= set(expected) or ids != [i for i in expected if i not in gone]:
            return "its ids do not match the items of this part"
        want = (len(ids), self.dim)
        if vectors.ndim != 2 or vectors.shape != want:
            return f"shape {vectors.shape}, expected {want}"
        if vectors.dtype != np.dtype(self.store_dtype):
            return f"dtype {vectors.dtype}, expected {self.store_dtype}"
        return ""

    def write_part(self, p: int, part: Part) -> None:
        """Store part ``p`` atomically: ids first, then the vectors that make it exist."""
        self.path.mkdir(parents=True, exist_ok=True)
        vectors = np.ascontiguousarray(part.vectors, dtype=self.store_dtype)
        problem = self._check_part(p, part.ids, part.skipped, vectors)
        if problem:
            raise ValueError(f"refusing to write {self._file(p, '.npy')}: {problem}")
        _write_json(self._file(p, ".ids.json"), {"ids": part.ids, "skipped": part.skipped})
        atomic_write(self._file(p, ".npy"), lambda f: np.save(f, vectors, allow_pickle=False))

    @contextmanager
    def lock(self, name: str, *, blocking: bool = True) -> Iterator[bool]:
        """Hold ``<name>.lock``; yields False (without waiting) when ``blocking`` is False and
        another process holds it. The holder removes stale temp files of ``name``."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / f"{name}.lock")
        try:
            lock.acquire(timeout=-1 if blocking else 0)
        except Timeout:
            acquired = False
        else:
            acquired = True
        if not acquired:
            yield False
            return
        try:
            # Only the lock holder writes ``name``'s files, so any temp file is from a crash.
            for stale in self.path.glob(f"{name}.*{_TMP_SUFFIX}"):
                stale.unlink(missing_ok=True)
            yield True
        finally:
            lock.release()

    def write_manifest(self, skipped: list[str]) -> None:
        """Seal the entry (call once every part exists, under ``lock("manifest")``)."""
        inputs = self.key_inputs
        manifest = {
            "key": self.key,
            "encoder": inputs["encoder"],
            "autocast": inputs["autocast"],
            "dataset": inputs["dataset"],
            "split": inputs["split"],
            "field": inputs["field"],
            "content_sha256": inputs["content"],
            "n": len(self.ids) - len(skipped),
            "items": len(self.ids),
            "dim": self.dim,
            "dtype": self.store_dtype,
            "part_size": self.part_size,
            "n_parts": self.n_parts,
            "skipped": skipped,
            "versions": package_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write_json(self.path / MANIFEST, manifest)


class EmbeddingCache:
    """A directory of :class:`CacheEntry` objects, safe to share between concurrent jobs.

    Args:
        root: cache directory (created on the first write). On a cluster, a shared
            filesystem whose locks work across nodes (``flock``), e.g. NFSv4 or Lustre.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(
        self,
        encoder: Encoder,
        *,
        dataset_key: str,
        split: str,
        field: str,
        store_dtype: str,
        autocast: str,
        items: Sequence[tuple[str, str]],
        dim: int,
        part_size: int,
    ) -> CacheEntry:
        """The entry for these key inputs (nothing is read or written but its manifest).

        Args:
            encoder: the encoder (its fingerprint is part of the key).
            dataset_key: dataset name and revision.
            split: split name as ``Benchmark.split`` takes it.
            field: ``"text"`` or ``"image"``.
            store_dtype: ``"float32"`` or ``"float16"``.
            autocast: the resolved autocast mode (``"none"``, ``"bf16"``, ``"fp16"``).
            items: ``(id, content)`` per item in row order: the text, or the image's
                ``content_key()``.
            dim: embedding dimension, checked on every read.
            part_size: rows per part for a new entry.
        """
        if store_dtype not in STORE_DTYPES:
            raise ValueError(f"store_dtype={store_dtype!r}: expected one of {STORE_DTYPES}")
        if part_size < 1:
            raise ValueError(f"part_size={part_size}: must be >= 1")
        inputs = {
            "encoder": encoder.fingerprint(),
            "autocast": autocast,
            "dataset": dataset_key,
            "split": split,
            "field": field,
            "store_dtype": store_dtype,
            "content": content_hash(items),
        }
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        path = (
            self.root
            / encoder.fingerprint_hash()
            / _slug(dataset_key)
            / f"{_slug(split)}-{field}-{key[:16]}"
        )
        return CacheEntry(path, key, inputs, [i for i, _ in items], dim, part_size)
