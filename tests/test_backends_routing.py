"""mteb and Sentence Transformers backends, offline on tiny models through the real wrappers:

* joint or not is decided from what mteb's wrapper does: its CLIP, SigLIP and OpenCLIP
  wrappers answer an image+text input with the sum of two tower outputs (refused for
  ``fusion=joint``); a multimodal Sentence Transformers model through mteb's wrapper is joint;
* queries and documents each get their own prompt, instruction and route (an asymmetric tiny
  model: the query route keeps the vector, the document route reverses it);
* the private mteb function the backend feeds models with keeps the contract it relies on;
* a Sentence Transformers text that names an image file is embedded as text.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import (
    make_tiny_hf_clip,
    make_tiny_hf_siglip,
    make_tiny_openclip,
    make_tiny_st_asymmetric,
    make_tiny_st_vlm,
)

from mixsearch.config import ConfigError
from mixsearch.encoders import EncoderError

TEXTS = ["a cat on a mat", "a photo of a dog", "Nate Ebner, List of Jews in sports"]
#: mteb zoo names whose metadata (text + image) and wrapper class the tests borrow
NAMES = {
    "clip": "openai/clip-vit-base-patch32",
    "siglip": "google/siglip-base-patch16-224",
    "openclip": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    "universal": "Qwen/Qwen3-VL-Embedding-2B",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    asym, base = make_tiny_st_asymmetric(root / "asym")
    return {"asym": asym, "base": base}


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8), "RGB")
            for i in range(n)]


def _mteb(monkeypatch: pytest.MonkeyPatch, name: str, wrapper, **kwargs):
    """An :class:`MtebEncoder` for zoo ``name`` whose model is ``wrapper`` (a real mteb wrapper
    over a tiny model) instead of the hub checkpoint; the dimension is measured."""
    import mteb

    import mixsearch.encoders.mteb as backend

    meta = mteb.get_model_meta(name, fetch_from_hf=False).model_copy(update={"embed_dim": None})
    wrapper.mteb_model_meta = meta  # as mteb.get_model does (the ST wrapper reads its modalities)
    monkeypatch.setattr(mteb, "get_model_meta", lambda *a, **k: meta)
    monkeypatch.setattr(mteb, "get_model", lambda *a, **k: wrapper)
    monkeypatch.setattr(backend, "require_hub_files", lambda *a, **k: None)
    monkeypatch.setattr(backend, "hub_commit", lambda *a, **k: None)
    return backend.MtebEncoder(name, device="cpu", **kwargs)


def _wrapper(family: str, root: Path, monkeypatch: pytest.MonkeyPatch):
    """mteb's own wrapper of ``family`` (the loader its metadata names) over a tiny model."""
    import mteb

    loader = mteb.get_model_meta(NAMES[family], fetch_from_hf=False).loader
    if family == "clip":
        return loader(make_tiny_hf_clip(root / "clip"), revision=None, device="cpu")
    if family == "siglip":
        return loader(make_tiny_hf_siglip(root / "siglip"), revision=None, device="cpu")
    import open_clip  # the wrapper loads "hf-hub:<name>": point it at a tiny local-dir model

    local = "local-dir:" + make_tiny_openclip(root / "openclip")
    hub = f"hf-hub:{NAMES['openclip']}"
    create, tokenizer = open_clip.create_model_and_transforms, open_clip.get_tokenizer
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda name, **k: create(local if name == hub else name, **k))
    monkeypatch.setattr(open_clip, "get_tokenizer",
                        lambda name, **k: tokenizer(local if name == hub else name, **k))
    return loader(NAMES["openclip"], revision=None, device="cpu")


# --------------------------------------------------------------------------- joint or fused


@pytest.mark.parametrize("family", ["clip", "siglip", "openclip"])
def test_mteb_dual_encoder_wrappers_are_refused_for_joint_fusion(
        family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mteb lists text and image for these models, but its wrapper sums the two towers for an
    image+text input: the weighted fusion at α = 0.5 without normalisation. fusion=joint is
    refused before any extraction; fusion=auto picks weighted."""
    from mixsearch.pipeline import check_joint, resolve_fusion

    enc = _mteb(monkeypatch, NAMES[family], _wrapper(family, tmp_path, monkeypatch))
    assert enc.modalities == ["image", "text"]
    images = _images()
    summed = enc._encode("text", "document", TEXTS, None) + enc._encode("image", "document", None, images)
    torch.testing.assert_close(enc._encode("joint", "document", TEXTS, images), summed,
                               atol=1e-5, rtol=1e-5)
    assert not enc.supports_joint and enc.joint_check()["span_residual"] < 1e-5
    with pytest.raises(EncoderError, match="combination of the item's text and image embeddings"):
        enc.encode_joint(TEXTS, images)
    with pytest.raises(ConfigError, match="fusion=joint: encoder 'mteb:.*' cannot embed"):
        check_joint(enc, {"method": "joint"})
    assert resolve_fusion({"method": "auto"}, enc)["method"] == "weighted"
    assert enc.describe()["joint_check"]["joint"] is False


def test_mteb_wrapper_of_a_multimodal_model_is_joint(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A VLM through mteb's Sentence Transformers wrapper embeds {text, image} as one input:
    its joint vectors lie far from the plane of the item's text and image vectors."""
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    from mixsearch.pipeline import check_joint

    st = SentenceTransformer(make_tiny_st_vlm(tmp_path / "vlm"), device="cpu")
    enc = _mteb(monkeypatch, NAMES["universal"], SentenceTransformerEncoderWrapper(st))
    assert enc.supports_joint and enc.joint_check()["span_residual"] > 0.05
    check_joint(enc, {"method": "joint"})
    images = _images()
    ref = st.encode_document([{"text": t, "image": im} for t, im in zip(TEXTS, images, strict=True)],
                             convert_to_tensor=True)
    torch.testing.assert_close(enc.encode_joint(TEXTS, images), ref, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- query / document


def _base(tiny: dict[str, str]):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny["base"], device="cpu")


def _refs(base, texts: list[str], q_prompt: str, d_prompt: str, images: list) -> dict[str, torch.Tensor]:
    """Hand-derived vectors of the asymmetric model: the query route is the identity, the
    document route reverses the dimensions (tests/tiny_models.py)."""
    def emb(inputs):
        return base.encode(inputs, convert_to_tensor=True).cpu().float()

    return {"text_query": emb([q_prompt + t for t in texts]),
            "text_document": emb([d_prompt + t for t in texts]).flip(1),
            "image_query": emb(images), "image_document": emb(images).flip(1)}


def _check_routes(enc, refs: dict[str, torch.Tensor], images: list) -> None:
    got = {f"{kind}_{role}": (enc.encode_text(TEXTS, role=role) if kind == "text"
                              else enc.encode_image(images, role=role))
           for kind in ("text", "image") for role in ("query", "document")}
    for key, ref in refs.items():
        torch.testing.assert_close(got[key], ref, atol=1e-5, rtol=1e-5, msg=key)
    # the two sides differ, so a swap cannot pass
    assert not torch.allclose(got["text_query"], got["text_document"], atol=1e-3)
    assert not torch.allclose(got["image_query"], got["image_document"], atol=1e-3)


def test_st_queries_and_documents_get_their_own_prompt_and_route(tiny: dict[str, str]) -> None:
    from mixsearch.encoders.st import STEncoder

    base, images = _base(tiny), _images()
    enc = STEncoder(tiny["asym"], device="cpu")  # the model's own query/document prompts
    assert enc.prompts == {"query": "query: ", "document": "passage: "}
    _check_routes(enc, _refs(base, TEXTS, "query: ", "passage: ", images), images)
    custom = STEncoder(tiny["asym"], device="cpu", prompts={"query": "Q: ", "document": "D: "})
    _check_routes(custom, _refs(base, TEXTS, "Q: ", "D: ", images), images)


def test_mteb_prompt_types_reach_the_model(tiny: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """mteb's Sentence Transformers wrapper picks the prompt and route from the PromptType the
    backend passes: queries as queries, documents as documents, texts and images alike."""
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    wrapper = SentenceTransformerEncoderWrapper(SentenceTransformer(tiny["asym"], device="cpu"))
    enc = _mteb(monkeypatch, NAMES["clip"], wrapper)
    images = _images()
    _check_routes(enc, _refs(_base(tiny), TEXTS, "query: ", "passage: ", images), images)


def test_mteb_instructions_reach_their_role(tiny: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``instructions`` travel in the task metadata; mteb's instruction wrapper formats the
    one of the batch's role into the prompt."""
    from mteb.models.instruct_wrapper import InstructSentenceTransformerModel

    wrapper = InstructSentenceTransformerModel(tiny["base"], None, device="cpu",
                                               instruction_template="Instruct: {instruction}\nQuery: ")
    enc = _mteb(monkeypatch, NAMES["clip"], wrapper,
                instructions={"query": "Find the match.", "document": "Represent the page."})
    base = _base(tiny)
    for role, instruction in (("query", "Find the match."), ("document", "Represent the page.")):
        ref = base.encode([f"Instruct: {instruction}\nQuery: {t}" for t in TEXTS], convert_to_tensor=True)
        torch.testing.assert_close(enc.encode_text(TEXTS, role=role), ref.cpu().float(),
                                   atol=1e-5, rtol=1e-5, msg=role)


# --------------------------------------------------------------------------- mteb private API


def test_mteb_private_dataloader_keeps_the_contract_the_backend_uses() -> None:
    """``mteb._create_dataloaders.create_dataloader`` is private (no public route; setup.cfg pins
    mteb to the tested minor release): its signature, and one batch stream per role with every
    item once, in order, texts unchanged and images pixel-exact."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature
    from mteb.types import PromptType

    from mixsearch.encoders.mteb import MtebEncoder, mteb_dataloader_factory

    create_dataloader = mteb_dataloader_factory()
    params = inspect.signature(create_dataloader).parameters
    assert next(iter(params)) == "dataset"
    for name in ("task_metadata", "prompt_type", "batch_size"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    task = MtebEncoder("mteb/baseline-random-encoder", device="cpu")._task("joint")
    images = _images(5)
    texts = TEXTS + ["query: x", "Instruct: y\nQuery: z"]
    dataset = Dataset.from_dict(
        {"id": [str(i) for i in range(5)], "text": texts, "image": images},
        features=Features({"id": Value("string"), "text": Value("string"), "image": ImageFeature()}))
    for prompt_type in (PromptType.query, PromptType.document):
        batches = list(create_dataloader(dataset, task_metadata=task, prompt_type=prompt_type,
                                         batch_size=2))
        assert [len(b["text"]) for b in batches] == [2, 2, 1]
        assert [t for b in batches for t in b["text"]] == texts
        got = [im for b in batches for im in b["image"]]
        assert all(np.array_equal(np.asarray(g.convert("RGB")), np.asarray(im))
                   for g, im in zip(got, images, strict=True))


def test_mteb_pin_matches_setup_cfg_and_a_missing_private_function_is_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import configparser

    import mteb
    import mteb._create_dataloaders
    from packaging.requirements import Requirement

    from mixsearch.encoders.mteb import MTEB_TESTED, mteb_dataloader_factory

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    pins = [Requirement(line) for line in cfg["options"]["install_requires"].splitlines()
            if line.strip().startswith("mteb")]
    assert [str(r) for r in pins] == [str(Requirement(MTEB_TESTED))]
    assert pins[0].specifier.contains(mteb.__version__)
    monkeypatch.delattr(mteb._create_dataloaders, "create_dataloader")
    with pytest.raises(EncoderError, match=rf"mteb {mteb.__version__} has no .*'mteb>=2.26,<2.27'"):
        mteb_dataloader_factory()


# --------------------------------------------------------------------------- ST texts


def test_st_text_naming_an_image_file_is_embedded_as_text(tiny: dict[str, str], tmp_path: Path) -> None:
    """Sentence Transformers reads a bare string naming an existing image file (or an image
    URL) as that image; the backend's texts are always text."""
    from mixsearch.encoders.st import STEncoder

    enc = STEncoder(tiny["base"], device="cpu")
    path = tmp_path / "cat.png"
    _images(1)[0].save(path)
    with_file = enc.encode_text([str(path)])
    path.unlink()
    torch.testing.assert_close(with_file, enc.encode_text([str(path)]), atol=0, rtol=0)
    # an image URL would be fetched as an image (and fail offline)
    assert enc.encode_text(["https://example.org/cat.jpg"]).shape == (1, enc.dim)
