"""Removing the modality-gap direction (Liang et al., "Mind the Gap: Understanding the Modality
Gap in Multi-modal Contrastive Representation Learning", NeurIPS 2022): the gap is mostly a
constant offset between the text and the image cones, so project every embedding onto the
orthogonal complement of that offset, then renormalise.

``estimate=means`` (default): one direction, the difference of the text and image means (each
the average of its roles' means, so a large query pool does not outweigh the docs).
``estimate=paired``: the top ``k`` right singular vectors of the paired differences
``text_i - image_i`` of items that have both (calibration image+text items). State key:
``directions`` (``(k, d)``, orthonormal rows).
"""

from __future__ import annotations

import numpy as np

from mixsearch.calibrators import Calibrator, Pairs, State, orthonormal_rows_problem, part_of


class Project(Calibrator):
    """``x - (x D^T) D`` for the orthonormal gap directions ``D``.

    Args:
        k: number of directions removed (``estimate=paired`` only; ``means`` gives one).
        estimate: ``means`` or ``paired``.
    """

    def __init__(self, k: int = 1, estimate: str = "means") -> None:
        if estimate not in ("means", "paired"):
            raise ValueError(f"calibration.params.estimate: {estimate!r} is not 'means' or 'paired'")
        if k < 1 or (estimate == "means" and k != 1):
            raise ValueError(f"calibration.params.k: {k}; estimate=means removes exactly 1 "
                             "direction, estimate=paired 1 or more")
        self.k, self.estimate = int(k), estimate
        self.needs_pairs = estimate == "paired"

    def fit(self, pools: dict[str, np.ndarray], pairs: Pairs | None) -> State:
        if self.estimate == "paired":
            if pairs is None or len(pairs[0]) < self.k:
                raise ValueError(f"calibration=project estimate=paired: needs at least k={self.k} "
                                 "paired image+text items")
            _, _, vt = np.linalg.svd((pairs[0] - pairs[1]).astype(np.float64), full_matrices=False)
            return {"directions": vt[: self.k].astype(np.float32)}
        means = {}
        for part in ("text", "image"):
            role_means = [rows.mean(axis=0, dtype=np.float64) for role, rows in pools.items()
                          if part_of(role) == part]
            if not role_means:
                raise ValueError(f"calibration=project: no {part} rows to estimate the gap from")
            means[part] = np.mean(role_means, axis=0)
        gap = means["text"] - means["image"]
        return {"directions": (gap / max(np.linalg.norm(gap), 1e-12))[None].astype(np.float32)}

    def transform(self, role: str, rows: np.ndarray, state: State) -> np.ndarray:
        d = state["directions"]
        return rows - (rows @ d.T) @ d

    def check_state(self, state: State) -> list[tuple[str, str]]:
        d = state.get("directions")
        if d is None:
            return [("directions", "missing")]
        problem = orthonormal_rows_problem(d, "orthonormal (k, d) directions")
        return [("directions", problem)] if problem else []
