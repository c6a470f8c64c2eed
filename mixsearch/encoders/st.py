"""Sentence Transformers models as a mixsearch :class:`~mixsearch.encoders.base.Encoder`.

    python run.py model=st model.name=sentence-transformers/clip-ViT-L-14
    python run.py model=st model.name=/path/to/saved/model fusion=joint

Sentence Transformers (>= 6) embeds texts, images and, for multimodal transformer models,
``{"text": ..., "image": ...}`` items as one input. Queries go through
``SentenceTransformer.encode_query`` and documents through ``encode_document``, so the model's
own ``query`` / ``document`` prompts apply unless ``prompts`` overrides them. Texts go in as
``{"text": ...}`` items, never bare strings, which the library reads as an image when they name
an image file or URL. The library sorts each batch by length before it runs the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mixsearch.encoders.base import ROLES, Encoder, EncoderError, check_role
from mixsearch.encoders.mteb import RGBImage
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

_LOCAL_PATTERNS = ("*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "*/*.json",
                   "*/*.safetensors", "*/*.bin")
#: the prompt names ``encode_document`` looks for, in its order
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")


class STEncoder(Encoder):
    """A ``SentenceTransformer`` (hub id or a folder written by ``save``) as an encoder.

    Args:
        name: hub id or local folder.
        revision: hub revision.
        prompts: ``{"query": str | None, "document": str | None}``; None (or a missing role)
            uses the model's own prompt for that role (``encode_query``/``encode_document``).
        batch_size: items per forward pass inside Sentence Transformers.
        max_seq_length: token limit (default: the model's); longer texts are truncated,
            counted in :meth:`text_stats`.
        device: ``"auto"``, ``"cpu"``, ``"cuda:1"``, ...
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` weights.
        attn_implementation: passed to transformers (``"sdpa"`` where the model supports it;
            None leaves the model's default).
        trust_remote_code: allow a hub model's own code (needed by some multimodal models).
        cache_dir: hub cache directory.

    Raises:
        EncoderError: bad option, model files unavailable offline, or a load failure.
    """

    def __init__(
        self,
        name: str,
        *,
        revision: str | None = None,
        prompts: dict[str, str | None] | None = None,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        device: str = "auto",
        precision: str = "fp32",
        attn_implementation: str | None = "sdpa",
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        prompts = dict(prompts or {})
        unknown = set(prompts) - set(ROLES)
        if unknown:
            raise EncoderError(f"prompts: unknown role(s) {sorted(unknown)}; expected {list(ROLES)}")
        self.model_id, self.revision = name, revision
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.precision, dtype = precision, resolve_precision(precision)
        self.attn_implementation = attn_implementation
        self.local = Path(name).is_dir()
        hint = "" if self.local else download_hint(name)
        if not self.local:
            require_hub_files(name, name, ["modules.json", "config.json"], revision=revision,
                              cache_dir=cache_dir)
        model_kwargs: dict[str, Any] = {"dtype": dtype}
        if attn_implementation:
            model_kwargs["attn_implementation"] = attn_implementation
        with hub_errors(name, hint):
            try:
                self.model = SentenceTransformer(
                    name, device=str(self.device), revision=revision, cache_folder=cache_dir,
                    local_files_only=hub_offline(), trust_remote_code=trust_remote_code,
                    model_kwargs=model_kwargs,
                )
            except (TypeError, ValueError) as e:
                if not attn_implementation or "attn" not in str(e):
                    raise
                # a module that does not take the attention option: the model's default
                log.warning("%s: attn_implementation=%r not supported (%s); using the default",
                            name, attn_implementation, e)
                self.attn_implementation = None
                self.model = SentenceTransformer(
                    name, device=str(self.device), revision=revision, cache_folder=cache_dir,
                    local_files_only=hub_offline(), trust_remote_code=trust_remote_code,
                    model_kwargs={"dtype": dtype},
                )
        self.model.eval()
        if max_seq_length:
            self.model.max_seq_length = int(max_seq_length)
        self.prompts = {role: self._prompt(role, prompts.get(role)) for role in ROLES}
        self.modalities = [m if isinstance(m, str) else "+".join(m) for m in self.model.modalities]
        self.supports_joint = bool(self.model.supports(("image", "text")))
        dim = self.model.get_embedding_dimension() if hasattr(
            self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension()
        if not dim:
            dim = int(self.encode_text(["dimension probe"]).shape[1])
        self._dim = int(dim)
        self._commit = (None if self.local else
                        hub_commit(name, "modules.json", revision=revision, cache_dir=cache_dir))
        self.name = f"st:{name}" + (f"@{revision}" if revision else "")
        self._texts = self._truncated = 0

    def _prompt(self, role: str, given: str | None) -> str:
        """The prompt ``encode_query``/``encode_document`` apply for ``role``."""
        if given is not None:
            return given
        own = self.model.prompts or {}
        names = ("query",) if role == "query" else _DOCUMENT_PROMPTS
        return next((own[n] for n in names if n in own), "")

    # ------------------------------------------------------------------ protocol

    @property
    def dim(self) -> int:
        return self._dim

    def _encode(self, inputs: list[Any], role: str) -> torch.Tensor:
        check_role(role)
        if not inputs:
            return torch.empty(0, self.dim)
        encode = self.model.encode_query if role == "query" else self.model.encode_document
        out = encode(
            inputs, prompt=self.prompts[role], batch_size=self.batch_size,
            convert_to_tensor=True, normalize_embeddings=False, show_progress_bar=False,
        )
        return out.detach().to("cpu", torch.float32)

    def _count(self, texts: list[str], role: str) -> None:
        self._texts += len(texts)
        tokenizer = getattr(self.model, "tokenizer", None)
        limit = self.model.max_seq_length
        if tokenizer is None or not limit or not texts:
            return
        # the prompt is prepended to the text, so it takes room from the limit too
        prompt = self.prompts[check_role(role)]
        lengths = [len(ids) for ids in tokenizer(
            [prompt + t for t in texts], add_special_tokens=True, truncation=False,
            verbose=False)["input_ids"]]
        truncated = sum(n > limit for n in lengths)
        if truncated and not self._truncated:
            log.warning("%s: %d of %d texts exceed %d tokens and are truncated (further "
                        "truncations are counted in text_stats())",
                        self.name, truncated, len(texts), limit)
        self._truncated += truncated

    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        if not self.model.supports("text"):
            raise EncoderError(f"{self.name} does not embed texts (modalities {self.modalities})")
        self._count(list(texts), role)
        # a bare string that names an image file or URL ("cat.png", "https://.../a.jpg") is
        # read as that image by a model that embeds images; a {"text": ...} item is always text
        return self._encode([{"text": t} for t in texts], role)

    def image_transform(self) -> Callable[[Image.Image], Image.Image]:
        return RGBImage()

    def collate_images(self, items: list[Any]) -> list[Image.Image]:
        return list(items)

    def encode_image(self, images: Any, role: str = "document") -> torch.Tensor:
        if not self.model.supports("image"):
            raise EncoderError(f"{self.name} does not embed images (modalities {self.modalities})")
        return self._encode(list(images), role)

    def encode_joint(self, texts: list[str], images: Any, role: str = "document") -> torch.Tensor:
        images = list(images)
        if not self.supports_joint:
            raise EncoderError(
                f"fusion=joint: {self.name} cannot embed image+text items jointly (its "
                f"modalities: {self.modalities}); use fusion=weighted"
            )
        if len(texts) != len(images):
            raise EncoderError(f"{self.name}.encode_joint: {len(texts)} texts but {len(images)} images")
        self._texts += len(texts)
        return self._encode([{"text": t, "image": im} for t, im in zip(texts, images, strict=True)], role)

    def text_stats(self) -> dict[str, int]:
        return {"texts": self._texts, "truncated": self._truncated}

    def fingerprint(self) -> dict[str, Any]:
        import sentence_transformers

        if self.local:
            checkpoint: dict[str, Any] = {"source": "local",
                                          "files": dir_signature(self.model_id, _LOCAL_PATTERNS)}
        else:
            checkpoint = {"source": "hub", "repo": self.model_id, "revision": self.revision,
                          "commit": self._commit}
        return {
            "backend": "st",
            "checkpoint": checkpoint,
            # the modules (transformer, pooling, dense, normalize) and their settings
            "modules": [type(m).__name__ for m in self.model],
            "prompts": self.prompts,
            "max_seq_length": self.model.max_seq_length,
            "precision": self.precision,
            "attn_implementation": self.attn_implementation,
            "sentence_transformers_version": sentence_transformers.__version__,
            "image_input": "RGB PIL, resized by the model's own processor",
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "supports_joint": self.supports_joint,
                "modalities": self.modalities, "model_id_or_path": self.model_id,
                "parameters": self.parameter_count()}
