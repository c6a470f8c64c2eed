"""Benchmark loaders by kind, so configs can name a loader with a string.

Other modules add their loaders with :func:`register_loader` (the toy generator registers
``"toy"``, the M-BEIR module ``"mbeir"``); the built-in kinds are ``"mixbench"``, ``"beir"``,
``"pairs"`` and ``"mteb"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mixsearch.data.beir import load_beir
from mixsearch.data.benchmark import Benchmark, DataError
from mixsearch.data.mixbench import load_mixbench
from mixsearch.data.mteb_tasks import load_mteb_task
from mixsearch.data.pairs import load_pairs

Loader = Callable[..., Benchmark]

LOADERS: dict[str, Loader] = {"mixbench": load_mixbench, "beir": load_beir, "pairs": load_pairs,
                              "mteb": load_mteb_task}
# Loaders that register themselves when their module is imported; imported on first use
# (the toy generator imports this module, so it cannot be imported here).
_SELF_REGISTERING = {"toy": "mixsearch.data.toy", "mbeir": "mixsearch.data.mbeir"}


def register_loader(kind: str, fn: Loader) -> None:
    """Register ``fn`` as the loader for ``kind``.

    Registering the same function again is a no-op (module reloads); a different function
    under a taken kind raises, so one loader never silently replaces another.

    Raises:
        ValueError: ``kind`` is already registered to another function.
    """
    current = LOADERS.get(kind)
    if current is not None and current is not fn:
        raise ValueError(
            f"benchmark loader kind {kind!r} is already registered to {current.__qualname__}"
        )
    LOADERS[kind] = fn


def load_benchmark(kind: str, **kwargs: object) -> Benchmark:
    """Load a benchmark with the loader registered for ``kind``.

    Args:
        kind: ``"mixbench"``, ``"beir"``, ``"pairs"``, ``"mteb"``, ``"toy"`` or any kind added with :func:`register_loader`.
        **kwargs: passed to the loader (e.g. ``root``, ``subset`` for ``mixbench``).

    Raises:
        DataError: unknown ``kind`` (the message lists the registered kinds), or whatever the
            loader raises.
    """
    if kind not in LOADERS and kind in _SELF_REGISTERING:
        importlib.import_module(_SELF_REGISTERING[kind])
    try:
        loader = LOADERS[kind]
    except KeyError:
        known = sorted(set(LOADERS) | set(_SELF_REGISTERING))  # the same whatever was imported
        raise DataError(f"unknown benchmark kind {kind!r}; registered: {known}") from None
    return loader(**kwargs)
