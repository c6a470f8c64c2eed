"""Encoder throughput and MFU on one device: CLIP ViT-L/14-336, SigLIP so400m-384, a ~2B
Qwen2-VL-shaped embedder, each randomly initialised from its architecture config.

For every model and precision setting it measures images/s, texts/s and joint items/s
(image+text items: one joint forward for the VLM; the image and the text encoder in turn for
the dual encoders), the FLOPs per item from :func:`mixsearch.compute.count_flops` (torch's FLOP counter, with
the fused attention fast path counted)
and the model FLOP utilisation (MFU) against the device's peak. Settings: ``fp32`` (eager
attention), ``bf16`` (bf16 weights, eager attention), ``bf16+sdpa`` (bf16, PyTorch's
scaled_dot_product_attention). open_clip's attention is ``nn.MultiheadAttention`` either way,
so CLIP has no separate SDPA row. Nothing is downloaded: weights are random, inputs synthetic.

Usage::

    python experiments/bench_gpu.py                    # the full models, on cuda (~5 min on an H200)
    python experiments/bench_gpu.py --tiny --device cpu  # tiny shapes, seconds (the tests)

Writes a markdown table to ``--out`` (default ``outputs/bench_gpu.md``) and prints it; the last
line is ``table=<path>``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mixsearch.compute import count_flops

# Dense peak FLOP/s by device name (tensor cores for bf16; fp32 without TF32).
PEAKS = {"H200": {"bf16": 989e12, "fp32": 67e12}, "H100": {"bf16": 989e12, "fp32": 67e12},
         "A100": {"bf16": 312e12, "fp32": 19.5e12}, "L40S": {"bf16": 362e12, "fp32": 91.6e12}}
SETTINGS = (("fp32", "eager"), ("bf16", "eager"), ("bf16", "sdpa"))


@dataclass
class Bench:
    """A model's batch makers and forward functions (each returns one embedding per item)."""

    name: str
    params: int
    image_batch: Callable[[int], object]
    text_batch: Callable[[int], object]
    encode_image: Callable[[object], torch.Tensor]
    encode_text: Callable[[object], torch.Tensor]
    joint_batch: Callable[[int], object] | None = None
    encode_joint: Callable[[object], torch.Tensor] | None = None
    batch: int = 32


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _features(out) -> torch.Tensor:
    # transformers 5 returns model outputs from get_*_features; older versions a tensor
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def build_clip(tiny: bool, attn: str, dtype: torch.dtype, device: torch.device) -> Bench | None:
    """open_clip ViT-L/14-336 (random init); ``attn`` has no effect (nn.MultiheadAttention)."""
    import open_clip

    if attn != "eager":
        return None
    if tiny:
        model = open_clip.CLIP(embed_dim=32, vision_cfg={"image_size": 56, "layers": 2, "width": 32,
                                                         "patch_size": 14, "head_width": 16},
                               text_cfg={"context_length": 77, "vocab_size": 1000, "width": 32,
                                         "heads": 2, "layers": 2})
        side = 56
    else:
        with torch.device(device):
            model = open_clip.create_model("ViT-L-14-336", pretrained=None, device=device)
        side = 336
    model = model.to(device=device, dtype=dtype).eval()
    vocab = model.vocab_size
    return Bench(
        "clip_l14_336" + ("_tiny" if tiny else ""), _n_params(model),
        lambda b: torch.randn(b, 3, side, side, device=device, dtype=dtype),
        lambda b: torch.randint(0, vocab, (b, 77), device=device),
        model.encode_image, model.encode_text, batch=2 if tiny else 128)


def build_siglip(tiny: bool, attn: str, dtype: torch.dtype, device: torch.device) -> Bench:
    """SigLIP so400m-patch14-384 from its transformers config (random init)."""
    from transformers import SiglipConfig, SiglipModel

    if tiny:
        tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 2}
        text, vision = {**tower, "vocab_size": 1000}, {**tower, "image_size": 56, "patch_size": 14}
    else:
        tower = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                 "num_attention_heads": 16}
        text, vision = {**tower, "vocab_size": 32000}, {**tower, "image_size": 384, "patch_size": 14}
    cfg = SiglipConfig(text_config={**text, "max_position_embeddings": 64}, vision_config=vision)
    with torch.device(device):
        model = SiglipModel._from_config(cfg, attn_implementation=attn)
    model = model.to(dtype=dtype).eval()
    side = vision["image_size"]
    return Bench(
        "siglip_so400m_384" + ("_tiny" if tiny else ""), _n_params(model),
        lambda b: torch.randn(b, 3, side, side, device=device, dtype=dtype),
        lambda b: torch.randint(0, text["vocab_size"], (b, 64), device=device),
        lambda x: _features(model.get_image_features(pixel_values=x)),
        lambda x: _features(model.get_text_features(input_ids=x)), batch=2 if tiny else 128)


def build_qwen2vl(tiny: bool, attn: str, dtype: torch.dtype, device: torch.device) -> Bench:
    """A Qwen2-VL-2B-shaped embedder (last-token pooling, as GME / VLM2Vec) from its config.

    Items: an image is a 448x448 picture (1024 patches, 256 merged tokens) inside
    ``<vision_start> ... <vision_end>`` plus 16 instruction tokens; a text is 64 tokens; a
    joint item is the image plus the 64 text tokens.
    """
    from transformers import Qwen2VLConfig, Qwen2VLModel

    if tiny:
        text = {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                    "mrope_section": [2, 3, 3]}}
        vision = {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2}
        side, n_text = 56, 8
    else:
        text = {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
                "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                    "mrope_section": [16, 24, 24]}}
        vision = {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16}
        side, n_text = 448, 64
    ids = {"image_token_id": 5, "vision_start_token_id": 6, "vision_end_token_id": 7,
           "video_token_id": 8}
    cfg = Qwen2VLConfig(text_config=text, vision_config={**vision, "patch_size": 14,
                        "spatial_merge_size": 2, "temporal_patch_size": 2}, **ids)
    with torch.device(device):
        model = Qwen2VLModel._from_config(cfg, attn_implementation=attn)
    model = model.to(dtype=dtype).eval()
    grid = side // 14
    n_image = grid * grid // 4
    word = 11  # any ordinary token id

    def tokens(b: int, with_image: bool, n_words: int) -> dict:
        body = [word] * n_words
        seq = ([6] + [5] * n_image + [7] if with_image else []) + body
        input_ids = torch.tensor([seq] * b, device=device)
        batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if with_image:
            batch["pixel_values"] = torch.randn(b * grid * grid, 3 * 2 * 14 * 14, device=device,
                                                dtype=dtype)
            batch["image_grid_thw"] = torch.tensor([[1, grid, grid]] * b, device=device)
            batch["mm_token_type_ids"] = (input_ids == 5).int()
        return batch

    def embed(batch: dict) -> torch.Tensor:
        return model(**batch).last_hidden_state[:, -1]

    return Bench(
        "qwen2vl_2b_shaped" + ("_tiny" if tiny else ""), _n_params(model),
        lambda b: tokens(b, True, 16 if not tiny else 4), lambda b: tokens(b, False, n_text),
        embed, embed, joint_batch=lambda b: tokens(b, True, n_text), encode_joint=embed,
        batch=2 if tiny else 16)


MODELS = {"clip": build_clip, "siglip": build_siglip, "qwen2vl": build_qwen2vl}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(fn: Callable, batch: object, n_items: int, seconds: float,
               device: torch.device) -> float:
    """Items/s of ``fn(batch)`` (one warm-up call, then at least 2 calls and ``seconds``)."""
    with torch.inference_mode():
        fn(batch)
        _sync(device)
        calls, t0 = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - t0 < seconds:
            fn(batch)
            _sync(device)
            calls += 1
        return calls * n_items / (time.perf_counter() - t0)


def flops_per_item(fn: Callable, batch: object) -> float:
    """FLOPs of one item's forward (a batch of one), counted by torch's FLOP counter."""
    with torch.inference_mode():  # the fused attention fast path counted too (count_flops)
        return float(count_flops(lambda: fn(batch)))


def peak_flops(device: torch.device, precision: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((p[precision] for key, p in PEAKS.items() if key in name), None)


def measure(bench: Bench, seconds: float, device: torch.device, peak: float | None) -> dict:
    """Rates, FLOPs per item and MFU of the image, text and joint forwards."""
    row: dict = {}
    kinds = [("image", bench.image_batch, bench.encode_image),
             ("text", bench.text_batch, bench.encode_text)]
    if bench.encode_joint is not None:
        kinds.append(("joint", bench.joint_batch, bench.encode_joint))
    for kind, make, fn in kinds:
        row[f"{kind}_per_s"] = throughput(fn, make(bench.batch), bench.batch, seconds, device)
        row[f"{kind}_flops"] = flops_per_item(fn, make(1))
    if bench.encode_joint is None:  # a dual encoder embeds both parts of an image+text item
        row["joint_per_s"] = 1.0 / (1.0 / row["image_per_s"] + 1.0 / row["text_per_s"])
        row["joint_flops"] = row["image_flops"] + row["text_flops"]
    for kind in ("image", "text", "joint"):
        row[f"{kind}_mfu"] = (row[f"{kind}_per_s"] * row[f"{kind}_flops"] / peak) if peak else None
    return row


def _fmt_mfu(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (CPU tests, seconds)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="clip,siglip,qwen2vl")
    ap.add_argument("--settings", default="fp32,bf16,bf16+sdpa",
                    help="comma-separated subset of fp32, bf16, bf16+sdpa")
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="peak TFLOP/s for the MFU (default: known GPUs' dense peak; else n/a)")
    ap.add_argument("--out", default="outputs/bench_gpu.md")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the MFU peak assumes it)
    torch.manual_seed(0)
    lines = [f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
             f", torch {torch.__version__}, random-init weights, synthetic inputs"
             f"{' (TINY shapes)' if args.tiny else ''}", "",
             "| model | params | precision | attention | batch | images/s | texts/s | joint items/s"
             " | GFLOP/image | GFLOP/text | GFLOP/joint | MFU image | MFU text | MFU joint |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    t_start = time.perf_counter()
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"--models: unknown model {name!r}; choose from {sorted(MODELS)}")
        for precision, attn in SETTINGS:
            if (precision if attn == "eager" else f"{precision}+{attn}") not in args.settings.split(","):
                continue
            dtype = torch.float32 if precision == "fp32" else torch.bfloat16
            bench = MODELS[name](args.tiny, attn, dtype, device)
            if bench is None:
                continue
            row = measure(bench, args.seconds, device, peak_flops(device, precision, args.peak_tflops))
            attn_name = "MHA" if name == "clip" else attn
            lines.append(
                f"| {bench.name} | {bench.params / 1e6:.1f}M | {precision} | {attn_name} | "
                f"{bench.batch} | {row['image_per_s']:.1f} | {row['text_per_s']:.1f} | "
                f"{row['joint_per_s']:.1f} | {row['image_flops'] / 1e9:.4g} | "
                f"{row['text_flops'] / 1e9:.4g} | {row['joint_flops'] / 1e9:.4g} | "
                f"{_fmt_mfu(row['image_mfu'])} | {_fmt_mfu(row['text_mfu'])} | "
                f"{_fmt_mfu(row['joint_mfu'])} |")
            print(lines[-1], flush=True)
            del bench
            if device.type == "cuda":
                torch.cuda.empty_cache()
    lines += ["", f"total {time.perf_counter() - t_start:.0f}s"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"table={out}")


if __name__ == "__main__":
    main()
