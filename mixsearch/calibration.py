"""Modality-gap calibration: which method, fitted on what, applied to which rows.

Methods (``calibration.method``) are plug-ins of :mod:`mixsearch.calibrators` (``none``,
``gr``, ``pushdown``, ``i0t``, ``project``, ``procrustes`` and any registered one):

* ``none``: the CLIP baseline, nothing subtracted.
* ``gr``: GR-CLIP. Subtract per-role means of L2-normalised embeddings: query text, query
  image (image+text queries), doc text, doc image, and with ``fusion=joint`` the joint
  image+text embeddings of docs (``doc_joint``) and of image+text queries (``query_joint``).
  A joint embedding sits in its own cone (neither the text's nor the image's), so it gets its
  own mean: every source below provides it from joint embeddings of its own items (``train``:
  the calibration splits' image+text items embedded jointly; ``files``: ``doc_joint.npy``).
* ``pushdown``: the paper's push-down simulation of setting 1 (docs/paper.md §3). The seed ranks
  all text docs by cosine first, then every other doc by its own cosine, so an image or
  screenshot never outranks a text; vectors are uncalibrated (see ``evaluate``).

Sources of a method's state (``calibration.source``), the same for every method that fits one:

* ``train``: pools of raw embeddings given by the caller (calibration splits, training sets);
  paired methods also get the calibration items embedded both as text and as image.
* ``crossfit``: K folds over the evaluated queries and docs; items in fold k are calibrated
  with a state fitted on the other folds, so no item's own embedding enters its calibration.
* ``transductive``: fitted on the evaluated items themselves (a leak, labelled as such).
* ``files``: GR mean vectors from ``.pt`` / ``.npy`` files (the seed code's form), or any
  method's saved state folder (``calibration.state_dir``).
* ``auto``: ``train`` when pools are given, else ``crossfit``.

``calibration.max_samples`` caps each train / transductive pool (and the pairs) at a seeded
random subset (the sample-count ablation).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mixsearch.calibrators import Calibrator, Pairs, State, build_calibrator
from mixsearch.calibrators.basic import NoCalibration
from mixsearch.data.benchmark import DataError
from mixsearch.fusion import Views, l2_normalise
from mixsearch.statefiles import CHECKSUMS, load_npy, read_checksums, verified_bytes

log = logging.getLogger(__name__)

ROLES = ("query_text", "query_image", "doc_text", "doc_image", "query_joint", "doc_joint")
SOURCES = ("auto", "train", "crossfit", "transductive", "files")


@dataclass
class Means:
    """Per-role mean vectors of L2-normalised embeddings (``None``: role not calibrated)."""

    query_text: np.ndarray | None = None
    query_image: np.ndarray | None = None
    doc_text: np.ndarray | None = None
    doc_image: np.ndarray | None = None
    query_joint: np.ndarray | None = None
    doc_joint: np.ndarray | None = None
    source: str = ""
    n_samples: dict[str, int] = field(default_factory=dict)

    def get(self, role: str) -> np.ndarray | None:
        return getattr(self, role)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` with one array per present role and the metadata as JSON."""
        arrays = {r: self.get(r) for r in ROLES if self.get(r) is not None}
        meta = json.dumps({"source": self.source, "n_samples": self.n_samples})
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
            np.savez(f, __meta__=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Means:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise DataError(f"{path}: not a mixsearch means file (no __meta__ entry)")
            meta = json.loads(str(z["__meta__"]))
            arrays = {r: z[r].astype(np.float32) for r in ROLES if r in z.files}
        return cls(**arrays, source=meta["source"], n_samples=meta["n_samples"])


def fit_means(pools: dict[str, np.ndarray], source: str) -> Means:
    """Means of the L2-normalised rows of raw embedding pools keyed by role.

    Raises:
        ValueError: an unknown role or an empty / non-2-D pool (names the role).
    """
    out: dict[str, np.ndarray] = {}
    for role, rows in pools.items():
        if role not in ROLES:
            raise ValueError(f"calibration pool: unknown role {role!r}; choose from {ROLES}")
        rows = np.asarray(rows)
        if rows.ndim != 2 or len(rows) == 0:
            raise ValueError(f"calibration pool {role!r}: expected a non-empty (n, d) array, "
                             f"got shape {rows.shape}")
        out[role] = l2_normalise(rows).mean(axis=0, dtype=np.float64).astype(np.float32)
    return Means(**out, source=source, n_samples={r: len(pools[r]) for r in out})


def streamed_mean(blocks: Iterable[np.ndarray], *, chunk_rows: int = 65536) -> tuple[np.ndarray, int]:
    """Mean of the L2-normalised rows of ``blocks``, read one block and one chunk at a time.

    For pools too large for memory (M-BEIR's 5.6M-candidate global pool): each block (e.g. a
    memory-mapped float16 cache part, :func:`entry_blocks`) is normalised in float32 chunks of
    at most ``chunk_rows`` rows and summed in float64, so only one chunk is ever copied.
    Equals ``l2_normalise(np.concatenate(blocks)).mean(0)`` up to float rounding.

    Returns:
        ``(mean as float32, number of rows)``.

    Raises:
        ValueError: no rows, or blocks of different widths.
    """
    total: np.ndarray | None = None
    n = 0
    for block in blocks:
        for lo in range(0, len(block), chunk_rows):
            chunk = l2_normalise(np.asarray(block[lo:lo + chunk_rows], dtype=np.float32))
            if total is None:
                total = np.zeros(chunk.shape[1], np.float64)
            elif chunk.shape[1] != total.shape[0]:
                raise ValueError(f"streamed_mean: a block of width {chunk.shape[1]} after width "
                                 f"{total.shape[0]}")
            total += chunk.sum(axis=0, dtype=np.float64)
            n += len(chunk)
    if total is None or n == 0:
        raise ValueError("streamed_mean: no rows")
    return (total / n).astype(np.float32), n


def gr_blocks(blocks: Iterable[np.ndarray], mean: np.ndarray, *, chunk_rows: int = 65536
              ) -> Iterator[np.ndarray]:
    """GR applied to rows streamed block by block: L2-normalise, subtract ``mean``, L2-normalise
    again (the paper's order), as float32 chunks of at most ``chunk_rows`` rows, ready for
    :func:`mixsearch.retrieval.search_blocks`; only one chunk exists at a time."""
    mean = np.asarray(mean, dtype=np.float32)
    for block in blocks:
        for lo in range(0, len(block), chunk_rows):
            chunk = np.asarray(block[lo:lo + chunk_rows], dtype=np.float32)
            yield l2_normalise(l2_normalise(chunk) - mean)


def entry_blocks(entry: Any) -> Iterator[np.ndarray]:
    """The vectors of each part of a complete :class:`~mixsearch.embed.cache.CacheEntry`,
    memory-mapped, one part at a time (checksums verified on read).

    Raises:
        DataError: a part is missing or damaged (names the entry).
    """
    for p in range(entry.n_parts):
        part = entry.read_part(p, mmap=True)
        if part is None:
            raise DataError(f"cache entry {entry.path}: part {p} is missing or damaged; "
                            "re-run the extraction")
        yield part.vectors


def streamed_means(entries: dict[str, Any], source: str = "train") -> Means:
    """GR means per role from cache entries (``{"doc_image": entry, ...}``), never holding a
    whole pool in memory (:func:`streamed_mean` over :func:`entry_blocks`)."""
    out, counts = {}, {}
    for role, entry in entries.items():
        if role not in ROLES:
            raise ValueError(f"calibration pool: unknown role {role!r}; choose from {ROLES}")
        out[role], counts[role] = streamed_mean(entry_blocks(entry))
    return Means(**out, source=source, n_samples=counts)


def load_mean_files(
    files: dict[str, str | None],
    *,
    required: tuple[str, ...] = ("query_text", "doc_text", "doc_image"),
) -> Means:
    """Load mean vectors from files: ``.npy`` arrays or ``.pt`` tensors.

    ``.pt`` files may hold a tensor or array, a list of numbers, or a dict / list with exactly
    one tensor in it. Vectors may be ``(d,)`` or ``(1, d)``.

    Raises:
        DataError: a required role has no file (names ``calibration.files.<role>``), an unknown
            role, an unreadable file or a vector of the wrong shape or dimension (names the file).
    """
    unknown = [r for r in files if r not in ROLES]
    if unknown:
        raise DataError(f"calibration.files.{unknown[0]}: unknown role; choose from {ROLES}")
    missing = [r for r in required if not files.get(r)]
    if missing:
        raise DataError(f"calibration.files.{missing[0]}: no mean file given for source=files")
    vectors: dict[str, np.ndarray] = {}
    for role, path in files.items():
        if path:
            vectors[role] = _read_vector(str(path))
    dims = {role: len(v) for role, v in vectors.items()}
    first = next(iter(dims))
    for role, dim in dims.items():
        if dim != dims[first]:
            raise DataError(
                f"calibration.files.{role}: {files[role]} has dim {dim}, but "
                f"{files[first]} ({first}) has dim {dims[first]}"
            )
    return Means(**vectors, source="files", n_samples={})


def _read_vector(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        obj: Any = load_npy(verified_bytes(path, "mean file"), path, "mean file")
    elif path.endswith(".pt"):
        import io

        import torch

        data = verified_bytes(path, "mean file")
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for missing/corrupt/unsafe files
            raise DataError(f"cannot read mean file {path}: {e}") from e
        if isinstance(obj, dict | list | tuple) and len(obj) == 1:
            obj = next(iter(obj.values())) if isinstance(obj, dict) else obj[0]
        if isinstance(obj, torch.Tensor):
            obj = obj.detach().float().numpy()
    else:
        raise DataError(f"mean file {path}: expected a .pt or .npy file")
    try:
        vec = np.asarray(obj, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"mean file {path}: not a vector ({type(obj).__name__})") from e
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.ndim != 1 or not np.isfinite(vec).all():
        raise DataError(f"mean file {path}: expected a finite (d,) vector, got shape {vec.shape}")
    return vec


def assign_folds(n: int, k: int, seed: int) -> np.ndarray:
    """A seeded fold label in ``0..k-1`` for each of ``n`` items (sizes differ by at most 1)."""
    if k < 2 or k > n:
        raise ValueError(f"calibration.folds: need 2 <= folds <= {n} items, got {k}")
    return np.random.default_rng(seed).permutation(n) % k


def crossfit_means(rows: np.ndarray, folds: np.ndarray, k: int, role: str) -> np.ndarray:
    """Per-fold means of normalised ``rows``, each fitted on the OTHER folds only.

    Args:
        rows: ``(m, d)`` normalised embeddings of the pool.
        folds: ``(m,)`` fold label of each row.
        k: number of folds.
        role: role name for error messages.

    Returns:
        ``(k, d)``: row f is the mean over rows whose fold is not f.
    """
    sums = np.stack([rows[folds == f].sum(axis=0, dtype=np.float64) for f in range(k)])
    counts = np.bincount(folds, minlength=k)
    rest = counts.sum() - counts
    if (rest == 0).any():
        raise DataError(
            f"calibration.source=crossfit: no {role} items outside fold {int(np.argmin(rest))}; "
            "use fewer calibration.folds or another calibration.source"
        )
    return ((sums.sum(axis=0) - sums) / rest[:, None]).astype(np.float32)


@dataclass
class Calibration:
    """A resolved calibration: the method, where its state came from, and the state.

    ``means`` are GR's per-role means (``(d,)``, or for cross-fitting ``(n_items, d)`` aligned
    with the query or doc rows); empty for other methods. ``state`` is the fitted state of any
    method (for GR: ``means``); with cross-fitting of a method other than GR, ``fold_states``
    holds one state per fold and ``fold_labels`` each item's fold per side (``query``/``doc``).
    """

    method: str
    source: str | None
    means: dict[str, np.ndarray]
    n_samples: dict[str, int]
    folds: int | None = None
    calibrator: Calibrator = field(default_factory=NoCalibration)
    state: State | None = None
    fold_states: list[State] | None = None
    fold_labels: dict[str, np.ndarray] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = {"method": self.method, "source": self.source, "n_samples": dict(self.n_samples),
               "folds": self.folds}
        if self.params:
            out["params"] = dict(self.params)
        return out

    @property
    def reusable_state(self) -> State:
        """The state as one set of arrays that a later run can load (empty when cross-fitted:
        each fold has its own)."""
        if self.state is None or self.source == "crossfit":
            return {}
        return dict(self.state)

    def role_for(self, role: str, notes: list[str] | None = None) -> str:
        """The role whose state calibrates ``role``: itself, or its stand-in (:data:`FALLBACK`,
        recorded in ``notes``).

        Raises:
            ValueError: neither the role nor its stand-in has a state.
        """
        if self.calibrator.covers(role, self.state or (self.fold_states or [{}])[0]):
            return role
        stand_in = FALLBACK.get(role)
        if stand_in and self.calibrator.covers(stand_in, self.state or (self.fold_states or [{}])[0]):
            what = "mean" if self.method == "gr" else "state"
            if notes is not None:
                notes.append(f"{role}: {stand_in} {what} used (no {role} {what})")
            return stand_in
        wanted = f"a {role} or {stand_in}" if stand_in else f"a {role}"
        raise ValueError(f"calibration={self.method}: {role} rows need {wanted} "
                         f"{'mean' if self.method == 'gr' else 'state'} (source {self.source})")

    def transform(self, role: str, rows: np.ndarray, side: str) -> np.ndarray:
        """Calibrated ``rows`` (all items of ``side``, in row order) under ``role``'s state."""
        if self.fold_states is None:
            return self.calibrator.transform(role, rows, self.state or {})
        labels = (self.fold_labels or {})[side]
        out = np.empty_like(rows)
        for f, state in enumerate(self.fold_states):
            sel = labels == f
            out[sel] = self.calibrator.transform(role, rows[sel], state)
        return out

    def apply(self, views: Views, side: str, notes: list[str] | None = None) -> Views:
        """The calibrated (not renormalised) parts of ``views``; ``side`` is ``query`` or ``doc``.

        Every part an item shows (text, image, joint) is transformed under the role
        ``<side>_<part>``; rows an item does not show stay zero. Rows that calibration leaves
        (numerically) zero are named in a warning and in ``notes`` (:func:`zero_rows_note`).
        """
        if not self.calibrator.fits_state:
            return views
        parts: dict[str, np.ndarray] = {}
        for part, rows, mask in _parts(views):
            if mask.any():
                role = self.role_for(f"{side}_{part}", notes)
                parts[part] = (self.transform(role, rows, side) * mask[:, None]).astype(np.float32)
                note = zero_rows_note(f"{side}_{part}", views.ids, parts[part], mask, self.method)
                if note:
                    log.warning("%s", note)
                    if notes is not None:
                        notes.append(note)
        return replace(views, **parts)


#: Squared norm under which a calibrated part counts as zero (the rows were unit vectors).
ZERO_SQ_NORM = 1e-12


def zero_rows_note(role: str, ids: list[str], rows: np.ndarray, mask: np.ndarray, method: str) -> str | None:
    """A message naming the items whose calibrated ``role`` part is zero, or None.

    Such an item equals its role's mean (a transductive mean over one item, a one-query
    benchmark): it has no direction left, so it scores 0 against everything (a unimodal item)
    or is represented by its other part alone (image+text).
    """
    zero = mask & (np.einsum("ij,ij->i", rows, rows) <= ZERO_SQ_NORM)
    if not zero.any():
        return None
    bad = [ids[i] for i in np.flatnonzero(zero)]
    return (f"calibration={method}: {len(bad)} {role} vector(s) are zero after calibration (the item "
            f"equals its role's mean) and score 0 against everything: "
            f"{', '.join(map(repr, bad[:5]))}{' ...' if len(bad) > 5 else ''}")


#: A query role without a state of its own borrows the doc role's (recorded in the notes).
FALLBACK = {"query_image": "doc_image", "query_joint": "doc_joint"}


def _parts(views: Views) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = [("text", views.text, views.has_text), ("image", views.image, views.has_image)]
    if views.joint is not None:
        out.append(("joint", views.joint, views.both))
    return out


def _eval_pools(queries: Views, docs: Views) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``role -> (rows, mask)`` of the evaluated items (joint roles only with joint rows)."""
    return {f"{side}_{part}": (rows, mask)
            for side, views in (("query", queries), ("doc", docs)) for part, rows, mask in _parts(views)}


def _eval_pairs(queries: Views, docs: Views, keep: dict[str, np.ndarray] | None = None) -> Pairs | None:
    """Text and image rows of the evaluated items showing both (restricted to ``keep[side]``)."""
    text, image = [], []
    for side, views in (("query", queries), ("doc", docs)):
        both = views.both if keep is None else views.both & keep[side]
        text.append(views.text[both])
        image.append(views.image[both])
    t = np.concatenate(text)
    return (t, np.concatenate(image)) if len(t) else None


def _subsample(rows: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    return rows if n is None or n >= len(rows) else rows[np.sort(rng.choice(len(rows), n, replace=False))]


def load_state_dir(folder: str | Path) -> State:
    """Every ``<key>.npy`` of a folder written by a run (``calibration.state_dir``).

    Files are verified against the folder's ``checksums.json`` (:mod:`mixsearch.statefiles`).

    Raises:
        DataError: the folder is missing or holds no ``.npy`` file (names it), its files differ
            from those its ``checksums.json`` lists, or a file is unreadable, changed since it
            was written (checksum) or not finite (names the file).
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.npy")) if folder.is_dir() else []
    if not files:
        raise DataError(f"calibration.state_dir: {folder} has no .npy state files")
    sums = read_checksums(folder)
    if sums is not None:  # the folder is exactly what one run wrote: no file more, none less
        names = {p.name for p in files}
        extra, gone = sorted(names - set(sums)), sorted(set(sums) - names)
        if extra or gone:
            raise DataError(f"calibration.state_dir: {folder / CHECKSUMS} lists "
                            f"{sorted(sums)}, but the folder holds {sorted(names)}: "
                            f"{'unlisted ' + str(extra) if extra else 'missing ' + str(gone)}")
    state: State = {}
    for path in files:
        arr = load_npy(verified_bytes(path), path)
        if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
            raise DataError(f"calibration state {path}: expected finite floats")
        state[path.stem] = arr.astype(np.float32)
    return state


def resolve(
    cfg: dict[str, Any],
    queries: Views,
    docs: Views,
    *,
    pools: dict[str, np.ndarray] | None = None,
    means: Means | None = None,
    pairs: Pairs | None = None,
) -> Calibration:
    """Pick the method and source and fit the method's state for these queries and docs.

    Args:
        cfg: the ``calibration`` section (``method``, ``params``, ``source``, ``folds``,
            ``seed``, ``files``, ``state_dir``, ``max_samples``).
        queries: every available query part (normalised).
        docs: the doc parts the run shows (normalised).
        pools: raw calibration embeddings by role (``source=train``).
        means: precomputed GR means (used by ``train`` / ``files`` / ``auto`` when given).
        pairs: raw paired ``(text, image)`` calibration embeddings of the same items
            (``source=train`` for methods that need pairs).

    Raises:
        ValueError: unknown ``calibration.method`` / ``calibration.source``, or a role the run
            needs has no state (names the role and source).
    """
    method = cfg.get("method", "none")
    params = dict(cfg.get("params") or {})
    calibrator = build_calibrator(method, params)
    if not calibrator.fits_state:
        return Calibration(method, None, {}, {}, calibrator=calibrator, params=params)
    source = cfg.get("source", "auto")
    if source not in SOURCES:
        raise ValueError(f"calibration.source: unknown source {source!r}; choose one of {SOURCES}")
    if means is not None and method != "gr":
        raise ValueError(f"calibration.method={method}: precomputed means are GR's state; "
                         "pass calibration.state_dir instead")
    if source == "auto":
        source = means.source if means is not None else "train" if pools else "crossfit"
    if means is not None and means.source != source:
        raise ValueError(f"calibration.source={source} conflicts with given means "
                         f"(source {means.source!r})")
    eval_pools = _eval_pools(queries, docs)
    needed = tuple(r for r, (_, mask) in eval_pools.items() if mask.any() and r not in FALLBACK)
    common = {"calibrator": calibrator, "params": params}
    if source == "crossfit":
        return _crossfit(cfg, method, queries, docs, eval_pools, common)
    n_max = cfg.get("max_samples")
    rng = np.random.default_rng(int(cfg.get("seed", 0)))
    counts: dict[str, int] = {}
    if means is not None:
        state: State = {r: means.get(r) for r in ROLES if means.get(r) is not None}
        counts = dict(means.n_samples)
    elif source == "files":
        if cfg.get("state_dir"):
            state = load_state_dir(cfg["state_dir"])
        elif method == "gr":
            m = load_mean_files(cfg.get("files") or {}, required=needed)
            state = {r: m.get(r) for r in ROLES if m.get(r) is not None}
        else:
            raise ValueError(f"calibration.source=files: set calibration.state_dir to the "
                             f"calibration_state folder of a {method} run")
    else:
        if source == "train":
            if not pools:
                raise ValueError("calibration.source=train: no calibration pools were given "
                                 "(calibration splits or calibration.train_sets)")
            fit_pools = {}
            for role, rows in pools.items():
                rows = np.asarray(rows)
                if rows.ndim != 2 or len(rows) == 0:
                    raise ValueError(f"calibration pool {role!r}: expected a non-empty (n, d) "
                                     f"array, got shape {rows.shape}")
                fit_pools[role] = l2_normalise(_subsample(rows, n_max, rng))
            fit_pairs = None
            if pairs is not None and len(pairs[0]):
                keep = _subsample(np.arange(len(pairs[0])), n_max, rng)
                fit_pairs = (l2_normalise(pairs[0][keep]), l2_normalise(pairs[1][keep]))
        else:  # transductive: the evaluated rows are already normalised
            fit_pools = {r: _subsample(rows[m], n_max, rng) for r, (rows, m) in eval_pools.items() if m.any()}
            fit_pairs = _eval_pairs(queries, docs)
        if calibrator.needs_pairs and fit_pairs is None:
            raise ValueError(f"calibration={method} source={source}: no paired image+text items "
                             "to fit on")
        state = calibrator.fit(fit_pools, fit_pairs)
        counts = {r: len(rows) for r, rows in fit_pools.items()}
        if calibrator.needs_pairs and fit_pairs is not None:
            counts["pairs"] = len(fit_pairs[0])
    if source == "files" and means is None:
        _check_loaded_state(calibrator, state, cfg)
    lacking = [r for r in needed if not calibrator.covers(r, state)]
    if lacking:
        what = "mean" if method == "gr" else "state"
        raise ValueError(f"calibration.source={source}: no {lacking[0]} {what}, but the run shows "
                         f"items of that role")
    dim = queries.text.shape[1]
    for key, arr in state.items():
        if arr.shape[-1] != dim or (method == "gr" and arr.shape != (dim,)):
            name = f"{key} mean" if method == "gr" else f"state {key!r}"
            raise ValueError(f"calibration.source={source}: {name} has shape {arr.shape}, "
                             f"embeddings have dim {dim}")
    return Calibration(method, source, state if method == "gr" else {}, counts, state=state, **common)


def _check_loaded_state(calibrator: Calibrator, state: State, cfg: dict[str, Any]) -> None:
    """What the method knows of its own state (:meth:`Calibrator.check_state`), for state read
    from files: a damaged or foreign file must not calibrate silently.

    Raises:
        DataError: names the file and the property it breaks.
    """
    for key, problem in calibrator.check_state(state):
        if cfg.get("state_dir"):
            where = str(Path(cfg["state_dir"]) / f"{key}.npy")
        else:
            where = str((cfg.get("files") or {}).get(key, key))
        raise DataError(f"calibration state {where}: {problem}")


def _crossfit(cfg: dict[str, Any], method: str, queries: Views, docs: Views,
              eval_pools: dict[str, tuple[np.ndarray, np.ndarray]], common: dict[str, Any]) -> Calibration:
    k, seed = int(cfg.get("folds", 5)), int(cfg.get("seed", 0))
    # Queries and docs get independent fold labels; a doc's text and image share one.
    folds = {"query": assign_folds(len(queries.ids), k, seed), "doc": assign_folds(len(docs.ids), k, seed + 1)}
    counts = {role: int(mask.sum()) for role, (_, mask) in eval_pools.items() if mask.any()}
    calibrator: Calibrator = common["calibrator"]
    if method == "gr":  # closed form: each item's mean over the other folds, in one pass
        out = {}
        for role, (rows, mask) in eval_pools.items():
            if mask.any():
                item_folds = folds[role.split("_")[0]]
                out[role] = crossfit_means(rows[mask], item_folds[mask], k, role)[item_folds]
        return Calibration("gr", "crossfit", out, counts, folds=k, state=out, **common)
    states = []
    for f in range(k):
        keep = {side: labels != f for side, labels in folds.items()}
        fold_pools = {}
        for role, (rows, mask) in eval_pools.items():
            if mask.any():
                sel = mask & keep[role.split("_")[0]]
                if not sel.any():
                    raise DataError(f"calibration.source=crossfit: no {role} items outside fold {f}; "
                                    "use fewer calibration.folds or another calibration.source")
                fold_pools[role] = rows[sel]
        fold_pairs = _eval_pairs(queries, docs, keep)
        if calibrator.needs_pairs and fold_pairs is None:
            raise ValueError(f"calibration={method} source=crossfit: no paired image+text items "
                             f"outside fold {f}")
        states.append(calibrator.fit(fold_pools, fold_pairs))
    return Calibration(method, "crossfit", {}, counts, folds=k, fold_states=states,
                       fold_labels=folds, **common)


def calibration_pairs(embs: dict[str, Any]) -> Pairs | None:
    """Raw ``(text, image)`` rows of calibration items embedded both ways (same id in
    ``calibration/<split>/text`` and ``calibration/<split>/image``), for paired methods."""
    text, image = [], []
    for split in ("calibration/queries", "calibration/corpus"):
        t, i = embs.get(f"{split}/text"), embs.get(f"{split}/image")
        if t is None or i is None:
            continue
        in_image = set(i.ids)
        ids = [x for x in t.ids if x in in_image]
        if ids:
            text.append(t.take(ids))
            image.append(i.take(ids))
    return (np.concatenate(text), np.concatenate(image)) if text else None
