"""The viewer's data: queries, the top-k of each run, documents and de-duplicated thumbnails,
as one compact JSON-able dict that the page's script renders lazily."""

from __future__ import annotations

import base64
import io
import logging
import math
from typing import Any

from PIL import Image

from mixsearch.corpus import mix_corpus
from mixsearch.data.benchmark import MODALITIES, Benchmark, DataError, ImageRef, Record
from mixsearch.viewer.runs import RunData

log = logging.getLogger(__name__)

SNIPPET_CHARS = 240
HEADLINE = ("ndcg@10", "recall@1", "recall@10", "mrr@10", "ndcg@100")


class Thumbnails:
    """Small JPEG data URIs, each image encoded once and referred to by its index.

    Args:
        side: longest side of a thumbnail in pixels.
        quality: JPEG quality.
    """

    def __init__(self, side: int = 96, quality: int = 80) -> None:
        self.side, self.quality = side, quality
        self.uris: list[str] = []
        self._index: dict[str, int] = {}
        self.failed: dict[str, str] = {}

    def add(self, ref: ImageRef | None) -> int:
        """Index of the thumbnail of ``ref`` (-1 for no image or one that cannot be decoded;
        the latter is recorded in :attr:`failed` and logged once)."""
        if ref is None:
            return -1
        key = ref.path or ref.content_key()
        if key in self._index:
            return self._index[key]
        try:
            img = ref.load(max_side=4 * self.side)
        except DataError as e:
            if key not in self.failed:
                self.failed[key] = str(e)
                log.warning("viewer: no thumbnail for %s", e)
            return -1
        img.thumbnail((self.side, self.side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=self.quality, optimize=True)
        self.uris.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
        self._index[key] = len(self.uris) - 1
        return self._index[key]


def snippet(text: str | None, limit: int = SNIPPET_CHARS) -> str | None:
    """``text`` cut at a word boundary to about ``limit`` characters, with an ellipsis."""
    if text is None:
        return None
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def run_summary(run: RunData) -> dict[str, Any]:
    """The config choices and headline metrics of a run shown at the top of the page."""
    res, cfg = run.result, run.config
    cal, fusion = res.get("calibration") or {}, cfg.get("fusion") or {}
    enc = res.get("encoder") or {}
    gap = res.get("gap") or {}
    return {
        "label": run.label,
        "path": str(run.path),
        "model": enc.get("name") or (cfg.get("model") or {}).get("_target_"),
        "dataset": (res.get("benchmark") or {}).get("name"),
        "corpus": (res.get("corpus") or {}).get("mode"),
        "counts": (res.get("corpus") or {}).get("counts"),
        "calibration": cal.get("method"),
        "source": cal.get("source"),
        "fusion": fusion.get("method"),
        "alpha": fusion.get("alpha"),
        "metrics": {k: res["metrics"][k] for k in HEADLINE if k in res.get("metrics", {})},
        "by_target": {m: v.get("ndcg@10") for m, v in (res.get("by_target_modality") or {}).items()
                      if isinstance(v, dict)},
        "gap": [gap.get("centroid_distance_before"), gap.get("centroid_distance_after")],
    }


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v, 4)


class _Docs:
    """Documents that appear in some top-k, each stored once: ``[id, snippet, thumbnail]``."""

    def __init__(self, bench: Benchmark, thumbs: Thumbnails) -> None:
        self.records: dict[str, Record] = {r.id: r for r in bench.corpus}
        self.thumbs = thumbs
        self.rows: list[list[Any]] = []
        self._index: dict[str, int] = {}

    def add(self, doc: str, modality: str) -> int:
        key = f"{doc}\t{modality}"
        if key not in self._index:
            r = self.records.get(doc)
            text = r.text if r is not None and modality != "image" else None
            image = self.thumbs.add(r.image) if r is not None and modality != "text" else -1
            if r is not None and modality != "text" and r.image is None and text is None:
                text = r.text  # replace mode: the doc's text shown rendered as an image
            self.rows.append([doc, snippet(text), image])
            self._index[key] = len(self.rows) - 1
        return self._index[key]


def build_payload(
    runs: list[RunData], bench: Benchmark, *, k: int = 10, thumb_side: int = 96
) -> dict[str, Any]:
    """The page data for one run or a run and its baseline (``runs[1]``).

    Per query: id, text snippet, thumbnail, target modality, NDCG@10 per run, first relevant
    rank per run, and per run the top-k as ``[doc index, modality code, grade, score, rank in
    the other run's list (0: not in its retrieved list)]``.
    """
    thumbs = Thumbnails(side=thumb_side)
    docs = _Docs(bench, thumbs)
    mods = list(MODALITIES)
    assign = [mix_corpus(bench, **_corpus_options(r)) for r in runs]
    queries = {q.id: q for q in bench.queries}
    tables = [r.per_query.set_index("qid") for r in runs]
    out_rows = []
    for qid in runs[0].per_query["qid"]:
        q = queries.get(qid)
        if q is None:
            raise DataError(f"{runs[0].path}/per_query.csv: query {qid!r} is not in {bench.name}")
        judged = bench.qrels.get(qid, {})
        lists = []
        for i, run in enumerate(runs):
            full = run.ranked.get(qid, [])
            other = runs[1 - i].ranked.get(qid, []) if len(runs) == 2 else []
            other_rank = {d: n + 1 for n, (d, _) in enumerate(other)}
            entries = []
            for d, s in full[:k]:
                mod = assign[i].get(d)
                if mod is None:
                    raise DataError(f"{run.path}/run.trec: doc {d!r} (query {qid}) is not in the "
                                    f"corpus of {bench.name}")
                entries.append([docs.add(d, mod), mods.index(mod), int(judged.get(d, 0)),
                                round(s, 4), other_rank.get(d, 0)])
            lists.append(entries)
        row = tables[0].loc[qid]
        out_rows.append([
            qid, snippet(q.text), thumbs.add(q.image), str(row.get("target_modality", "")),
            [_num(t.loc[qid, "ndcg@10"]) if qid in t.index else None for t in tables],
            [_num(t.loc[qid, "first_rel_rank"]) if "first_rel_rank" in t and qid in t.index else None
             for t in tables],
            lists,
        ])
    return {"mode": "runs", "k": k, "mods": mods, "runs": [run_summary(r) for r in runs], "img": thumbs.uris,
            "docs": docs.rows, "queries": out_rows, "thumb_failures": thumbs.failed}


def _corpus_options(run: RunData) -> dict[str, Any]:
    opts = dict(run.config.get("corpus") or {"mode": "released"})
    if opts.get("order") == "embeddings":
        opts["order"] = "records"  # the embeddings' row order is not in the run dir
        log.warning("viewer: %s used corpus.order=embeddings; modalities shown follow the "
                    "records' order", run.path)
    return opts


def search_payload(index: Any, query: str | None, image: str | None,
                   hits: list[tuple[int, float]], calibration: str, *, alpha: float = 0.5,
                   thumb_side: int = 96) -> dict[str, Any]:
    """The viewer's data for one search over an index (:mod:`mixsearch.collection`): one
    query, one ranked list, no judgements."""
    thumbs = Thumbnails(side=thumb_side)
    mods = list(MODALITIES)
    docs, ranked = [], []
    for n, (row, score) in enumerate(hits):
        it = index.items[row]
        ref = ImageRef(path=it["image"]) if it["image"] else None
        docs.append([it["id"], snippet(it["text"]), thumbs.add(ref)])
        ranked.append([n, mods.index(it["modality"]), 0, round(score, 4), 0])
    counts = {m: sum(1 for it in index.items if it["modality"] == m) for m in mods}
    model = index.meta["model"]
    run = {"label": f"search · {calibration}", "path": str(index.path), "model": model["name"],
           "dataset": str(index.path), "corpus": "collection", "counts": counts,
           "calibration": calibration, "source": (index.meta.get("calibration") or {}).get("source")
           if calibration == "gr" else None, "fusion": "weighted", "alpha": alpha,
           "metrics": {}, "by_target": {}, "gap": [None, None]}
    qimg = thumbs.add(ImageRef(path=image)) if image else -1
    q = ["query", snippet(query), qimg, "", [None], [None], [ranked]]
    return {"mode": "search", "k": len(hits), "mods": mods, "runs": [run], "img": thumbs.uris, "docs": docs,
            "queries": [q], "thumb_failures": thumbs.failed}
