"""Corpus mixing: which modality each document shows in a run.

Every loader yields the full corpus (each doc with all the content its release has). A corpus
mode decides, per doc, whether a run shows its text, its image or both:

* ``released``: the benchmark's shipped ``mixed_corpus`` (MixBench; remainders go to image+text).
* ``remix``: a seeded reassignment text : image : image+text (the seed code re-mixes itself).
* ``replace``: setting 1 of the paper (every doc unimodal, a fraction ``p`` shown as an image
  or a rendered screenshot of its text).
* ``all_multimodal``: setting 2 (every doc image+text).

``remix`` and ``replace`` draw a seeded permutation over the documents, so the assignment
depends on the order of the documents. ``corpus.order=records`` (default) follows the corpus
file; ``corpus.order=embeddings`` follows the rows of precomputed embeddings, as the seed code
does with its ``.pt`` files. When the two orders differ and ``records`` is used, a warning says
so. A document whose image could not be read (``embed.on_missing=skip``) and that the mix
shows with its image is dropped from the evaluated corpus (:func:`drop_unshowable`).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import random
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

from mixsearch.data.benchmark import MODALITIES, Benchmark, DataError, ImageRef, Record

log = logging.getLogger(__name__)

CORPUS_MODES = ("released", "remix", "replace", "all_multimodal")
CORPUS_ORDERS = ("records", "embeddings")
REPLACE_WITH = ("auto", "image", "screenshot")
# The seed code's setting-1 ratios (retrieval_ushaped_curve_setting_one.py), in its order.
SEED_REPLACE_RATIOS = (0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                       0.95, 0.96, 0.97, 0.98, 0.99, 1.0)
_REMIX_LABELS = ("text", "image", "image+text")


def mix_corpus(
    bench: Benchmark,
    mode: str = "released",
    *,
    ratio: Sequence[float] = (1, 1, 1),
    seed: int = 42,
    p: float = 0.0,
    replace_with: str = "auto",
    order: str = "records",
    embedding_order: Sequence[str] | None = None,
) -> dict[str, str]:
    """Assign each document of ``bench.corpus`` the modality a run shows.

    Args:
        bench: the benchmark; ``bench.corpus`` holds every doc with all its content.
        mode: ``released`` | ``remix`` | ``replace`` | ``all_multimodal`` (module docstring).
        ratio: text : image : image+text weights for ``remix``.
        seed: random seed for ``remix`` and ``replace``.
        p: fraction of docs shown as an image (``replace``).
        replace_with: ``replace`` only: ``image`` (the doc's own image), ``screenshot`` (a
            rendering of its text) or ``auto`` (its image if it has one, else a screenshot).
        order: the document order ``remix`` and ``replace`` permute: ``records`` (the
            corpus file) or ``embeddings`` (``embedding_order``).
        embedding_order: doc ids in the row order of precomputed embeddings, or None when the
            embeddings follow the records (ids it lacks keep their record order, at the end).

    Returns:
        ``{doc_id: "text" | "image" | "image+text"}`` in ``bench.corpus`` order. Screenshot docs
        count as ``"image"``; :func:`doc_image_key` says which embedding they use.

    Raises:
        ValueError: an unknown ``corpus.mode`` / ``corpus.replace_with`` / ``corpus.order``,
            a bad ratio or p, or ``order=embeddings`` without an embedding order.
        DataError: a doc lacks the content its mode needs (names the doc id).
    """
    if order not in CORPUS_ORDERS:
        raise ValueError(f"corpus.order: unknown order {order!r}; choose one of {CORPUS_ORDERS}")
    if mode == "released":
        return _released(bench)
    if mode in ("remix", "replace"):
        records = _permuted_order(bench.corpus, mode, order, embedding_order)
        shown = (_remix(records, ratio, seed) if mode == "remix"
                 else _replace(records, p, seed, replace_with))
        return {r.id: shown[r.id] for r in bench.corpus}
    if mode == "all_multimodal":
        _require(bench.corpus, "text", "corpus.mode=all_multimodal")
        _require(bench.corpus, "image", "corpus.mode=all_multimodal")
        return {r.id: "image+text" for r in bench.corpus}
    raise ValueError(f"corpus.mode: unknown mode {mode!r}; choose one of {CORPUS_MODES}")


def _permuted_order(
    records: Sequence[Record], mode: str, order: str, embedding_order: Sequence[str] | None
) -> Sequence[Record]:
    """The records in the order the seeded permutation applies to."""
    if embedding_order is None:
        if order == "embeddings":
            raise ValueError(
                "corpus.order=embeddings: no embedding order is known (it comes from precomputed "
                "embeddings, model=precomputed); use corpus.order=records"
            )
        return records
    rank = {doc_id: n for n, doc_id in enumerate(embedding_order)}
    by_rows = sorted(records, key=lambda r: rank.get(r.id, len(rank)))  # stable: extras keep order
    if [r.id for r in by_rows] == [r.id for r in records]:
        return records
    if order == "embeddings":
        return by_rows
    first = next(n for n, (a, b) in enumerate(zip(by_rows, records, strict=True)) if a.id != b.id)
    log.warning(
        "corpus.mode=%s assigns modalities in the order of the corpus records (corpus.jsonl), "
        "which differs from the row order of the precomputed embeddings (first at position %d: "
        "%r vs %r): the numbers will differ from the seed code's, which follows its embeddings; "
        "set corpus.order=embeddings to follow them", mode, first, records[first].id,
        by_rows[first].id,
    )
    return records


def drop_unshowable(
    bench: Benchmark, assignment: dict[str, str], skipped: Mapping[str, str]
) -> tuple[Benchmark, dict[str, str], dict[str, str]]:
    """Drop the docs whose image could not be read (``skipped``: id -> reason) and that the
    mix shows with their image (``image`` or ``image+text``).

    Their qrels are kept: a dropped relevant doc is never retrieved, so it counts as a miss
    (as trec_eval counts a judged doc absent from a run).

    Returns:
        ``(benchmark without those docs, their assignment removed, {dropped id: reason})``.
    """
    dropped = {i: why for i, why in skipped.items() if assignment.get(i, "text") != "text"}
    if not dropped:
        return bench, assignment, {}
    keep = [r for r in bench.corpus if r.id not in dropped]
    mixed = bench.mixed_corpus
    bench = dataclasses.replace(
        bench, corpus=keep,
        mixed_corpus=None if mixed is None else [r for r in mixed if r.id not in dropped],
    )
    return bench, {i: m for i, m in assignment.items() if i not in dropped}, dropped


def doc_image_key(record: Record, mode: str, replace_with: str = "auto") -> str:
    """The embedding key (``corpus/image`` or ``corpus/screenshot``) of a doc shown as an image.

    Screenshots exist only in ``replace`` mode: always for ``replace_with=screenshot``, and for
    docs without an image under ``auto``.
    """
    if mode == "replace" and (
        replace_with == "screenshot" or (replace_with == "auto" and record.image is None)
    ):
        return "corpus/screenshot"
    return "corpus/image"


def modality_counts(assignment: dict[str, str]) -> dict[str, int]:
    """Number of docs per modality, every modality listed (zero included)."""
    counts = dict.fromkeys(MODALITIES, 0)
    for doc_id, modality in assignment.items():
        if modality not in counts:
            raise ValueError(f"doc {doc_id!r}: unknown modality {modality!r}")
        counts[modality] += 1
    return counts


def _released(bench: Benchmark) -> dict[str, str]:
    if bench.mixed_corpus is None:
        raise DataError(
            f"corpus.mode=released: benchmark {bench.name} ships no mixed_corpus; "
            "use corpus.mode=remix (seeded re-mix) instead"
        )
    shown = {r.id: r.modality for r in bench.mixed_corpus}
    corpus_ids = {r.id for r in bench.corpus}
    extra = [i for i in shown if i not in corpus_ids]
    if extra:
        raise DataError(f"{bench.name}: mixed_corpus doc {extra[0]!r} is not in the corpus")
    missing = [r.id for r in bench.corpus if r.id not in shown]
    if missing:
        raise DataError(f"{bench.name}: corpus doc {missing[0]!r} is missing from mixed_corpus")
    return {r.id: shown[r.id] for r in bench.corpus}


def _require(records: Sequence[Record], field: str, why: str) -> None:
    for r in records:
        if getattr(r, field) is None:
            raise DataError(f"{why}: doc {r.id!r} has no {field}")


def _remix(records: Sequence[Record], ratio: Sequence[float], seed: int) -> dict[str, str]:
    """Seeded text : image : image+text reassignment.

    The permutation is the seed code's: ``random.seed(seed); perm = random.sample(range(N), N)``
    (a private ``random.Random(seed)`` draws the same sequence without touching global state).

    * Equal weights (1:1:1) use the seed's rule, doc ``perm[i]`` gets label ``i % 3``, which
      reproduces its assignment exactly (remainders go to text, then image).
    * Other weights take contiguous blocks of ``perm``: the first ``round(N·r_t/Σ)`` docs are
      text, the next ``round(N·r_i/Σ)`` image, the rest image+text. The ``i % 3`` interleave
      only makes sense for equal shares, and blocks keep the same permutation for every ratio.
    """
    _require(records, "text", "corpus.mode=remix")
    _require(records, "image", "corpus.mode=remix")
    weights = _check_ratio(ratio)
    n = len(records)
    perm = random.Random(seed).sample(range(n), n)
    labels = [""] * n
    if weights[0] == weights[1] == weights[2]:
        for i, doc in enumerate(perm):
            labels[doc] = _REMIX_LABELS[i % 3]
    else:
        total = sum(weights)
        n_text = round(n * weights[0] / total)
        n_image = min(round(n * weights[1] / total), n - n_text)
        for i, doc in enumerate(perm):
            labels[doc] = _REMIX_LABELS[0 if i < n_text else 1 if i < n_text + n_image else 2]
    return {r.id: label for r, label in zip(records, labels, strict=True)}


def _check_ratio(ratio: Sequence[float]) -> tuple[float, float, float]:
    try:
        weights = tuple(float(x) for x in ratio)
    except (TypeError, ValueError) as e:
        raise ValueError(f"corpus.ratio: expected three numbers, got {ratio!r}") from e
    if len(weights) != 3 or any(w < 0 or not math.isfinite(w) for w in weights) or not sum(weights):
        raise ValueError(
            f"corpus.ratio: expected three non-negative text:image:image+text weights with a "
            f"positive sum, got {ratio!r}"
        )
    return weights  # type: ignore[return-value]


def _replace(records: Sequence[Record], p: float, seed: int, replace_with: str) -> dict[str, str]:
    """Setting 1: a fraction ``p`` of the docs shown as an image, the rest as text.

    The seed code seeds once per sweep and then draws ``random.sample(range(N), int(N*ratio))``
    for each ratio of :data:`SEED_REPLACE_RATIOS` in turn, so the docs replaced at ratio p depend
    on the draws before it. Our sweep points are separate jobs, so each one replays that
    sequence: seed, then draw for every listed ratio up to and including p. A p not in the list
    is drawn once right after seeding.
    """
    if replace_with not in REPLACE_WITH:
        raise ValueError(
            f"corpus.replace_with: unknown value {replace_with!r}; choose one of {REPLACE_WITH}"
        )
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"corpus.p: expected a fraction in [0, 1], got {p!r}")
    _require(records, "text", "corpus.mode=replace (docs not replaced show their text)")
    if replace_with == "image":
        _require(records, "image", "corpus.replace_with=image")
    n = len(records)
    rng = random.Random(seed)
    listed = [r for r in SEED_REPLACE_RATIOS if math.isclose(r, p, rel_tol=0, abs_tol=1e-12)]
    if listed:
        for r in SEED_REPLACE_RATIOS:
            chosen = rng.sample(range(n), int(n * r))
            if r == listed[0]:
                break
    else:
        chosen = rng.sample(range(n), int(n * p))
    shown = ["text"] * n
    for doc in chosen:
        shown[doc] = "image"
    return {r.id: s for r, s in zip(records, shown, strict=True)}


def render_screenshot(text: str, *, width: int = 448, height: int = 448) -> Image.Image:
    """Render a text as a "screenshot": black text, PIL's default font, white background.

    Words wrap greedily at the image width (overlong words break anywhere); lines that do not
    fit the height are cut. Deterministic for a given Pillow install.
    """
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    margin = 8
    left, top, _, bottom = draw.textbbox((0, 0), "Ag", font=font)
    line_height = (bottom - top) + 4
    y = margin
    for line in _wrap(text, draw, font, width - 2 * margin):
        if y + line_height > height - margin:
            break
        draw.text((margin - left, y - top), line, fill="black", font=font)
        y += line_height
    return img


def _wrap(text: str, draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, width: int) -> list[str]:
    def fits(s: str) -> bool:
        return draw.textlength(s, font=font) <= width

    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if fits(candidate):
                line = candidate
                continue
            if line:
                lines.append(line)
            while not fits(word):  # a word wider than the image: break it where it overflows
                cut = max(1, next(i for i in range(1, len(word) + 1) if not fits(word[:i])) - 1)
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def screenshot_records(records: Sequence[Record]) -> list[Record]:
    """Screenshot twins of text records: ``Record(id, image=<PNG of render_screenshot(text)>)``.

    Raises:
        DataError: a record has no text (names its id).
    """
    out = []
    for r in records:
        if r.text is None:
            raise DataError(f"screenshot: record {r.id!r} has no text to render")
        buf = io.BytesIO()
        render_screenshot(r.text).save(buf, format="PNG")
        out.append(Record(r.id, image=ImageRef(data=buf.getvalue(), origin=f"screenshot:{r.id}")))
    return out
