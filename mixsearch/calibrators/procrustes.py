"""An orthogonal map from image space to text space fitted on paired items (orthogonal
Procrustes, Schönemann 1966; as a modality-gap fix for CLIP e.g. in "Mind the Gap", Liang et
al. 2022, and cross-lingual embedding alignment, Smith et al. 2017).

``W = argmin ||I W - T||_F`` over orthogonal ``W`` for paired normalised image rows ``I`` and
text rows ``T`` of the same items (scipy.linalg.orthogonal_procrustes). Image-part roles
(``doc_image``, ``query_image``) are mapped by ``W``; text and joint roles stay as they are.
A rotation keeps norms, so nothing else changes. State key: ``rotation`` (``(d, d)``).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import orthogonal_procrustes

from mixsearch.calibrators import Calibrator, Pairs, State, orthonormal_rows_problem, part_of


class Procrustes(Calibrator):
    """Rotate image embeddings onto their paired texts."""

    needs_pairs = True

    def fit(self, pools: dict[str, np.ndarray], pairs: Pairs | None) -> State:
        if pairs is None or len(pairs[0]) < 2:
            raise ValueError("calibration=procrustes: needs paired image+text items (calibration "
                             "split items with both, or image+text docs of the evaluated corpus)")
        text, image = (p.astype(np.float64) for p in pairs)
        rotation, _ = orthogonal_procrustes(image, text)
        return {"rotation": rotation.astype(np.float32)}

    def transform(self, role: str, rows: np.ndarray, state: State) -> np.ndarray:
        return rows @ state["rotation"] if part_of(role) == "image" else rows

    def check_state(self, state: State) -> list[tuple[str, str]]:
        rotation = state.get("rotation")
        if rotation is None:
            return [("rotation", "missing")]
        problem = orthonormal_rows_problem(rotation, "an orthogonal (d, d) rotation")
        if problem is None and rotation.shape[0] != rotation.shape[1]:
            problem = f"not square (shape {rotation.shape})"
        return [("rotation", problem)] if problem else []
