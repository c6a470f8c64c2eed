"""Normalisation, mean subtraction and fusion: from raw embeddings to the vectors we search.

Order (docs/paper.md §2, as the seed code does): L2-normalise each raw embedding → for image+text
items fuse ``α·t̂ + (1−α)·î`` → subtract the mean (``α·t̄ + (1−α)·ī`` for fused items) →
L2-normalise → dot product. Subtracting the fused mean from the fused vector equals fusing the
centred parts, ``α(t̂ − t̄) + (1−α)(î − ī)``, so the centred parts are computed once
(:func:`centre`) and each α only recombines them (:func:`fuse`): an α sweep never repeats the
normalisation or the calibration.

``fusion=joint`` replaces the α-fusion of image+text items by the encoder's own joint embedding
of the pair (universal embedders, VLM2Vec's ``vlm_mixed_embedding``): such an item is searched
as ``normalise(ĵ − j̄)`` with ``j̄`` the mean of its joint role (``doc_joint`` / ``query_joint``).

``alpha`` is the TEXT weight (1 = text only, 0 = image only). Means are arrays of shape ``(d,)``
(one mean for all rows) or ``(n, d)`` (one per row, e.g. cross-fitted); ``None`` means no
calibration (the CLIP baseline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mixsearch.registry import Registry

QUERY_MODES = ("text", "image", "weighted", "joint")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


@dataclass
class Views:
    """The text and image parts of a list of items (queries or docs) that a run shows.

    Attributes:
        ids: item ids in row order.
        text: ``(n, d)`` text rows (zero where the item shows no text).
        image: ``(n, d)`` image rows (zero where the item shows no image).
        has_text: ``(n,)`` bool, the item shows its text.
        has_image: ``(n,)`` bool, the item shows its image.
        joint: ``(n, d)`` joint image+text rows of the items showing both (zero elsewhere), or
            ``None`` when the encoder's joint embeddings are not used.
    """

    ids: list[str]
    text: np.ndarray
    image: np.ndarray
    has_text: np.ndarray
    has_image: np.ndarray
    joint: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not (self.has_text | self.has_image).all():
            bad = self.ids[int(np.flatnonzero(~(self.has_text | self.has_image))[0])]
            raise ValueError(f"item {bad!r} shows neither text nor image")

    @property
    def modalities(self) -> np.ndarray:
        """Per-row modality label: ``text``, ``image`` or ``image+text``."""
        out = np.where(self.has_text, "text", "image").astype(object)
        out[self.has_text & self.has_image] = "image+text"
        return out

    @property
    def both(self) -> np.ndarray:
        """``(n,)`` bool: the item shows its text and its image."""
        return self.has_text & self.has_image

    def rows(self, lo: int, hi: int) -> Views:
        """Rows ``lo:hi`` (views of the same arrays, no copy)."""
        return Views(self.ids[lo:hi], self.text[lo:hi], self.image[lo:hi], self.has_text[lo:hi],
                     self.has_image[lo:hi], None if self.joint is None else self.joint[lo:hi])

    def select(self, mode: str) -> Views:
        """Restrict to the parts a query mode uses: ``text``, ``image``, ``weighted`` (both) or
        ``joint`` (both, image+text items by their joint embedding).

        Raises:
            ValueError: an unknown ``fusion.query``, or an item lacking the part it asks for.
        """
        if mode == "joint" and self.joint is None and self.both.any():
            raise ValueError("fusion.query=joint: the queries have no joint image+text embeddings")
        if mode in ("weighted", "joint"):
            return self
        if mode not in QUERY_MODES:
            raise ValueError(f"fusion.query: unknown mode {mode!r}; choose one of {QUERY_MODES}")
        keep = self.has_text if mode == "text" else self.has_image
        if not keep.all():
            bad = self.ids[int(np.flatnonzero(~keep)[0])]
            raise ValueError(f"fusion.query={mode}: query {bad!r} has no {mode}")
        zeros = np.zeros_like(keep)
        return replace(self, has_text=keep if mode == "text" else zeros,
                       has_image=keep if mode == "image" else zeros)


def make_views(
    ids: list[str],
    text: np.ndarray | None,
    image: np.ndarray | None,
    has_text: np.ndarray,
    has_image: np.ndarray,
    joint: np.ndarray | None = None,
) -> Views:
    """L2-normalise raw rows into :class:`Views` (rows an item does not show become zero).

    ``joint`` rows are kept for the items showing both text and image."""
    dim = (text if text is not None else image).shape[1]
    has_text, has_image = np.asarray(has_text, bool), np.asarray(has_image, bool)
    parts = []
    for rows, mask in ((text, has_text), (image, has_image), (joint, has_text & has_image)):
        out = np.zeros((len(ids), dim), np.float32)
        if rows is not None:  # a block of rows at a time: temporaries stay the size of a block
            for lo in range(0, len(ids), FUSE_ROWS):
                keep = mask[lo:lo + FUSE_ROWS]
                if keep.any():
                    out[lo:lo + FUSE_ROWS][keep] = l2_normalise(rows[lo:lo + FUSE_ROWS][keep])
        parts.append(out)
    return Views(list(ids), parts[0], parts[1], has_text, has_image,
                 parts[2] if joint is not None else None)


def centre(
    views: Views,
    text_mean: np.ndarray | None,
    image_mean: np.ndarray | None,
    joint_mean: np.ndarray | None = None,
) -> Views:
    """Subtract the modality means from the (normalised) parts; ``None`` subtracts nothing.

    The result is not renormalised: :func:`fuse` combines and then normalises.
    """
    text = views.text if text_mean is None else (views.text - text_mean) * views.has_text[:, None]
    image = (
        views.image if image_mean is None else (views.image - image_mean) * views.has_image[:, None]
    )
    joint = views.joint
    if joint is not None and joint_mean is not None:
        joint = ((joint - joint_mean) * views.both[:, None]).astype(np.float32)
    return replace(views, text=text.astype(np.float32), image=image.astype(np.float32), joint=joint)


def _weighted(centred: Views, alpha: float) -> np.ndarray:
    """Embedding fusion: ``normalise(α·t + (1−α)·i)`` for image+text rows."""
    w_text, w_image = _weights(centred, alpha)
    return l2_normalise(w_text * centred.text + w_image * centred.image)


def _score(centred: Views, alpha: float) -> np.ndarray:
    """Late fusion: ``α·normalise(t) + (1−α)·normalise(i)``: its dot product with a query is
    ``α·s(q, text) + (1−α)·s(q, image)``, each side calibrated with its own mean."""
    w_text, w_image = _weights(centred, alpha)
    return w_text * l2_normalise(centred.text) + w_image * l2_normalise(centred.image)


def _joint(centred: Views, alpha: float) -> np.ndarray:
    """``normalise(j)``, the (centred) joint embedding of the pair; ``alpha`` unused."""
    both = centred.both
    if centred.joint is None and both.any():
        raise ValueError("fusion.method=joint: no joint image+text embeddings were given")
    out = l2_normalise(centred.text + centred.image)  # unimodal rows: one part is zero
    if both.any():
        out[both] = l2_normalise(centred.joint[both])  # type: ignore[index]
    return out


def _weights(centred: Views, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    both = centred.both
    w_text = np.where(both, np.float32(alpha), np.float32(1.0))[:, None]
    w_image = np.where(both, np.float32(1.0 - alpha), np.float32(1.0))[:, None]
    return w_text, w_image


#: ``fusion.method`` -> ``fn(centred views, alpha) -> searched vectors``; see :func:`register_fusion`.
_FUSERS = Registry("fusion method", {"weighted": _weighted, "score": _score, "joint": _joint})


def register_fusion(name: str, fn: Callable[[Views, float], np.ndarray], *, overwrite: bool = False) -> None:
    """Make ``fusion.method=<name>`` build the searched vectors with ``fn(centred, alpha)``.

    ``fn`` gets the calibrated (not normalised) parts of every item and the text weight, and
    returns one unit vector per row; unimodal rows should be ``normalise(t)`` / ``normalise(i)``.

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is False.
    """
    _FUSERS.register(name, fn, overwrite=overwrite)


def available_fusions() -> list[str]:
    """Names of the registered fusion methods."""
    return _FUSERS.names()


def fuse(centred: Views, *, method: str = "weighted", alpha: float = 0.5) -> np.ndarray:
    """The searched vectors from centred parts, by the registered ``fusion.method``.

    * ``weighted`` (embedding fusion): ``normalise(α·t + (1−α)·i)`` for image+text rows.
    * ``score`` (late fusion): ``α·normalise(t) + (1−α)·normalise(i)``, so its dot product with a
      query is ``α·s(q, text) + (1−α)·s(q, image)``, each side calibrated with its own mean.
    * ``joint``: ``normalise(j)``, the (centred) joint embedding of the pair; ``alpha`` unused.

    Unimodal rows are ``normalise(t)`` or ``normalise(i)`` under every built-in method.

    Raises:
        ValueError: unknown ``fusion.method``, ``alpha`` outside [0, 1] (``fusion.alpha``), or
            ``joint`` without joint embeddings.
    """
    if method not in _FUSERS:
        raise ValueError(f"fusion.method: unknown method {method!r}; choose one of {available_fusions()}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"fusion.alpha: the text weight must be in [0, 1], got {alpha!r}")
    fn, n = _FUSERS.get(method), len(centred.ids)
    if fn not in _ROW_WISE or n <= FUSE_ROWS:
        return fn(centred, float(alpha))
    # The built-in methods work row by row: fuse a block of rows at a time into the result, so
    # their temporaries stay the size of a block (equal results: rows do not interact).
    out = np.empty((n, centred.text.shape[1]), np.float32)
    for lo in range(0, n, FUSE_ROWS):
        out[lo:lo + FUSE_ROWS] = fn(centred.rows(lo, lo + FUSE_ROWS), float(alpha))
    return out


#: Rows fused at a time by the built-in (row-wise) methods; registered methods see all rows.
FUSE_ROWS = 1 << 16
_ROW_WISE = (_weighted, _score, _joint)


def row_wise(method: str) -> bool:
    """Whether ``fusion.method`` is a built-in method, whose rows can be fused in blocks."""
    return method in _FUSERS and _FUSERS.get(method) in _ROW_WISE


def build_query_matrix(
    views: Views,
    *,
    mode: str = "weighted",
    alpha: float = 0.5,
    text_mean: np.ndarray | None = None,
    image_mean: np.ndarray | None = None,
    joint_mean: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Searched query vectors: text, image, both fused with ``alpha`` (``fusion.query_alpha``)
    or, for ``joint``, image+text queries by their joint embedding.

    Args:
        views: normalised query parts (:func:`make_views`).
        mode: ``text`` | ``image`` | ``weighted`` (image+text queries fused; others keep the
            single part they have) | ``joint`` (image+text queries by their joint embedding).
        alpha: text weight of fused queries.
        text_mean: the query-text mean (``None``: no calibration).
        image_mean: the query-image mean.
        joint_mean: the query-joint mean (``joint`` mode).

    Returns:
        ``(matrix (n, d), ids)``.
    """
    used = views.select(mode)
    method = "joint" if mode == "joint" else "weighted"
    return fuse(centre(used, text_mean, image_mean, joint_mean), method=method, alpha=alpha), used.ids


def build_doc_matrix(
    views: Views,
    *,
    method: str = "weighted",
    alpha: float = 0.5,
    text_mean: np.ndarray | None = None,
    image_mean: np.ndarray | None = None,
    joint_mean: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Searched doc vectors (see :func:`fuse`); returns ``(matrix (n, d), ids)``."""
    centred = centre(views, text_mean, image_mean, joint_mean)
    return fuse(centred, method=method, alpha=alpha), views.ids
