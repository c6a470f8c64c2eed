"""Embeddings read from files instead of computed (seed ``.pt`` dumps, VLM2Vec, ``.npz``/``.npy``).

One file per split (``queries``, ``corpus``, and any named calibration set). Formats, chosen
by the file suffix:

``.pt`` / ``.pth`` (the seed code's format)
    A list of dicts, loaded with ``torch.load(weights_only=True)`` (no arbitrary objects).
    Each item has an id, ``query_id`` (queries), ``corpus_id`` (corpus) or ``id`` (setting 1,
    and any split), plus any of ``text_embedding``, ``image_embedding`` / ``img_embedding``
    (setting 1) and ``vlm_mixed_embedding`` (VLM2Vec joint image+text). An embedding may be
    missing or None for some items (e.g. a missing image file): those items are absent from
    that field and counted in :meth:`PrecomputedEncoder.describe`.
``.npz``
    Array ``ids`` (strings) plus any of ``text``, ``image``, ``mixed`` of shape
    ``(len(ids), d)``. A field covering only some items comes with its own ``<field>_ids``.
``.npy``
    One field per file, named ``<stem>.<field>.npy`` (e.g. ``corpus.image.npy``), with the
    row ids beside it in ``<stem>.<field>.ids.txt`` (one id per line) or
    ``<stem>.<field>.ids.json`` (a JSON list). Use ``.npz`` or ``.pt`` for several fields.

Every malformed input raises :class:`EncoderError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mixsearch.embed.embeddings import Embeddings
from mixsearch.encoders.base import Encoder, EncoderError

log = logging.getLogger(__name__)

FIELDS = ("text", "image", "mixed")
SPLITS = ("queries", "corpus")
_PT_FIELDS = {
    "text_embedding": "text",
    "image_embedding": "image",
    "img_embedding": "image",
    "vlm_mixed_embedding": "mixed",
}
_PT_IDS = {"queries": ("query_id", "id"), "corpus": ("corpus_id", "id")}
_ANY_ID = ("query_id", "corpus_id", "id")


def _embeddings(path: Path, field: str, ids: list[str], matrix: np.ndarray) -> Embeddings:
    """Validate one field's ids and matrix (shape, duplicates, finiteness)."""
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise EncoderError(
            f"{path}: field {field!r} has shape {matrix.shape}, expected ({len(ids)}, dim)"
        )
    if not np.issubdtype(matrix.dtype, np.number):
        raise EncoderError(f"{path}: field {field!r} has non-numeric dtype {matrix.dtype}")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise EncoderError(f"{path}: duplicate id {i!r} in field {field!r}")
        seen.add(i)
    matrix = matrix.astype(np.float32, copy=False)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        first = ids[int(np.argmax(bad))]
        raise EncoderError(
            f"{path}: field {field!r} has non-finite values for {int(bad.sum())} items (first: {first!r})"
        )
    return Embeddings(ids, matrix)


def _vector(path: Path, n: int, item_id: str, key: str, value: Any) -> np.ndarray:
    try:
        t = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as e:
        raise EncoderError(f"{path}: item {n} ({item_id!r}) has a non-numeric {key!r}: {e}") from e
    if t.ndim == 2 and t.shape[0] == 1:  # the seed saves (1, d) rows
        t = t[0]
    if t.ndim != 1:
        raise EncoderError(
            f"{path}: item {n} ({item_id!r}) {key!r} has shape {tuple(t.shape)}, expected (dim,)"
        )
    return t.numpy()


def _read_pt(path: Path, split: str) -> tuple[dict[str, Embeddings], dict[str, int]]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign file can fail in many ways; all mean "unreadable"
        raise EncoderError(
            f"{path}: cannot read as a weights-only torch file ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(data, (list, tuple)) or not data:
        raise EncoderError(f"{path}: expected a non-empty list of dicts, got {type(data).__name__}")
    id_keys = _PT_IDS.get(split, _ANY_ID)
    ids: dict[str, list[str]] = {f: [] for f in FIELDS}
    rows: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
    missing = {f: 0 for f in FIELDS}
    for n, item in enumerate(data):
        if not isinstance(item, dict):
            raise EncoderError(f"{path}: item {n} is a {type(item).__name__}, expected a dict")
        key = next((k for k in id_keys if k in item), None)
        if key is None:
            raise EncoderError(f"{path}: item {n} lacks {' or '.join(map(repr, id_keys))}")
        item_id = str(item[key])
        unknown = [k for k in item if k.endswith("embedding") and k not in _PT_FIELDS]
        if unknown:
            raise EncoderError(
                f"{path}: item {n} ({item_id!r}) has unknown embedding key {unknown[0]!r} "
                f"(known: {sorted(_PT_FIELDS)})"
            )
        for pt_key, field in _PT_FIELDS.items():
            if pt_key in item and item[pt_key] is not None:
                ids[field].append(item_id)
                rows[field].append(_vector(path, n, item_id, pt_key, item[pt_key]))
            elif pt_key in item:
                missing[field] += 1
    out = {}
    for field in FIELDS:
        if rows[field]:
            dims = {r.shape[0] for r in rows[field]}
            if len(dims) > 1:
                raise EncoderError(f"{path}: field {field!r} mixes dimensions {sorted(dims)}")
            out[field] = _embeddings(path, field, ids[field], np.stack(rows[field]))
    return out, {f: m for f, m in missing.items() if f in out and m}


def _read_npz(path: Path) -> dict[str, Embeddings]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise EncoderError(
            f"{path}: cannot read as .npz without pickles ({type(e).__name__}: {e})"
        ) from e
    allowed = {"ids", *FIELDS, *(f"{f}_ids" for f in FIELDS)}
    unknown = sorted(set(arrays) - allowed)
    if unknown or "ids" not in arrays:
        raise EncoderError(
            f"{path}: arrays {sorted(arrays)}; expected 'ids' plus any of {list(FIELDS)} "
            f"(and optional '<field>_ids'){f', unknown: {unknown}' if unknown else ''}"
        )
    out = {}
    for field in FIELDS:
        if field in arrays:
            id_array = arrays.get(f"{field}_ids", arrays["ids"])
            out[field] = _embeddings(
                path, field, [str(i) for i in id_array.tolist()], arrays[field]
            )
    if not out:
        raise EncoderError(f"{path}: no embedding arrays (expected any of {list(FIELDS)})")
    return out


def _read_npy(path: Path) -> dict[str, Embeddings]:
    field = path.stem.rsplit(".", 1)[-1]
    if field not in FIELDS:
        raise EncoderError(
            f"{path}: a .npy file must be named <stem>.<field>.npy with field in {list(FIELDS)}"
        )
    txt, js = path.with_suffix(".ids.txt"), path.with_suffix(".ids.json")
    if txt.is_file():
        ids = txt.read_text(encoding="utf-8").splitlines()
    elif js.is_file():
        ids = json.loads(js.read_text(encoding="utf-8"))
        if not isinstance(ids, list):
            raise EncoderError(f"{js}: expected a JSON list of ids")
        ids = [str(i) for i in ids]
    else:
        raise EncoderError(f"{path}: no ids file beside it ({txt.name} or {js.name})")
    try:
        matrix = np.load(path, allow_pickle=False)
    except Exception as e:
        raise EncoderError(
            f"{path}: cannot read as .npy without pickles ({type(e).__name__}: {e})"
        ) from e
    return {field: _embeddings(path, field, ids, matrix)}


def read_embeddings(path: str | Path, split: str) -> tuple[dict[str, Embeddings], dict[str, int]]:
    """Read one split's embedding file.

    Args:
        path: a ``.pt``/``.pth``, ``.npz`` or ``<stem>.<field>.npy`` file (module docstring).
        split: ``"queries"``, ``"corpus"`` or a calibration name (decides the ``.pt`` id key).

    Returns:
        Embeddings per field present, and per field the number of items whose embedding
        was missing or None.
    """
    p = Path(path)
    if not p.is_file():
        raise EncoderError(f"precomputed {split} embeddings file not found: {p}")
    suffix = p.suffix.lower()
    if suffix in (".pt", ".pth"):
        return _read_pt(p, split)
    if suffix == ".npz":
        return _read_npz(p), {}
    if suffix == ".npy":
        return _read_npy(p), {}
    raise EncoderError(
        f"{p}: unsupported embeddings format {suffix!r} (expected .pt, .pth, .npz, .npy)"
    )


class PrecomputedEncoder(Encoder):
    """Embeddings loaded from files, one per split; cannot encode new items.

    Args:
        files: split name -> file; ``queries`` and ``corpus`` plus calibration sets.
    """

    name = "precomputed"

    def __init__(self, files: Mapping[str, str | Path]) -> None:
        self.files = {split: Path(p) for split, p in files.items()}
        self._data: dict[str, dict[str, Embeddings]] = {}
        self._missing: dict[str, dict[str, int]] = {}
        self._stats: dict[str, dict[str, Any]] = {}
        dims: dict[int, str] = {}
        for split, p in self.files.items():
            if p.is_file():  # stat what is read, so the fingerprint describes the loaded data
                st = p.stat()
                self._stats[split] = {
                    "path": str(p.resolve()),
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                }
            self._data[split], self._missing[split] = read_embeddings(p, split)
            for field, emb in self._data[split].items():
                dims.setdefault(emb.dim, f"{p} ({field})")
            for field, m in self._missing[split].items():
                log.info("%s: %d items have no %s embedding", p, m, field)
        if len(dims) > 1:
            raise EncoderError(f"precomputed embeddings disagree on dimension: {dims}")
        self._dim = next(iter(dims))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def supports_joint(self) -> bool:  # type: ignore[override]
        """Whether the corpus file has a ``mixed`` (joint image+text) field, e.g. VLM2Vec's."""
        return self.has("corpus", "mixed")

    def has(self, split: str, field: str) -> bool:
        """Whether ``field`` embeddings were loaded for ``split``."""
        return field in self._data.get(split, {})

    def get(self, split: str, field: str) -> Embeddings:
        """The ``field`` (text | image | mixed) embeddings of ``split``.

        Raises:
            EncoderError: unknown split, or the split's file has no such field.
        """
        if split not in self._data:
            raise EncoderError(f"no precomputed split {split!r}; loaded: {sorted(self._data)}")
        if field not in self._data[split]:
            raise EncoderError(
                f"{self.files[split]}: no {field!r} embeddings for split {split!r} "
                f"(present: {sorted(self._data[split])})"
            )
        return self._data[split][field]

    def _refuse(self) -> EncoderError:
        files = ", ".join(f"{s}={p}" for s, p in self.files.items())
        return EncoderError(
            f"precomputed embeddings cannot encode new items; every item must be in the files ({files})"
        )

    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        raise self._refuse()

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        raise self._refuse()

    def encode_image(self, pixels: torch.Tensor, role: str = "document") -> torch.Tensor:
        raise self._refuse()

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "precomputed", "files": dict(sorted(self._stats.items()))}

    def describe(self) -> dict[str, Any]:
        return {
            **self.fingerprint(),
            "dim": self.dim,
            "items": {s: {f: len(e) for f, e in d.items()} for s, d in self._data.items()},
            "missing": {s: m for s, m in self._missing.items() if m},
        }


def load_precomputed(
    queries: str, corpus: str, *, calibration: dict[str, str] | None = None
) -> PrecomputedEncoder:
    """Load precomputed embeddings for a benchmark.

    Args:
        queries: the queries' embedding file.
        corpus: the corpus' embedding file.
        calibration: calibration set name -> embedding file (names as in
            ``Benchmark.calibration``; ``"queries"``/``"corpus"`` are reserved).

    Returns:
        A :class:`PrecomputedEncoder`; ``get(split, field)`` serves the embeddings.
    """
    calibration = dict(calibration or {})
    clash = sorted(set(calibration) & set(SPLITS))
    if clash:
        raise EncoderError(
            f"calibration set name(s) {clash} clash with the reserved splits {list(SPLITS)}"
        )
    return PrecomputedEncoder({"queries": queries, "corpus": corpus, **calibration})
