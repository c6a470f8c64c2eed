"""open_clip and transformers backends on tiny random models, offline checks, registry."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_models import make_tiny_hf_clip, make_tiny_hf_siglip, make_tiny_openclip

from mixsearch.encoders import EncoderError, build_encoder, register_encoder
from mixsearch.encoders.hf import HFEncoder, _features
from mixsearch.encoders.offline import (
    clip_tokenizer_offline,
    download_hint,
    hub_commit,
    hub_errors,
)
from mixsearch.encoders.openclip import OpenClipEncoder

LONG = " ".join(["word"] * 200)
TEXTS = ["a cat on a mat", "a photo of a dog", "", "Nate Ebner, List of Jews in sports"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


def _images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (40 + 7 * i, 50), (30 * i, 200 - 20 * i, 90)) for i in range(n)]


def _pixels(enc, n: int = 4) -> torch.Tensor:
    transform = pickle.loads(pickle.dumps(enc.image_transform()))  # workers get a pickled copy
    return torch.stack([transform(im) for im in _images(n)])


def _check_encoder(enc, dim: int) -> None:
    """Shapes, dtype, determinism, batch-size invariance and batch size 1."""
    text = enc.encode_text(TEXTS)
    assert text.shape == (4, dim) and text.dtype == torch.float32 and text.device.type == "cpu"
    assert torch.equal(text, enc.encode_text(TEXTS))
    singles = torch.cat([enc.encode_text([t]) for t in TEXTS])
    assert singles.shape == (4, dim)
    torch.testing.assert_close(singles, text, atol=1e-5, rtol=0)
    pixels = _pixels(enc)
    assert pixels.shape[1:] == (3, 32, 32)
    image = enc.encode_image(pixels)
    assert image.shape == (4, dim) and image.dtype == torch.float32
    assert torch.equal(image, enc.encode_image(pixels))
    torch.testing.assert_close(
        torch.cat([enc.encode_image(p[None]) for p in pixels]), image, atol=1e-5, rtol=0
    )
    assert not torch.allclose(text[0], text[1])  # distinct inputs, distinct embeddings
    assert enc.encode_text([]).shape == (0, dim)


def test_clip_tokenizer_offline_matches_open_clip(tmp_path: Path) -> None:
    from open_clip.tokenizer import SimpleTokenizer

    tok = clip_tokenizer_offline(tmp_path / "tok")
    ref = SimpleTokenizer()
    assert len(tok) == 49408
    for text in [
        *TEXTS,
        "Hello, World's 123 naïve café — déjà vu!",
        "A woman in a room with a cat.",
    ]:
        assert tok(text)["input_ids"] == [ref.sot_token_id, *ref.encode(text), ref.eot_token_id]


# --------------------------------------------------------------------------- open_clip


@pytest.fixture(scope="module")
def oc_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_openclip(tmp_path_factory.mktemp("openclip"))


@pytest.fixture(scope="module")
def oc(oc_dir: str) -> OpenClipEncoder:
    return OpenClipEncoder(f"local-dir:{oc_dir}", device="cpu")


def test_openclip_shapes_determinism_batches(oc: OpenClipEncoder) -> None:
    assert oc.dim == 16
    _check_encoder(oc, 16)


def test_openclip_local_dir_round_trip(oc: OpenClipEncoder, oc_dir: str) -> None:
    import open_clip
    from safetensors.torch import load_file

    cfg = json.loads((Path(oc_dir) / "open_clip_config.json").read_text())
    ref = open_clip.CLIP(**cfg["model_cfg"]).eval()
    ref.load_state_dict(load_file(str(Path(oc_dir) / "open_clip_model.safetensors")))
    with torch.no_grad():
        want_text = ref.encode_text(open_clip.tokenize(TEXTS))
        pixels = _pixels(oc)
        want_image = ref.encode_image(pixels)
    torch.testing.assert_close(oc.encode_text(TEXTS), want_text, atol=1e-6, rtol=0)
    torch.testing.assert_close(oc.encode_image(pixels), want_image, atol=1e-6, rtol=0)
    # raw, not normalised
    assert not torch.allclose(want_text.norm(dim=-1), torch.ones(len(TEXTS)))


def test_openclip_truncation_counted(oc_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    enc = OpenClipEncoder(f"local-dir:{oc_dir}", device="cpu")
    with caplog.at_level(logging.WARNING):
        enc.encode_text(["short text", LONG])
        enc.encode_text([LONG])
    assert enc.text_stats() == {"texts": 3, "truncated": 2}
    assert "exceed the context length 77" in caplog.text


def test_openclip_fingerprint(oc: OpenClipEncoder, oc_dir: str, tmp_path: Path) -> None:
    name = f"local-dir:{oc_dir}"
    fp = oc.fingerprint()
    assert fp == OpenClipEncoder(name, device="cpu").fingerprint()
    assert fp["tokenizer"] == {"class": "SimpleTokenizer", "context_length": 77}
    assert fp["preprocess"]["size"] == [32, 32] and fp["preprocess"]["resize_mode"] == "shortest"
    # a copied folder is the same model
    copy = shutil.copytree(oc_dir, tmp_path / "copy")
    assert (
        OpenClipEncoder(f"local-dir:{copy}", device="cpu").fingerprint_hash()
        == oc.fingerprint_hash()
    )
    # equal in a fresh process
    code = (
        "from mixsearch.encoders.openclip import OpenClipEncoder;"
        f"print(OpenClipEncoder({name!r}, device='cpu').fingerprint_hash())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == oc.fingerprint_hash()
    short = OpenClipEncoder(name, device="cpu", context_length=32)
    assert short.fingerprint()["tokenizer"]["context_length"] == 32
    assert short.encode_text(["a cat"]).shape == (1, 16)
    reseeded = make_tiny_openclip(tmp_path / "other", seed=1)
    variants = [
        short,
        OpenClipEncoder(name, device="cpu", precision="bf16"),
        OpenClipEncoder(f"local-dir:{reseeded}", device="cpu"),
    ]
    hashes = {oc.fingerprint_hash(), *(v.fingerprint_hash() for v in variants)}
    assert len(hashes) == 4


def test_openclip_bad_options(oc_dir: str, tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="leave it unset"):
        OpenClipEncoder(f"local-dir:{oc_dir}", "laion2b_s34b_b88k")
    with pytest.raises(EncoderError, match=f"no open_clip_config.json in directory '{tmp_path}'"):
        OpenClipEncoder(f"local-dir:{tmp_path}")
    with pytest.raises(EncoderError, match="unknown pretrained tag 'nope'.*laion2b_s34b_b88k"):
        OpenClipEncoder("ViT-B-16", "nope")
    with pytest.raises(EncoderError, match="needs a pretrained tag"):
        OpenClipEncoder("ViT-B-16")
    with pytest.raises(EncoderError, match="invalid precision option 'fp8'"):
        OpenClipEncoder(f"local-dir:{oc_dir}", precision="fp8")


# --------------------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "clip": make_tiny_hf_clip(root / "clip"),
        "siglip": make_tiny_hf_siglip(root / "siglip"),
    }


@pytest.mark.parametrize("kind,dim", [("clip", 16), ("siglip", 32)])
def test_hf_shapes_determinism_batches(hf_dirs: dict[str, str], kind: str, dim: int) -> None:
    enc = HFEncoder(hf_dirs[kind], device="cpu")
    assert enc.model_type == kind and enc.dim == dim
    _check_encoder(enc, dim)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_hf_uses_projected_pooled_embeddings(hf_dirs: dict[str, str], kind: str) -> None:
    enc = HFEncoder(hf_dirs[kind], device="cpu")
    inputs = enc.tokenize(TEXTS)
    pixels = _pixels(enc)
    m = enc.model
    with torch.no_grad():
        text = m.text_model(**inputs).pooler_output
        image = m.vision_model(pixel_values=pixels).pooler_output
        if kind == "clip":
            text, image = m.text_projection(text), m.visual_projection(image)
    torch.testing.assert_close(enc.encode_text(TEXTS), text, atol=1e-6, rtol=0)
    torch.testing.assert_close(enc.encode_image(pixels), image, atol=1e-6, rtol=0)


def test_features_accepts_v4_and_v5_outputs() -> None:
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    x = torch.randn(2, 4)
    assert _features(x) is x
    assert (
        _features(
            BaseModelOutputWithPooling(last_hidden_state=torch.zeros(2, 3, 4), pooler_output=x)
        )
        is x
    )
    assert _features((torch.zeros(2, 3, 4), x)) is x
    with pytest.raises(EncoderError, match="unexpected feature output of type dict"):
        _features({})


def test_siglip_padding(hf_dirs: dict[str, str]) -> None:
    trained = HFEncoder(hf_dirs["siglip"], device="cpu")
    seed = HFEncoder(hf_dirs["siglip"], device="cpu", text_padding="longest")
    assert trained.tokenize(["a cat", "a dog on a mat"])["input_ids"].shape == (2, 64)
    assert seed.tokenize(["a cat", "a dog on a mat"])["input_ids"].shape == (2, 7)
    # SigLIP pools the last position, so padding changes the embedding
    assert not torch.allclose(trained.encode_text(["a cat"]), seed.encode_text(["a cat"]))
    assert trained.fingerprint() != seed.fingerprint()
    with pytest.raises(EncoderError, match="invalid text_padding option 'left'"):
        HFEncoder(hf_dirs["siglip"], device="cpu", text_padding="left")


def test_clip_truncation_counted(hf_dirs: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    enc = HFEncoder(hf_dirs["clip"], device="cpu")
    assert enc.tokenize(["a cat", LONG])["input_ids"].shape == (2, 77)
    with caplog.at_level(logging.WARNING):
        out = enc.encode_text(["a cat", LONG])
    assert out.shape == (2, 16)
    assert enc.text_stats() == {"texts": 2, "truncated": 1}
    assert "1 of 2 texts exceed 77 tokens" in caplog.text


def test_hf_fingerprint(hf_dirs: dict[str, str], tmp_path: Path) -> None:
    path = hf_dirs["clip"]
    base = HFEncoder(path, device="cpu")
    assert base.fingerprint() == HFEncoder(path, device="cpu").fingerprint()
    copy = shutil.copytree(path, tmp_path / "copy")
    assert HFEncoder(str(copy), device="cpu").fingerprint_hash() == base.fingerprint_hash()
    fp = base.fingerprint()
    assert fp["tokenizer"]["max_length"] == 77 and fp["tokenizer"]["padding"] == "longest"
    assert fp["image_processor"]["crop_size"] == {"height": 32, "width": 32}
    variants = [
        HFEncoder(path, device="cpu", max_length=32),
        HFEncoder(path, device="cpu", precision="bf16"),
        HFEncoder(make_tiny_hf_clip(tmp_path / "reseeded", seed=1), device="cpu"),
    ]
    assert len({base.fingerprint_hash(), *(v.fingerprint_hash() for v in variants)}) == 4


def test_hf_unsupported_model_type(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig().save_pretrained(str(tmp_path))
    with pytest.raises(
        EncoderError, match=r"is a 'bert' model; HFEncoder supports \['clip', 'siglip'\]"
    ):
        HFEncoder(str(tmp_path))


# --------------------------------------------------------------------------- hub, offline


def _fake_hub_cache(
    cache: Path, repo: str, files_from: str, commit: str = "c0ffee" * 6 + "abcd"
) -> str:
    """Lay out ``files_from`` as a cached snapshot of hub repo ``repo``."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(files_from, root / "snapshots" / commit)
    return commit


def test_hub_model_loads_from_cache_offline(hf_dirs: dict[str, str], tmp_path: Path) -> None:
    commit = _fake_hub_cache(tmp_path / "cache", "org/tiny-clip", hf_dirs["clip"])
    assert hub_commit("org/tiny-clip", "config.json", cache_dir=str(tmp_path / "cache")) == commit
    enc = HFEncoder("org/tiny-clip", device="cpu", cache_dir=str(tmp_path / "cache"))
    local = HFEncoder(hf_dirs["clip"], device="cpu")
    assert torch.equal(enc.encode_text(TEXTS), local.encode_text(TEXTS))
    assert enc.fingerprint()["checkpoint"] == {
        "source": "hub",
        "repo": "org/tiny-clip",
        "revision": None,
        "commit": commit,
    }


@pytest.mark.parametrize(
    "build,named,command",
    [
        (
            lambda c: HFEncoder("openai/clip-vit-base-patch16", cache_dir=c),
            "'openai/clip-vit-base-patch16'",
            "`hf download openai/clip-vit-base-patch16`",
        ),
        (
            lambda c: OpenClipEncoder("hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K", cache_dir=c),
            "'hf-hub:laion/CLIP-ViT-L-14-laion2B-s32B-b82K'",
            "`hf download laion/CLIP-ViT-L-14-laion2B-s32B-b82K`",
        ),
        (
            lambda c: OpenClipEncoder("ViT-B-16", "laion2b_s34b_b88k", cache_dir=c),
            "'ViT-B-16/laion2b_s34b_b88k'",
            "open_clip.create_model_and_transforms('ViT-B-16', pretrained='laion2b_s34b_b88k')",
        ),
    ],
)
def test_hub_offline_fails_fast(build, named: str, command: str, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(EncoderError) as err:
        build(str(tmp_path / "empty_cache"))
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert f"model {named} is not in the local cache" in msg
    assert "HF_HUB_OFFLINE is set" in msg and command in msg


def test_hub_unreachable_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(EncoderError, match="google/siglip-so400m-patch14-384.*hub is unreachable"):
        HFEncoder("google/siglip-so400m-patch14-384", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 5


def test_hub_errors_wraps_loader_failures() -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(
        EncoderError,
        match="cannot load model 'org/m': LocalEntryNotFoundError: gone. .*hf download org/m",
    ):
        with hub_errors("org/m", download_hint("org/m")):
            raise LocalEntryNotFoundError("gone")
    with pytest.raises(EncoderError) as err:
        with hub_errors("/some/dir"):
            raise OSError("bad weights")
    assert "bad weights" in str(err.value) and "hf download" not in str(err.value)


# --------------------------------------------------------------------------- registry


def test_registry(hf_dirs: dict[str, str], registries_restored: None) -> None:
    enc = build_encoder("hf", model_id_or_path=hf_dirs["clip"], device="cpu")
    assert isinstance(enc, HFEncoder) and enc.dim == 16
    with pytest.raises(
        EncoderError,
        match=r"unknown encoder backend 'clip'; known: \[.*'hf', 'mteb', 'open_clip', 'precomputed', 'st', 'toy', 'vlm2vec'",
    ):
        build_encoder("clip")
    with pytest.raises(EncoderError, match="encoder backend 'hf': bad options.*'resolution'"):
        build_encoder("hf", model_id_or_path=hf_dirs["clip"], resolution=224)

    def factory(path: str) -> HFEncoder:
        return HFEncoder(path, device="cpu", text_padding="max_length")

    register_encoder("test_padded_clip", factory)
    built = build_encoder("test_padded_clip", path=hf_dirs["clip"])
    assert built.tokenize(["a cat"])["input_ids"].shape == (1, 77)
    with pytest.raises(EncoderError, match="'test_padded_clip' is already registered"):
        register_encoder("test_padded_clip", lambda: None)
