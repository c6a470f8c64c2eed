"""A procedural world of coloured shapes: scenes, their renderings and two caption styles.

A scene is a background colour plus one or two groups of identical shapes (count, size,
colour, shape), each group in a region of the picture. Its *key* (background + groups) is its
meaning: two scenes with the same key differ only in layout, shade and background pattern.

Each scene is described in two styles, as queries and documents differ in MixBench:

* a SHORT query caption ("two small red circles on a blue background"), and
* a LONG document description in a descriptive style ("The image shows a striped blue
  background. On the left there are two small red circles. ...") that adds the regions and the
  background pattern, is sometimes vaguer about counts and ends with filler sentences.

Everything is drawn from a ``random.Random`` passed in, so a seed fixes every pixel and word.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SIZE = 64  # rendered side in pixels
_SUPERSAMPLE = 2  # draw at 2x and downscale, for anti-aliased edges

OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 230),
    "gray": (128, 128, 128),
    "black": (30, 30, 35),
    "blue": (60, 110, 200),
    "green": (70, 150, 80),
    "yellow": (230, 210, 90),
    "pink": (235, 160, 190),
    "brown": (130, 85, 50),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = {"small": 4.5, "large": 8.0}  # radius in pixels at SIZE
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
PATTERNS = ("plain", "striped", "speckled")
# (name in text, box as fractions of the picture: x0, y0, x1, y1)
REGIONS = {
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
    "centre": (0.2, 0.2, 0.8, 0.8),
}
_OPPOSITE_PAIRS = (("left", "right"), ("top", "bottom"))


@dataclass(frozen=True)
class Group:
    """``count`` identical shapes of one size and colour."""

    count: int
    size: str
    colour: str
    shape: str

    def phrase(self, vague: bool = False) -> str:
        """``"two small red circles"``; ``vague`` says "several" instead of the count."""
        if self.count == 1:
            return f"a {self.size} {self.colour} {self.shape}"
        noun = self.shape + ("es" if self.shape.endswith("s") else "s")
        return f"{'several' if vague else COUNT_WORDS[self.count]} {self.size} {self.colour} {noun}"


@dataclass(frozen=True)
class Scene:
    """A scene's meaning (``background`` + ``groups``) and its non-semantic details."""

    background: str
    groups: tuple[Group, ...]
    regions: tuple[str, ...]
    pattern: str

    @property
    def key(self) -> tuple:
        """The semantic identity used to keep splits disjoint (layout and pattern excluded)."""
        return (
            self.background,
            tuple(sorted((g.count, g.size, g.colour, g.shape) for g in self.groups)),
        )


def sample_scene(rng: random.Random) -> Scene:
    """Draw a random scene: one group (40%) or two groups in opposite regions (60%)."""
    background = rng.choice(sorted(BACKGROUNDS))
    colours = [c for c in sorted(OBJECT_COLOURS) if c != background]
    n_groups = 1 if rng.random() < 0.4 else 2
    groups: list[Group] = []
    while len(groups) < n_groups:
        g = Group(
            rng.randint(1, 3), rng.choice(sorted(SIZES)), rng.choice(colours), rng.choice(SHAPES)
        )
        if all((g.colour, g.shape) != (h.colour, h.shape) for h in groups):
            groups.append(g)
    if n_groups == 1:
        regions: tuple[str, ...] = (rng.choice(sorted(REGIONS)),)
    else:
        pair = rng.choice(_OPPOSITE_PAIRS)
        regions = pair if rng.random() < 0.5 else pair[::-1]
    return Scene(background, tuple(groups), regions, rng.choice(PATTERNS))


def sibling(scene: Scene, rng: random.Random) -> Scene:
    """A near-duplicate of ``scene``: one attribute of one group changed (a hard distractor)."""
    groups = list(scene.groups)
    k = rng.randrange(len(groups))
    g = groups[k]
    attribute = rng.choice(("count", "size", "colour", "shape"))
    if attribute == "count":
        g = Group(rng.choice([c for c in COUNT_WORDS if c != g.count]), g.size, g.colour, g.shape)
    elif attribute == "size":
        g = Group(g.count, "large" if g.size == "small" else "small", g.colour, g.shape)
    elif attribute == "colour":
        free = [c for c in sorted(OBJECT_COLOURS) if c not in (g.colour, scene.background)]
        g = Group(g.count, g.size, rng.choice(free), g.shape)
    else:
        g = Group(g.count, g.size, g.colour, rng.choice([s for s in SHAPES if s != g.shape]))
    groups[k] = g
    if len({(h.colour, h.shape) for h in groups}) < len(groups):  # two groups became one kind
        return sibling(scene, rng)
    return Scene(scene.background, tuple(groups), scene.regions, rng.choice(PATTERNS))


def _shape_points(shape: str, cx: float, cy: float, r: float, rng: random.Random) -> list:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    if shape == "cross":
        w = 0.38 * r
        return [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w),
            (cx + r, cy + w), (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r),
            (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w),
        ]  # fmt: skip
    raise ValueError(f"unknown shape {shape!r}")


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def _place(scene: Scene, rng: random.Random) -> list[tuple[Group, float, float, float]]:
    """Centres and radii of every shape, inside its region and (when possible) not overlapping."""
    placed: list[tuple[Group, float, float, float]] = []
    for group, region in zip(scene.groups, scene.regions, strict=True):
        x0, y0, x1, y1 = (v * SIZE for v in REGIONS[region])
        for _ in range(group.count):
            r = SIZES[group.size] * rng.uniform(0.9, 1.1)
            for _attempt in range(30):  # rejection sampling; the last try is kept if all overlap
                cx = rng.uniform(x0 + r + 1, x1 - r - 1)
                cy = rng.uniform(y0 + r + 1, y1 - r - 1)
                if all(
                    (cx - px) ** 2 + (cy - py) ** 2 > (r + pr + 1) ** 2 for _, px, py, pr in placed
                ):
                    break
            placed.append((group, cx, cy, r))
    return placed


def render(scene: Scene, rng: random.Random) -> Image.Image:
    """Draw ``scene`` as a ``SIZE`` x ``SIZE`` RGB image (layout and shading from ``rng``)."""
    s = _SUPERSAMPLE
    bg = _jitter(BACKGROUNDS[scene.background], rng, 10)
    img = Image.new("RGB", (SIZE * s, SIZE * s), bg)
    draw = ImageDraw.Draw(img)
    if scene.pattern == "striped":
        shade = tuple(max(0, c - 35) for c in bg)
        step = rng.randint(5, 8) * s
        for x in range(rng.randrange(step), SIZE * s * 2, step):
            draw.line([(x, 0), (x - SIZE * s, SIZE * s)], fill=shade, width=s)
    elif scene.pattern == "speckled":
        for _ in range(90):
            x, y = rng.randrange(SIZE * s), rng.randrange(SIZE * s)
            draw.rectangle([x, y, x + s, y + s], fill=_jitter(bg, rng, 60))
    for group, cx, cy, r in _place(scene, rng):
        fill = _jitter(OBJECT_COLOURS[group.colour], rng, 18)
        if group.shape == "circle":
            draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=fill)
        else:
            draw.polygon(
                [(x * s, y * s) for x, y in _shape_points(group.shape, cx, cy, r, rng)], fill=fill
            )
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


_CAPTION_TEMPLATES = (
    "{objs} on a {bg} background",
    "a {bg} background with {objs}",
    "{objs} against a {bg} backdrop",
    "{objs}, {bg} background",
)


def caption(scene: Scene, rng: random.Random) -> str:
    """The short query-style caption: every group and the background, nothing else."""
    objs = " and ".join(g.phrase() for g in rng.sample(scene.groups, len(scene.groups)))
    return rng.choice(_CAPTION_TEMPLATES).format(objs=objs, bg=scene.background)


_OPENERS = ("The image shows {bg}.", "This picture depicts {bg}.", "In this image we see {bg}.")
_REGION_PHRASES = {
    "left": "On the left side",
    "right": "On the right side",
    "top": "Near the top",
    "bottom": "Along the bottom",
    "centre": "In the middle of the frame",
}
FILLER_SENTENCES = (
    "The shapes are drawn with flat colours and crisp edges.",
    "Nothing else is visible in the frame.",
    "The composition looks simple and tidy.",
    "The scene is evenly lit, with no shadows.",
    "The arrangement feels calm and balanced.",
    "It resembles a page from a children's picture book.",
)


def description(scene: Scene, rng: random.Random) -> str:
    """The document-style description: regions, pattern, vaguer counts, filler.

    Styles vary between documents as in real corpora: a third are terse one-liners close to the
    query style, the rest are several sentences with zero to three filler sentences.
    """
    pattern = "" if scene.pattern == "plain" else scene.pattern + " "
    background = f"a {pattern}{scene.background} background"
    if rng.random() < 1 / 3:
        objs = " and ".join(g.phrase() for g in scene.groups)
        return rng.choice(_OPENERS).format(bg=f"{objs} on {background}")
    sentences = [rng.choice(_OPENERS).format(bg=background)]
    for group, region in zip(scene.groups, scene.regions, strict=True):
        # documents are not always precise about counts
        what = group.phrase(vague=group.count > 1 and rng.random() < 0.3)
        verb = "is" if group.count == 1 else "are"
        sentences.append(f"{_REGION_PHRASES[region]} there {verb} {what}.")
    sentences += rng.sample(FILLER_SENTENCES, rng.randint(0, 3))
    return " ".join(sentences)
