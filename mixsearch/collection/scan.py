"""A folder as a collection of documents: images, ``.txt``/``.md`` texts, and image+text pairs
listed in ``.jsonl`` files (``{"image": "rel/path.jpg", "text": "...", "id": optional}``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from mixsearch.data.benchmark import DataError, ImageRef

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
TEXT_SUFFIXES = frozenset({".txt", ".md"})
PAIR_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Item:
    """One document of a collection. ``id`` is its path relative to the folder (a pair:
    ``<jsonl path>#<line>`` or the line's own ``id``)."""

    id: str
    text: str | None = None
    image: ImageRef | None = None
    source: str = ""

    @property
    def modality(self) -> str:
        if self.text is not None and self.image is not None:
            return "image+text"
        return "image" if self.image is not None else "text"


@dataclass
class Collection:
    """The items of a folder and the files that could not be used (path -> reason)."""

    root: Path
    items: list[Item]
    skipped: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"text": 0, "image": 0, "image+text": 0}
        for it in self.items:
            out[it.modality] += 1
        return out


def _read_text(path: Path, rel: str, skipped: dict[str, str]) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        skipped[rel] = f"unreadable text: {e}"
        return None
    if not text.strip():
        skipped[rel] = "empty text"
        return None
    return text.strip()


def _pairs(path: Path, root: Path, rel: str, skipped: dict[str, str]) -> tuple[list[Item], set[str]]:
    """Items of a pairs file and the image paths they use (those are not separate items)."""
    items, used = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{rel}:{n}"
        try:
            row = json.loads(line)
            image, text = row["image"], row["text"]
            if not isinstance(image, str) or not isinstance(text, str) or not text.strip():
                raise ValueError("'image' must be a path and 'text' a non-empty string")
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{n}: expected {{\"image\": path, \"text\": str}} ({e})") from e
        img = (path.parent / image).resolve()
        if not img.is_file():
            skipped[where] = f"image file not found: {img}"
            continue
        used.add(str(img))
        items.append(Item(str(row.get("id") or f"{rel}#{n}"), text.strip(), ImageRef(path=str(img)), where))
    return items, used


def scan_folder(root: str | Path) -> Collection:
    """Every usable file under ``root`` (recursively, hidden files and folders left out), in
    path order. An image that a pairs file uses is indexed as part of that pair only.

    Raises:
        DataError: ``root`` is not a folder, or a pairs file has a malformed line (named).
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    skipped: dict[str, str] = {}
    pairs, used = [], set()
    for p in files:
        if p.suffix.lower() == PAIR_SUFFIX:
            got, paths = _pairs(p, root, p.relative_to(root).as_posix(), skipped)
            pairs += got
            used |= paths
    items = []
    for p in files:
        rel, suffix = p.relative_to(root).as_posix(), p.suffix.lower()
        if suffix in IMAGE_SUFFIXES and str(p.resolve()) not in used:
            items.append(Item(rel, None, ImageRef(path=str(p)), rel))
        elif suffix in TEXT_SUFFIXES:
            text = _read_text(p, rel, skipped)
            if text is not None:
                items.append(Item(rel, text, None, rel))
    ids = [it.id for it in items + pairs]
    dup = next((i for i in ids if ids.count(i) > 1), None) if len(set(ids)) != len(ids) else None
    if dup is not None:
        raise DataError(f"{root}: two items share the id {dup!r} (a pairs file's 'id' repeats a path?)")
    for rel, why in skipped.items():
        log.warning("collection: skipped %s (%s)", rel, why)
    return Collection(root, items + pairs, skipped)
