"""Compute per item: GFLOPs of one text, image and joint image+text item, parameters, speed.

The paper claims GR-CLIP "uses 75× less compute" than VLM2Vec (docs/paper.md, compute). This
module measures it instead of quoting a table: the encoder embeds a small sample of the run's
own inputs under :class:`torch.utils.flop_counter.FlopCounterMode`, and the count is divided by
the number of items. Inputs are real (the run's texts at their real lengths, its images through
the model's own preprocessing), so long documents and high-resolution VLM images cost what they
cost. A second, uncounted pass over the same sample times the encoder when the run itself
encoded nothing (everything came from the cache).

FLOPs count multiply-adds as two operations (torch's convention), for matrix products,
convolutions and attention; elementwise work is not counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

from mixsearch.data.benchmark import DataError, Record
from mixsearch.encoders.base import Encoder, EncoderError

log = logging.getLogger(__name__)

#: items per field in the measured sample
SAMPLE_ITEMS = 4

_aten = torch.ops.aten
# torch counts the CUDA attention kernels but not the CPU flash kernel SDPA uses on CPU.
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
    try:
        @register_flop_formula(_aten._scaled_dot_product_flash_attention_for_cpu)
        def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
            return sdpa_flop_count(query_shape, key_shape, value_shape)
    except (RuntimeError, ValueError):  # already registered by a newer torch
        pass


@contextmanager
def countable_attention() -> Iterator[None]:
    """``nn.MultiheadAttention`` without its fused inference fast path while FLOPs are counted.

    Under ``inference_mode`` open_clip's vision attention runs as one
    ``aten._native_multi_head_attention`` call, which FlopCounterMode has no formula for: the
    projections and attention products inside it went uncounted (ViT-L/14-336: 233 instead of
    ~382 GFLOPs per image). The unfused path computes the same thing from counted ops.
    """
    mha = torch.backends.mha
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of calling ``fn()``, fused attention included."""
    counter = FlopCounterMode(display=False)
    with countable_attention(), counter:
        fn()
    return int(counter.get_total_flops())


def _run(encoder: Encoder, field: str, records: Sequence[Record], role: str,
         max_image_side: int | None = None) -> None:
    if field == "text":
        encoder.encode_text([r.text for r in records], role=role)  # type: ignore[misc]
        return
    transform = encoder.image_transform()
    images = encoder.collate_images([transform(r.image.load(max_image_side)) for r in records])  # type: ignore[union-attr]
    if isinstance(images, torch.Tensor):
        images = images.to(encoder.device)
    if field == "image":
        encoder.encode_image(images, role=role)
    else:
        encoder.encode_joint([r.text for r in records], images, role=role)  # type: ignore[misc]


def measure_compute(
    encoder: Encoder,
    samples: dict[str, Sequence[Record]],
    *,
    role: str = "document",
    encoded_items_per_s: float | None = None,
    amp: str = "none",
    max_image_side: int | None = None,
) -> dict[str, Any]:
    """GFLOPs per item of each field in ``samples``, the parameter count and the speed.

    Args:
        encoder: the encoder (a precomputed source measures nothing: values are ``None``).
        samples: records per field (``text``, ``image``, ``joint``), e.g. the first few corpus
            documents having that content; at most :data:`SAMPLE_ITEMS` of each are used.
        role: the role the items are embedded as (documents: the paper's "per document").
        encoded_items_per_s: the run's own extraction speed, when it encoded items; otherwise
            the sample is timed.
        amp: the autocast mode extraction ran under (``none``, ``bf16``, ``fp16``).
        max_image_side: images are decoded as extraction decodes them (``dataset.max_image_side``).

    Returns:
        ``{"gflops_per_text", "gflops_per_image", ["gflops_per_joint"], "parameters",
        "items_per_s", "items_per_s_source", "sample_items"}``; a field without sample
        records, or one the encoder cannot embed, is ``None`` (with a ``notes`` entry).
    """
    out: dict[str, Any] = {"parameters": encoder.parameter_count(), "notes": []}
    counted: dict[str, list[Record]] = {f: list(rs[:SAMPLE_ITEMS]) for f, rs in samples.items() if rs}
    for field in samples:
        out[f"gflops_per_{field}"] = None
    if getattr(encoder, "get", None) is not None and callable(encoder.get):
        out["notes"].append("precomputed embeddings: no model to measure")
        counted = {}
    timed_items, timed_seconds = 0, 0.0
    device = torch.device(encoder.device).type
    autocast = (nullcontext() if amp == "none" else
                torch.autocast(device_type=device, dtype=torch.bfloat16 if amp == "bf16" else torch.float16))
    with torch.inference_mode(), autocast:
        for field, records in counted.items():
            try:
                flops = count_flops(partial(_run, encoder, field, records, role, max_image_side))
                t0 = time.perf_counter()
                _run(encoder, field, records, role, max_image_side)
                timed_seconds += time.perf_counter() - t0
                timed_items += len(records)
            except (EncoderError, DataError, NotImplementedError) as e:
                out["notes"].append(f"{field}: not measured ({e})")
                continue
            out[f"gflops_per_{field}"] = flops / len(records) / 1e9
    if encoded_items_per_s:
        out["items_per_s"], out["items_per_s_source"] = float(encoded_items_per_s), "extraction"
    elif timed_items:
        out["items_per_s"], out["items_per_s_source"] = timed_items / timed_seconds, "sample"
    else:
        out["items_per_s"], out["items_per_s_source"] = None, None
    out["sample_items"] = {f: len(rs) for f, rs in counted.items()}
    if not out["notes"]:
        del out["notes"]
    return out


def compute_samples(corpus: Sequence[Record], fields: Sequence[str]) -> dict[str, list[Record]]:
    """The first :data:`SAMPLE_ITEMS` documents having each field's content (``joint``: both)."""
    out: dict[str, list[Record]] = {}
    for field in fields:
        if field == "joint":
            have = [r for r in corpus if r.text is not None and r.image is not None]
        else:
            have = [r for r in corpus if getattr(r, field) is not None]
        out[field] = have[:SAMPLE_ITEMS]
    return out
