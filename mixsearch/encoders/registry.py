"""Encoder registry: build an encoder from a backend name and keyword options.

Built-in backends are referenced as ``"module:attribute"`` and imported on first use, so
building an open_clip encoder does not import transformers and vice versa.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from mixsearch.encoders.base import Encoder, EncoderError
from mixsearch.registry import Registry

Factory = Callable[..., Encoder]

_REGISTRY = Registry("encoder backend", {
    "open_clip": "mixsearch.encoders.openclip:OpenClipEncoder",
    "hf": "mixsearch.encoders.hf:HFEncoder",
    "precomputed": "mixsearch.encoders.precomputed:load_precomputed",
    "toy": "mixsearch.encoders.toy:ToyEncoder",
    "mteb": "mixsearch.encoders.mteb:MtebEncoder",
    "st": "mixsearch.encoders.st:STEncoder",
    "vlm2vec": "mixsearch.encoders.vlm2vec:VLM2VecEncoder",
}, error=EncoderError)


def register_encoder(name: str, factory: Factory | str, *, overwrite: bool = False) -> None:
    """Register a backend.

    Args:
        name: backend name used in configs (``build_encoder(name, ...)``).
        factory: a callable returning an :class:`Encoder`, or ``"module:attribute"``
            naming one (imported when first built).
        overwrite: replace an existing registration instead of raising.

    Raises:
        EncoderError: ``name`` is taken and ``overwrite`` is False.
    """
    _REGISTRY.register(name, factory, overwrite=overwrite)


def available_encoders() -> list[str]:
    """Names of the registered backends."""
    return _REGISTRY.names()


def build_encoder(backend: str, **kwargs: object) -> Encoder:
    """Build the encoder of ``backend`` with its keyword options.

    Args:
        backend: a registered backend name (``"open_clip"``, ``"hf"``, ``"precomputed"``, ...).
        **kwargs: the backend's constructor options.

    Returns:
        The encoder.

    Raises:
        EncoderError: unknown backend, an option the backend does not take, or a build error.
    """
    if backend not in _REGISTRY:
        raise EncoderError(f"unknown encoder backend {backend!r}; known: {available_encoders()}")
    factory = _REGISTRY.get(backend)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as e:
        raise EncoderError(f"encoder backend {backend!r}: bad options {sorted(kwargs)}: {e}") from e
    return factory(**kwargs)
