"""The VLM2Vec backend on a tiny random Qwen2-VL: the seed's prompts, pooling, positions,
LoRA adapters, offline failures, and the named configs."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from tiny_models import make_tiny_lora_adapter, make_tiny_qwen2vl

from mixsearch.encoders import EncoderError, build_encoder
from mixsearch.encoders.vlm2vec import (
    SEED_INSTRUCTIONS,
    VLM2VecEncoder,
    download_commands,
    last_token_pool,
)

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a cat on a mat", "Nate Ebner, List of Jews in sports", "dog"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("vlm2vec")
    base = make_tiny_qwen2vl(root / "qwen")
    return {"base": base, "adapter": make_tiny_lora_adapter(base, root / "lora")}


@pytest.fixture(scope="module")
def enc(tiny: dict[str, str]) -> VLM2VecEncoder:
    return VLM2VecEncoder(tiny["base"], device="cpu", precision="fp32", image_size=56)


def _images(enc: VLM2VecEncoder, n: int = 3) -> list[Image.Image]:
    transform = pickle.loads(pickle.dumps(enc.image_transform()))
    return enc.collate_images(
        [transform(Image.new("L", (40 + 9 * i, 70), 40 * i)) for i in range(n)]
    )


def test_prompts_are_the_seed_strings_for_each_role_and_modality(enc: VLM2VecEncoder) -> None:
    assert enc.prompt("query", "text", "red bus") == "Retrieve a relevant item that represents: red bus\n"
    assert enc.prompt("document", "text", "red bus") == "red bus"
    assert enc.prompt("document", "image") == "<|image_pad|>\nRepresent the given image\n"
    assert enc.prompt("document", "joint", "red bus") == (
        "<|image_pad|>\nRepresent the given image with related text information: red bus\n"
    )
    assert enc.prompt("query", "image") == (
        "<|image_pad|>\nRetrieve a relevant item that represents the given image\n"
    )
    assert enc.prompt("query", "joint", "red bus") == (
        "<|image_pad|>\nRetrieve a relevant item that represents: red bus\n"
    )
    with pytest.raises(ValueError, match="role"):
        enc.prompt("corpus", "text", "x")


def test_processed_tokens_expand_the_image_token_in_place(enc: VLM2VecEncoder) -> None:
    image = _images(enc, 1)
    ids = enc.inputs([enc.prompt("document", "image")], image)["input_ids"][0].tolist()
    tok = enc.processor.tokenizer
    # a 56x56 image is 4x4 patches of 14 px, merged 2x2: four image tokens, no chat template
    expected = tok("<|image_pad|>" * 4 + "\nRepresent the given image\n")["input_ids"]
    assert ids == expected
    assert ids.count(tok.convert_tokens_to_ids("<|image_pad|>")) == 4


def test_last_token_pool_by_hand() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    torch.testing.assert_close(last_token_pool(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    torch.testing.assert_close(last_token_pool(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))
    with pytest.raises(EncoderError, match="no attended token"):
        last_token_pool(hidden, torch.zeros(2, 4, dtype=torch.long))


def test_text_embedding_is_the_normalised_last_hidden_state(enc: VLM2VecEncoder) -> None:
    """Reference: VLM2Vec's own way, the full model with output_hidden_states, batch of 1."""
    out = enc.encode_text(TEXTS, role="query")
    assert out.shape == (3, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    for i, text in enumerate(TEXTS):
        inputs = enc.processor(text=[enc.prompt("query", "text", text)], return_tensors="pt")
        with torch.no_grad():
            states = enc.model(**inputs, output_hidden_states=True).hidden_states[-1]
        ref = torch.nn.functional.normalize(states[0, -1], dim=-1)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_joint_positions_are_sequential_as_the_recipe(tiny: dict[str, str], enc: VLM2VecEncoder) -> None:
    """transformers 4.4x gave prompts without <|vision_start|> plain 1-D positions: rebuild
    that independently (image features scattered into the token embeddings, the language
    model with its default positions) and compare; ``positions="mrope"`` differs."""
    image = _images(enc, 1)
    prompt = enc.prompt("document", "joint", "a cat")
    out = enc.encode_joint(["a cat"], image)[0]
    inputs = enc.processor(text=[prompt], images=image, return_tensors="pt")
    vlm = enc.model.model
    with torch.no_grad():
        embeds = vlm.get_input_embeddings()(inputs["input_ids"])
        feats = vlm.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
        feats = torch.cat(list(feats)) if isinstance(feats, (list, tuple)) else feats
        is_image = inputs["input_ids"][0] == enc.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        embeds[0, is_image] = feats.to(embeds.dtype)
        ref = vlm.language_model(inputs_embeds=embeds).last_hidden_state[0, -1]
    torch.testing.assert_close(out, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5, rtol=0)
    mrope = VLM2VecEncoder(tiny["base"], device="cpu", precision="fp32", image_size=56, positions="mrope")
    assert not torch.allclose(mrope.encode_joint(["a cat"], image)[0], out, atol=1e-4)
    # text-only inputs have no image grid: both settings agree
    torch.testing.assert_close(mrope.encode_text(TEXTS), enc.encode_text(TEXTS), atol=1e-6, rtol=0)


def test_batches_equal_single_items_and_roles_differ(enc: VLM2VecEncoder) -> None:
    images = _images(enc)
    joint = enc.encode_joint(TEXTS, images)
    singles = torch.cat([enc.encode_joint([t], [im]) for t, im in zip(TEXTS, images, strict=True)])
    torch.testing.assert_close(joint, singles, atol=1e-5, rtol=0)
    image = enc.encode_image(images)
    assert image.shape == (3, 32) and not torch.allclose(image, joint, atol=1e-3)
    assert not torch.allclose(enc.encode_text(TEXTS, role="query"), enc.encode_text(TEXTS), atol=1e-3)
    micro = VLM2VecEncoder(enc.model_id, device="cpu", precision="fp32", image_size=56, micro_batch_size=2)
    torch.testing.assert_close(micro.encode_joint(TEXTS, images), joint, atol=1e-5, rtol=0)
    with pytest.raises(EncoderError, match="3 texts but 2 images"):
        enc.encode_joint(TEXTS, images[:2])


def test_image_transform_resizes_to_the_recipe_size(enc: VLM2VecEncoder) -> None:
    image = enc.image_transform()(Image.new("L", (300, 100)))
    assert image.mode == "RGB" and image.size == (56, 56)
    assert VLM2VecEncoder.__init__.__kwdefaults__["image_size"] == 1344


def test_empty_document_text_is_embedded_and_counted(enc: VLM2VecEncoder) -> None:
    before = enc.text_stats()["empty"]
    out = enc.encode_text(["", "dog"])
    assert out.shape == (2, 32) and torch.isfinite(out).all()
    assert enc.text_stats()["empty"] == before + 1


def test_lora_adapter_is_merged(tiny: dict[str, str], enc: VLM2VecEncoder) -> None:
    """Reference: peft's unmerged model (the LoRA branch computed at run time)."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    merged = VLM2VecEncoder(tiny["base"], adapter=tiny["adapter"], device="cpu", precision="fp32",
                            image_size=56)
    out = merged.encode_text(TEXTS, role="query")
    assert not torch.allclose(out, enc.encode_text(TEXTS, role="query"), atol=1e-3)
    unmerged = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny["base"]),
                                         tiny["adapter"]).eval()
    for i, text in enumerate(TEXTS):
        inputs = merged.processor(text=[merged.prompt("query", "text", text)], return_tensors="pt")
        with torch.no_grad():
            states = unmerged(**inputs, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(out[i], torch.nn.functional.normalize(states[0, -1], dim=-1),
                                   atol=1e-5, rtol=0)
    fp = merged.fingerprint()
    assert fp["adapter"]["source"] == "local" and fp["adapter"]["files"]
    assert fp != enc.fingerprint()


def test_fingerprint_covers_input_shaping_choices(tiny: dict[str, str], enc: VLM2VecEncoder) -> None:
    again = VLM2VecEncoder(tiny["base"], device="cpu", precision="fp32", image_size=56)
    assert again.fingerprint_hash() == enc.fingerprint_hash()
    fp = enc.fingerprint()
    assert fp["instructions"] == SEED_INSTRUCTIONS and fp["pooling"] == "last" and fp["normalize"]
    assert fp["image_resize"] == 56 and fp["positions"] == "sequential"
    other = VLM2VecEncoder(
        tiny["base"], device="cpu", precision="fp32", image_size=56,
        instructions={"query": {"text": "Find: {text}"}},
    )
    assert other.prompt("query", "text", "x") == "Find: x"
    assert other.fingerprint_hash() != enc.fingerprint_hash()
    assert VLM2VecEncoder(tiny["base"], device="cpu", precision="fp32",
                          image_size=28).fingerprint_hash() != enc.fingerprint_hash()
    d = enc.describe()
    assert d["supports_joint"] and d["parameters"] == enc.parameter_count() > 0


def test_bad_templates_and_options_fail_clearly(tiny: dict[str, str]) -> None:
    with pytest.raises(EncoderError, match=r"instructions.document.image .* must contain"):
        VLM2VecEncoder(tiny["base"], device="cpu", instructions={"document": {"image": "no token"}})
    with pytest.raises(EncoderError, match="unknown modality"):
        VLM2VecEncoder(tiny["base"], device="cpu", instructions={"query": {"video": "{text}"}})
    with pytest.raises(EncoderError, match="positions"):
        VLM2VecEncoder(tiny["base"], device="cpu", positions="rope")


def test_offline_hub_ids_fail_fast_naming_base_and_adapter(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderError) as e:
        build_encoder("vlm2vec", model_id_or_path="Qwen/Qwen2-VL-7B-Instruct",
                      adapter="TIGER-Lab/VLM2Vec-Qwen2VL-7B", device="cpu")
    msg = str(e.value)
    assert "Qwen/Qwen2-VL-7B-Instruct" in msg and "hf download TIGER-Lab/VLM2Vec-Qwen2VL-7B" in msg
    assert download_commands("a/b", "c/d", "r1") == (
        "Pre-download on a machine with network access (`hf download a/b --revision r1` and "
        "`hf download c/d`) into the same HF_HOME / cache_dir, or pass local directories."
    )


def _model_cfg(name: str) -> dict:
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={name}", "device=cpu"])
    return OmegaConf.to_container(cfg.model, resolve=False)


def test_named_configs_hold_the_seed_recipe() -> None:
    qwen = _model_cfg("vlm2vec_qwen2vl_7b")
    assert qwen["model_id_or_path"] == "Qwen/Qwen2-VL-7B-Instruct"
    assert qwen["adapter"] == "TIGER-Lab/VLM2Vec-Qwen2VL-7B"
    assert qwen["instructions"] == SEED_INSTRUCTIONS
    assert qwen["instructions"]["query"]["text"] == "Retrieve a relevant item that represents: {text}\n"
    assert (qwen["image_size"], qwen["normalize"], qwen["precision"], qwen["attn_implementation"]) == (
        1344, True, "bf16", "sdpa")
    llava = _model_cfg("vlm2vec_llava_next")
    assert llava["model_id_or_path"] == "TIGER-Lab/VLM2Vec-LLaVa-Next" and llava["adapter"] is None
    assert llava["instructions"] == SEED_INSTRUCTIONS
    # the seed's processors: the base model's (Qwen) and llava-v1.6-mistral's (LLaVA-NeXT)
    assert qwen["processor"] is None and llava["processor"] == "llava-hf/llava-v1.6-mistral-7b-hf"


def test_llava_next_backbone_uses_its_image_token(tmp_path: Path) -> None:
    """VLM2Vec-LLaVa-Next's path: ``<image>`` prompts, BOS, any-resolution image tokens;
    the embedding is VLM2Vec's (full model, last hidden state of the last token)."""
    from tiny_models import make_tiny_llava_next

    enc = VLM2VecEncoder(make_tiny_llava_next(tmp_path / "llava"), device="cpu", precision="fp32",
                         image_size=56)
    assert enc.model_type == "llava_next" and enc.dim == 32
    assert enc.prompt("document", "joint", "a dog") == (
        "<image>\nRepresent the given image with related text information: a dog\n"
    )
    images = _images(enc, 2)
    ids = enc.inputs([enc.prompt("document", "image")], images[:1])["input_ids"][0].tolist()
    tok = enc.processor.tokenizer
    # <s>, then the base view and 2x2 tiles of a 56x56 image: 24 image tokens
    assert ids == tok("<image>" * 24 + "\nRepresent the given image\n")["input_ids"]
    assert ids[0] == tok.bos_token_id
    texts = ["a dog", "Represent the given image with related text information"]
    joint = enc.encode_joint(texts, images)
    for i, text in enumerate(texts):
        inputs = enc.processor(text=[enc.prompt("document", "joint", text)], images=[images[i]],
                               return_tensors="pt")
        with torch.no_grad():
            states = enc.model(**inputs, output_hidden_states=True).hidden_states[-1]
        ref = torch.nn.functional.normalize(states[0, -1], dim=-1)
        torch.testing.assert_close(joint[i], ref, atol=1e-5, rtol=0)
    assert enc.fingerprint()["positions"] == "model"


def _rewrite_adapter(src: str, dst: Path, rename) -> str:
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(str(Path(src) / "adapter_model.safetensors"))
    save_file({rename(k): v for k, v in weights.items()}, str(dst / "adapter_model.safetensors"))
    return str(dst)


def test_adapter_saved_with_transformers_4_loads_into_the_new_layout(
        tiny: dict[str, str], tmp_path: Path) -> None:
    """VLM2Vec-Qwen2VL-7B's weights are named as transformers 4.4x's Qwen2-VL had its modules
    (``model.layers``, ``visual``); they must land in transformers 5's layout, and an adapter
    whose weights match nothing must fail instead of leaving the base model."""
    legacy = _rewrite_adapter(
        tiny["adapter"], tmp_path / "legacy",
        lambda k: k.replace("model.language_model.layers", "model.layers"))
    from safetensors.torch import load_file

    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in load_file(
        f"{legacy}/adapter_model.safetensors")
    new = VLM2VecEncoder(tiny["base"], adapter=tiny["adapter"], device="cpu", precision="fp32")
    old = VLM2VecEncoder(tiny["base"], adapter=legacy, device="cpu", precision="fp32")
    torch.testing.assert_close(old.encode_text(TEXTS), new.encode_text(TEXTS), atol=1e-6, rtol=0)
    foreign = _rewrite_adapter(tiny["adapter"], tmp_path / "foreign",
                               lambda k: k.replace("self_attn", "cross_attn"))
    with pytest.raises(EncoderError, match=r"does not fit .* adapter weights were not loaded"):
        VLM2VecEncoder(tiny["base"], adapter=foreign, device="cpu", precision="fp32")


def test_llava_processor_without_expansion_settings_is_completed(tmp_path: Path) -> None:
    """A LLaVA-NeXT processor saved before transformers 4.47 has no patch_size: the backend
    takes it from the model config and expands <image> exactly as a complete processor."""
    import json

    from tiny_models import make_tiny_llava_next

    folder = Path(make_tiny_llava_next(tmp_path / "llava"))
    full = VLM2VecEncoder(str(folder), device="cpu", precision="fp32", image_size=56)
    images = _images(full, 1)
    reference = full.encode_image(images)
    config_file = folder / "processor_config.json"
    config = json.loads(config_file.read_text())
    for key in ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens"):
        config.pop(key, None)
    config_file.write_text(json.dumps(config))
    old = VLM2VecEncoder(str(folder), device="cpu", precision="fp32", image_size=56)
    assert old.processor.patch_size == 14
    torch.testing.assert_close(old.encode_image(images), reference, atol=1e-6, rtol=0)


def test_processor_comes_from_the_base_model_and_both_sources_agree(
        tiny: dict[str, str], tmp_path: Path) -> None:
    """The seed's load_processor reads the BASE model's processor, never the adapter's. An
    adapter folder that ships its own processor copy (as hub adapters may) is not used unless
    named; on the tiny model both sources give identical token ids and pixel values."""
    import shutil

    from transformers import AutoProcessor

    adapter = tmp_path / "adapter_with_processor"
    shutil.copytree(tiny["adapter"], adapter)
    AutoProcessor.from_pretrained(tiny["base"]).save_pretrained(str(adapter))
    default = VLM2VecEncoder(tiny["base"], adapter=str(adapter), device="cpu", precision="fp32",
                             image_size=56)
    assert default.processor_source == tiny["base"]
    assert default.fingerprint()["processor_source"] == "model"
    named = VLM2VecEncoder(tiny["base"], adapter=str(adapter), device="cpu", precision="fp32",
                           image_size=56, processor=str(adapter))
    assert named.processor_source == str(adapter)
    assert named.fingerprint()["processor_source"] == {"repo": str(adapter), "revision": None}
    images = _images(default, 2)
    prompts = [default.prompt("document", "joint", t) for t in TEXTS[:2]]
    a, b = default.inputs(prompts, images), named.inputs(prompts, images)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    torch.testing.assert_close(default.encode_joint(TEXTS[:2], images), named.encode_joint(TEXTS[:2], images),
                               atol=0, rtol=0)


def test_queries_are_text_only_by_default_and_seed_differences_are_recorded(enc: VLM2VecEncoder) -> None:
    from mixsearch.pipeline import resolve_fusion

    auto = resolve_fusion({"method": "auto", "query": "auto", "alpha": 0.5}, enc)
    assert (auto["method"], auto["query"]) == ("joint", "text")
    assert resolve_fusion({"method": "joint", "query": "joint"}, enc)["query"] == "joint"
    differs = enc.describe()["differs_from_seed"]
    assert set(differs) == {"adapter", "attention", "normalisation"}
    assert "flash_attention_2" in differs["attention"] and "sdpa" in differs["attention"]
