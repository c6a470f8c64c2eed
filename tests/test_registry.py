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


def test_registries_are_restored_and_a_leak_is_named() -> None:
    """The suite's guard (tests/conftest.py): a block registering plug-ins leaves every
    registry as it found it, and a change is reported by registry and name; resolving a lazy
    entry on first use is no change."""
    from conftest import _state, registry_changes, restored_registries

    from mixsearch.data.registry import LOADERS, register_loader
    from mixsearch.encoders import available_encoders, register_encoder
    from mixsearch.encoders.registry import _REGISTRY

    saved = _state()
    toy = _REGISTRY.snapshot()["toy"]
    with restored_registries():
        _REGISTRY.get("toy")  # lazy "module:attribute" -> the class
        assert registry_changes(saved) == []
        register_encoder("leak_test", len)
        register_encoder("open_clip", len, overwrite=True)
        register_loader("leak-kind", len)
        changes = registry_changes(saved)
        assert len(changes) == 3
        assert any(c.startswith("encoder backend @") and c.endswith("added ['leak_test']") for c in changes)
        assert any(c.startswith("encoder backend @") and c.endswith("replaced ['open_clip']") for c in changes)
        assert "benchmark loaders: added ['leak-kind']" in changes
    assert registry_changes(saved) == []
    assert "leak_test" not in available_encoders() and "leak-kind" not in LOADERS
    assert _REGISTRY.snapshot()["toy"] == toy
