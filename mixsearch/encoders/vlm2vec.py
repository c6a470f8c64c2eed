"""VLM2Vec, the paper's universal-embedder baseline, with the seed code's recipe.

    python run.py model=vlm2vec_qwen2vl_7b fusion=joint
    python run.py model=vlm2vec_llava_next fusion=joint

Neither mteb nor Sentence Transformers reproduces the recipe the paper's seed
(``vlm_example/embedding.py``) used: mteb wraps only VLM2Vec's Phi-3.5-V checkpoints
(``TIGER-Lab/VLM2Vec-LoRA``/``-Full``, its own MMEB prompts) and VLM2Vec-V2 (Qwen2-VL-2B), not
``TIGER-Lab/VLM2Vec-Qwen2VL-7B`` or ``TIGER-Lab/VLM2Vec-LLaVa-Next``, and neither uses the seed's
instruction strings or its 1344x1344 resize. So this is the smallest transformers backend:

* the VLM (``AutoModelForImageTextToText``: Qwen2-VL, LLaVA-NeXT), SDPA attention, bf16;
* a LoRA adapter (peft) merged into it when the checkpoint is one
  (``Qwen/Qwen2-VL-7B-Instruct`` + ``TIGER-Lab/VLM2Vec-Qwen2VL-7B``);
* raw prompts, no chat template, as VLM2Vec's ``Qwen2_VL_process_fn``/``Llava_NEXT_process_fn``
  build them: the processor expands the image token into the image's patch tokens;
* last-token pooling over the final hidden state (after the final norm), L2-normalised;
* images RGB and resized to ``image_size`` x ``image_size`` (the seed's 1344) before the
  model's own processor;
* the processor loaded from the base model (``processor``), as the seed's ``load_processor``
  does: ``Qwen/Qwen2-VL-7B-Instruct`` for Qwen2-VL (its ``model_name``, never the adapter) and
  ``llava-hf/llava-v1.6-mistral-7b-hf`` for LLaVA-NeXT (hard-coded there);
* queries text only (``recipe_query``): the seed embeds a query's text and nothing else, OVEN's
  too. ``fusion.query=joint`` embeds an image+text query jointly with a prompt of ours.

Where we differ from the seed's script, recorded in metrics.json (``describe()["differs_from_seed"]``):
the LoRA adapter is merged into the weights (the seed runs peft's unmerged layers: the same
function up to rounding), attention is SDPA by default (the seed: flash_attention_2), and the
pooled vector is L2-normalised in float32 (the seed normalises the bf16 vector).

Qwen2-VL positions: VLM2Vec v1 trained and evaluated with transformers 4.4x, whose Qwen2-VL
``get_rope_index`` finds images through a ``<|vision_start|>`` token. The seed's prompts have
none, so every token, image patches included, got plain sequential positions. transformers 5
places image tokens on the 2-D M-RoPE grid whatever precedes them; ``positions="sequential"``
(the default) passes sequential ``position_ids`` to reproduce the recipe, ``"mrope"`` leaves
transformers' grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mixsearch.encoders.base import ROLES, Encoder, EncoderError, check_role
from mixsearch.encoders.offline import (
    dir_signature,
    hub_commit,
    hub_errors,
    hub_offline,
    require_hub_files,
    resolve_device,
    resolve_precision,
)

log = logging.getLogger(__name__)

MODALITIES = ("text", "image", "joint")
#: the image placeholder of each backbone (VLM2Vec's ``VLM_IMAGE_TOKENS``)
IMAGE_TOKENS = {"qwen2_vl": "<|image_pad|>", "llava_next": "<image>"}
#: The seed's strings (paper appendix; docs/formats.md §6). ``{image}`` becomes the
#: backbone's image token, ``{text}`` the item's text. The seed embeds queries as text only;
#: the query image and query image+text templates (``fusion.query=image|joint`` for OVEN's
#: image+text queries) are OURS, built like the document ones.
SEED_INSTRUCTIONS: dict[str, dict[str, str]] = {
    "query": {
        "text": "Retrieve a relevant item that represents: {text}\n",
        "image": "{image}\nRetrieve a relevant item that represents the given image\n",
        "joint": "{image}\nRetrieve a relevant item that represents: {text}\n",
    },
    "document": {
        "text": "{text}",
        "image": "{image}\nRepresent the given image\n",
        "joint": "{image}\nRepresent the given image with related text information: {text}\n",
    },
}
POSITIONS = ("sequential", "mrope")
#: Adapter weight names saved with transformers 4.4x -> transformers 5 module names (peft's
#: ``key_mapping``; keys already in the new layout match no pattern and stay as they are).
#: VLM2Vec-Qwen2VL-7B was saved with transformers 4.4x, where Qwen2VLForConditionalGeneration
#: held ``model.layers`` and ``visual`` directly.
ADAPTER_KEY_MAPPING: dict[str, dict[str, str]] = {
    "qwen2_vl": {r"^visual": "model.visual",
                 r"^model(?!\.(language_model|visual))": "model.language_model"},
    "llava_next": {r"^language_model\.lm_head": "lm_head",
                   r"^language_model\.model": "model.language_model",
                   r"^vision_tower": "model.vision_tower",
                   r"^multi_modal_projector": "model.multi_modal_projector",
                   r"^image_newline": "model.image_newline"},
}
_LOCAL_PATTERNS = ("*.json", "*.safetensors", "*.bin", "*.model", "merges.txt", "vocab.json")


def _check_templates(instructions: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Validate the (role, modality) templates: each placeholder present exactly as needed."""
    out: dict[str, dict[str, str]] = {}
    for role in ROLES:
        given = instructions.get(role) or {}
        unknown = set(given) - set(MODALITIES)
        if unknown:
            raise EncoderError(
                f"instructions.{role}: unknown modality key(s) {sorted(unknown)}; "
                f"expected {list(MODALITIES)}"
            )
        out[role] = {}
        for modality in MODALITIES:
            template = given.get(modality, SEED_INSTRUCTIONS[role][modality])
            need_text, need_image = modality != "image", modality != "text"
            if (template.count("{text}") != int(need_text)
                    or template.count("{image}") != int(need_image)):
                raise EncoderError(
                    f"instructions.{role}.{modality} = {template!r} must contain "
                    f"{'{text} once' if need_text else 'no {text}'} and "
                    f"{'{image} once' if need_image else 'no {image}'}"
                )
            out[role][modality] = template
    unknown_roles = set(instructions) - set(ROLES)
    if unknown_roles:
        raise EncoderError(
            f"instructions: unknown role(s) {sorted(unknown_roles)}; expected {list(ROLES)}"
        )
    return out


class ResizeRGB:
    """Picklable per-image preprocessing run in DataLoader workers: RGB, then the recipe's
    fixed square resize (None keeps the size; the model's processor does the rest)."""

    def __init__(self, size: int | None) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        image = image.convert("RGB")
        if self.size:
            # PIL's default filter for resize() (bicubic), as the seed's image.resize((1344, 1344))
            image = image.resize((self.size, self.size))
        return image


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last attended token (left or right padding).

    Args:
        hidden: ``(batch, length, dim)`` final hidden states.
        attention_mask: ``(batch, length)``, 1 for real tokens.

    Returns:
        ``(batch, dim)``.
    """
    mask = attention_mask.bool()
    length = mask.shape[1]
    # index of the last True in each row, wherever the padding is
    positions = torch.arange(length, device=mask.device).expand_as(mask)
    last = torch.where(mask, positions, torch.full_like(positions, -1)).max(dim=1).values
    if (last < 0).any():
        raise EncoderError("an input has no attended token to pool")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class VLM2VecEncoder(Encoder):
    """A VLM2Vec checkpoint (optionally a LoRA adapter over its base VLM) as an encoder.

    Args:
        model_id_or_path: the VLM: hub id or local folder (``Qwen/Qwen2-VL-7B-Instruct``, or
            the full ``TIGER-Lab/VLM2Vec-LLaVa-Next``).
        adapter: LoRA adapter merged into the VLM (``TIGER-Lab/VLM2Vec-Qwen2VL-7B``), or None.
        revision: hub revision of the VLM.
        adapter_revision: hub revision of the adapter.
        instructions: ``{role: {modality: template}}`` overriding :data:`SEED_INSTRUCTIONS`
            (roles query/document; modalities text/image/joint; ``{text}``, ``{image}``).
        image_size: square side images are resized to before the processor (the seed: 1344);
            None keeps the image size (the processor's own limits apply).
        positions: ``"sequential"`` (the recipe) or ``"mrope"`` for Qwen2-VL; see the module.
        normalize: L2-normalise the pooled embedding (the recipe does).
        max_length: token limit for text-only inputs (None: no truncation, as the seed).
        micro_batch_size: items per forward pass; a batch is sorted by length and cut into
            such pieces (None: one pass per batch).
        device: ``"auto"``, ``"cpu"``, ``"cuda:1"``, ...
        precision: ``"bf16"`` (the recipe), ``"fp16"`` or ``"fp32"``.
        attn_implementation: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``.
        cache_dir: hub cache directory.
        processor: where the processor comes from (hub id or folder); None: the model
            ``model_id_or_path`` (the seed's choice for Qwen2-VL: the base model's, not the
            adapter's); LLaVA-NeXT's config names ``llava-hf/llava-v1.6-mistral-7b-hf``.
        processor_revision: hub revision of ``processor``.

    Raises:
        EncoderError: unsupported model type, bad option, or files unavailable offline.
    """

    supports_joint = True
    #: ``fusion.query=auto`` for this model: the seed embeds every query as text only
    recipe_query = "text"

    def __init__(
        self,
        model_id_or_path: str,
        *,
        adapter: str | None = None,
        revision: str | None = None,
        adapter_revision: str | None = None,
        instructions: Mapping[str, Mapping[str, str]] | None = None,
        image_size: int | None = 1344,
        positions: str = "sequential",
        normalize: bool = True,
        max_length: int | None = None,
        micro_batch_size: int | None = None,
        device: str = "auto",
        precision: str = "bf16",
        attn_implementation: str = "sdpa",
        cache_dir: str | None = None,
        processor: str | None = None,
        processor_revision: str | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        if positions not in POSITIONS:
            raise EncoderError(f"invalid positions option {positions!r}; expected {POSITIONS}")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise EncoderError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        self.templates = _check_templates(instructions or {})
        self.model_id, self.adapter = model_id_or_path, adapter
        self.revision, self.adapter_revision = revision, adapter_revision
        self.image_size = int(image_size) if image_size else None
        self.positions, self.normalize = positions, bool(normalize)
        self.max_length = int(max_length) if max_length else None
        self.micro_batch_size = micro_batch_size
        self.precision, self.dtype = precision, resolve_precision(precision)
        self.device = resolve_device(device)
        self.attn_implementation = attn_implementation
        self.cache_dir = cache_dir
        sources = [(model_id_or_path, revision)] + ([(adapter, adapter_revision)] if adapter else [])
        proc_repo, proc_rev = (processor, processor_revision) if processor else (model_id_or_path, revision)
        self.hint = download_commands(model_id_or_path, adapter, revision, adapter_revision)
        if processor and not Path(processor).is_dir():
            self.hint += f" The processor: `hf download {processor}`."
            require_hub_files(processor, processor, ["preprocessor_config.json"],
                              revision=processor_revision, cache_dir=cache_dir, hint=self.hint)
        for repo, rev in sources:
            if not Path(repo).is_dir():
                need = "adapter_config.json" if repo == adapter else "config.json"
                require_hub_files(repo, repo, [need], revision=rev, cache_dir=cache_dir,
                                  hint=self.hint)
        kw = {"cache_dir": cache_dir, "local_files_only": hub_offline()}
        with hub_errors(model_id_or_path, self.hint):
            config = AutoConfig.from_pretrained(model_id_or_path, revision=revision, **kw)
            self.model_type = config.model_type
            if self.model_type not in IMAGE_TOKENS:
                raise EncoderError(
                    f"{model_id_or_path!r} is a {self.model_type!r} model; the VLM2Vec backend "
                    f"supports {sorted(IMAGE_TOKENS)}"
                )
            model = AutoModelForImageTextToText.from_pretrained(
                model_id_or_path, revision=revision, dtype=self.dtype,
                attn_implementation=attn_implementation, **kw,
            )
        # the seed's load_processor: the base model's processor (or the one named), never the
        # adapter's (tests/test_encoders_vlm2vec.py compares the two sources on a tiny model)
        with hub_errors(proc_repo, self.hint):
            self.processor = AutoProcessor.from_pretrained(proc_repo, revision=proc_rev, **kw)
        self.processor_source, self.processor_revision = proc_repo, proc_rev
        if adapter:
            model = self._merge_adapter(model, adapter, adapter_revision, kw)
        self.model = model.to(self.device).eval()
        # The VLM without its LM head: the embedding is a hidden state, so computing
        # vocabulary logits for every position would be wasted work and memory.
        self.backbone = self.model.model
        tokenizer = self.processor.tokenizer
        # right padding: with causal attention a real token never sees the padding
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.image_token = IMAGE_TOKENS[self.model_type]
        if self.model_type == "llava_next":
            self._complete_llava_processor(config)
        self._dim = int(config.get_text_config().hidden_size)
        self.name = f"vlm2vec:{adapter or model_id_or_path}"
        self._commits = {
            repo: (None if Path(repo).is_dir() else hub_commit(
                repo, "adapter_config.json" if repo == adapter else "config.json",
                revision=rev, cache_dir=cache_dir))
            for repo, rev in sources
        }
        self._texts = 0
        self._truncated = 0
        self._empty = 0

    # ------------------------------------------------------------------ loading

    def _complete_llava_processor(self, config: Any) -> None:
        """Processors saved before transformers 4.47 (VLM2Vec-LLaVa-Next's era) lack the
        settings that expand ``<image>`` into one token per image feature; take them from
        the model config, as the model computes its features."""
        if getattr(self.processor, "patch_size", None) is not None:
            return
        settings = {
            "patch_size": config.vision_config.patch_size,
            "vision_feature_select_strategy": config.vision_feature_select_strategy,
            # the CLS token a CLIP vision tower adds (the "default" strategy drops it)
            "num_additional_image_tokens": int(
                config.vision_config.model_type == "clip_vision_model"),
        }
        log.info("%s: the processor predates image-token expansion; using %s from the model "
                 "config", self.model_id, settings)
        for attr, value in settings.items():
            setattr(self.processor, attr, value)

    def _merge_adapter(self, model: Any, adapter: str, revision: str | None,
                       kw: dict[str, Any]) -> Any:
        """Load the LoRA adapter, check that every one of its weights landed, merge it."""
        from peft import PeftModel
        from peft.utils import get_peft_model_state_dict, load_peft_weights

        mapping = ADAPTER_KEY_MAPPING.get(self.model_type, {})
        hub = {"revision": revision, "cache_dir": kw["cache_dir"],
               "local_files_only": kw["local_files_only"]}
        with hub_errors(adapter, self.hint):
            peft_model = PeftModel.from_pretrained(
                model, adapter, is_trainable=False, key_mapping=mapping, **hub
            )
            expected = load_peft_weights(adapter, device="cpu", key_mapping=mapping, **hub)
        # peft only warns about adapter weights that match no module (they would be left at
        # their initial value, B = 0: the base model, silently); refuse instead
        loaded = get_peft_model_state_dict(peft_model)
        missing = sorted(k for k in expected if k not in loaded)
        differ = sorted(k for k in expected if k in loaded and not torch.equal(
            loaded[k].detach().cpu(), expected[k].to(loaded[k].dtype)))
        if missing or differ or not expected:
            bad = (missing + differ)[:3]
            raise EncoderError(
                f"adapter {adapter!r} does not fit {self.model_id!r}: "
                f"{len(missing) + len(differ)} of {len(expected)} adapter weights were not loaded "
                f"(e.g. {bad}); is it an adapter for this base model?"
            )
        return peft_model.merge_and_unload()

    # ------------------------------------------------------------------ prompts

    def prompt(self, role: str, modality: str, text: str | None = None) -> str:
        """The exact string fed to the processor for one item of ``(role, modality)``."""
        check_role(role)
        template = self.templates[role][modality]
        out = template.replace("{image}", self.image_token)
        if modality != "image":
            out = out.replace("{text}", "" if text is None else text)
        return out

    # ------------------------------------------------------------------ protocol

    @property
    def dim(self) -> int:
        return self._dim

    def image_transform(self) -> Callable[[Image.Image], Image.Image]:
        return ResizeRGB(self.image_size)

    def collate_images(self, items: list[Any]) -> list[Image.Image]:
        return list(items)

    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        prompts = [self.prompt(role, "text", t) for t in texts]
        self._texts += len(texts)
        return self._embed(prompts, None)

    def encode_image(self, images: Any, role: str = "document") -> torch.Tensor:
        images = list(images)
        return self._embed([self.prompt(role, "image")] * len(images), images)

    def encode_joint(self, texts: list[str], images: Any, role: str = "document") -> torch.Tensor:
        images = list(images)
        if len(texts) != len(images):
            raise EncoderError(
                f"{self.name}.encode_joint: {len(texts)} texts but {len(images)} images"
            )
        self._texts += len(texts)
        return self._embed([self.prompt(role, "joint", t) for t in texts], images)

    # ------------------------------------------------------------------ model

    def _embed(self, prompts: list[str], images: list[Image.Image] | None) -> torch.Tensor:
        if not prompts:
            return torch.empty(0, self.dim)
        tokenizer = self.processor.tokenizer
        lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"]]
        if 0 in lengths:
            # an empty document text has no token to pool (Qwen2 adds no BOS): embed the
            # end-of-text token instead, and say so
            empty = [i for i, n in enumerate(lengths) if n == 0]
            log.warning("%s: %d empty input(s) embedded as %r", self.name, len(empty),
                        tokenizer.eos_token)
            prompts = list(prompts)
            for i in empty:
                prompts[i], lengths[i] = tokenizer.eos_token, 1
            self._empty += len(empty)
        # batch by length: sort, cut into micro-batches, restore the order
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        step = self.micro_batch_size or len(prompts)
        out = torch.empty(len(prompts), self.dim)
        for s in range(0, len(order), step):
            idx = order[s : s + step]
            batch_images = [images[i] for i in idx] if images is not None else None
            out[idx] = self._forward([prompts[i] for i in idx], batch_images, [lengths[i] for i in idx])
        return out

    def inputs(self, prompts: list[str], images: list[Image.Image] | None) -> dict[str, torch.Tensor]:
        """Processor output for a batch (right-padded; text-only inputs truncated at
        ``max_length`` when set)."""
        kwargs: dict[str, Any] = {"padding": True, "return_tensors": "pt"}
        if images is None and self.max_length:
            kwargs.update(truncation=True, max_length=self.max_length)
        if images is not None:
            kwargs["images"] = images
        return dict(self.processor(text=prompts, **kwargs))

    def _forward(self, prompts: list[str], images: list[Image.Image] | None,
                 lengths: list[int]) -> torch.Tensor:
        if images is None and self.max_length:
            truncated = sum(n > self.max_length for n in lengths)
            if truncated and not self._truncated:
                log.warning("%s: %d of %d texts exceed %d tokens and are truncated",
                            self.name, truncated, len(prompts), self.max_length)
            self._truncated += truncated
        inputs = self.inputs(prompts, images)
        mask = inputs["attention_mask"]
        if self.model_type == "qwen2_vl" and self.positions == "sequential":
            # transformers 4.4x positions for prompts without <|vision_start|> (module doc)
            inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                  for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            hidden = self.backbone(**inputs, use_cache=False).last_hidden_state
            reps = last_token_pool(hidden, inputs["attention_mask"]).float()
            if self.normalize:
                reps = torch.nn.functional.normalize(reps, p=2, dim=-1)
        return reps.cpu()

    # ------------------------------------------------------------------ records

    def text_stats(self) -> dict[str, int]:
        return {"texts": self._texts, "truncated": self._truncated, "empty": self._empty}

    def _checkpoint(self, repo: str, revision: str | None) -> dict[str, Any]:
        if Path(repo).is_dir():
            return {"source": "local", "files": dir_signature(repo, _LOCAL_PATTERNS)}
        return {"source": "hub", "repo": repo, "revision": revision, "commit": self._commits[repo]}

    def fingerprint(self) -> dict[str, Any]:
        image_processor = getattr(self.processor, "image_processor", None)
        image_cfg = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in sorted((image_processor.to_dict() if image_processor else {}).items())
            if not k.startswith("_") and k != "processor_class"
        }
        return {
            "backend": "vlm2vec",
            "model_type": self.model_type,
            "checkpoint": self._checkpoint(self.model_id, self.revision),
            "adapter": self._checkpoint(self.adapter, self.adapter_revision) if self.adapter else None,
            "processor_source": ("model" if self.processor_source == self.model_id
                                 else {"repo": self.processor_source, "revision": self.processor_revision}),
            "instructions": self.templates,
            "image_token": self.image_token,
            "image_resize": self.image_size,
            "image_processor": {"class": type(image_processor).__name__, **image_cfg},
            "tokenizer": {"class": type(self.processor.tokenizer).__name__,
                          "vocab_size": len(self.processor.tokenizer),
                          "padding_side": "right", "max_length": self.max_length},
            "positions": self.positions if self.model_type == "qwen2_vl" else "model",
            "pooling": "last",
            "normalize": self.normalize,
            "precision": self.precision,
            # SDPA/eager/flash give the same function up to rounding; kept for provenance
            "attn_implementation": self.attn_implementation,
        }

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            **super().describe(),
            "supports_joint": True,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "modalities": ["text", "image", "image+text"],
            "model_id_or_path": self.model_id,
            "adapter": self.adapter,
            "transformers_version": transformers.__version__,
            "processor": self.processor_source,
            # the seed's vlm_example/embedding.py did these differently (module docstring)
            "differs_from_seed": {
                "adapter": "merged into the weights (seed: peft's unmerged LoRA layers)"
                if self.adapter else "none (a full checkpoint, as the seed)",
                "attention": f"{self.attn_implementation} (seed: flash_attention_2)",
                "normalisation": "L2 of the pooled vector in float32 (seed: in the model's "
                                 "dtype, bf16 on a GPU)",
            },
        }


def download_commands(model: str, adapter: str | None = None, revision: str | None = None,
                      adapter_revision: str | None = None) -> str:
    """Pre-download instructions naming the base VLM and the adapter."""
    cmds = []
    for repo, rev in [(model, revision), (adapter, adapter_revision)]:
        if repo and not Path(repo).is_dir():
            cmds.append(f"`hf download {repo}" + (f" --revision {rev}" if rev else "") + "`")
    return (
        f"Pre-download on a machine with network access ({' and '.join(cmds)}) into the same "
        "HF_HOME / cache_dir, or pass local directories."
    )
