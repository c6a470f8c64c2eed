"""The HTML results viewer: its data against the run files, and what a person sees in headless
Chromium (thumbnails decoded, one row per query, filters, side-by-side ranks, no errors, no
external URL)."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mixsearch.viewer import build_view, write_view
from mixsearch.viewer.chromium import launch
from mixsearch.viewer.runs import RunDirError, check_same_benchmark, read_run
from tests.viewer_fixtures import Page, make_runs, need_browser

K = 10


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_runs(tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def page_file(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    html = build_view(runs["gr"], runs["none"], k=K, sample=100)
    return write_view(tmp_path_factory.mktemp("page") / "view.html", html)


def payload(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def trec_top(path: Path, k: int) -> dict[str, list[str]]:
    """Top-k doc ids per query, read straight from a TREC run file (independent of the viewer)."""
    rows: dict[str, list[tuple[int, str]]] = {}
    for line in path.read_text().splitlines():
        qid, _, doc, rank, _, _ = line.split()
        rows.setdefault(qid, []).append((int(rank), doc))
    return {q: [d for _, d in sorted(v)][:k] for q, v in rows.items()}


class _Attrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def test_page_data_matches_the_run_files(runs: dict[str, Path], page_file: Path) -> None:
    d = payload(page_file)
    per_query = pd.read_csv(runs["gr"] / "per_query.csv", dtype={"qid": str})
    assert [q[0] for q in d["queries"]] == list(per_query["qid"])
    tops = [trec_top(runs[m] / "run.trec", K) for m in ("gr", "none")]
    full_none = trec_top(runs["none"] / "run.trec", 1000)
    for q in d["queries"]:
        for side in (0, 1):
            assert [d["docs"][h[0]][0] for h in q[6][side]] == tops[side][q[0]]
        for h in q[6][0]:  # the gr column: rank of the same doc in the none run
            doc = d["docs"][h[0]][0]
            want = full_none[q[0]].index(doc) + 1 if doc in full_none[q[0]] else 0
            assert h[4] == want
    # graded relevance: every judged doc of the qrels that is in a top-k carries its grade
    qrels = pd.read_csv(next((runs["gr"].parent / "toy").rglob("ToyCOCO/qrels/qrels.tsv")), sep="\t",
                        dtype=str)
    judged = {(r.query_id, r.corpus_id) for r in qrels.itertuples()}
    marked = {(q[0], d["docs"][h[0]][0]) for q in d["queries"] for side in q[6] for h in side if h[2] > 0}
    shown = {(q[0], d["docs"][h[0]][0]) for q in d["queries"] for side in q[6] for h in side}
    assert marked == judged & shown and marked


def test_page_is_self_contained_with_each_thumbnail_once(page_file: Path) -> None:
    text = page_file.read_text(encoding="utf-8")
    parser = _Attrs()
    parser.feed(text)
    assert all(link.startswith(("data:", "#")) for link in parser.links)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I)
    d = payload(page_file)
    assert len(set(d["img"])) == len(d["img"]) > 0
    for uri in d["img"][:5]:
        head, b64 = uri.split(",", 1)
        assert head == "data:image/jpeg;base64"
        assert Image.open(io.BytesIO(base64.b64decode(b64))).size[0] > 0
    # each image doc shown in some top-k has one thumbnail (toy docs all have distinct images)
    image_docs = {d["docs"][h[0]][0] for q in d["queries"] for side in q[6] for h in side
                  if d["mods"][h[1]] != "text"}
    assert len(d["img"]) == len(image_docs)


def test_projection_shows_the_gap_closing(page_file: Path, runs: dict[str, Path]) -> None:
    svg = re.search(r'<svg id="projection".*?</svg>', page_file.read_text(encoding="utf-8"), re.S).group(0)
    gaps = [float(x) for x in re.findall(r"text↔image (\d\.\d+)", svg)]
    # toy CLIP: about 0.5 -> 0.05 on 300 docs a modality; this run has 20, whose centroids are noisier
    assert len(gaps) == 2 and gaps[0] > 0.3 and gaps[1] < gaps[0] / 2
    groups = re.findall(r'<g class="dots" data-group="([^"]+)"', svg)
    assert sorted(set(groups)) == ["image", "image+text", "query", "text"] and len(groups) == 8


def test_runs_of_different_benchmarks_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    a, b = read_run(runs["gr"]), read_run(runs["none"])
    b.result["benchmark"]["name"] = "toy/ToyOVEN"
    with pytest.raises(RunDirError, match=r"toy/ToyCOCO.*toy/ToyOVEN"):
        check_same_benchmark(a, b)
    with pytest.raises(RunDirError, match="no metrics.json"):
        read_run(tmp_path)


@pytest.fixture(scope="module")
def browser():
    sync_api = need_browser()
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def test_in_chromium_rows_thumbnails_filters_and_ranks(browser, page_file: Path, runs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    gr = pd.read_csv(runs["gr"] / "per_query.csv", dtype={"qid": str}).set_index("qid")
    none = pd.read_csv(runs["none"] / "per_query.csv", dtype={"qid": str}).set_index("qid")
    delta = gr["ndcg@10"] - none.loc[gr.index, "ndcg@10"]
    v = Page(browser, page_file)
    v.page.screenshot(path=str(tmp_path / "top.png"))
    assert v.render_all() == len(gr)  # one row per query of the run
    # headline: NDCG@10 of each run and the difference, as metrics.json has them
    m = {k: json.loads((runs[k] / "metrics.json").read_text())["metrics"]["ndcg@10"] for k in runs}
    cells = v.page.locator("#metrics tr").nth(1).locator("td").all_inner_texts()
    assert cells == [f"{m['none']:.4f}", f"{m['gr']:.4f}", f"{m['gr'] - m['none']:+.4f}"]
    assert min(v.thumbnail_widths()) > 0  # every thumbnail decodes
    # sorted by NDCG@10 gain: the first row is the largest gain, the last the largest loss
    first = v.page.locator("section.q").first.get_attribute("data-qid")
    assert delta[first] == pytest.approx(delta.max())
    # side by side: baseline left, GR right, k documents each, ranks 1..k
    cols = v.page.locator("section.q").first.locator(".col")
    assert cols.count() == 2
    assert cols.nth(0).locator(".colhead").inner_text() == "none"
    ranks = cols.nth(1).locator(".hit").evaluate_all("els => els.map(e => +e.dataset.rank)")
    assert ranks == list(range(1, K + 1))
    # the rank-change badge of GR's first document equals its move from the none run's list
    doc = cols.nth(1).locator(".hit").first.get_attribute("data-doc")
    base = trec_top(runs["none"] / "run.trec", 1000)[first]
    badge = cols.nth(1).locator(".hit").first.locator(".move").inner_text()
    assert badge == ("new" if doc not in base else "=" if base.index(doc) == 0 else f"▲{base.index(doc)}")
    # filters hide rows: target modality, then outcome
    v.page.select_option("#f-mod", "image")
    assert v.render_all() == int((gr["target_modality"] == "image").sum())
    assert v.page.locator("section.q[data-target='text']").count() == 0
    v.page.select_option("#f-mod", "")
    v.page.select_option("#f-out", "hurt")
    assert v.render_all() == int((delta < -1e-9).sum())
    v.page.select_option("#f-out", "helped")
    assert v.render_all() == int((delta > 1e-9).sum()) > 0
    assert v.errors == []
    assert all(u.startswith(("file:", "data:")) for u in v.requests)


def test_search_page_in_chromium(browser, tmp_path: Path) -> None:
    """The page `mixsearch search --html` writes: one query, its ranked list, no eval panels."""
    from mixsearch.viewer import render_page
    from mixsearch.viewer.payload import search_payload

    img = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(img)

    class Ix:
        path = tmp_path
        meta = {"model": {"name": "toy"}, "calibration": {"source": "transductive"}}
        items = [{"id": "a.png", "modality": "image", "text": None, "image": str(img)},
                 {"id": "b.txt", "modality": "text", "text": "a red circle", "image": None}]

    page = write_view(tmp_path / "s.html", render_page(
        search_payload(Ix(), "red", None, [(1, 0.9), (0, 0.5)], "gr"), "", title="s"))
    v = Page(browser, page)
    assert v.render_all() == 1
    assert v.page.locator(".hit").count() == 2
    assert v.thumbnail_widths() == [30]
    assert not v.page.locator(".controls").is_visible()
    assert v.errors == []


def test_one_run_alone_in_chromium(browser, runs: dict[str, Path], tmp_path: Path) -> None:
    """Without a baseline: one column, no rank changes, no outcome filter, no projection."""
    page = write_view(tmp_path / "one.html", build_view(runs["gr"], k=5, projection=False))
    v = Page(browser, page)
    n = len(pd.read_csv(runs["gr"] / "per_query.csv"))
    assert v.render_all() == n
    assert v.page.locator("section.q .col").count() == n
    assert v.page.locator(".hit").count() == 5 * n and v.page.locator(".move").count() == 0
    assert v.page.locator("#f-out").is_disabled()
    assert v.errors == []


def test_make_view_runs_the_viewer(runs: dict[str, Path]) -> None:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["make", "-n", "view", f"RUN={runs['gr']}", f"BASELINE={runs['none']}", "VIEW=v.html"],
                         cwd=root, capture_output=True, text=True, check=True).stdout
    assert f"-m mixsearch.viewer {runs['gr']} {runs['none']} --out v.html" in out
    bare = subprocess.run(["make", "view"], cwd=root, capture_output=True, text=True)
    assert bare.returncode != 0 and "make view RUN=<run dir>" in bare.stderr
