"""mteb's model zoo as a mixsearch :class:`~mixsearch.encoders.base.Encoder`.

    python run.py model=mteb model.name=mteb/baseline-random-encoder
    python run.py model=mteb model.name=Qwen/Qwen3-VL-Embedding-2B fusion=joint

mteb (>= 2) maintains wrappers for ~1000 embedders, including universal multimodal ones
(Qwen3-VL-Embedding, GME, VLM2Vec, E5-V). Its models consume a ``DataLoader`` of
batched dicts (``{"text": [...]}``, ``{"image": [...]}`` or both for a joint item) plus the
task's metadata and a :class:`mteb.types.PromptType`. This backend feeds them exactly as mteb's
own retrieval evaluation does (mteb's private ``create_dataloader`` on a ``datasets.Dataset``,
see :func:`mteb_dataloader_factory`), one modality per call, under a minimal any-to-any
retrieval :class:`~mteb.abstasks.task_metadata.TaskMetadata` whose category matches the batch
(``t2t``, ``i2i`` or ``it2it``) and whose ``prompt`` carries the instructions per role.

A model embeds image+text items jointly (``supports_joint``) when mteb's wrapper turns an
image+text input into more than a combination of the item's own text and image embeddings.
Its metadata cannot tell: mteb's dual encoders (CLIP, OpenCLIP, SigLIP, BLIP, ALIGN, EVA-CLIP,
jina-clip, the random baseline, ...) list both modalities and answer a joint input with the
sum (or mean) of two tower outputs, which is weighted fusion at α = 0.5 without normalisation.
So it is measured: :meth:`MtebEncoder.joint_check` embeds two probe items as text, as image
and jointly, and calls the model joint only when the joint vectors lie outside the span of
each item's text and image vectors (:data:`FUSION_TOLERANCE`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from mixsearch.encoders.base import ROLES, Encoder, EncoderError, check_role
from mixsearch.encoders.offline import hub_commit, hub_errors, require_hub_files, resolve_device

log = logging.getLogger(__name__)

#: The instruction of mteb's MixBench task definition (mteb PR #5144) for queries; documents
#: get none, so each model falls back to its own default.
DEFAULT_INSTRUCTIONS: dict[str, str | None] = {
    "query": "Retrieve a relevant item that represents the query.",
    "document": None,
}
#: modality of a batch -> mteb task category (query side "2" document side)
CATEGORIES = {"text": "t2t", "image": "i2i", "joint": "it2it"}
_MTEB_MODALITIES = {"text": ["text"], "image": ["image"], "joint": ["text", "image"]}
#: A joint embedding within this distance (relative to its norm) of the plane spanned by the
#: item's own text and image embeddings is a combination of the two (a sum, mean or
#: renormalised sum), not a joint embedding. mteb's CLIP, SigLIP and OpenCLIP wrappers on tiny
#: models give ~2e-8 (float rounding); the tiny random Qwen2-VL of the tests, a real joint
#: embedding, 0.16.
FUSION_TOLERANCE = 1e-3
_PROBE_TEXTS = ["a red square on a white background", "two dogs playing in the snow"]


class RGBImage:
    """Picklable per-image preprocessing: convert to RGB, leave resizing to the model's own
    processor (run in DataLoader workers)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        # convert() always returns a new image without a source ``format``, so mteb's
        # ``datasets.Image`` column stores it losslessly (PNG), never re-encoding a JPEG
        return image.convert("RGB")


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide ``datasets``' per-batch ``map`` progress bars (mteb maps every batch)."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


class MtebEncoder(Encoder):
    """Any model of mteb's zoo (``mteb.get_model``) as an encoder.

    Args:
        name: mteb model name, e.g. ``"mteb/baseline-random-encoder"``,
            ``"Qwen/Qwen3-VL-Embedding-2B"``, ``"Alibaba-NLP/gme-Qwen2-VL-2B-Instruct"``.
        revision: hub revision; default: the revision mteb pins for the model.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``, ...
        instructions: ``{"query": str | None, "document": str | None}``, the task prompt per
            role handed to the model through the task metadata (None: the model's own
            default). Default: :data:`DEFAULT_INSTRUCTIONS`.
        task_name: name of the task metadata (models with task-specific prompts look it up).
        batch_size: items per ``encode`` batch inside mteb's model.
        cache_dir: hub cache directory checked for the model's files (loading itself uses
            HF_HOME, like mteb).
        loader_kwargs: extra keyword arguments for mteb's model loader.

    Raises:
        EncoderError: unknown model, a model without open weights that is not cached while
            offline, or a loader failure.
    """

    def __init__(
        self,
        name: str,
        *,
        revision: str | None = None,
        device: str = "auto",
        instructions: dict[str, str | None] | None = None,
        task_name: str = "MixsearchAny2AnyRetrieval",
        batch_size: int = 32,
        cache_dir: str | None = None,
        loader_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import mteb

        self.model_name = name
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise EncoderError(f"batch_size must be >= 1, got {batch_size}")
        instructions = dict(DEFAULT_INSTRUCTIONS if instructions is None else instructions)
        unknown = set(instructions) - set(ROLES)
        if unknown:
            raise EncoderError(
                f"instructions: unknown role(s) {sorted(unknown)}; expected keys {list(ROLES)}"
            )
        self.instructions = {r: instructions.get(r) or None for r in ROLES}
        self.task_name = task_name
        self.loader_kwargs = dict(loader_kwargs or {})
        try:
            self.meta = mteb.get_model_meta(name, revision, fetch_from_hf=False)
        except Exception as e:  # noqa: BLE001 - mteb raises plain errors for unknown names
            raise EncoderError(
                f"mteb has no model {name!r} ({type(e).__name__}: {e}); list them with "
                "`python -c \"import mteb; print([m.name for m in mteb.get_model_metas()])\"`"
            ) from e
        self.revision = revision or self.meta.revision
        # mteb's baselines are computed, not downloaded; closed (API) models have no files
        self.hub = bool(self.meta.open_weights) and not name.startswith("mteb/")
        hint = download_command(name, self.revision)
        if self.hub:
            require_hub_files(
                name, name, ["config.json", "modules.json"], revision=self.revision,
                cache_dir=cache_dir, hint=hint,
            )
        self._commit = (
            hub_commit(name, "config.json", revision=self.revision, cache_dir=cache_dir)
            if self.hub else None
        )
        with hub_errors(name, hint if self.hub else ""):
            self.model = mteb.get_model(
                name, revision=self.revision, device=str(self.device), **self.loader_kwargs
            )
        modalities = set(self.meta.modalities or ["text"])
        self.modalities = sorted(modalities)
        self._joint_check: dict[str, Any] | None = None
        self.name = f"mteb:{name}" + (f"@{revision}" if revision else "")
        self._tasks: dict[str, Any] = {}
        self._texts = 0
        if (self.meta.similarity_fn_name or "cosine") != "cosine":
            log.warning(
                "%s scores with %s similarity; mixsearch ranks by cosine similarity",
                self.name, self.meta.similarity_fn_name,
            )
        embed_dim = self.meta.embed_dim
        if isinstance(embed_dim, int):
            self._dim = embed_dim
        else:  # unknown or a list of Matryoshka sizes: measure what the model returns
            probe = self.encode_text(["dimension probe"]) if "text" in modalities else None
            if probe is None:
                probe = self.encode_image([Image.new("RGB", (64, 64))])
            self._dim = int(probe.shape[1])
            self._texts = 0

    # ------------------------------------------------------------------ protocol

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def supports_joint(self) -> bool:  # type: ignore[override]
        """Whether image+text items get a joint embedding (measured once: :meth:`joint_check`)."""
        return self.joint_check()["joint"]

    def joint_check(self) -> dict[str, Any]:
        """Decide, once, from what mteb's wrapper does, whether it embeds image+text jointly.

        Two probe items are embedded as documents three ways; the joint vectors' distance from
        the span of each item's text and image vectors (relative to their norm) is
        ``span_residual``. Below :data:`FUSION_TOLERANCE` the wrapper only combines its text
        and image embeddings (what ``fusion=weighted`` does, with normalisation).

        Returns:
            ``{"joint": bool, "reason": str, "span_residual": float | None}``.
        """
        if self._joint_check is None:
            self._joint_check = self._probe_joint()
            if not self._joint_check["joint"]:
                log.info("%s: no joint embedding (%s)", self.name, self._joint_check["reason"])
        return self._joint_check

    def _probe_joint(self) -> dict[str, Any]:
        if not {"text", "image"} <= set(self.modalities):
            return {"joint": False, "span_residual": None,
                    "reason": f"its mteb modalities are {self.modalities}"}
        images = [_probe_image(k) for k in range(len(_PROBE_TEXTS))]
        try:
            joint = self._encode("joint", "document", _PROBE_TEXTS, images)
        except (ValueError, NotImplementedError) as e:  # mteb wrappers refuse unsupported inputs
            return {"joint": False, "span_residual": None,
                    "reason": f"mteb's wrapper rejects image+text input ({type(e).__name__}: {e})"}
        text = self._encode("text", "document", _PROBE_TEXTS, None)
        image = self._encode("image", "document", None, images)
        residual = span_residual(joint, text, image)
        if residual < FUSION_TOLERANCE:
            reason = ("mteb's wrapper answers an image+text input with a combination of the "
                      "item's text and image embeddings (e.g. their sum), not a joint embedding")
            return {"joint": False, "span_residual": residual, "reason": reason}
        return {"joint": True, "span_residual": residual,
                "reason": "the image+text embedding is not a combination of the text and image ones"}

    def _task(self, modality: str) -> Any:
        """The task metadata of a batch of ``modality`` ("text", "image" or "joint")."""
        if modality not in self._tasks:
            from mteb.abstasks.task_metadata import TaskMetadata

            prompt = {r: p for r, p in self.instructions.items() if p}
            self._tasks[modality] = TaskMetadata(
                dataset={"path": "mixsearch/any2any", "revision": "1"},
                name=self.task_name,
                description="Mixed-modality retrieval: text, image and image+text items.",
                type="Any2AnyRetrieval",
                category=CATEGORIES[modality],
                modalities=_MTEB_MODALITIES[modality],
                eval_splits=["test"],
                eval_langs=["eng-Latn"],
                main_score="ndcg_at_10",
                prompt=prompt or None,
            )
        return self._tasks[modality]

    def _encode(self, modality: str, role: str, texts: list[str] | None,
                images: list[Image.Image] | None) -> torch.Tensor:
        from datasets import Dataset, Features, Value
        from datasets import Image as ImageFeature
        from mteb.types import PromptType

        create_dataloader = mteb_dataloader_factory()

        check_role(role)
        if modality not in _MTEB_MODALITIES or (
                modality != "image" and "text" not in self.modalities) or (
                modality != "text" and "image" not in self.modalities):
            raise EncoderError(
                f"{self.name} does not embed {modality} inputs (its modalities: {self.modalities})"
            )
        n = len(texts if texts is not None else images or [])
        if n == 0:
            return torch.empty(0, self.dim)
        columns: dict[str, list[Any]] = {"id": [str(i) for i in range(n)]}
        features: dict[str, Any] = {"id": Value("string")}
        if texts is not None:
            columns["text"], features["text"] = list(texts), Value("string")
        if images is not None:
            columns["image"], features["image"] = list(images), ImageFeature()
        task = self._task(modality)
        prompt_type = PromptType.query if role == "query" else PromptType.document
        with _quiet_datasets():
            dataset = Dataset.from_dict(columns, features=Features(features))
            loader = create_dataloader(
                dataset, task_metadata=task, prompt_type=prompt_type, batch_size=self.batch_size
            )
            out = self.model.encode(
                loader, task_metadata=task, hf_split="test", hf_subset="default",
                prompt_type=prompt_type, batch_size=self.batch_size, show_progress_bar=False,
            )
        out = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))
        out = out.detach().to("cpu", torch.float32)
        if out.ndim != 2 or out.shape[0] != n:
            raise EncoderError(
                f"{self.name} returned embeddings of shape {tuple(out.shape)} for {n} "
                f"{modality} inputs; expected ({n}, dim) (multi-vector models are not supported)"
            )
        return out

    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        """Embed ``texts`` with the instruction of ``role``."""
        out = self._encode("text", role, list(texts), None)
        self._texts += len(texts)
        return out

    def image_transform(self) -> Callable[[Image.Image], Image.Image]:
        return RGBImage()

    def collate_images(self, items: list[Any]) -> list[Image.Image]:
        return list(items)

    def encode_image(self, images: Any, role: str = "document") -> torch.Tensor:
        """Embed a list of RGB PIL images (``collate_images`` output)."""
        return self._encode("image", role, None, list(images))

    def encode_joint(self, texts: list[str], images: Any, role: str = "document") -> torch.Tensor:
        """Embed image+text items jointly: one input per (text, image) pair."""
        images = list(images)
        if len(texts) != len(images):
            raise EncoderError(
                f"{self.name}.encode_joint: {len(texts)} texts but {len(images)} images"
            )
        if not self.supports_joint:
            raise EncoderError(
                f"{self.name} cannot embed image+text items jointly: "
                f"{self.joint_check()['reason']}; use fusion=weighted"
            )
        self._texts += len(texts)
        return self._encode("joint", role, list(texts), images)

    def text_stats(self) -> dict[str, int]:
        return {"texts": self._texts}

    def parameter_count(self) -> int | None:
        """Parameters of the torch modules inside mteb's wrapper, else mteb's metadata
        (None for computed baselines and API models)."""
        seen: dict[int, int] = {}
        for value in vars(self.model).values():
            if isinstance(value, torch.nn.Module):
                for p in value.parameters():
                    seen.setdefault(id(p), p.numel())
        if seen:
            return sum(seen.values())
        return int(self.meta.n_parameters) if self.meta.n_parameters else None

    def fingerprint(self) -> dict[str, Any]:
        import mteb

        return {
            "backend": "mteb",
            "model": self.model_name,
            "revision": self.revision,
            "commit": self._commit,
            # mteb's wrapper code decides prompts formatting, image sizes and pooling
            "mteb_version": mteb.__version__,
            "task_name": self.task_name,
            "instructions": self.instructions,
            "categories": CATEGORIES,
            "loader_kwargs": {k: self.loader_kwargs[k] for k in sorted(self.loader_kwargs)},
            "image_input": "RGB PIL, resized by the model's own processor",
        }

    def describe(self) -> dict[str, Any]:
        meta = self.meta
        return {
            **super().describe(),
            "supports_joint": self.supports_joint,
            "joint_check": self.joint_check(),
            "model_meta": {
                "name": meta.name,
                "revision": meta.revision,
                "parameters": meta.n_parameters,
                "embed_dim": meta.embed_dim,
                "modalities": list(meta.modalities or []),
                "license": meta.license,
                "max_tokens": None if meta.max_tokens in (None, float("inf")) else meta.max_tokens,
                "similarity_fn_name": str(meta.similarity_fn_name),
                "reference": meta.reference,
                "release_date": meta.release_date,
            },
        }


#: the mteb releases whose private ``create_dataloader`` this backend is tested against (the
#: ``mteb`` pin of setup.cfg; tests/test_backends_routing.py checks the contract)
MTEB_TESTED = "mteb>=2.26,<2.27"


def mteb_dataloader_factory() -> Callable[..., Any]:
    """mteb's own ``create_dataloader`` (``mteb._create_dataloaders``), used so that every
    model gets its inputs exactly as mteb's retrieval evaluation prepares them (document texts
    joined with titles and stripped, images as a lossless ``datasets.Image`` column). mteb has
    no public route to it, so it is private API: pinned and checked.

    Raises:
        EncoderError: the installed mteb lacks it (names the version and the tested range).
    """
    import mteb

    try:
        from mteb._create_dataloaders import create_dataloader
    except ImportError as e:
        raise EncoderError(
            f"mteb {mteb.__version__} has no mteb._create_dataloaders.create_dataloader, the "
            f"private function this backend feeds models with; install {MTEB_TESTED!r}"
        ) from e
    return create_dataloader


def download_command(name: str, revision: str | None) -> str:
    """The pre-download instruction for a hub model (ends offline failure messages)."""
    rev = f" --revision {revision}" if revision else ""
    return (
        f"Pre-download it on a machine with network access (`hf download {name}{rev}`) into "
        "the same HF_HOME, or pass a local directory."
    )


def _probe_image(k: int) -> Image.Image:
    """A deterministic 64x64 RGB probe image with structure (gradients, one bright square)."""
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.stack([(x * 4 + 37 * k) % 256, (y * 4) % 256, ((x + y) * 2 + 90 * k) % 256], -1)
    rgb[8 + 16 * k: 24 + 16 * k, 20:36] = 255
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def span_residual(joint: torch.Tensor, text: torch.Tensor, image: torch.Tensor) -> float:
    """Largest distance of a row of ``joint`` from the plane of the same row of ``text`` and
    ``image`` (least squares), relative to the row's norm: 0 for any ``a * text + b * image``.
    Rows are items; needs a dimension above 2 to tell anything apart (else 0)."""
    j, t, i = (m.to(torch.float64) for m in (joint, text, image))
    basis = torch.stack([t, i], dim=2)  # (n, d, 2)
    coef = torch.linalg.lstsq(basis, j.unsqueeze(2)).solution
    rest = (j - (basis @ coef).squeeze(2)).norm(dim=1)
    return float((rest / j.norm(dim=1).clamp_min(1e-12)).max())
