"""Checksummed calibration state files: what a run writes to ``means/`` and
``calibration_state/`` and what ``calibration.source=files`` reads back (docs/formats.md §11).

Each folder holds ``<key>.npy`` files and ``checksums.json``, ``{"format": 1, "files":
{"<key>.npy": "xxh3_64:<hex>"}}``: the xxh3 hash of each file's bytes (header included, so a
flipped bit anywhere is seen). Reading verifies a listed file before parsing it; a mismatch is
a :class:`~mixsearch.data.benchmark.DataError` naming the file. A file without a checksum (a
folder written before checksums existed, the seed's ``.pt`` means, a file put there by hand) is
read with a warning that names it as unverified.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np

from mixsearch.data.benchmark import DataError

log = logging.getLogger(__name__)

CHECKSUMS = "checksums.json"
FORMAT = 1


def write_state_files(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Write each array as ``<key>.npy`` (float32, atomically) and their ``checksums.json``.

    Returns:
        key -> path of the written file.
    """
    from mixsearch.embed.cache import atomic_write, checksum

    if not arrays:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    written, sums = {}, {}
    for key, arr in sorted(arrays.items()):
        buf = io.BytesIO()
        np.save(buf, np.asarray(arr, dtype=np.float32))
        data = buf.getvalue()
        path = folder / f"{key}.npy"
        atomic_write(path, lambda f, data=data: f.write(data))
        sums[path.name] = checksum(data)
        written[key] = str(path)
    manifest = json.dumps({"format": FORMAT, "files": sums}, indent=1).encode()
    atomic_write(folder / CHECKSUMS, lambda f: f.write(manifest))
    return written


def read_checksums(folder: Path) -> dict[str, str] | None:
    """The ``files`` table of ``folder/checksums.json``; None when the folder has none.

    Raises:
        DataError: the file exists but is not a checksum table (names it).
    """
    path = folder / CHECKSUMS
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        files = obj["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise TypeError("'files' is not a table of names to checksums")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a valid checksum file ({e}); the state files beside it "
                        "cannot be verified") from e
    return files


def verified_bytes(path: str | Path, what: str = "calibration state") -> bytes:
    """The bytes of a state file, checked against its folder's ``checksums.json``.

    Raises:
        DataError: the file is missing or unreadable, or its checksum differs from the recorded
            one (names the file and both checksums).
    """
    from mixsearch.embed.cache import checksum

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {what} {path}: {e}") from e
    sums = read_checksums(path.parent)
    recorded = None if sums is None else sums.get(path.name)
    if recorded is None:
        where = f"{path.parent / CHECKSUMS} does not list it" if sums is not None else \
            f"no {CHECKSUMS} beside it (written before checksums, or by another tool)"
        log.warning("%s %s is not verified: %s", what, path, where)
        return data
    found = checksum(data)
    if found != recorded:
        raise DataError(f"{what} {path}: checksum mismatch (recorded {recorded}, found {found}): "
                        "the file changed after it was written; re-run the calibration that wrote it")
    return data


def load_npy(data: bytes, path: str | Path, what: str = "calibration state") -> np.ndarray:
    """Parse ``.npy`` bytes (no pickles).

    Raises:
        DataError: not a readable ``.npy`` file (names it).
    """
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {what} {path}: {e}") from e
