"""transformers backend for ``CLIPModel`` and ``SiglipModel`` checkpoints (hub id or local folder)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mixsearch.encoders.base import Encoder, EncoderError
from mixsearch.encoders.offline import (
    dir_signature,
    download_hint,
    hub_commit,
    hub_errors,
    hub_offline,
    require_hub_files,
    resolve_device,
    resolve_precision,
)

log = logging.getLogger(__name__)

#: model_type -> default text padding. SigLIP was trained on texts padded to max_length
#: without an attention mask (its text pooling reads the last position), CLIP pads to the
#: batch's longest and pools at the end-of-text token.
DEFAULT_PADDING = {"clip": "longest", "siglip": "max_length"}
PADDINGS = ("longest", "max_length")
_LOCAL_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.bin",
    "preprocessor_config.json",
    "tokenizer*.json",
    "vocab.json",
    "merges.txt",
    "*.model",
    "special_tokens_map.json",
)


class HFImageTransform:
    """Picklable per-image preprocessing: RGB PIL image -> CHW float tensor."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]


def _features(output: Any) -> torch.Tensor:
    """Embeddings from ``get_text_features``/``get_image_features``.

    transformers v4 returned the projected tensor; v5 returns a ``BaseModelOutputWithPooling``
    whose ``pooler_output`` holds the projected (CLIP) or head-pooled (SigLIP) embedding, or
    a tuple with it second when ``return_dict=False``.
    """
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled
    if isinstance(output, tuple) and len(output) > 1:
        return output[1]
    raise EncoderError(f"unexpected feature output of type {type(output).__name__}")


class HFEncoder(Encoder):
    """A transformers ``CLIPModel`` / ``SiglipModel`` as a mixsearch :class:`Encoder`.

    Args:
        model_id_or_path: hub id (``"openai/clip-vit-base-patch16"``) or a local folder
            written by ``save_pretrained`` (model, tokenizer and image processor).
        revision: hub revision (branch, tag or commit) to pin.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``, ...
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        cache_dir: hub cache directory.
        text_padding: ``"longest"`` or ``"max_length"``; default per model type (CLIP
            longest, SigLIP max_length as trained). ``"longest"`` on SigLIP reproduces the
            seed code.
        max_length: token limit; texts are truncated to it (default: the text tower's
            ``max_position_embeddings``, 77 for CLIP, 64 for SigLIP).

    Raises:
        EncoderError: unsupported model type, bad option, or hub files unavailable offline.
    """

    def __init__(
        self,
        model_id_or_path: str,
        *,
        revision: str | None = None,
        device: str = "auto",
        precision: str = "fp32",
        cache_dir: str | None = None,
        text_padding: str | None = None,
        max_length: int | None = None,
    ) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        if text_padding not in (None, *PADDINGS):
            raise EncoderError(
                f"invalid text_padding option {text_padding!r}; expected one of {PADDINGS}"
            )
        self.model_id = model_id_or_path
        self.revision = revision
        self.precision = precision
        self.dtype = resolve_precision(precision)
        self.device = resolve_device(device)
        self.local = Path(model_id_or_path).is_dir()
        if not self.local:
            require_hub_files(
                model_id_or_path,
                model_id_or_path,
                ["config.json"],
                revision=revision,
                cache_dir=cache_dir,
            )
        # explicit local_files_only: HF_HUB_OFFLINE set after import would otherwise be ignored
        kw = {"revision": revision, "cache_dir": cache_dir, "local_files_only": hub_offline()}
        with hub_errors(model_id_or_path, "" if self.local else download_hint(model_id_or_path)):
            config = AutoConfig.from_pretrained(model_id_or_path, **kw)
            self.model_type = config.model_type
            if self.model_type not in DEFAULT_PADDING:
                raise EncoderError(
                    f"{model_id_or_path!r} is a {self.model_type!r} model; HFEncoder supports "
                    f"{sorted(DEFAULT_PADDING)}"
                )
            model = AutoModel.from_pretrained(model_id_or_path, dtype=self.dtype, **kw)
            self.tokenizer = AutoTokenizer.from_pretrained(model_id_or_path, **kw)
            self.image_processor = AutoImageProcessor.from_pretrained(model_id_or_path, **kw)
        self.model = model.to(self.device).eval()
        self.text_padding = text_padding or DEFAULT_PADDING[self.model_type]
        self.max_length = int(max_length or config.text_config.max_position_embeddings)
        self.name = f"hf:{model_id_or_path}" + (f"@{revision}" if revision else "")
        self._commit = (
            None
            if self.local
            else hub_commit(model_id_or_path, "config.json", revision=revision, cache_dir=cache_dir)
        )
        self._texts = 0
        self._truncated = 0
        self._dim = int(getattr(config, "projection_dim", 0) or config.text_config.hidden_size)

    @property
    def dim(self) -> int:
        return self._dim

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise ``texts`` as :meth:`encode_text` does (padding, truncation at max_length)."""
        return self.tokenizer(
            list(texts),
            padding=self.text_padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        """Tokenise (truncating at ``max_length``, counted) and encode ``texts``."""
        if not texts:
            return torch.empty(0, self.dim)
        full = self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
        truncated = sum(len(ids) > self.max_length for ids in full)
        if truncated and not self._truncated:
            log.warning(
                "%s: %d of %d texts exceed %d tokens and are truncated "
                "(further truncations are counted in text_stats())",
                self.name,
                truncated,
                len(texts),
                self.max_length,
            )
        self._texts += len(texts)
        self._truncated += truncated
        inputs = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        with torch.inference_mode():
            out = _features(self.model.get_text_features(**inputs))
        return out.float().cpu()

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        return HFImageTransform(self.image_processor)

    def encode_image(self, pixels: torch.Tensor, role: str = "document") -> torch.Tensor:
        if pixels.ndim != 4:
            raise EncoderError(
                f"{self.name}: expected pixels (n, C, H, W), got shape {tuple(pixels.shape)}"
            )
        with torch.inference_mode():
            out = _features(
                self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
            )
        return out.float().cpu()

    def text_stats(self) -> dict[str, int]:
        return {"texts": self._texts, "truncated": self._truncated}

    def fingerprint(self) -> dict[str, Any]:
        if self.local:
            # a local folder is identified by its contents, so moving it keeps the cache valid
            checkpoint: dict[str, Any] = {
                "source": "local",
                "files": dir_signature(self.model_id, _LOCAL_PATTERNS),
            }
        else:
            checkpoint = {
                "source": "hub",
                "repo": self.model_id,
                "revision": self.revision,
                "commit": self._commit,
            }
        image = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in sorted(self.image_processor.to_dict().items())
            if not k.startswith("_") and k != "processor_class"
        }
        return {
            "backend": "hf",
            "model_type": self.model_type,
            "checkpoint": checkpoint,
            "image_processor": {"class": type(self.image_processor).__name__, **image},
            "tokenizer": {
                "class": type(self.tokenizer).__name__,
                "vocab_size": len(self.tokenizer),
                "padding": self.text_padding,
                "max_length": self.max_length,
                "truncation": True,
            },
            "precision": self.precision,
        }

    def describe(self) -> dict[str, Any]:
        import transformers

        return {**super().describe(), "model_id_or_path": self.model_id,
                "transformers_version": transformers.__version__}
