"""Calibration methods as plug-ins, registered by name (``calibration.method=<name>``).

A method is a :class:`Calibrator`: it fits a *state* (named arrays) from L2-normalised
calibration rows grouped by role, and transforms the normalised rows of a role with that
state; :mod:`mixsearch.fusion` then fuses and renormalises. Roles are plain names
``<side>_<part>`` (``query_text``, ``doc_image``, ``doc_joint``, ...): methods never assume a
fixed list of them. Where the state comes from (train, crossfit, transductive, files) is
decided by :func:`mixsearch.calibration.resolve`, the same for every method.

Adding a method is one module::

    from mixsearch.calibrators import Calibrator, register_calibrator

    class Shrink(Calibrator):
        "Scale every row towards the origin (a toy example)."
        def __init__(self, factor: float = 0.5) -> None:
            self.factor = factor
        def fit(self, pools, pairs):
            return {"factor": np.array([self.factor], np.float32)}
        def transform(self, role, rows, state):
            return rows * state["factor"][0]

    register_calibrator("shrink", Shrink)

then ``mixsearch.evaluate(enc, bench, calibration={"method": "shrink"})`` (options from
``calibration.params``), or without registering, ``python run.py calibration.method=mymodule:Shrink``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from mixsearch.registry import Registry

#: State of a fitted method: named arrays, each written to ``<key>.npy`` in the run dir.
State = dict[str, np.ndarray]
#: Paired rows ``(text, image)`` of the same items (normalised), for methods that need pairs.
Pairs = tuple[np.ndarray, np.ndarray]
#: Tolerance of the state checks (float32 rounding of a fitted state stays far below it).
STATE_TOL = 1e-3


def mean_norm_problem(vec: np.ndarray) -> str | None:
    """Why ``vec`` cannot be a mean of unit vectors (its norm exceeds 1), or None."""
    norm = float(np.linalg.norm(vec.astype(np.float64)))
    if norm > 1 + STATE_TOL:
        return (f"norm {norm:.4g} > 1: not a mean of L2-normalised embeddings (damaged, or "
                "computed from unnormalised ones)")
    return None


def orthonormal_rows_problem(mat: np.ndarray, what: str) -> str | None:
    """Why the rows of ``mat`` are not orthonormal (``mat matᵀ = I``), or None."""
    m64 = mat.astype(np.float64)
    err = float(np.abs(m64 @ m64.T - np.eye(len(m64))).max()) if m64.ndim == 2 else np.inf
    if not err <= STATE_TOL:
        return f"not {what} (shape {mat.shape}, max |M Mᵀ − I| = {err:.3g})"
    return None


class Calibrator:
    """Base class of calibration methods (the identity: the CLIP baseline).

    Attributes:
        fits_state: the method fits a state (False: nothing to fit, no calibration source).
        needs_pairs: :meth:`fit` needs paired text/image rows of the same items.
        push_down: ranking rule of the paper's setting-1 simulation (image docs below texts).
    """

    fits_state: bool = True
    needs_pairs: bool = False
    push_down: bool = False

    def fit(self, pools: dict[str, np.ndarray], pairs: Pairs | None) -> State:
        """Fit the state.

        Args:
            pools: normalised ``(n, d)`` rows per role (only roles with rows are present).
            pairs: paired normalised ``(text, image)`` rows, or None when there are none.

        Returns:
            The state: named arrays (written to ``<key>.npy`` and reloadable).
        """
        raise NotImplementedError

    def transform(self, role: str, rows: np.ndarray, state: State) -> np.ndarray:
        """The calibrated rows of ``role`` (not renormalised; fusion normalises).

        Args:
            role: the role of the rows (``doc_image``, ...).
            rows: normalised ``(n, d)`` rows.
            state: the fitted state.
        """
        return rows

    def covers(self, role: str, state: State) -> bool:
        """Whether ``state`` can transform ``role`` (default: every role)."""
        return True

    def check_state(self, state: State) -> list[tuple[str, str]]:
        """What is wrong with a state read from files, as ``(key, problem)`` pairs (default:
        nothing known). Methods check what they know of their own state: a mean of unit
        vectors has norm <= 1, a rotation is orthogonal."""
        return []


_REGISTRY = Registry("calibration method", {
    "none": "mixsearch.calibrators.basic:NoCalibration",
    "pushdown": "mixsearch.calibrators.basic:PushDown",
    "gr": "mixsearch.calibrators.basic:GR",
    "i0t": "mixsearch.calibrators.i0t:I0T",
    "project": "mixsearch.calibrators.project:Project",
    "procrustes": "mixsearch.calibrators.procrustes:Procrustes",
})


def register_calibrator(name: str, factory: Any, *, overwrite: bool = False) -> None:
    """Make ``calibration.method=<name>`` build ``factory(**calibration.params)``.

    Args:
        name: the method name.
        factory: a :class:`Calibrator` subclass (or callable returning one), or
            ``"module:attribute"`` imported on first use.
        overwrite: replace an existing registration instead of raising.

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is False.
    """
    _REGISTRY.register(name, factory, overwrite=overwrite)


def available_calibrators() -> list[str]:
    """Names of the registered calibration methods."""
    return _REGISTRY.names()


def build_calibrator(name: str, params: dict[str, Any] | None = None) -> Calibrator:
    """The calibrator registered as ``name`` built with ``params``.

    Raises:
        ValueError: unknown method (``calibration.method``) or a parameter the method does not
            take (``calibration.params``).
    """
    if name not in _REGISTRY and ":" in name:  # "module:Class", a method in the user's own file
        register_calibrator(name, name)
    if name not in _REGISTRY:
        raise ValueError(f"calibration.method: unknown method {name!r}; choose one of "
                         f"{available_calibrators()} or give 'module:Class'")
    try:
        factory = _REGISTRY.get(name)
    except (ImportError, AttributeError) as e:
        _REGISTRY.unregister(name)  # a mistyped "module:Class" must not stay registered
        raise ValueError(f"calibration.method: cannot load {name!r}: {e}") from e
    params = dict(params or {})
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as e:
        raise ValueError(f"calibration.params: method {name!r} does not take {sorted(params)}: {e}") from e
    return factory(**params)


def part_of(role: str) -> str:
    """The embedded part of a role: ``doc_image`` -> ``image``."""
    return role.rsplit("_", 1)[-1]


__all__ = ["Calibrator", "Pairs", "State", "available_calibrators", "build_calibrator",
           "mean_norm_problem", "orthonormal_rows_problem", "part_of", "register_calibrator"]
