"""open_clip backend: built-in architectures with pretrained tags, ``hf-hub:`` and ``local-dir:``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mixsearch.encoders.base import Encoder, EncoderError
from mixsearch.encoders.offline import (
    dir_signature,
    download_hint,
    file_signature,
    hub_commit,
    hub_errors,
    hub_offline,
    require_hub_files,
    resolve_device,
    resolve_precision,
)

log = logging.getLogger(__name__)

HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
_CONFIG = "open_clip_config.json"
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pth")


class OpenClipEncoder(Encoder):
    """An open_clip model as a mixsearch :class:`Encoder`.

    Args:
        model_name: an open_clip architecture (``"ViT-B-16"``, with ``pretrained``), an
            ``"hf-hub:org/repo"`` name or ``"local-dir:/path"`` (a folder holding
            ``open_clip_config.json`` with ``model_cfg``/``preprocess_cfg`` and the weights).
        pretrained: pretrained tag (``"laion2b_s34b_b88k"``) or checkpoint file; required
            for a built-in architecture, ignored (must be None) for ``hf-hub:``/``local-dir:``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``, ...
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        cache_dir: download cache passed to open_clip.
        context_length: override the text context length (positional embeddings are resized).

    Raises:
        EncoderError: bad option, missing local files, or hub files unavailable offline.
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        *,
        device: str = "auto",
        precision: str = "fp32",
        cache_dir: str | None = None,
        context_length: int | None = None,
    ) -> None:
        import open_clip

        self.model_name = model_name
        self.pretrained = pretrained
        self.precision = precision
        self.cache_dir = cache_dir
        self.dtype = resolve_precision(precision)
        self.device = resolve_device(device)
        self._checkpoint, hint = self._resolve_checkpoint()
        with hub_errors(model_name, hint):
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name,
                pretrained=pretrained,
                precision=precision,
                device=self.device,
                cache_dir=cache_dir,
                force_context_length=context_length,
            )
            self.tokenizer = open_clip.get_tokenizer(
                model_name, context_length=context_length, cache_dir=cache_dir
            )
        self.model = model.eval()
        self.preprocess = preprocess
        self.context_length = int(self.tokenizer.context_length)
        self.name = f"openclip:{model_name}" + (f"/{pretrained}" if pretrained else "")
        self._texts = 0
        self._truncated = 0
        with torch.inference_mode():
            probe = self.model.encode_text(self.tokenizer([""]).to(self.device), normalize=False)
        self._dim = int(probe.shape[-1])

    def _resolve_checkpoint(self) -> tuple[dict[str, Any], str]:
        """Check the checkpoint is available (failing fast offline).

        Returns:
            The checkpoint's description for the fingerprint, and how to pre-download it
            (empty for local files).
        """
        name, tag = self.model_name, self.pretrained
        if name.startswith(LOCAL_DIR) or name.startswith(HF_HUB):
            if tag is not None:
                raise EncoderError(
                    f"pretrained={tag!r} is ignored by open_clip for {name!r}; leave it unset"
                )
        if name.startswith(LOCAL_DIR):
            folder = Path(name[len(LOCAL_DIR) :])
            if not (folder / _CONFIG).is_file():
                raise EncoderError(f"{name!r}: no {_CONFIG} in directory {str(folder)!r}")
            checkpoint = {
                "source": "local-dir",
                "config": file_signature(folder / _CONFIG),
                "weights": dir_signature(folder, _WEIGHT_PATTERNS),
            }
            return checkpoint, ""
        if name.startswith(HF_HUB):
            repo = name[len(HF_HUB) :]
            require_hub_files(name, repo, [_CONFIG], cache_dir=self.cache_dir)
            checkpoint = {"source": "hf-hub", "repo": repo, "commit": self._commit(repo, _CONFIG)}
            return checkpoint, download_hint(repo)
        return self._resolve_tag(name, tag)

    def _resolve_tag(self, name: str, tag: str | None) -> tuple[dict[str, Any], str]:
        import open_clip
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        if tag is None:
            raise EncoderError(
                f"open_clip model {name!r} needs a pretrained tag or file "
                f"(known tags: {open_clip.list_pretrained_tags_by_model(name)})"
            )
        if Path(tag).is_file():
            return {"source": "file", "weights": file_signature(tag)}, ""
        cfg = open_clip.get_pretrained_cfg(name, tag)
        if not cfg:
            raise EncoderError(
                f"unknown pretrained tag {tag!r} for open_clip model {name!r} "
                f"(known tags: {open_clip.list_pretrained_tags_by_model(name)})"
            )
        if cfg.get("hf_hub"):
            # open_clip's convention: "org/repo/file.bin", or "org/repo/" for the default file
            repo, filename = os.path.split(cfg["hf_hub"])
            names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
            if filename.endswith((".bin", ".pth")):
                names.insert(0, filename[:-4] + ".safetensors")
            hint = download_hint(repo, (name, tag))
            require_hub_files(f"{name}/{tag}", repo, names, cache_dir=self.cache_dir, hint=hint)
            checkpoint = {"source": "tag", "repo": repo, "commit": self._commit(repo, *names)}
            return checkpoint, hint
        # weights served from a plain URL into open_clip's own cache folder
        hint = download_hint(None, (name, tag))
        cached = Path(self.cache_dir or Path.home() / ".cache" / "clip") / Path(cfg["url"]).name
        if not cached.is_file() and hub_offline():
            raise EncoderError(
                f"open_clip weights for {name}/{tag} are not cached at {str(cached)!r} and "
                f"HF_HUB_OFFLINE is set. {hint}"
            )
        return {"source": "tag", "url": cfg["url"]}, hint

    def _commit(self, repo: str, *filenames: str) -> str | None:
        for f in filenames:
            commit = hub_commit(repo, f, cache_dir=self.cache_dir)
            if commit:
                return commit
        return None

    @property
    def dim(self) -> int:
        return self._dim

    def _token_count(self, text: str) -> int:
        """Tokens ``text`` needs including start/end tokens, before truncation."""
        from open_clip.tokenizer import SimpleTokenizer, basic_clean, canonicalize_text

        tok = self.tokenizer
        if isinstance(tok, SimpleTokenizer):
            return len(tok.encode(text)) + 2
        # HFTokenizer / SigLipTokenizer wrap a transformers tokenizer and clean text first
        clean = getattr(tok, "clean_fn", lambda t: canonicalize_text(basic_clean(t)))
        return len(tok.tokenizer(clean(text))["input_ids"])

    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        """Tokenise (truncating at the context length, counted) and encode ``texts``."""
        if not texts:
            return torch.empty(0, self.dim)
        truncated = sum(self._token_count(t) > self.context_length for t in texts)
        if truncated and not self._truncated:
            log.warning(
                "%s: %d of %d texts exceed the context length %d and are truncated "
                "(further truncations are counted in text_stats())",
                self.name,
                truncated,
                len(texts),
                self.context_length,
            )
        self._texts += len(texts)
        self._truncated += truncated
        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            out = self.model.encode_text(tokens, normalize=False)
        return out.float().cpu()

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        return self.preprocess

    def encode_image(self, pixels: torch.Tensor, role: str = "document") -> torch.Tensor:
        if pixels.ndim != 4:
            raise EncoderError(
                f"{self.name}: expected pixels (n, C, H, W), got shape {tuple(pixels.shape)}"
            )
        with torch.inference_mode():
            out = self.model.encode_image(pixels.to(self.device, self.dtype), normalize=False)
        return out.float().cpu()

    def text_stats(self) -> dict[str, int]:
        return {"texts": self._texts, "truncated": self._truncated}

    def fingerprint(self) -> dict[str, Any]:
        cfg = dict(self.model.visual.preprocess_cfg)
        local = self.model_name.startswith(LOCAL_DIR)
        return {
            "backend": "open_clip",
            # a local folder is identified by its contents, so moving it keeps the cache valid
            "model": "local-dir" if local else self.model_name,
            "pretrained": self.pretrained if self._checkpoint["source"] == "tag" else None,
            "checkpoint": self._checkpoint,
            "preprocess": {
                k: list(v) if isinstance(v, tuple) else v for k, v in sorted(cfg.items())
            },
            "tokenizer": {
                "class": type(self.tokenizer).__name__,
                "context_length": self.context_length,
            },
            "precision": self.precision,
        }

    def describe(self) -> dict[str, Any]:
        import open_clip

        return {**super().describe(), "model_name": self.model_name,
                "open_clip_version": open_clip.__version__}
