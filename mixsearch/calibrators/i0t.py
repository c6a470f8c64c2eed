"""I0T's embedding standardisation (An et al., "I0T: Embedding Standardization Method Towards
Zero Modality Gap", 2024): per-modality mean-centring and per-dimension standardisation of the
normalised embeddings, then renormalisation.

Here a "modality" is a role (query text, doc image, ...): ``(x - mean_role) / std_role``
with the per-dimension standard deviation of the role's calibration rows. State keys:
``<role>.mean`` and ``<role>.std``.
"""

from __future__ import annotations

import numpy as np

from mixsearch.calibrators import Calibrator, Pairs, State, mean_norm_problem


class I0T(Calibrator):
    """Per-role standardisation.

    Args:
        eps: floor of the standard deviations (a dimension constant over the pool would
            otherwise divide by zero).
    """

    def __init__(self, eps: float = 1e-6) -> None:
        if eps <= 0:
            raise ValueError(f"calibration.params.eps must be > 0, got {eps}")
        self.eps = eps

    def fit(self, pools: dict[str, np.ndarray], pairs: Pairs | None) -> State:
        state: State = {}
        for role, rows in pools.items():
            rows64 = rows.astype(np.float64)
            state[f"{role}.mean"] = rows64.mean(axis=0).astype(np.float32)
            state[f"{role}.std"] = np.maximum(rows64.std(axis=0), self.eps).astype(np.float32)
        return state

    def transform(self, role: str, rows: np.ndarray, state: State) -> np.ndarray:
        return (rows - state[f"{role}.mean"]) / state[f"{role}.std"]

    def covers(self, role: str, state: State) -> bool:
        return f"{role}.mean" in state and f"{role}.std" in state

    def check_state(self, state: State) -> list[tuple[str, str]]:
        out = []
        for key, arr in state.items():
            if key.endswith(".mean") and (problem := mean_norm_problem(arr)):
                out.append((key, problem))
            elif key.endswith(".std") and not (arr > 0).all():
                out.append((key, f"{int((arr <= 0).sum())} standard deviation(s) <= 0"))
        return out
