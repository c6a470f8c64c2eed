"""The paper's methods: no calibration, GR-CLIP mean subtraction, and the push-down simulation.

GR-CLIP (Li et al., "Closing the Modality Gap for Mixed Modality Search", arXiv 2507.19054):
subtract the mean of each role's L2-normalised embeddings, then renormalise.
"""

from __future__ import annotations

import numpy as np

from mixsearch.calibrators import Calibrator, Pairs, State, mean_norm_problem


class NoCalibration(Calibrator):
    """The CLIP baseline: normalise, fuse, normalise; nothing fitted."""

    fits_state = False


class PushDown(Calibrator):
    """The paper's setting-1 push-down simulation (docs/paper.md §3): every image or screenshot doc
    ranks below all text docs; vectors stay uncalibrated."""

    fits_state = False
    push_down = True


class GR(Calibrator):
    """GR-CLIP: ``x - mean(role)``. State: one mean vector per role, keyed by the role name
    (the ``<role>.npy`` files the paper's seed code reads)."""

    def fit(self, pools: dict[str, np.ndarray], pairs: Pairs | None) -> State:
        return {role: rows.mean(axis=0, dtype=np.float64).astype(np.float32)
                for role, rows in pools.items()}

    def transform(self, role: str, rows: np.ndarray, state: State) -> np.ndarray:
        return rows - state[role]

    def covers(self, role: str, state: State) -> bool:
        return role in state

    def check_state(self, state: State) -> list[tuple[str, str]]:
        return [(role, p) for role, mean in state.items() if (p := mean_norm_problem(mean))]
