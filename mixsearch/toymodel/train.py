"""Train the toy CLIP on the training split of the toy benchmark.

A tiny open_clip ``CLIP`` (ViT image tower, transformer text tower, open_clip's BPE tokenizer)
trained with the standard contrastive loss. Each step pairs every image with either its short
caption or its long description, so the text tower sees both styles. Runs are deterministic for
a seed (seeded init, seeded data order, deterministic algorithms, fixed thread count).

The output folder is loadable with ``open_clip.create_model_from_pretrained("local-dir:DIR")``::

    python -m mixsearch.toymodel.train --out mixsearch/assets/toy_clip
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from mixsearch.data.toy import write_toy_benchmark
from mixsearch.toymodel import write_checksums
from mixsearch.toymodel.world import FILLER_SENTENCES

WEIGHTS = "open_clip_model.safetensors"
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.25, 0.25, 0.25)


@dataclass
class TrainConfig:
    """Every hyperparameter of a toy CLIP run (recorded in ``train_config.json``)."""

    seed: int = 0
    data_seed: int = 0
    n_train: int = 12000
    steps: int = 1000
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 100
    # Chance a pair uses the long description instead of the short caption. Kept rare, as real
    # CLIPs are trained on short alt-text and meet long document descriptions out of style:
    # that style shift is what makes raw text-text and fused scores biased and GR necessary.
    description_prob: float = 0.01
    # Chance a pair uses one content sentence of the long description (no filler), so the text
    # tower learns the description vocabulary but not the full document style. 0 (shipped) draws
    # no random numbers for it, so the shipped checkpoint still retrains byte-identically.
    sentence_prob: float = 0.0
    embed_dim: int = 64
    image_width: int = 64
    image_layers: int = 3
    patch_size: int = 16
    text_width: int = 32  # the 49408 x width token embedding dominates the checkpoint size
    text_heads: int = 4
    text_layers: int = 3
    context_length: int = 48
    init_logit_scale: float = math.log(100)
    learn_logit_scale: bool = False
    # std of the initial bias of each tower's final LayerNorm: a random constant per tower, so
    # each modality starts in its own cone as deep CLIPs do (a 3-layer tower barely has one)
    cone_init: float = 1.0
    threads: int = 1  # the tiny matmuls barely gain from a second thread on a shared CPU


def model_config(cfg: TrainConfig) -> dict:
    """The ``open_clip_config.json`` content (``model_cfg`` + ``preprocess_cfg``)."""
    from mixsearch.toymodel.world import SIZE

    return {
        "model_cfg": {
            "embed_dim": cfg.embed_dim,
            "init_logit_scale": cfg.init_logit_scale,
            "vision_cfg": {
                "image_size": SIZE,
                "patch_size": cfg.patch_size,
                "width": cfg.image_width,
                "layers": cfg.image_layers,
                "head_width": 16,
                "mlp_ratio": 2.0,
            },
            "text_cfg": {
                "context_length": cfg.context_length,
                "vocab_size": 49408,
                "width": cfg.text_width,
                "heads": cfg.text_heads,
                "layers": cfg.text_layers,
                "mlp_ratio": 2.0,
            },
        },
        "preprocess_cfg": {
            "size": SIZE,
            "mean": list(IMAGE_MEAN),
            "std": list(IMAGE_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }


def load_pairs(
    data_root: Path, context_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images as uint8 ``(n, 3, SIZE, SIZE)`` and tokens of captions and descriptions."""
    rows = [
        json.loads(line) for line in open(data_root / "train" / "pairs.jsonl", encoding="utf-8")
    ]
    images = np.stack(
        [np.asarray(Image.open(data_root / "train" / r["image"]).convert("RGB")) for r in rows]
    )
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    captions = tokenizer([r["caption"] for r in rows])
    descriptions = tokenizer([r["description"] for r in rows])
    sentences = tokenizer([_content_sentence(r["description"], r["id"]) for r in rows])
    return (
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions, descriptions, sentences
    )


def _content_sentence(text: str, key: str) -> str:
    """One non-filler sentence of a description, chosen deterministically from ``key``."""
    parts = [p.strip() for p in text.replace(". ", ".\n").split("\n") if p.strip()]
    parts = [p for p in parts if p not in FILLER_SENTENCES] or parts
    return random.Random(f"sentence:{key}").choice(parts)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    # the same arithmetic as the inference transform (ToTensor + Normalize) on a SIZE image
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def train(
    cfg: TrainConfig, out: str | Path, data: str | Path | None = None, progress: bool = True
) -> dict:
    """Train a toy CLIP and write it to ``out``.

    Args:
        cfg: hyperparameters.
        out: output folder: ``open_clip_config.json``, fp16 safetensors weights,
            ``train_config.json`` and ``SHA256SUMS``.
        data: toy benchmark folder to (re)use; a temporary one when None.
        progress: show a tqdm progress bar.

    Returns:
        The summary written to ``train_config.json`` (config, versions, loss curve summary).
    """
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    with tempfile.TemporaryDirectory(prefix="toy-clip-data-") as tmp:
        root = write_toy_benchmark(
            data or Path(tmp) / "toy", seed=cfg.data_seed, n_train=cfg.n_train
        )
        images, captions, descriptions, sentences = load_pairs(Path(root), cfg.context_length)

    oc_cfg = model_config(cfg)
    model = CLIP(**oc_cfg["model_cfg"])
    model.logit_scale.requires_grad_(cfg.learn_logit_scale)
    with torch.no_grad():
        model.ln_final.bias.normal_(0, cfg.cone_init)
        model.visual.ln_post.bias.normal_(0, cfg.cone_init)
    decay = [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and p.ndim >= 2 and "embedding" not in n
    ]
    other = [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and (p.ndim < 2 or "embedding" in n)
    ]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": other, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    loss_fn = ClipLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    n = images.shape[0]
    order, pos, losses = torch.randperm(n, generator=gen), 0, []
    start = time.time()
    bar = tqdm(range(cfg.steps), desc="toy CLIP", disable=not progress)
    model.train()
    for step in bar:
        if pos + cfg.batch_size > n:  # new epoch, new seeded order
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        use_desc = torch.rand(len(idx), generator=gen) < cfg.description_prob
        text = torch.where(use_desc[:, None], descriptions[idx], captions[idx])
        if cfg.sentence_prob > 0:
            use_sent = torch.rand(len(idx), generator=gen) < cfg.sentence_prob
            text = torch.where(use_sent[:, None] & ~use_desc[:, None], sentences[idx], text)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        img_f, txt_f, scale = model(_normalise(images[idx]), text)
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # as open_clip training: keep the temperature above 1/100
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.time() - start

    tail = max(1, len(losses) // 20)
    summary = {
        "config": asdict(cfg),
        "torch_version": torch.__version__,
        "open_clip_version": open_clip.__version__,
        "train_seconds": round(seconds, 1),
        "initial_loss": round(float(np.mean(losses[:tail])), 4),
        "final_loss": round(float(np.mean(losses[-tail:])), 4),
        "final_logit_scale": round(float(model.logit_scale.detach().exp()), 3),
    }
    save(model, oc_cfg, summary, out)
    return summary


def save(model: CLIP, oc_cfg: dict, summary: dict, out: str | Path) -> Path:
    """Write config, fp16 weights, training summary and checksums to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / WEIGHTS)
    (out / "open_clip_config.json").write_text(
        json.dumps(oc_cfg, indent=2) + "\n", encoding="utf-8"
    )
    (out / "train_config.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_checksums(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m mixsearch.toymodel.train --out DIR [--steps N --seed S ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder for the checkpoint")
    parser.add_argument(
        "--data", default=None, help="toy benchmark folder to reuse (default: temporary)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    types = {"int": int, "float": float, "bool": lambda s: s.lower() in ("1", "true", "yes")}
    for f in fields(TrainConfig):
        kind = types[f.type]
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=kind, default=f.default, dest=f.name
        )
    args = vars(parser.parse_args(argv))
    out, data, quiet = args.pop("out"), args.pop("data"), args.pop("quiet")
    summary = train(TrainConfig(**args), out, data, progress=not quiet)
    print(
        f"toy CLIP: loss {summary['initial_loss']:.3f} -> {summary['final_loss']:.3f} over "
        f"{summary['config']['steps']} steps in {summary['train_seconds']:.0f}s, "
        f"logit scale {summary['final_logit_scale']:.1f}; wrote {out}"
    )


if __name__ == "__main__":
    main()
