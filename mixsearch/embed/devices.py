"""Extraction across the devices of one node: one process per device, each computing one shard.

``embed.devices=auto`` (every visible CUDA device) or ``embed.devices=[cuda:0,cuda:1]``: before
a run evaluates, :func:`extract_on_devices` starts one process per device (``spawn``, so no
CUDA state is inherited). Process ``i`` builds the dataset and the model on device ``i`` and
computes shard ``i`` of ``len(devices)`` of every cache entry the run needs, exactly as the
sharded jobs of ``embed.shard``/``embed.num_shards`` do, into the shared cache. The run then
reads the complete entries back: the evaluation is the one an unsharded run would do, and
nothing is encoded twice. Each process loads the benchmark itself (M-BEIR's global pool: a few
GB of records per process).
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from mixsearch.config import ConfigError

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")


def check_devices(value: Any) -> str | None:
    """The schema check of ``embed.devices``: None, ``auto`` or a list of devices (a device
    may repeat: two processes then share it, e.g. ``[cpu,cpu]`` or a small model per GPU)."""
    if value is None or value == "auto":
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        return f"expected auto or a list of devices such as [cuda:0,cuda:1], got {value!r}"
    bad = [d for d in value if not _DEVICE.fullmatch(str(d))]
    if bad:
        return f"{bad[0]!r} is not cpu, mps, cuda or cuda:<n>"
    if not value:
        return "an empty list; use null (extract in the run's own process)"
    return None


def resolve_devices(value: Any) -> list[str]:
    """The devices to extract on, one process each; ``[]`` means extract in this process.

    ``auto`` is every visible CUDA device (``cuda:0`` ...), or ``[]`` with fewer than two.
    """
    if value is None:
        return []
    if value == "auto":
        import torch

        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] if n > 1 else []
    message = check_devices(value)
    if message:
        raise ConfigError(f"embed.devices: {message}")
    return [str(d) for d in value]


def _shard_config(cfg: dict[str, Any], devices: list[str], shard: int) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    if "device" not in (out.get("model") or {}):
        raise ConfigError(f"embed.devices: model {out.get('model', {}).get('_target_')} has no "
                          "device option to place each process on its device")
    out["model"]["device"] = devices[shard]
    out["embed"] = {**out["embed"], "devices": None, "shard": shard, "num_shards": len(devices),
                    "progress": False}
    return out


def _extract_shard(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Process body: build dataset and model, compute this shard's parts; returns the stats."""
    from mixsearch.config import build, section, split_dataset_section
    from mixsearch.embed.cache import EmbeddingCache
    from mixsearch.pipeline import check_joint, embed_all, resolve_fusion, skip_policy

    dataset_spec, dataset_opts = split_dataset_section(cfg["dataset"])
    bench = build(dataset_spec, "dataset")
    encoder = build(cfg["model"], "model")
    fusion_cfg = resolve_fusion(section(cfg, "fusion"), encoder)
    check_joint(encoder, fusion_cfg)
    cache = EmbeddingCache(cfg["paths"]["cache_dir"])
    embed_cfg = skip_policy(section(cfg, "dataset"), section(cfg, "embed"))
    # the same decode size (and so the same cache keys) as the parent run
    embed_cfg["max_image_side"] = dataset_opts["max_image_side"]
    _, stats = embed_all(encoder, bench, cache, embed_cfg,
                         corpus_cfg=section(cfg, "corpus"), cal_cfg=section(cfg, "calibration"),
                         fusion_cfg=fusion_cfg)
    return stats


def extract_on_devices(cfg: dict[str, Any], devices: list[str]) -> list[list[dict[str, Any]]]:
    """Compute every cache entry of the run ``cfg`` with one process per device.

    Args:
        cfg: the resolved run config (plain dicts); ``paths.cache_dir`` must be set.
        devices: one device per process; process ``i`` computes shard ``i`` of ``len(devices)``.

    Returns:
        The extraction stats of each process, in device order.

    Raises:
        ConfigError: no cache directory, or a model without a ``device`` option.
        RuntimeError: a process failed (names its device and the error).
    """
    if not cfg.get("paths", {}).get("cache_dir"):
        raise ConfigError("embed.devices needs paths.cache_dir: the processes meet in the cache")
    configs = [_shard_config(cfg, devices, i) for i in range(len(devices))]
    log.info("extracting on %d devices: %s", len(devices), ", ".join(devices))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(devices), mp_context=ctx) as pool:
        futures = [pool.submit(_extract_shard, c) for c in configs]
        results, errors = [], []
        for device, future in zip(devices, futures, strict=True):
            try:
                results.append(future.result())
            except Exception as e:  # every device reports before the run fails
                errors.append(f"{device}: {type(e).__name__}: {e}")
    if errors:
        raise RuntimeError("embed.devices: extraction failed on " + "; ".join(errors))
    return results
