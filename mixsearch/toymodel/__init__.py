"""A tiny open_clip CLIP trained on the procedural shapes world, shipped with the package.

Pretrained CLIP weights cannot be downloaded offline and a randomly initialised model retrieves
at chance, so the toy model is what lets offline runs and tests show the paper's phenomena
(modality gap, intra-modal ranking bias, GR calibration closing the gap). ``train.py`` trains
it; the result lives in ``mixsearch/assets/toy_clip/`` with a ``SHA256SUMS`` file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "assets" / "toy_clip"
CHECKSUMS = "SHA256SUMS"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksums(folder: str | Path) -> Path:
    """Write ``SHA256SUMS`` (``sha256sum`` format) over every other file in ``folder``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != CHECKSUMS)
    out = folder / CHECKSUMS
    out.write_text("".join(f"{_sha256(p)}  {p.name}\n" for p in files), encoding="utf-8")
    return out


def verify_checksums(folder: str | Path) -> None:
    """Check every file listed in ``folder/SHA256SUMS``.

    Raises:
        ValueError: the checksum file is missing or malformed, a listed file is missing, or its
            content does not match (the message names the file).
    """
    folder = Path(folder)
    sums = folder / CHECKSUMS
    if not sums.is_file():
        raise ValueError(f"checksum file missing: {sums}")
    for n, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ValueError(f"{sums}:{n}: malformed line {line!r}")
        path = folder / name
        if not path.is_file():
            raise ValueError(f"file listed in {sums} is missing: {path}")
        if _sha256(path) != digest:
            raise ValueError(f"checksum mismatch for {path} (expected sha256 {digest} from {sums})")
