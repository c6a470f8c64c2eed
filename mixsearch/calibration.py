"""Modality-gap calibration (GR-CLIP): the means subtracted before renormalising.

Methods (``calibration.method``):

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

Sources of the ``gr`` means (``calibration.source``):

* ``train``: pools of raw embeddings given by the caller (calibration splits, training sets).
* ``crossfit``: K folds over the evaluated queries and docs; items in fold k are calibrated
  with means of the other folds, so no item's own embedding enters its calibration.
* ``transductive``: means of the evaluated items themselves (a leak, labelled as such).
* ``files``: mean vectors from ``.pt`` / ``.npy`` files (the seed code's form).
* ``auto``: ``train`` when pools are given, else ``crossfit``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixsearch.data.benchmark import DataError
from mixsearch.fusion import Views, l2_normalise

ROLES = ("query_text", "query_image", "doc_text", "doc_image", "query_joint", "doc_joint")
METHODS = ("none", "gr", "pushdown")
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
        try:
            obj: Any = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read mean file {path}: {e}") from e
    elif path.endswith(".pt"):
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
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
    """The means a run subtracts, per role, and where they came from.

    ``means[role]`` is ``(d,)`` or, for cross-fitting, ``(n_items, d)`` aligned with the query
    or doc rows. Roles absent from ``means`` are not calibrated.
    """

    method: str
    source: str | None
    means: dict[str, np.ndarray]
    n_samples: dict[str, int]
    folds: int | None = None

    def summary(self) -> dict[str, Any]:
        return {"method": self.method, "source": self.source, "n_samples": dict(self.n_samples),
                "folds": self.folds}


def resolve(
    cfg: dict[str, Any],
    queries: Views,
    docs: Views,
    *,
    pools: dict[str, np.ndarray] | None = None,
    means: Means | None = None,
) -> Calibration:
    """Pick the method and source and compute the means for these queries and docs.

    Args:
        cfg: the ``calibration`` section (``method``, ``source``, ``folds``, ``seed``, ``files``).
        queries: every available query part (normalised).
        docs: the doc parts the run shows (normalised).
        pools: raw calibration embeddings by role (``source=train``).
        means: precomputed means (used by ``train`` / ``files`` / ``auto`` when given).

    Raises:
        ValueError: unknown ``calibration.method`` / ``calibration.source``, or a role the run
            needs has no mean (names the role and source).
    """
    method = cfg.get("method", "none")
    if method not in METHODS:
        raise ValueError(f"calibration.method: unknown method {method!r}; choose one of {METHODS}")
    if method != "gr":
        return Calibration(method, None, {}, {})
    source = cfg.get("source", "auto")
    if source not in SOURCES:
        raise ValueError(f"calibration.source: unknown source {source!r}; choose one of {SOURCES}")
    if source == "auto":
        source = means.source if means is not None else "train" if pools else "crossfit"
    if means is not None and means.source != source:
        raise ValueError(f"calibration.source={source} conflicts with given means "
                         f"(source {means.source!r})")
    eval_pools = {
        "query_text": (queries.text, queries.has_text), "query_image": (queries.image, queries.has_image),
        "doc_text": (docs.text, docs.has_text), "doc_image": (docs.image, docs.has_image),
    }
    # joint roles exist only when the run uses joint embeddings (fusion=joint)
    for role, views in (("query_joint", queries), ("doc_joint", docs)):
        if views.joint is not None:
            eval_pools[role] = (views.joint, views.both)
    needed = tuple(r for r in ("query_text", "doc_text", "doc_image", "doc_joint")
                   if r in eval_pools and eval_pools[r][1].any())
    if source == "crossfit":
        return _crossfit(cfg, eval_pools)
    if means is None:
        if source == "train":
            if not pools:
                raise ValueError("calibration.source=train: no calibration pools were given "
                                 "(calibration splits or calibration.train_sets)")
            means = fit_means(pools, "train")
        elif source == "files":
            means = load_mean_files(cfg.get("files") or {}, required=needed)
        else:  # transductive: the evaluated rows are already normalised
            means = fit_means({r: rows[m] for r, (rows, m) in eval_pools.items() if m.any()},
                              "transductive")
    lacking = [r for r in needed if means.get(r) is None]
    if lacking:
        raise ValueError(f"calibration.source={source}: no {lacking[0]} mean, but the run shows "
                         f"items of that role")
    dim = queries.text.shape[1]
    for role in ROLES:
        vec = means.get(role)
        if vec is not None and vec.shape != (dim,):
            raise ValueError(f"calibration.source={source}: {role} mean has shape {vec.shape}, "
                             f"embeddings have dim {dim}")
    present = {r: means.get(r) for r in ROLES if means.get(r) is not None}
    return Calibration("gr", source, present, dict(means.n_samples))


def _crossfit(cfg: dict[str, Any], eval_pools: dict[str, tuple[np.ndarray, np.ndarray]]) -> Calibration:
    k, seed = int(cfg.get("folds", 5)), int(cfg.get("seed", 0))
    n_q, n_d = len(eval_pools["query_text"][1]), len(eval_pools["doc_text"][1])
    # Queries and docs get independent fold labels; a doc's text and image share one.
    folds = {"query": assign_folds(n_q, k, seed), "doc": assign_folds(n_d, k, seed + 1)}
    out, counts = {}, {}
    for role, (rows, mask) in eval_pools.items():
        if mask.any():
            item_folds = folds[role.split("_")[0]]
            per_fold = crossfit_means(rows[mask], item_folds[mask], k, role)
            out[role], counts[role] = per_fold[item_folds], int(mask.sum())
    return Calibration("gr", "crossfit", out, counts, folds=k)
