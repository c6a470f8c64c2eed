"""Tiny randomly initialised models and embedding files for offline tests.

Every builder writes into a caller-owned directory (pytest ``tmp_path``) and is seeded, so
the same call gives byte-identical weights.

* :func:`make_tiny_openclip`: an open_clip ``local-dir:`` folder (ViT + text transformer,
  width 32, 2 layers, 32 px images, open_clip's own BPE tokenizer).
* :func:`make_tiny_hf_clip` / :func:`make_tiny_hf_siglip`: ``save_pretrained`` folders with a
  tokenizer and image processor. The SigLIP folder uses the CLIP BPE tokenizer built by
  :func:`clip_tokenizer_offline`, because SigLIP's sentencepiece tokenizer cannot be built
  offline (no ``sentencepiece``, no vocab download); the model code, padding and
  ``max_length`` 64 behaviour are SigLIP's.
* :func:`write_seed_pt`: an embeddings file in the seed code's ``.pt`` format.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from mixsearch.encoders.offline import clip_tokenizer_offline

CLIP_VOCAB = 49408


def make_tiny_openclip(
    directory: str | Path, *, seed: int = 0, embed_dim: int = 16, context_length: int = 77
) -> str:
    """Write a tiny open_clip model as a ``local-dir:`` folder; return the folder path."""
    import open_clip
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 32,
            "head_width": 16,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": CLIP_VOCAB,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }
    preprocess_cfg = {
        "size": 32,
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=1)
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    return str(out)


def _save_hf(model: torch.nn.Module, tokenizer_max_length: int, image_processor, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    with tempfile.TemporaryDirectory() as vocab_dir:
        tokenizer = clip_tokenizer_offline(vocab_dir, model_max_length=tokenizer_max_length)
        tokenizer.save_pretrained(str(out))
    image_processor.save_pretrained(str(out))
    return str(out)


def _tower(max_positions: int) -> tuple[dict, dict]:
    text = dict(
        vocab_size=CLIP_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    return text, vision


def make_tiny_hf_clip(directory: str | Path, *, seed: int = 0) -> str:
    """Write a tiny random ``CLIPModel`` (77-token text, 32 px images); return the folder."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    text, vision = _tower(77)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    return _save_hf(model, 77, processor, Path(directory))


def make_tiny_hf_siglip(directory: str | Path, *, seed: int = 0) -> str:
    """Write a tiny random ``SiglipModel`` (64-token text, 32 px images); return the folder."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    text, vision = _tower(64)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    return _save_hf(
        model, 64, SiglipImageProcessor(size={"height": 32, "width": 32}), Path(directory)
    )


def write_seed_pt(
    path: str | Path,
    id_key: str,
    ids: Sequence[str],
    *,
    text: torch.Tensor | None = None,
    image: torch.Tensor | None = None,
    mixed: torch.Tensor | None = None,
    missing_image: Sequence[str] = (),
    image_key: str = "image_embedding",
) -> Path:
    """Write embeddings in the seed code's ``.pt`` format.

    Args:
        path: output file.
        id_key: ``"query_id"``, ``"corpus_id"`` or ``"id"`` (setting 1).
        ids: item ids, one per row of the matrices.
        text: ``(n, d)`` rows stored as ``text_embedding``.
        image: ``(n, d)`` rows stored under ``image_key``.
        mixed: ``(n, d)`` rows stored as ``vlm_mixed_embedding`` (VLM2Vec example).
        missing_image: ids whose ``image_embedding`` is stored as None (image file missing).
        image_key: ``"image_embedding"`` (MixBench) or ``"img_embedding"`` (setting 1).

    Returns:
        The path written.
    """
    items = []
    for n, item_id in enumerate(ids):
        item: dict[str, object] = {id_key: item_id}
        if text is not None:
            item["text_embedding"] = text[n].clone()
        if image is not None:
            item[image_key] = None if item_id in missing_image else image[n].clone()
        if mixed is not None:
            item["vlm_mixed_embedding"] = mixed[n].clone()
        items.append(item)
    torch.save(items, str(path))
    return Path(path)
