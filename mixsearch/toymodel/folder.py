"""A demo folder for ``python -m mixsearch index``: toy-world pictures (``images/*.png``) and
descriptions of other toy scenes (``texts/*.txt``), which the shipped toy CLIP understands.

    python -m mixsearch.toymodel.folder demo_folder --images 20 --texts 20
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from mixsearch.toymodel.world import Group, Scene, description, render, sample_scene

# The first picture and the first text show a red circle, so "a red circle" has answers of
# both modalities whatever the seed.
_RED_CIRCLE = Scene("white", (Group(1, "large", "red", "circle"),), ("centre",), "plain")


def write_toy_folder(out: str | Path, *, images: int = 20, texts: int = 20, seed: int = 0) -> Path:
    """Write ``images`` PNG pictures and ``texts`` text files of toy scenes under ``out``."""
    out = Path(out)
    rng = random.Random(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "texts").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        scene = _RED_CIRCLE if i == 0 else sample_scene(rng)
        render(scene, rng).save(out / "images" / f"scene_{i:03d}.png")
    for i in range(texts):
        scene = _RED_CIRCLE if i == 0 else sample_scene(rng)
        (out / "texts" / f"note_{i:03d}.txt").write_text(description(scene, rng) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mixsearch.toymodel.folder", description=__doc__)
    p.add_argument("out")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--texts", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(write_toy_folder(a.out, images=a.images, texts=a.texts, seed=a.seed))


if __name__ == "__main__":
    main()
