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


#: the Qwen2-VL special tokens a tiny tokenizer must carry (ids 0..6 in this order)
QWEN2VL_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
)
_TINY_CORPUS = (
    "Retrieve a relevant item that represents: a cat on a mat",
    "Represent the given image with related text information: a photo of a dog",
    "Represent the given image", "Nate Ebner, List of Jews in sports",
)


def make_tiny_qwen2vl(directory: str | Path, *, seed: int = 0) -> str:
    """Write a tiny random ``Qwen2VLForConditionalGeneration`` with its processor; return the folder.

    The tokenizer is a byte-level BPE trained offline on a few sentences (``tokenizers``),
    carrying Qwen2-VL's special tokens; the image processor keeps images between 28x28 and
    56x56 pixels (at most 16 patches of 14 px, 4 tokens after the 2x2 merge). Text width 32,
    2 layers, M-RoPE sections [1, 1, 2] of the 8-wide heads; vision width 32, 2 blocks.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Qwen2TokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(list(_TINY_CORPUS), trainers.BpeTrainer(
        vocab_size=400, special_tokens=list(QWEN2VL_SPECIALS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token=None
    )
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=28 * 28, max_pixels=56 * 56, patch_size=14, merge_size=2,
            temporal_patch_size=2,
        ),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2VL_SPECIALS}
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=1024, bos_token_id=None,
            eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
            rope_scaling={"type": "mrope", "rope_type": "default", "mrope_section": [1, 1, 2]},
        ),
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return str(out)


def make_tiny_lora_adapter(base_dir: str | Path, directory: str | Path, *, seed: int = 1) -> str:
    """Write a LoRA adapter (peft) over the tiny Qwen2-VL's attention projections, with
    non-zero B matrices so merging it changes the model; return the folder."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(str(base_dir))
    peft_model = get_peft_model(base, LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights="gaussian"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(str(directory))
    return str(directory)


#: a minimal chat template (Qwen2-VL's layout of image and text parts) so Sentence
#: Transformers can feed {"text", "image"} items to the tiny VLM as one message
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{% endfor %}<|endoftext|>"
)


def make_tiny_st_clip(directory: str | Path, *, seed: int = 0) -> str:
    """Write a Sentence Transformers model over the tiny transformers CLIP (text and image,
    no joint input); return the folder."""
    from sentence_transformers import SentenceTransformer

    out = Path(directory)
    clip_dir = make_tiny_hf_clip(out / "_clip", seed=seed)
    model = SentenceTransformer(clip_dir, device="cpu")
    model.save(str(out / "st"))
    return str(out / "st")


def make_tiny_st_asymmetric(directory: str | Path, *, seed: int = 0) -> tuple[str, str]:
    """Write an asymmetric Sentence Transformers model: the tiny CLIP of
    :func:`make_tiny_st_clip`, then a ``Router`` whose query route keeps the 16-d vector
    (identity ``Dense``) and whose document route reverses its dimensions, with prompts
    ``{"query": "query: ", "document": "passage: "}``. So ``encode_query(x)`` is
    ``base(prompted x)`` and ``encode_document(x)`` is ``base(prompted x)[:, ::-1]``.

    Returns:
        ``(model folder, base folder)``; the base is the plain tiny CLIP model.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Router

    out = Path(directory)
    base_dir = make_tiny_st_clip(out / "base", seed=seed)
    base = SentenceTransformer(base_dir, device="cpu")
    dim = base.get_embedding_dimension()
    routes = {}
    for role, weight in (("query", torch.eye(dim)), ("document", torch.eye(dim).flip(0))):
        dense = Dense(dim, dim, bias=False, activation_function=torch.nn.Identity())
        with torch.no_grad():
            dense.linear.weight.copy_(weight)
        routes[role] = [dense]
    router = Router.for_query_document(query_modules=routes["query"],
                                       document_modules=routes["document"])
    model = SentenceTransformer(modules=[base[0], router], device="cpu",
                                prompts={"query": "query: ", "document": "passage: "})
    model.save(str(out / "st"))
    return str(out / "st"), base_dir


def make_tiny_st_vlm(directory: str | Path, *, seed: int = 0) -> str:
    """Write a Sentence Transformers model over the tiny Qwen2-VL (mean pooling) whose
    processor has a chat template, so it embeds texts, images and {text, image} items;
    return the folder."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoProcessor

    out = Path(directory)
    vlm_dir = make_tiny_qwen2vl(out / "_vlm", seed=seed)
    processor = AutoProcessor.from_pretrained(vlm_dir)
    processor.chat_template = TINY_CHAT_TEMPLATE
    processor.save_pretrained(vlm_dir)
    model = SentenceTransformer(vlm_dir, device="cpu")
    model.save(str(out / "st"))
    return str(out / "st")


def make_tiny_llava_next(directory: str | Path, *, seed: int = 0) -> str:
    """Write a tiny random ``LlavaNextForConditionalGeneration`` (CLIP vision tower at 28 px,
    Llama text model, width 32) with its processor; return the folder.

    The tokenizer is a byte-level BPE trained offline with ``<unk>``, ``<s>``, ``</s>`` and
    ``<image>`` and adds ``<s>`` in front, like LLaVA-NeXT's Mistral tokenizer. Any-resolution
    grids up to 56x56: a 56x56 image becomes the base view plus 2x2 tiles, 24 image tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        PreTrainedTokenizerFast,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<image>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(list(_TINY_CORPUS), trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    pinpoints = [[28, 28], [28, 56], [56, 28], [56, 56]]
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(
            size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
            image_grid_pinpoints=pinpoints,
        ),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, image_token="<image>",
    )
    config = LlavaNextConfig(
        vision_config=dict(
            model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14,
            projection_dim=16,
        ),
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=1024, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1, vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    LlavaNextForConditionalGeneration(config).save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return str(out)
