"""The embedding space before and after calibration: a 2-D projection of a sample of a run's query
texts and text, image and image+text documents (the paper's Figure 1), drawn as inline SVG
from the run's own cached embeddings. The horizontal axis is the modality gap (text docs'
centroid to image docs' centroid before calibration), the vertical one the first principal
component orthogonal to it; both panels share the axes and the scale."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixsearch.config import build, section
from mixsearch.data.benchmark import Benchmark
from mixsearch.embed.cache import EmbeddingCache
from mixsearch.fusion import Views, fuse, l2_normalise

log = logging.getLogger(__name__)

GROUPS = ("query", "text", "image", "image+text")
COLOURS = {"query": "#7f7f7f", "text": "#1f77b4", "image": "#d62728", "image+text": "#9467bd"}


@dataclass
class Cloud:
    """Sampled vectors by group, before and after calibration (rows L2-normalised)."""

    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    method: str


def prepare_evaluator(cfg: dict[str, Any], bench: Benchmark) -> Any:
    """The run's :class:`~mixsearch.evaluation.Evaluator`, rebuilt from its config with the
    embeddings from its cache (what is not cached is encoded and stored, with the count
    printed)."""
    from mixsearch.evaluation import Evaluator
    from mixsearch.pipeline import (
        apply_skips,
        calibration_pools,
        check_joint,
        embed_all,
        resolve_fusion,
    )

    encoder = build(cfg["model"], "model")
    fusion_cfg = resolve_fusion(section(cfg, "fusion"), encoder)
    check_joint(encoder, fusion_cfg)
    cache_dir = (cfg.get("paths") or {}).get("cache_dir")
    cache = EmbeddingCache(cache_dir) if cache_dir else None
    embed_cfg = {**section(cfg, "embed"), "progress": False, "shard": 0, "num_shards": 1}
    corpus_cfg, cal_cfg = section(cfg, "corpus"), section(cfg, "calibration")
    embs, stats = embed_all(encoder, bench, cache, embed_cfg, corpus_cfg=corpus_cfg,
                            cal_cfg=cal_cfg, fusion_cfg=fusion_cfg)
    encoded = sum(s.get("encoded_items", 0) for s in stats)
    cached = sum(s.get("cached_items", 0) for s in stats)
    print(f"viewer embeddings: encoded {encoded} items, {cached} taken from the cache")
    pools = calibration_pools(encoder, bench, embs, cal_cfg, cache, embed_cfg)
    eval_bench, skipped_docs, _ = apply_skips(bench, stats)
    ev = Evaluator(eval_bench, embs, corpus=corpus_cfg, calibration=cal_cfg,
                   retrieval=section(cfg, "retrieval"), metrics=section(cfg, "metrics"),
                   pools=pools, skipped_docs=skipped_docs)
    return ev, fusion_cfg


def _groups(docs: Views, queries: Views, fusion_cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    method = fusion_cfg.get("method", "weighted")
    vecs = l2_normalise(fuse(docs, method=method if method != "auto" else "weighted",
                             alpha=float(fusion_cfg.get("alpha", 0.5))))
    out = {"query": l2_normalise(queries.text[queries.has_text])}
    for name, mask in (("text", docs.has_text & ~docs.has_image),
                       ("image", docs.has_image & ~docs.has_text),
                       ("image+text", docs.has_text & docs.has_image)):
        out[name] = vecs[mask]
    return out


def sample_cloud(evaluator: Any, fusion_cfg: dict[str, Any], *, n: int = 300, seed: int = 0) -> Cloud:
    """Up to ``n`` items per group, the same items before and after calibration."""
    cal = evaluator.calibration
    before = _groups(evaluator.docs, evaluator.queries, fusion_cfg)
    after = _groups(evaluator.centred_docs, cal.apply(evaluator.queries, "query"), fusion_cfg)
    rng = np.random.default_rng(seed)
    b, a = {}, {}
    for g in GROUPS:
        m = len(before[g])
        if m == 0:
            continue
        pick = np.sort(rng.choice(m, size=min(n, m), replace=False))
        b[g], a[g] = before[g][pick], after[g][pick]
    return Cloud(b, a, cal.method)


def gap_axes(groups: dict[str, np.ndarray]) -> np.ndarray:
    """Two orthonormal axes (rows): the direction from the text docs' centroid to the image
    docs' centroid (the modality gap; the first principal component when neither exists), then
    the first principal component of what that direction leaves."""
    stacked = np.concatenate([v for v in groups.values() if len(v)]).astype(np.float64)
    centred = stacked - stacked.mean(axis=0)
    if len(groups.get("text", [])) and len(groups.get("image", [])):
        first = groups["image"].mean(0) - groups["text"].mean(0)
    else:
        first = np.linalg.svd(centred, full_matrices=False)[2][0]
    first = first / max(np.linalg.norm(first), 1e-12)
    rest = centred - np.outer(centred @ first, first)
    second = np.linalg.svd(rest, full_matrices=False)[2][0]
    return np.stack([first, second])


def project(groups: dict[str, np.ndarray], axes: np.ndarray) -> dict[str, np.ndarray]:
    """Each group's rows in the plane of ``axes`` (2, d)."""
    return {g: v.astype(np.float64) @ axes.T for g, v in groups.items() if len(v)}


def _gap(groups: dict[str, np.ndarray]) -> float | None:
    if not len(groups.get("text", [])) or not len(groups.get("image", [])):
        return None
    return float(np.linalg.norm(groups["text"].mean(0) - groups["image"].mean(0)))


def _panel(xy: dict[str, np.ndarray], title: str, x0: int, box: tuple[np.ndarray, float, np.ndarray],
           size: int = 280) -> str:
    lo, scale, pad = box
    lo = lo - pad  # centre the shorter extent in the square
    parts = [f'<g class="panel" transform="translate({x0},24)"><rect width="{size}" height="{size}" '
             f'class="pbox"/><text x="{size / 2}" y="-8" text-anchor="middle" class="ptitle">'
             f'{html.escape(title)}</text>']
    for g, pts in xy.items():
        dots = "".join(f'<circle cx="{10 + (p[0] - lo[0]) * scale:.1f}" '
                       f'cy="{size - 10 - (p[1] - lo[1]) * scale:.1f}" r="2.6"/>' for p in pts)
        parts.append(f'<g class="dots" data-group="{g}" fill="{COLOURS[g]}">{dots}</g>')
    parts.append("</g>")
    return "".join(parts)


def cloud_svg(cloud: Cloud) -> str:
    """Two panels (before, after calibration) and a legend, as one inline ``<svg>``."""
    size = 280
    gb, ga = _gap(cloud.before), _gap(cloud.after)
    tb = "before calibration" + (f" · text↔image {gb:.3f}" if gb is not None else "")
    ta = f"after {cloud.method}" + (f" · text↔image {ga:.3f}" if ga is not None else "")
    width = 2 * size + 60
    # one pair of axes and one scale for both panels, so the clouds' moves are comparable
    axes = gap_axes(cloud.before)
    before, after = project(cloud.before, axes), project(cloud.after, axes)
    pts = np.concatenate([*before.values(), *after.values()])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scale = (size - 20) / max(float((hi - lo).max()), 1e-9)
    box = (lo, scale, ((size - 20) / scale - (hi - lo)) / 2)
    body = _panel(before, tb, 10, box, size) + _panel(after, ta, size + 50, box, size)
    legend = "".join(
        f'<g transform="translate({10 + i * 150},{size + 48})"><circle r="5" cx="5" cy="-4" '
        f'fill="{COLOURS[g]}"/><text x="14" y="0">{"query text" if g == "query" else g + " doc"}'
        f' ({len(cloud.before.get(g, []))})</text></g>'
        for i, g in enumerate(g for g in GROUPS if g in cloud.before))
    return (f'<svg id="projection" viewBox="0 0 {width} {size + 56}" '
            f'width="{width}" height="{size + 56}" role="img" aria-label="embeddings before and after calibration">'
            f"{body}{legend}</svg>")
