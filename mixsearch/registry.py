"""The one registry shape every plug-in kind uses (encoders, calibration methods, fusion methods,
merges): names mapped to objects, or to ``"module:attribute"`` strings imported on first use so
that registering a backend never imports its heavy dependencies."""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Iterable
from typing import Any

#: every Registry alive, so a test harness can save and restore them all (:func:`registries`)
_ALL: weakref.WeakSet[Registry] = weakref.WeakSet()


class Registry:
    """Named plug-ins of one kind.

    Args:
        kind: what the names are, for messages (``"encoder backend"``, ``"fusion method"``).
        entries: initial ``name -> object or "module:attribute"``.
        error: the exception type raised for a name that is taken.
        reserved: names that can never be registered (a built-in choice handled elsewhere).
    """

    def __init__(self, kind: str, entries: dict[str, Any] | None = None, *,
                 error: type[Exception] = ValueError, reserved: Iterable[str] = ()) -> None:
        self.kind = kind
        self.error = error
        self.reserved = frozenset(reserved)
        self._entries: dict[str, Any] = dict(entries or {})
        _ALL.add(self)

    def register(self, name: str, obj: Any, *, overwrite: bool = False) -> None:
        """Register ``obj`` (or ``"module:attribute"``) as ``name``.

        Raises:
            error: ``name`` is reserved, or taken by another object and ``overwrite`` is False.
        """
        taken = name in self._entries and self._entries[name] is not obj and not overwrite
        if name in self.reserved or taken:
            raise self.error(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def unregister(self, name: str) -> None:
        """Forget ``name`` (nothing happens when it is not registered)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Any:
        """The object registered as ``name``, importing a ``"module:attribute"`` entry once.

        Raises:
            KeyError: ``name`` is not registered (callers name their option first).
            ImportError, AttributeError: a lazy entry that cannot be imported.
        """
        obj = self._entries[name]
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._entries[name] = obj
        return obj

    def snapshot(self) -> dict[str, Any]:
        """A copy of the entries (name -> object or ``"module:attribute"``), for :meth:`restore`."""
        return dict(self._entries)

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Make the entries exactly those of ``snapshot`` (what :meth:`snapshot` returned):
        plug-ins registered since are forgotten, replaced ones come back."""
        self._entries = dict(snapshot)


def registries() -> list[Registry]:
    """Every registry object alive (those of imported modules and any made since)."""
    return list(_ALL)
