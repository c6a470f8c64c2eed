"""Image extraction throughput against the model's own speed: fp32 vs bf16, DataLoader workers.

Generates N JPEGs, builds a randomly initialised open_clip model through
:class:`mixsearch.encoders.openclip.OpenClipEncoder` (a ``local-dir:`` folder holding only the
architecture config, so nothing is downloaded) and, for every (autocast, workers) setting, times

* **model only**: ``encode_image`` on the same images already decoded and preprocessed into
  tensors (in memory; on a GPU moved from pinned memory without blocking) — the ceiling;
* **end to end**: :func:`mixsearch.embed.embed_records` without a cache (decode, resize,
  normalise in DataLoader workers, collate, copy, encode).

Their ratio says how much of the pipeline the model hides: ~1 means decoding is fully
overlapped with the forward (the goal on a GPU is >= 0.9); on a CPU the workers and the model
share the same cores, so a small model gives a low ratio. Prints a markdown table; the last
line is ``model_only_items_per_s=<a> end_to_end_items_per_s=<b> ratio=<b/a>`` for the
default setting (autocast ``auto``: bf16 on CUDA, fp32 on a CPU; ``--workers`` workers).

Examples::

    python experiments/bench_extract.py --toy --n 256 --batch-size 32 --workers 2
    python experiments/bench_extract.py --arch ViT-B-16 --n 4096 --batch-size 256 --workers 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from mixsearch.data.benchmark import ImageRef, Record
from mixsearch.embed.extract import embed_records, resolve_amp
from mixsearch.encoders.openclip import OpenClipEncoder

# A 2-layer ViT with 64-pixel inputs: fast enough to time the pipeline on a laptop CPU.
TOY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_jpegs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Record]:
    """``n`` JPEGs of smooth random colour fields with noise (compress like photos)."""
    rng = np.random.default_rng(seed)
    w, h = size
    records = []
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        noisy = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3))
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        records.append(Record(id=path.stem, image=ImageRef(path=str(path))))
    return records


def build_encoder(arch: str, toy: bool, folder: Path, device: str) -> OpenClipEncoder:
    """A randomly initialised open_clip model via a config-only ``local-dir:`` folder."""
    model_cfg = TOY_CFG if toy else open_clip.get_model_config(arch)
    if model_cfg is None:
        raise SystemExit(f"unknown open_clip architecture {arch!r}")
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}})
    )
    return OpenClipEncoder(f"local-dir:{folder}", device=device)


def model_only_rate(enc: OpenClipEncoder, pixels: torch.Tensor, batch_size: int, amp: str) -> float:
    """Images/s of ``encode_image`` alone on preprocessed tensors (one warm-up batch)."""
    device = torch.device(enc.device)
    if device.type == "cuda":
        pixels = pixels.pin_memory()
    ctx = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp == "bf16"
           else contextlib.nullcontext())
    with torch.inference_mode(), ctx:
        enc.encode_image(pixels[:batch_size].to(device, non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for s in range(0, len(pixels), batch_size):
            out = enc.encode_image(pixels[s : s + batch_size].to(device, non_blocking=True))
            out.float().cpu()  # what the pipeline does with every batch
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return len(pixels) / (time.perf_counter() - t0)


def amp_modes(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["none", "bf16"] if torch.cuda.is_bf16_supported() else ["none"]
    return ["none", "bf16"]  # CPU autocast; only fast on CPUs with bf16 units


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="ViT-B-16", help="open_clip architecture (random init)")
    ap.add_argument("--toy", action="store_true", help="use a tiny 2-layer ViT instead of --arch")
    ap.add_argument("--n", type=int, default=256, help="number of generated JPEGs")
    ap.add_argument("--image-size", default="640x480", help="generated JPEG size WxH")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4, help="K in the 0 vs K workers comparison")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    args = ap.parse_args(argv)
    size = tuple(int(s) for s in args.image_size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        (Path(tmp) / "img").mkdir()
        (Path(tmp) / "model").mkdir()
        t0 = time.perf_counter()
        records = make_jpegs(Path(tmp) / "img", args.n, size)  # type: ignore[arg-type]
        print(f"generated {args.n} JPEGs {args.image_size} in {time.perf_counter() - t0:.1f}s")
        enc = build_encoder(args.arch, args.toy, Path(tmp) / "model", args.device)
        arch = "toy-vit" if args.toy else args.arch
        threads = torch.get_num_threads()
        transform = enc.image_transform()
        pixels = torch.stack([transform(Image.open(r.image.path).convert("RGB"))  # type: ignore[union-attr]
                              for r in records])
        rows = []
        for amp in amp_modes(enc.device):
            model_only = model_only_rate(enc, pixels, args.batch_size, amp)
            for workers in sorted({0, args.workers}):
                opts = dict(
                    cache=None,
                    dataset_key="bench",
                    split="corpus",
                    amp=amp,
                    batch_size=args.batch_size,
                    num_workers=workers,
                    progress=False,
                )
                embed_records(enc, records[: args.batch_size], "image", **opts)  # warm-up
                stats: dict = {}
                embed_records(enc, records, "image", stats=stats, **opts)
                rows.append((amp, workers, stats["seconds"], stats["items_per_s"], model_only))
    print(
        f"\ndevice: {enc.device} ({threads} torch threads), model: {arch} (random init), "
        f"batch size {args.batch_size}, {args.n} JPEGs {args.image_size}\n"
    )
    print("| autocast | workers | seconds | end-to-end images/s | model-only images/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for amp, workers, secs, ips, model in rows:
        print(f"| {'fp32' if amp == 'none' else amp} | {workers} | {secs:.2f} | {ips:.1f} | "
              f"{model:.1f} | {ips / model:.3f} |")
    default_amp = resolve_amp("auto", enc.device)
    _, _, _, ips, model = next(r for r in rows if r[0] == default_amp and r[1] == args.workers)
    print(f"model_only_items_per_s={model:.2f} end_to_end_items_per_s={ips:.2f} "
          f"ratio={ips / model:.3f}")


if __name__ == "__main__":
    main()
