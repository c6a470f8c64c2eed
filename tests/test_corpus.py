"""Corpus mixing: released / remix (seed-exact) / replace (setting 1) / all_multimodal, and
screenshot rendering."""

from __future__ import annotations

import random

import pytest

from mixsearch.corpus import (
    SEED_REPLACE_RATIOS,
    doc_image_key,
    drop_unshowable,
    mix_corpus,
    modality_counts,
    render_screenshot,
    screenshot_records,
)
from mixsearch.data.benchmark import Benchmark, DataError, ImageRef, Record

IMG = ImageRef(data=b"not-decoded", origin="test")


def bench_of(n: int, *, mixed: list[Record] | None = None, corpus: list[Record] | None = None):
    docs = corpus or [Record(str(i), text=f"doc {i}", image=IMG) for i in range(n)]
    return Benchmark("t", queries=[], corpus=docs, qrels={}, mixed_corpus=mixed)


def seed_snippet(n: int) -> dict[int, str]:
    """docs/formats.md §5, verbatim but for the label spelling."""
    corpus = [{} for _ in range(n)]
    random.seed(42)
    perm = random.sample(range(n), n)
    for i in range(n):
        corpus[perm[i]]["mode"] = ["text", "image", "mixed"][i % 3]
    rename = {"text": "text", "image": "image", "mixed": "image+text"}
    return {i: rename[c["mode"]] for i, c in enumerate(corpus)}


@pytest.mark.parametrize(
    ("n", "expected"),
    [(984, (328, 328, 328)), (4421, (1474, 1474, 1473)), (1000, (334, 333, 333)),
     (981, (327, 327, 327))],
)
def test_remix_seed42_reproduces_seed_code(n, expected):
    got = mix_corpus(bench_of(n), "remix", seed=42)
    counts = modality_counts(got)
    assert (counts["text"], counts["image"], counts["image+text"]) == expected
    ref = seed_snippet(n)
    assert got == {str(i): ref[i] for i in range(n)}


def test_remix_leaves_global_random_state_alone():
    random.seed(7)
    before = random.random()
    random.seed(7)
    mix_corpus(bench_of(30), "remix", seed=42)
    assert random.random() == before


@pytest.mark.parametrize(("n", "expected"), [(1000, (700, 200, 100)), (984, (689, 197, 98))])
def test_remix_general_ratio_uses_blocks_of_the_same_permutation(n, expected):
    got = mix_corpus(bench_of(n), "remix", ratio=[70, 20, 10], seed=42)
    c = modality_counts(got)
    assert (c["text"], c["image"], c["image+text"]) == expected
    perm = random.Random(42).sample(range(n), n)
    assert {got[str(d)] for d in perm[: expected[0]]} == {"text"}
    assert {got[str(d)] for d in perm[expected[0] : expected[0] + expected[1]]} == {"image"}
    # equal weights at another scale are the 1:1:1 rule
    assert mix_corpus(bench_of(n), "remix", ratio=[2, 2, 2]) == mix_corpus(bench_of(n), "remix")


def test_remix_needs_both_modalities_and_a_valid_ratio():
    docs = [Record("a", text="x", image=IMG), Record("b", text="only text")]
    with pytest.raises(DataError, match="corpus.mode=remix: doc 'b' has no image"):
        mix_corpus(bench_of(2, corpus=docs), "remix")
    for bad in ([1, 1], [1, -1, 1], [0, 0, 0], ["a", 1, 1]):
        with pytest.raises(ValueError, match="corpus.ratio"):
            mix_corpus(bench_of(3), "remix", ratio=bad)


def test_released_follows_mixed_corpus_and_checks_ids():
    mixed = [Record("0", text="t"), Record("1", image=IMG), Record("2", text="t", image=IMG)]
    assert mix_corpus(bench_of(3, mixed=mixed)) == {"0": "text", "1": "image", "2": "image+text"}
    with pytest.raises(DataError, match="ships no mixed_corpus"):
        mix_corpus(bench_of(3))
    with pytest.raises(DataError, match="corpus doc '2' is missing from mixed_corpus"):
        mix_corpus(bench_of(3, mixed=mixed[:2]))
    with pytest.raises(DataError, match="mixed_corpus doc '9' is not in the corpus"):
        mix_corpus(bench_of(3, mixed=[*mixed, Record("9", text="t")]))


def seed_setting_one(n: int, p: float) -> set[int]:
    """The seed's setting-1 loop: seed once, then one draw per ratio in order."""
    random.seed(42)
    for ratio in [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                  0.95, 0.96, 0.97, 0.98, 0.99, 1.0]:
        chosen = random.sample(range(n), int(n * ratio))
        if ratio == p:
            return set(chosen)
    raise AssertionError(p)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.7, 0.95, 0.99, 1.0])
def test_replace_replays_the_seed_sweep(p):
    n = 3633
    got = mix_corpus(bench_of(n), "replace", p=p, seed=42)
    images = {int(i) for i, m in got.items() if m == "image"}
    assert len(images) == int(n * p)
    assert images == seed_setting_one(n, p)
    assert set(got.values()) <= {"text", "image"}
    assert got == mix_corpus(bench_of(n), "replace", p=p, seed=42)


def test_replace_p_off_the_list_draws_once_after_seeding():
    got = mix_corpus(bench_of(500), "replace", p=0.33, seed=3)
    random.seed(3)
    expected = set(random.sample(range(500), int(500 * 0.33)))
    assert {int(i) for i, m in got.items() if m == "image"} == expected
    assert len(SEED_REPLACE_RATIOS) == 16


def test_replace_image_sources_and_errors():
    docs = [Record("a", text="x", image=IMG), Record("b", text="text only")]
    b = bench_of(2, corpus=docs)
    assert doc_image_key(docs[0], "replace", "auto") == "corpus/image"
    assert doc_image_key(docs[1], "replace", "auto") == "corpus/screenshot"
    assert doc_image_key(docs[0], "replace", "screenshot") == "corpus/screenshot"
    assert doc_image_key(docs[1], "remix", "auto") == "corpus/image"
    assert mix_corpus(b, "replace", p=1.0, replace_with="auto") == {"a": "image", "b": "image"}
    with pytest.raises(DataError, match="corpus.replace_with=image: doc 'b' has no image"):
        mix_corpus(b, "replace", p=0.5, replace_with="image")
    with pytest.raises(ValueError, match="corpus.replace_with"):
        mix_corpus(b, "replace", replace_with="video")
    with pytest.raises(ValueError, match="corpus.p"):
        mix_corpus(b, "replace", p=1.5)
    no_text = bench_of(1, corpus=[Record("c", image=IMG)])
    with pytest.raises(DataError, match="doc 'c' has no text"):
        mix_corpus(no_text, "replace", p=1.0)


def test_all_multimodal_and_unknown_mode():
    assert set(mix_corpus(bench_of(5), "all_multimodal").values()) == {"image+text"}
    with pytest.raises(DataError, match="all_multimodal: doc 'b' has no image"):
        mix_corpus(bench_of(2, corpus=[Record("a", text="x", image=IMG), Record("b", text="y")]),
                   "all_multimodal")
    with pytest.raises(ValueError, match="corpus.mode: unknown mode 'mixed'"):
        mix_corpus(bench_of(3), "mixed")


def test_modality_counts_lists_every_modality():
    assert modality_counts({"a": "text", "b": "text"}) == {"text": 2, "image": 0, "image+text": 0}
    with pytest.raises(ValueError, match="doc 'x'"):
        modality_counts({"x": "video"})


def test_render_screenshot_is_deterministic_and_shows_the_text():
    text = "Vitamin D and cancer risk. " * 30 + "a" * 500 + "\n\nSecond paragraph."
    a, b = render_screenshot(text), render_screenshot(text)
    assert a.size == (448, 448) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    dark = sum(1 for px in a.getdata() if px[0] < 128)
    assert dark > 1000  # text was drawn
    assert render_screenshot("other words").tobytes() != a.tobytes()
    assert render_screenshot("x", width=200, height=100).size == (200, 100)


def test_screenshot_records_round_trip():
    recs = [Record("7", text="hello screenshot"), Record("8", text="x", image=IMG)]
    shots = screenshot_records(recs)
    assert [s.id for s in shots] == ["7", "8"]
    assert shots[0].modality == "image" and shots[0].image.origin == "screenshot:7"
    assert shots[0].image.load().tobytes() == render_screenshot("hello screenshot").tobytes()
    assert screenshot_records(recs)[0].image.data == shots[0].image.data
    with pytest.raises(DataError, match="record '9' has no text"):
        screenshot_records([Record("9", image=IMG)])


def test_remix_order_follows_records_or_embeddings(caplog):
    bench = bench_of(12)
    rows = [str(i) for i in reversed(range(12))]  # precomputed rows in another order
    with caplog.at_level("WARNING"):
        by_records = mix_corpus(bench, "remix", embedding_order=rows)
    assert "differs from the row order of the precomputed embeddings" in caplog.text
    assert "corpus.order=embeddings" in caplog.text
    assert by_records == mix_corpus(bench, "remix")  # records order: unchanged numbers
    # embeddings order: the seed snippet run over the rows in file order
    by_rows = mix_corpus(bench, "remix", order="embeddings", embedding_order=rows)
    seed = seed_snippet(12)
    assert by_rows == {doc: seed[n] for n, doc in enumerate(rows)}
    assert list(by_rows) == [r.id for r in bench.corpus] and by_rows != by_records

    caplog.clear()
    with caplog.at_level("WARNING"):
        same = mix_corpus(bench, "remix", embedding_order=[str(i) for i in range(12)])
    assert same == by_records and not caplog.text
    with pytest.raises(ValueError, match="corpus.order: unknown order 'file'"):
        mix_corpus(bench, "remix", order="file")
    with pytest.raises(ValueError, match="corpus.order=embeddings: no embedding order"):
        mix_corpus(bench, "remix", order="embeddings")


def test_drop_unshowable_keeps_text_docs_and_qrels():
    docs = [Record(str(i), text=f"doc {i}", image=IMG) for i in range(3)]
    bench = Benchmark("t", queries=[Record("q", text="q")], corpus=docs,
                      qrels={"q": {"0": 1, "1": 1}}, mixed_corpus=list(docs))
    shown = {"0": "image", "1": "text", "2": "image+text"}
    skipped = {"0": "cannot decode", "1": "cannot decode"}
    out, assignment, dropped = drop_unshowable(bench, shown, skipped)
    assert dropped == {"0": "cannot decode"}  # doc 1 is shown as text: its image is not needed
    assert [r.id for r in out.corpus] == ["1", "2"] and [r.id for r in out.mixed_corpus] == ["1", "2"]
    assert assignment == {"1": "text", "2": "image+text"} and out.qrels == bench.qrels
