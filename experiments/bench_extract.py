"""Image extraction throughput of an open_clip model: fp32 vs bf16 autocast, DataLoader workers.

Generates N JPEGs, builds a randomly initialised open_clip model through
:class:`mixsearch.encoders.openclip.OpenClipEncoder` (a ``local-dir:`` folder holding only the
architecture config, so nothing is downloaded) and times :func:`mixsearch.embed.embed_records`
without a cache for every (autocast, workers) setting. Prints a markdown table.

Examples::

    python experiments/bench_extract.py --toy --n 256 --batch-size 32 --workers 2
    python experiments/bench_extract.py --arch ViT-B-16 --n 4096 --batch-size 256 --workers 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from mixsearch.data.benchmark import ImageRef, Record
from mixsearch.embed.extract import embed_records
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


def amp_modes(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["none", "bf16"] if torch.cuda.is_bf16_supported() else ["none"]
    return ["none", "bf16"]  # CPU autocast; only fast on CPUs with bf16 units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="ViT-B-16", help="open_clip architecture (random init)")
    ap.add_argument("--toy", action="store_true", help="use a tiny 2-layer ViT instead of --arch")
    ap.add_argument("--n", type=int, default=256, help="number of generated JPEGs")
    ap.add_argument("--image-size", default="640x480", help="generated JPEG size WxH")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4, help="K in the 0 vs K workers comparison")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    args = ap.parse_args()
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
        rows = []
        for amp in amp_modes(enc.device):
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
                rows.append((amp, workers, stats["seconds"], stats["items_per_s"]))
    print(
        f"\ndevice: {enc.device} ({threads} torch threads), model: {arch} (random init), "
        f"batch size {args.batch_size}, {args.n} JPEGs {args.image_size}\n"
    )
    print("| autocast | workers | seconds | images/s |")
    print("|---|---:|---:|---:|")
    for amp, workers, secs, ips in rows:
        print(f"| {'fp32' if amp == 'none' else amp} | {workers} | {secs:.2f} | {ips:.1f} |")


if __name__ == "__main__":
    main()
