"""The shared plug-in registry: lazy imports, taken and reserved names."""

from __future__ import annotations

import json

import pytest

from mixsearch.registry import Registry


def test_lazy_entries_are_imported_once_and_names_are_sorted() -> None:
    reg = Registry("thing", {"b": "json:dumps", "a": len})
    assert reg.names() == ["a", "b"] and "b" in reg and "c" not in reg
    assert reg.get("b") is json.dumps and reg.get("a") is len
    with pytest.raises(KeyError):
        reg.get("c")
    reg.register("bad", "no_such_module_xyz:f")
    with pytest.raises(ImportError):
        reg.get("bad")
    reg.unregister("bad")
    assert "bad" not in reg


def test_taken_and_reserved_names_raise_the_kinds_error() -> None:
    reg = Registry("widget", {"x": len}, error=KeyError, reserved=("single",))
    reg.register("x", len)  # the same object again is fine
    with pytest.raises(KeyError, match="widget 'x' is already registered"):
        reg.register("x", max)
    reg.register("x", max, overwrite=True)
    assert reg.get("x") is max
    with pytest.raises(KeyError, match="widget 'single'"):
        reg.register("single", min, overwrite=True)
