"""A small deterministic encoder for extraction and cache tests, and a job runner.

Text: hashed character trigrams (CRC-32, stable across processes) through a fixed random
projection. Image: a 16x16 RGB resize through a fixed random linear map. It counts its calls
and encoded items, can append them to a file shared between processes, can sleep per batch
(to make concurrent jobs overlap) and can raise after N batches to simulate a killed job.

Run as a script (``python tests/fake_encoder.py SPEC_JSON``) it performs one extraction job in
a fresh process and prints a JSON summary; the tests use it for crash and concurrency checks.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mixsearch.encoders.base import Encoder

N_BUCKETS = 257
SIDE = 16


class SimulatedKill(RuntimeError):
    """Raised by :class:`FakeEncoder` after ``fail_after_batches`` batches."""


class Resize16:
    """Picklable transform: RGB PIL image -> float tensor (3, 16, 16) in [0, 1]."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        small = img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        arr = np.asarray(small, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


class FakeEncoder(Encoder):
    """Deterministic toy :class:`Encoder`; equal ``seed`` gives equal embeddings."""

    name = "fake"

    def __init__(
        self,
        dim: int = 8,
        seed: int = 0,
        *,
        fail_after_batches: int | None = None,
        delay: float = 0.0,
        counter_file: str | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        self._dim = dim
        self.seed = seed
        self._text_proj = torch.from_numpy(rng.standard_normal((N_BUCKETS, dim), np.float32))
        self._image_proj = torch.from_numpy(rng.standard_normal((3 * SIDE * SIDE, dim), np.float32))
        self.fail_after_batches = fail_after_batches
        self.delay = delay
        self.counter_file = counter_file
        self.batches = 0
        self.encoded = {"text": 0, "image": 0}

    @property
    def dim(self) -> int:
        return self._dim

    def _tick(self, kind: str, n: int) -> None:
        if self.fail_after_batches is not None and self.batches >= self.fail_after_batches:
            raise SimulatedKill(f"simulated kill after {self.batches} batches")
        self.batches += 1
        self.encoded[kind] += n
        if self.counter_file:
            with open(self.counter_file, "a") as f:  # one short O_APPEND write per batch
                f.write(f"{os.getpid()} {kind} {n}\n")
        if self.delay:
            time.sleep(self.delay)

    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        self._tick("text", len(texts))
        feats = torch.zeros(len(texts), N_BUCKETS)
        for row, text in enumerate(texts):
            padded = f"  {text} "
            for i in range(len(padded) - 2):
                feats[row, zlib.crc32(padded[i : i + 3].encode()) % N_BUCKETS] += 1.0
        return (feats @ self._text_proj).float()

    def image_transform(self) -> Resize16:
        return Resize16()

    def encode_image(self, pixels: torch.Tensor, role: str = "document") -> torch.Tensor:
        self._tick("image", len(pixels))
        return (pixels.flatten(1) @ self._image_proj).float()

    def fingerprint(self) -> dict:
        return {"backend": "fake", "dim": self._dim, "seed": self.seed, "image_side": SIDE}


def from_model_config(checkpoint: str | None = None, device: str = "cpu", delay: float = 0.0,
                      go_file: str | None = None) -> FakeEncoder:
    """A :class:`FakeEncoder` as a ``model._target_`` over the toy model's config section
    (whose ``checkpoint`` and ``device`` keys it accepts; it runs on the CPU). With
    ``go_file``, it is built only once that file exists: a job can start (imports, data)
    ahead of the moment a test wants its extraction to run."""
    if checkpoint is not None or device not in ("cpu", "auto"):
        raise ValueError(f"fake encoder: no checkpoint ({checkpoint!r}), CPU only ({device!r})")
    while go_file and not os.path.exists(go_file):
        time.sleep(0.02)
    return FakeEncoder(delay=delay)


class FakeJointEncoder(FakeEncoder):
    """A fake universal embedder: role-specific instructions, joint image+text embeddings and
    its own ``collate_images`` (the list path VLM backends take).

    Queries get the instruction prefix ``"query: "``; a joint embedding is the text's plus
    twice the image's raw embedding (not a convex mix, so it differs from α-fusion).
    """

    name = "fake-joint"
    supports_joint = True
    QUERY_PREFIX = "query: "

    def encode_text(self, texts: list[str], role: str = "document") -> torch.Tensor:
        prefix = self.QUERY_PREFIX if role == "query" else ""
        return super().encode_text([prefix + t for t in texts], role)

    def collate_images(self, items: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(items)

    def encode_joint(self, texts: list[str], images: torch.Tensor, role: str = "document") -> torch.Tensor:
        self.encoded.setdefault("joint", 0)
        self.encoded["joint"] += len(texts)
        return self.encode_text(texts, role) + 2 * self.encode_image(images, role)

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "backend": "fake-joint", "query_prefix": self.QUERY_PREFIX}


def counted(counter_file: str | Path) -> int:
    """Total items encoded by all processes that appended to ``counter_file``."""
    path = Path(counter_file)
    if not path.exists():
        return 0
    return sum(int(line.split()[2]) for line in path.read_text().splitlines())


def run_job(spec: dict) -> dict:
    """One image extraction job as described by ``spec`` (see the tests for the keys)."""
    from mixsearch.data.benchmark import ImageRef, Record
    from mixsearch.embed.cache import EmbeddingCache
    from mixsearch.embed.extract import embed_records

    if spec.get("crash_on"):
        # Die like a killed process (no cleanup) right before the rename of that file.
        real_replace = os.replace

        def dying_replace(src, dst):
            if str(dst).endswith(spec["crash_on"]):
                os._exit(3)
            real_replace(src, dst)

        os.replace = dying_replace
    records = [Record(id=Path(p).stem, image=ImageRef(path=p)) for p in spec["images"]]
    enc = FakeEncoder(delay=spec.get("delay", 0.0), counter_file=spec.get("counter"))
    while spec.get("go_file") and not os.path.exists(spec["go_file"]):
        time.sleep(0.01)  # start barrier, so concurrent jobs really overlap
    stats: dict = {}
    emb = embed_records(
        enc,
        records,
        "image",
        cache=EmbeddingCache(spec["cache"]),
        dataset_key="fake-ds",
        split="corpus",
        batch_size=spec.get("batch_size", 2),
        part_size=spec["part_size"],
        amp="none",
        progress=False,
        stats=stats,
    )
    assert emb is not None
    return {"encoded": stats["encoded_items"], "ids": emb.ids, "vectors": emb.vectors.tolist()}


if __name__ == "__main__":
    print(json.dumps(run_job(json.loads(sys.argv[1]))))
