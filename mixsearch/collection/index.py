"""``mixsearch index``: embed a folder through the shared embedding cache and write an index.

Cache reuse is per item: the cache's entries for collections are keyed by content (an item's
id in the cache is a hash of its text or image bytes), and before encoding, every complete
collection entry of the same encoder is read, so re-indexing a folder after adding one file
encodes exactly that file, whatever folder or index the other items were first embedded for.

An index folder holds ``index.json`` (items, model fingerprint, calibration, skipped files),
``text.npy`` and ``image.npy`` (raw embeddings, one row per item, zero where an item has no
such part) and, for GR, ``means.npz`` (:class:`~mixsearch.calibration.Means`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from mixsearch.calibration import Means, fit_means, load_mean_files
from mixsearch.collection.scan import Collection, Item
from mixsearch.data.benchmark import DataError, Record
from mixsearch.embed.cache import EmbeddingCache, checksum, image_key
from mixsearch.embed.extract import embed_records, resolve_amp
from mixsearch.encoders.base import Encoder
from mixsearch.tracking import atomic_write_text

log = logging.getLogger(__name__)

DATASET_KEY = "collection"  # every collection shares one content-keyed namespace per encoder
SPLIT = "corpus"  # document role
INDEX_FILE = "index.json"
FORMAT = 1


def content_id(item: Item, field: str) -> str:
    """The cache id of one part of an item: a hash of its text, or of its image's bytes."""
    raw = item.text if field == "text" else image_key(item.image, "content")  # type: ignore[arg-type]
    return f"{field[0]}:{xxhash.xxh3_128_hexdigest(raw.encode())}"


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def cached_rows(cache: EmbeddingCache, encoder: Encoder, field: str, autocast: str,
                store_dtype: str = "float32") -> dict[str, np.ndarray]:
    """Every vector of ``field`` that complete collection entries of this encoder hold, by
    cache id. Parts whose checksum does not match are left out with a warning (re-encoded)."""
    probe = cache.entry(encoder, dataset_key=DATASET_KEY, split=SPLIT, field=field,
                        store_dtype=store_dtype, autocast=autocast, items=[], dim=encoder.dim,
                        part_size=1)
    out: dict[str, np.ndarray] = {}
    fingerprint = encoder.fingerprint()
    for entry in sorted(probe.path.parent.glob(f"{SPLIT}-{field}-*")):
        try:
            m = json.loads((entry / "manifest.json").read_text())
        except (OSError, ValueError):
            continue  # incomplete (no manifest yet) or unreadable: not a source of vectors
        if not (m.get("field") == field and m.get("autocast") == autocast
                and m.get("dtype") == store_dtype and _same(m.get("encoder"), fingerprint)):
            continue
        for p in range(int(m.get("n_parts", 0))):
            name = f"part-{p:05d}"
            try:
                meta = json.loads((entry / f"{name}.ids.json").read_text())
                vectors = np.load(entry / f"{name}.npy", allow_pickle=False)
            except (OSError, ValueError) as e:
                log.warning("embedding cache: unreadable part %s/%s (%s); not reused", entry, name, e)
                continue
            if checksum(vectors) != meta.get("checksum") or len(vectors) != len(meta["ids"]):
                log.warning("embedding cache: corrupt part %s/%s.npy; not reused", entry, name)
                continue
            out.update(zip(meta["ids"], vectors.astype(np.float32), strict=True))
    return out


@dataclass
class EmbedStats:
    encoded: int = 0
    cached: int = 0
    skipped: dict[str, str] | None = None


def embed_items(
    encoder: Encoder, items: list[Item], cache: EmbeddingCache, *, batch_size: int = 64,
    amp: str = "auto",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], EmbedStats]:
    """Raw text and image vectors by item id (each part from the cache or encoded now).

    Unreadable images are skipped: the returned stats name them (item id -> reason)."""
    autocast = resolve_amp(amp, encoder.device)
    stats = EmbedStats(skipped={})
    rows: dict[str, dict[str, np.ndarray]] = {"text": {}, "image": {}}
    for field in ("text", "image"):
        have = [it for it in items if (it.text if field == "text" else it.image) is not None]
        if not have:
            continue
        ids: dict[str, str] = {}
        for it in have:
            try:
                ids[it.id] = content_id(it, field)
            except DataError as e:
                stats.skipped[it.id] = str(e)
        known = cached_rows(cache, encoder, field, autocast)
        todo = {cid: it for it in have if (cid := ids.get(it.id)) and cid not in known}
        if todo:
            records = [Record(cid, it.text if field == "text" else None,
                              it.image if field == "image" else None) for cid, it in todo.items()]
            st: dict[str, Any] = {}
            emb = embed_records(encoder, records, field, cache=cache, dataset_key=DATASET_KEY,
                                split=SPLIT, batch_size=batch_size, amp=amp, on_missing="skip",
                                progress=False, stats=st)
            known.update(zip(emb.ids, emb.vectors, strict=True))
            for cid in st.get("skipped") or []:
                stats.skipped[todo[cid].id] = (st.get("skip_reasons") or {}).get(cid, "unreadable")
        for it in have:
            cid = ids.get(it.id)
            if cid in known:
                rows[field][it.id] = known[cid]
        stats.encoded += sum(1 for it in have if ids.get(it.id) in todo and it.id in rows[field])
        stats.cached += sum(1 for it in have if ids.get(it.id) not in todo and it.id in rows[field])
    return rows["text"], rows["image"], stats


def load_means(path: str | Path) -> Means:
    """Shared GR means: a :class:`Means` ``.npz`` or a run's ``means/`` folder of ``<role>.npy``.

    Raises:
        DataError: the path is neither (named).
    """
    path = Path(path)
    if path.is_dir():
        files = {p.stem: str(p) for p in path.glob("*.npy")}
        if not files:
            raise DataError(f"--means {path}: no <role>.npy files (a run's means/ folder?)")
        return load_mean_files(files, required=("doc_text", "doc_image"))
    if path.suffix == ".npz":
        return Means.load(path)
    raise DataError(f"--means {path}: expected a means .npz or a run's means/ folder")


def transductive_means(text: np.ndarray, image: np.ndarray) -> Means:
    """GR means fitted on the collection itself (labelled ``transductive``). A collection has
    no queries: the query-text mean is the documents' text mean."""
    pools = {k: v for k, v in (("doc_text", text), ("query_text", text), ("doc_image", image)) if len(v)}
    return fit_means(pools, source="transductive")


def write_index(out: str | Path, coll: Collection, encoder: Encoder, model: dict[str, Any],
                text: dict[str, np.ndarray], image: dict[str, np.ndarray],
                means: Means | None, skipped: dict[str, str]) -> dict[str, Any]:
    """Write the index folder (``index.json`` last, atomically). Returns its ``index.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # an item is indexed with all its parts or not at all (a pair whose image is unreadable)
    items = [it for it in coll.items
             if (it.text is None or it.id in text) and (it.image is None or it.id in image)]
    dim = encoder.dim
    arrays = {name: np.stack([src.get(it.id, np.zeros(dim, np.float32)) for it in items])
              if items else np.zeros((0, dim), np.float32) for name, src in (("text", text), ("image", image))}
    for name, arr in arrays.items():
        with open(out / f".{name}.npy.tmp", "wb") as f:
            np.save(f, arr.astype(np.float32))
        (out / f".{name}.npy.tmp").replace(out / f"{name}.npy")
    if means is not None:
        means.save(out / ".means.npz.tmp")
        (out / ".means.npz.tmp").replace(out / "means.npz")
    elif (out / "means.npz").exists():
        (out / "means.npz").unlink()
    meta = {
        "format": FORMAT, "root": str(coll.root), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"spec": model, "name": encoder.name, "dim": dim,
                  "fingerprint": encoder.fingerprint(), "fingerprint_hash": encoder.fingerprint_hash()},
        "calibration": None if means is None else {"method": "gr", "source": means.source,
                                                   "n_samples": means.n_samples},
        "items": [{"id": it.id, "modality": it.modality, "source": it.source,
                   "text": it.text, "image": it.image.path if it.image else None} for it in items],
        "skipped": [{"path": k, "reason": v} for k, v in sorted({**coll.skipped, **skipped}.items())],
    }
    atomic_write_text(out / INDEX_FILE, json.dumps(meta, indent=1, ensure_ascii=False))
    return meta
