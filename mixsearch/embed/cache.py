"""Content-keyed, atomic and resumable on-disk cache of embeddings.

An *entry* holds the embeddings of one encoder for one exact, ordered list of items of one
(dataset, split, field). Its key hashes everything that changes the vectors: the encoder
fingerprint, the autocast mode, the dataset key, split, field, storage dtype and a content hash
over ``(id, content)`` of the items in order. Layout::

    <root>/<encoder-hash>/<dataset-slug>/<split>-<field>-<key16>/
        layout.json           {"part_size": n}: fixed by the first job that starts the entry
        part-00000.ids.json   {"ids", "skipped", "reasons", "checksum"} of rows [0, part_size)
        part-00000.npy        the vectors of those ids (float32 or float16)
        part-00000.lock       file lock held while part 0 is being computed
        manifest.json         written last, once every part exists: the entry is complete

Every file is written to a temp file in the same directory, fsynced and renamed into place,
so a crash leaves only ``*.tmp`` files, which are ignored and removed by the next holder of
that part's lock. A part exists once its ``.npy`` exists (its ids are written first).

Integrity: each part's ids file records an xxh3 checksum of its vectors, verified when the
part is read (once per process and file version: xxh3 hashes several GB/s, far faster than
the read itself). A corrupt part (truncated or garbled ``.npy``, wrong shape or dtype, ids
that do not match the items, a checksum mismatch, non-finite values in a part written before
checksums existed) is treated as missing: a warning names the file and the part is
recomputed. Invalid metadata (``manifest.json``/``layout.json`` of the wrong kind) is
rewritten with a warning naming the file.

Part size: an entry has one layout. The first job to start an entry records its part size in
``layout.json`` and every later job adopts it (a complete entry keeps the one its manifest
names), so jobs with different ``part_size`` options share the work instead of flagging each
other's parts as corrupt.

Reading a complete entry never takes a lock, creates or rewrites a file (a read-only cache
works). Waiting on a lock held by another job is logged every :data:`LOCK_LOG_EVERY` seconds;
``lock_timeout`` ends the wait with :class:`CacheLockTimeout`. A full disk raises an
``OSError`` naming the file being written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import xxhash
from filelock import FileLock, Timeout

from mixsearch.data.benchmark import DataError, ImageRef
from mixsearch.encoders.base import Encoder
from mixsearch.tracking import package_versions

log = logging.getLogger(__name__)

STORE_DTYPES = ("float32", "float16")
MANIFEST = "manifest.json"
LAYOUT = "layout.json"
IMAGE_KEYS = ("content", "stat")
LOCK_LOG_EVERY = 10.0  # seconds between "still waiting for <lock>" messages
_TMP_SUFFIX = ".tmp"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# (path, inode, size, mtime_ns, checksum) of part files verified by this process
_VERIFIED: set[tuple[str, int, int, int, str]] = set()
# (path, inode, size, mtime_ns) -> content hash of image files hashed by this process
_IMAGE_HASHES: dict[tuple[str, int, int, int], str] = {}


class CacheLockTimeout(TimeoutError):
    """``lock_timeout`` seconds passed while another process held a cache lock file."""


@dataclass
class Part:
    """Rows of one part: ``vectors[i]`` belongs to ``ids[i]``; ``skipped`` ids have no row
    (``reasons[id]`` says why, when known)."""

    ids: list[str]
    vectors: np.ndarray
    skipped: list[str]
    reasons: dict[str, str] = field(default_factory=dict)


def checksum(data: np.ndarray | bytes) -> str:
    """``"xxh3_64:<hex>"`` of an array's bytes (C order), or of raw bytes (a whole file)."""
    buf = data if isinstance(data, bytes | bytearray | memoryview) else np.ascontiguousarray(data)
    return "xxh3_64:" + xxhash.xxh3_64_hexdigest(buf)


def image_key(image: ImageRef, mode: str = "content") -> str:
    """The cache identity of an image.

    Args:
        image: the image reference.
        mode: ``"content"``: a hash of the file's bytes (remembered per process for a file
            whose path, inode, size and mtime are unchanged); ``"stat"``: resolved path, size
            and mtime (no read, but a file rewritten with the same size and mtime keeps its
            key). Embedded bytes are always hashed.

    Raises:
        DataError: the file is missing or unreadable (names it).
        ValueError: unknown ``mode``.
    """
    if mode not in IMAGE_KEYS:
        raise ValueError(f"embed.image_key={mode!r}: expected one of {IMAGE_KEYS}")
    if mode == "stat" or image.data is not None:
        return image.content_key()
    path = os.path.abspath(image.path)  # type: ignore[arg-type]
    try:
        st = os.stat(path)
        memo = (path, st.st_ino, st.st_size, st.st_mtime_ns)
        if memo not in _IMAGE_HASHES:
            with open(path, "rb") as f:
                _IMAGE_HASHES[memo] = "xxh3_128:" + xxhash.xxh3_128_hexdigest(f.read())
    except FileNotFoundError as e:
        raise DataError(f"image file not found: {image.path}") from e
    except OSError as e:
        raise DataError(f"cannot read image file {image.path}: {e}") from e
    return _IMAGE_HASHES[memo]


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
    """Write ``path`` via a temp file in the same directory, fsync and ``os.replace``.

    Raises:
        OSError: the disk (or quota) is full: the message names ``path`` and says so.
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in _DISK_FULL:
            raise OSError(
                e.errno,
                f"disk full: cannot write {path} ({e.strerror or os.strerror(e.errno)}); free "
                f"space under {path.parent} or point paths.cache_dir at another disk",
            ) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_npy(f: IO[bytes], vectors: np.ndarray) -> None:
    # Header, then the raw buffer through Python's file object: unlike np.save (ndarray.tofile)
    # a short write raises an OSError with its errno, so a full disk is recognised.
    np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(vectors))
    f.write(np.ascontiguousarray(vectors))  # type: ignore[arg-type]


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, ensure_ascii=False).encode()))


class CacheEntry:
    """One cache entry: the parts of an ordered item list and the manifest that seals them.

    Built by :meth:`EmbeddingCache.entry`; ``ids`` are the ids of all items in row order.
    ``part_size`` is the requested layout: a complete entry keeps the one in its manifest, and
    :meth:`claim_layout` makes an incomplete one adopt the layout of the job that started it.
    """

    def __init__(
        self,
        path: Path,
        key: str,
        key_inputs: dict[str, Any],
        ids: list[str],
        dim: int,
        part_size: int,
        lock_timeout: float | None = None,
    ) -> None:
        if lock_timeout is not None and not lock_timeout >= 0:
            raise ValueError(f"lock_timeout={lock_timeout!r}: expected seconds >= 0 or None")
        self.path = path
        self.key = key
        self.key_inputs = key_inputs
        self.ids = ids
        self.dim = dim
        self.store_dtype = key_inputs["store_dtype"]
        self.part_size = part_size
        self.lock_timeout = lock_timeout
        self._warned: set[str] = set()
        manifest = self.read_manifest()
        if manifest is not None:
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

    def _warn_once(self, path: Path, problem: str) -> None:
        if str(path) not in self._warned:
            self._warned.add(str(path))
            log.warning("embedding cache: invalid %s (%s); rewriting it", path, problem)

    def _read_json(self, path: Path) -> Any:
        """The parsed file, or None when absent; unreadable files warn (once) and give None."""
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self._warn_once(path, f"unreadable: {e}")
            return None

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the entry is incomplete or the manifest invalid (then a
        warning names the file, once per entry object, and the manifest is rewritten)."""
        path = self.path / MANIFEST
        manifest = self._read_json(path)
        if manifest is None:
            return None
        problem = self._manifest_problem(manifest)
        if problem:
            self._warn_once(path, problem)
            return None
        return manifest

    def _manifest_problem(self, m: Any) -> str:
        if not isinstance(m, dict):
            return f"a JSON {type(m).__name__}, expected an object"
        size = m.get("part_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            return f"part_size {size!r} is not a positive integer"
        if m.get("key") != self.key:
            return "its key is not this entry's"
        if m.get("items") != len(self.ids) or m.get("n_parts") != -(-len(self.ids) // size):
            return "its item or part counts do not match the entry"
        if not isinstance(m.get("skipped"), list):
            return "no list of skipped ids"
        return ""

    def claim_layout(self) -> None:
        """Fix the part size of an incomplete entry: the first job records its ``part_size``
        in ``layout.json`` (parts of an entry written before layouts existed give theirs);
        every later job adopts it, with a log line when it differs from its own."""
        if self.read_manifest() is not None:
            return
        size = self._read_layout()
        if size is None:
            with self.lock("layout"):
                size = self._read_layout()
                if size is None:
                    size = self._size_of_first_part() or self.part_size
                    _write_json(self.path / LAYOUT, {"part_size": size})
        if size != self.part_size:
            log.info(
                "embedding cache: %s was started with part_size=%d; continuing with it "
                "(embed.part_size=%d applies to new entries)", self.path, size, self.part_size
            )
            self.part_size = size

    def _read_layout(self) -> int | None:
        path = self.path / LAYOUT
        layout = self._read_json(path)
        if layout is None:
            return None
        size = layout.get("part_size") if isinstance(layout, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            self._warn_once(path, f"expected {{\"part_size\": <positive int>}}, got {layout!r}")
            return None
        return size

    def _size_of_first_part(self) -> int | None:
        # Entries written before layout.json existed: part 0 holds exactly part_size items
        # (or all of them, when there is one part).
        meta = self._read_json(self._file(0, ".ids.json")) if self._file(0, ".npy").is_file() else None
        try:
            n = len(meta["ids"]) + len(meta["skipped"])  # type: ignore[index]
        except (TypeError, KeyError):
            return None
        return n if 0 < n <= len(self.ids) else None

    def read_part(self, p: int, *, warn: bool = True, mmap: bool = False) -> Part | None:
        """Part ``p`` if it exists and is sound, else None (a corrupt part logs a warning
        naming the file when ``warn``). ``mmap``: the vectors are a read-only memory map of
        the ``.npy`` file (pages are read on use, and freed with the array)."""
        npy = self._file(p, ".npy")
        if not npy.is_file():
            return None
        try:
            meta = json.loads(self._file(p, ".ids.json").read_text())
            if not isinstance(meta, dict):
                raise ValueError(f"ids file holds a JSON {type(meta).__name__}, not an object")
            st = os.stat(npy)
            vectors = np.load(npy, allow_pickle=False, mmap_mode="r" if mmap else None)
            problem = self._check_part(p, meta["ids"], meta["skipped"], vectors)
            problem = problem or self._verify(npy, st, meta.get("checksum"), vectors, meta["ids"])
        except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as e:
            problem = f"unreadable: {e}"
        if problem:
            if warn:
                log.warning("embedding cache: corrupt part %s (%s); recomputing it", npy, problem)
            return None
        reasons = meta.get("reasons")
        return Part(list(meta["ids"]), vectors, list(meta["skipped"]),
                    dict(reasons) if isinstance(reasons, dict) else {})

    @staticmethod
    def _verify(npy: Path, st: os.stat_result, recorded: Any, vectors: np.ndarray,
                ids: list[str]) -> str:
        """Checksum (or, for parts written without one, finiteness) of a part's vectors."""
        memo = (str(npy), st.st_ino, st.st_size, st.st_mtime_ns, str(recorded))
        if memo in _VERIFIED:
            return ""
        if recorded is not None:
            found = checksum(vectors)
            if found != recorded:
                return f"checksum mismatch: recorded {recorded}, found {found}"
        else:
            bad = _non_finite_rows(vectors)
            if len(bad):
                return f"non-finite values in {len(bad)} row(s), first id {ids[bad[0]]!r}"
        _VERIFIED.add(memo)
        return ""

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
        """Store part ``p`` atomically: ids and checksum first, then the vectors that make it
        exist.

        Raises:
            ValueError: the part does not fit the entry, or has non-finite values (names the
                file and the first id).
            OSError: the disk is full (names the file).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        npy = self._file(p, ".npy")
        vectors = np.ascontiguousarray(part.vectors, dtype=self.store_dtype)
        problem = self._check_part(p, part.ids, part.skipped, vectors)
        bad = _non_finite_rows(vectors)
        if len(bad):
            problem = problem or (f"the encoder returned non-finite values for {len(bad)} "
                                  f"item(s), first id {part.ids[bad[0]]!r}")
        if problem:
            raise ValueError(f"refusing to write {npy}: {problem}")
        meta = {"ids": part.ids, "skipped": part.skipped, "reasons": part.reasons,
                "checksum": checksum(vectors)}
        _write_json(self._file(p, ".ids.json"), meta)
        atomic_write(npy, lambda f: _write_npy(f, vectors))

    @contextmanager
    def lock(self, name: str, *, blocking: bool = True) -> Iterator[bool]:
        """Hold ``<name>.lock``; yields False (without waiting) when ``blocking`` is False and
        another process holds it. The holder removes stale temp files of ``name``.

        A blocking wait logs the lock file every :data:`LOCK_LOG_EVERY` seconds and gives up
        after ``lock_timeout`` seconds (None: never).

        Raises:
            CacheLockTimeout: ``lock_timeout`` passed (names the lock file).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / f"{name}.lock"
        lock = FileLock(path)
        if not self._acquire(lock, path, blocking):
            yield False
            return
        try:
            # Only the lock holder writes ``name``'s files, so any temp file is from a crash.
            for stale in self.path.glob(f"{name}.*{_TMP_SUFFIX}"):
                stale.unlink(missing_ok=True)
            yield True
        finally:
            lock.release()

    def _acquire(self, lock: FileLock, path: Path, blocking: bool) -> bool:
        try:
            lock.acquire(timeout=0)
            return True
        except Timeout:
            if not blocking:
                return False
        limit = self.lock_timeout
        until = "" if limit is None else f", giving up after {limit:g} s"
        log.info("embedding cache: waiting for %s, held by another process%s", path, until)
        start = time.monotonic()
        while True:
            waited = time.monotonic() - start
            step = LOCK_LOG_EVERY if limit is None else min(LOCK_LOG_EVERY, limit - waited)
            try:
                lock.acquire(timeout=max(step, 0.0))
                return True
            except Timeout:
                waited = time.monotonic() - start
            if limit is not None and waited >= limit:
                raise CacheLockTimeout(
                    f"gave up waiting for the lock file {path} after {waited:.0f} s "
                    f"(embed.lock_timeout={limit:g}): another process holds it, a concurrent "
                    f"job or a hung one (`fuser {path}` names it); stop that process or raise "
                    "embed.lock_timeout"
                )
            log.info("embedding cache: still waiting for %s, held by another process "
                     "(%.0f s so far%s)", path, waited, until)

    def write_manifest(self, skipped: list[str], reasons: dict[str, str] | None = None) -> None:
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
            "skip_reasons": reasons or {},
            "versions": package_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write_json(self.path / MANIFEST, manifest)


def _non_finite_rows(vectors: np.ndarray) -> np.ndarray:
    """Row numbers holding NaN or Inf."""
    return np.flatnonzero(~np.isfinite(vectors).all(axis=1)) if vectors.size else np.zeros(0, int)


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
        lock_timeout: float | None = None,
        preprocess: dict[str, Any] | None = None,
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
            lock_timeout: seconds to wait for a lock another process holds (None: no limit).
            preprocess: input preparation outside the encoder that changes the vectors (image
                entries: ``{"max_image_side": ...}``); part of the key.
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
        if preprocess:
            inputs["preprocess"] = preprocess
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        path = (
            self.root
            / encoder.fingerprint_hash()
            / _slug(dataset_key)
            / f"{_slug(split)}-{field}-{key[:16]}"
        )
        return CacheEntry(path, key, inputs, [i for i, _ in items], dim, part_size, lock_timeout)
