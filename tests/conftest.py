"""Test-wide settings: everything offline, every cache in a temp dir."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Set before any test module imports transformers/datasets/wandb, so their import-time
# configuration is offline too.
_TMP = tempfile.mkdtemp(prefix="mixsearch-tests-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "HF_HOME": os.path.join(_TMP, "hf"),
    "WANDB_DIR": os.path.join(_TMP, "wandb"),
    "MPLBACKEND": "Agg",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)

# conf/config.yaml extends the structured schema: tests that compose conf/ with Hydra's compose
# API need it in the ConfigStore, as run.py puts it there (after the environment above is set).
from mixsearch.schema import register_configs  # noqa: E402

register_configs()


# ---------------------------------------------------------------------------- plug-in registries
# Tests that register a plug-in (an encoder backend, calibration method, fusion method, merge,
# benchmark loader or tracker) take the ``registries_restored`` fixture, which puts every registry back
# as it was. The autouse check fails a test that leaves one changed, naming the entries.
import contextlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

# import every module that owns a registry, so the baseline holds them all
import mixsearch.calibrators  # noqa: E402,F401
import mixsearch.encoders.registry  # noqa: E402,F401
import mixsearch.fusion  # noqa: E402,F401
import mixsearch.merge  # noqa: E402,F401
from mixsearch import tracking  # noqa: E402
from mixsearch.data import registry as data_registry  # noqa: E402
from mixsearch.registry import Registry, registries  # noqa: E402

#: registries that are plain dicts: (label, the dict, names a module import adds legitimately)
_DICT_REGISTRIES = (
    ("benchmark loaders", data_registry.LOADERS, frozenset(data_registry._SELF_REGISTERING)),
    ("trackers", tracking._TRACKERS, frozenset()),
)


def _state() -> dict[str, tuple[object, dict, frozenset]]:
    """label -> (registry, a copy of its entries, names a module import may add)."""
    out = {f"{r.kind} @{id(r):x}": (r, r.snapshot(), frozenset()) for r in registries()}
    out.update({label: (d, dict(d), keep) for label, d, keep in _DICT_REGISTRIES})
    return out


def _entries(owner: object) -> dict:
    return owner.snapshot() if isinstance(owner, Registry) else dict(owner)


@contextlib.contextmanager
def restored_registries() -> Iterator[None]:
    """Every plug-in registry as it was on entry, whatever the block registers."""
    saved = _state()
    try:
        yield
    finally:
        for owner, entries, keep in saved.values():
            if isinstance(owner, Registry):
                owner.restore(entries)
            else:  # a dict: keep what a module import added (that module cannot add it again)
                kept = {k: v for k, v in owner.items() if k in keep}
                owner.clear()
                owner.update({**entries, **kept})


@pytest.fixture
def registries_restored() -> Iterator[None]:
    """Register plug-ins freely: every registry is restored after the test."""
    with restored_registries():
        yield


def _same(before: object, after: object) -> bool:
    if before is after:
        return True
    if isinstance(before, str) and ":" in before:  # a lazy entry resolved on first use
        import importlib

        module, _, attr = before.partition(":")
        return getattr(importlib.import_module(module), attr, None) is after
    return False


def registry_changes(saved: dict[str, tuple[object, dict, frozenset]]) -> list[str]:
    """What differs from ``saved`` (a :func:`_state`): added, removed or replaced names."""
    changes = []
    for label, (owner, before, keep) in saved.items():
        after = _entries(owner)
        added = sorted(set(after) - set(before) - keep)
        removed = sorted(set(before) - set(after))
        replaced = sorted(n for n in set(before) & set(after) if not _same(before[n], after[n]))
        changes += [f"{label}: {what} {names}" for what, names in
                    (("added", added), ("removed", removed), ("replaced", replaced)) if names]
    return changes


@pytest.fixture(autouse=True)
def _no_registry_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    saved = _state()
    yield
    leaked = registry_changes(saved)
    if leaked:
        pytest.fail(f"{request.node.nodeid} left plug-in registries changed ({'; '.join(leaked)}); "
                    "use the registries_restored fixture", pytrace=False)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a module of tiny-model tests: thread start-up would dominate,
    and CI's cores are shared. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
