"""mteb and Sentence Transformers backends, family model names and download commands, offline.

mteb: its random baseline (no weights; vectors from a content hash). Sentence Transformers: a
tiny CLIP (text and image) and a tiny Qwen2-VL with a chat template (text, image and joint).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_models import make_tiny_st_clip, make_tiny_st_vlm

from mixsearch.encoders import EncoderError, build_encoder

ROOT = Path(__file__).resolve().parents[1]
RANDOM = "mteb/baseline-random-encoder"
TEXTS = ["a cat on a mat", "a photo of a dog", "Nate Ebner, List of Jews in sports"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(enc, n: int = 3) -> list:
    transform = pickle.loads(pickle.dumps(enc.image_transform()))
    return enc.collate_images([transform(Image.new("L", (40 + 9 * i, 50), 60 * i)) for i in range(n)])


# --------------------------------------------------------------------------- mteb


@pytest.fixture(scope="module")
def random_enc():
    from mixsearch.encoders.mteb import MtebEncoder

    return MtebEncoder(RANDOM, device="cpu")


def test_mteb_random_baseline_embeds_from_content_hashes(random_enc) -> None:
    """mteb's random baseline: text -> RNG(sha256(text)), image -> RNG(hash of its pixels),
    joint -> their mean. Recomputed here from mteb's hash functions: the images reach the
    model losslessly and both parts of a joint item arrive together. A mean of the two is no
    joint embedding, so the backend refuses fusion=joint for it."""
    from mteb._content_hashes import hash_image, hash_item
    from mteb.models.model_implementations.random_baseline import _key_to_vector

    assert random_enc.dim == 32 and not random_enc.supports_joint
    assert random_enc.joint_check()["span_residual"] < 1e-6
    text = random_enc.encode_text(TEXTS, role="query")
    ref_text = torch.stack([torch.from_numpy(_key_to_vector(hash_item({"text": t}), 32)) for t in TEXTS])
    torch.testing.assert_close(text, ref_text)
    images = _images(random_enc)
    image = random_enc.encode_image(images)
    ref_image = torch.stack([torch.from_numpy(_key_to_vector(hash_image(im), 32)) for im in images])
    torch.testing.assert_close(image, ref_image)
    torch.testing.assert_close(random_enc._encode("joint", "document", TEXTS, images),
                               (ref_text + ref_image) / 2)
    with pytest.raises(EncoderError, match="combination of the item's text and image embeddings"):
        random_enc.encode_joint(TEXTS, images)
    assert random_enc.encode_text([]).shape == (0, 32)


def test_mteb_bars_are_silenced_with_progress_off(random_enc, capfd) -> None:
    """mteb draws an "Encoding batches" bar even with show_progress_bar=False; with
    embed.progress=false (progress_bars_off) it draws none, and the vectors are the same."""
    from mixsearch.logs import progress_bars_off

    shown = random_enc.encode_text(TEXTS, role="query")
    assert "Encoding batches" in capfd.readouterr().err
    with progress_bars_off():
        quiet = random_enc.encode_text(TEXTS, role="query")
    assert capfd.readouterr().err == ""
    torch.testing.assert_close(quiet, shown)


def test_mteb_embeddings_are_deterministic_across_instances(random_enc) -> None:
    """Same input, same vector, in a new encoder (what the embedding cache relies on)."""
    from mixsearch.encoders.mteb import MtebEncoder

    other = MtebEncoder(RANDOM, device="cpu")
    torch.testing.assert_close(other.encode_text(TEXTS), random_enc.encode_text(TEXTS), atol=0, rtol=0)
    assert other.fingerprint_hash() == random_enc.fingerprint_hash()


def test_mteb_task_metadata_carries_modality_and_instructions(random_enc) -> None:
    from mteb.types import PromptType

    for modality, category in (("text", "t2t"), ("image", "i2i"), ("joint", "it2it")):
        task = random_enc._task(modality)
        assert task.category == category and task.type == "Any2AnyRetrieval"
        assert task.get_modalities(PromptType.query) == task.get_modalities(PromptType.document)
    assert random_enc._task("text").prompt == {"query": "Retrieve a relevant item that represents the query."}
    fp = random_enc.fingerprint()
    assert fp["backend"] == "mteb" and fp["revision"] == "2" and fp["mteb_version"]
    from mixsearch.encoders.mteb import MtebEncoder

    changed = MtebEncoder(RANDOM, device="cpu", instructions={"query": "Find it.", "document": "Doc."})
    assert changed._task("text").prompt == {"query": "Find it.", "document": "Doc."}
    assert changed.fingerprint_hash() != random_enc.fingerprint_hash()
    d = random_enc.describe()
    assert d["model_meta"]["license"] == "mit" and not d["supports_joint"]
    assert d["joint_check"]["joint"] is False and d["joint_check"]["span_residual"] < 1e-6


def test_mteb_errors_name_the_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mixsearch.encoders.mteb import MtebEncoder

    with pytest.raises(EncoderError, match="mteb has no model 'no-such/model-xyz'"):
        MtebEncoder("no-such/model-xyz", device="cpu")
    with pytest.raises(EncoderError, match="unknown role"):
        MtebEncoder(RANDOM, device="cpu", instructions={"passage": "x"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderError) as e:
        build_encoder("mteb", name="Qwen/Qwen3-VL-Embedding-2B", device="cpu")
    assert "hf download Qwen/Qwen3-VL-Embedding-2B --revision 9f2f7e710d6d81056aa5c0a4f04764fec6bb7bda" in str(e.value)


# --------------------------------------------------------------------------- Sentence Transformers


@pytest.fixture(scope="module")
def st_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("st")
    return {"clip": make_tiny_st_clip(root / "clip"), "vlm": make_tiny_st_vlm(root / "vlm")}


def test_st_dual_model_embeds_text_and_images_but_not_jointly(st_models: dict[str, str]) -> None:
    from mixsearch.encoders.st import STEncoder

    enc = STEncoder(st_models["clip"], device="cpu", prompts={"query": "query: "})
    assert enc.dim == 16 and not enc.supports_joint
    text = enc.encode_text(TEXTS, role="query")
    assert text.shape == (3, 16) and text.dtype == torch.float32
    # the query prompt is prepended to the text: the same vector as a prompted document
    torch.testing.assert_close(text, enc.encode_text([f"query: {t}" for t in TEXTS]), atol=1e-6, rtol=0)
    images = _images(enc)
    assert enc.encode_image(images).shape == (3, 16)
    with pytest.raises(EncoderError, match="joint"):
        enc.encode_joint(TEXTS, images)


def test_st_multimodal_model_embeds_joint_items(st_models: dict[str, str]) -> None:
    from mixsearch.encoders.st import STEncoder

    enc = STEncoder(st_models["vlm"], device="cpu")
    assert enc.supports_joint and enc.dim == 32
    images = _images(enc)
    joint = enc.encode_joint(TEXTS, images)
    assert joint.shape == (3, 32)
    assert not torch.allclose(joint, enc.encode_image(images), atol=1e-3)
    assert not torch.allclose(joint, enc.encode_text(TEXTS), atol=1e-3)
    singles = torch.cat([enc.encode_joint([t], [im]) for t, im in zip(TEXTS, images, strict=True)])
    torch.testing.assert_close(joint, singles, atol=1e-5, rtol=0)


def test_st_fingerprint_and_offline_errors(st_models: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    from mixsearch.encoders.st import STEncoder

    a = STEncoder(st_models["clip"], device="cpu")
    b = STEncoder(st_models["clip"], device="cpu", prompts={"document": "passage: "})
    assert a.fingerprint()["checkpoint"]["source"] == "local"
    assert a.fingerprint_hash() == STEncoder(st_models["clip"], device="cpu").fingerprint_hash()
    assert a.fingerprint_hash() != b.fingerprint_hash()
    assert b.prompts == {"query": "", "document": "passage: "}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderError, match="hf download sentence-transformers/clip-ViT-L-14"):
        build_encoder("st", name="sentence-transformers/clip-ViT-L-14", device="cpu")


# --------------------------------------------------------------------------- configs, download


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MIXSEARCH_DATA_DIR=str(tmp / "data"), MIXSEARCH_CACHE_DIR=str(tmp / "cache"),
               MIXSEARCH_LOG_DIR=str(tmp / "outputs"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf"),
               WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    return env


@pytest.mark.slow
def test_family_names_fail_at_once_naming_their_hub_model(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "run.py", "-m", "model=clip,siglip,openclip", "embed.progress=false",
         "preflight=false"],  # the jobs' own messages (the preflight's list: test_preflight)
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0
    statuses = {json.loads(p.read_text())["overrides"][0]: json.loads(p.read_text())
                for p in (tmp_path / "outputs").rglob("status.json")}
    expected = {"model=clip": "hf download openai/clip-vit-large-patch14-336",
                "model=siglip": "hf download google/siglip-so400m-patch14-384",
                "model=openclip": "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"}
    assert set(statuses) == set(expected)
    for override, needle in expected.items():
        assert statuses[override]["status"] == "failed" and needle in statuses[override]["error"]


def test_download_prints_and_checks_the_new_models(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "experiments.download", "--print",
         "--models", "vlm2vec_qwen2vl_7b,vlm2vec_llava_next,gme_qwen2vl_2b,toy"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert printed.stdout.splitlines() == [
        "hf download Qwen/Qwen2-VL-7B-Instruct",
        "hf download TIGER-Lab/VLM2Vec-Qwen2VL-7B",
        "hf download TIGER-Lab/VLM2Vec-LLaVa-Next",
        "hf download Alibaba-NLP/gme-Qwen2-VL-2B-Instruct --revision ce765ae71b8cdb208203cd8fb64a170b1b84293a",
    ]
    checked = subprocess.run(
        [sys.executable, "-m", "experiments.download", "--check", "--models", "vlm2vec_qwen2vl_7b"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert checked.returncode == 2
    assert ("run: hf download Qwen/Qwen2-VL-7B-Instruct && hf download TIGER-Lab/VLM2Vec-Qwen2VL-7B"
            in checked.stderr)


# --------------------------------------------------------------------------- run.py end to end


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "run.py", *args, "embed.progress=false"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _metrics(tmp: Path, n: int) -> list[dict]:
    found = sorted((tmp / "outputs").rglob("metrics.json"), key=lambda p: p.stat().st_mtime_ns)
    assert len(found) == n
    return [json.loads(p.read_text()) for p in found]


@pytest.mark.slow
def test_run_mteb_random_baseline_weighted_and_joint_refused(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _run(["model=mteb", f"model.name={RANDOM}"], env)
    (m,) = _metrics(tmp_path, 1)
    # chance level on the toy benchmark (600 documents, one relevant each)
    assert 0 <= m["metrics"]["ndcg@10"] < 0.05
    assert m["encoder"]["backend"] == "mteb" and m["encoder"]["model"] == RANDOM
    assert m["encoder"]["compute"]["gflops_per_text"] == 0.0  # a hash, no model
    assert m["encoder"]["supports_joint"] is False
    # its "joint" vector is the mean of its text and image vectors: refused before extraction
    joint = subprocess.run([sys.executable, "run.py", "model=mteb", f"model.name={RANDOM}",
                            "fusion=joint", "embed.progress=false"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=900)
    assert joint.returncode != 0
    assert "fusion=joint" in joint.stderr and "cannot embed image+text items jointly" in joint.stderr
    _metrics(tmp_path, 1)


@pytest.mark.slow
def test_run_vlm2vec_recipe_on_a_tiny_qwen2vl(tmp_path: Path) -> None:
    from tiny_models import make_tiny_qwen2vl

    model = make_tiny_qwen2vl(tmp_path / "qwen")
    _run(["model=vlm2vec_qwen2vl_7b", f"model.model_id_or_path={model}", "model.adapter=null",
          "model.image_size=56", "model.precision=fp32", "fusion=joint", "device=cpu"],
         _env(tmp_path))
    (m,) = _metrics(tmp_path, 1)
    assert m["encoder"]["backend"] == "vlm2vec" and m["encoder"]["image_resize"] == 56
    compute = m["encoder"]["compute"]
    assert compute["gflops_per_text"] > 0 and compute["gflops_per_image"] > 0
    assert compute["parameters"] == m["encoder"]["parameters"] > 0
    assert 0 <= m["metrics"]["ndcg@10"] <= 1
