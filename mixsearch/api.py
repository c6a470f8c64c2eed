"""Notebook entry point: evaluate an encoder on a benchmark in one call, no Hydra needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixsearch.data.benchmark import Benchmark
from mixsearch.embed.cache import EmbeddingCache
from mixsearch.encoders.base import Encoder
from mixsearch.evaluation import EvalResult, Evaluator


def evaluate(
    encoder: Encoder,
    benchmark: Benchmark,
    *,
    corpus: str | dict[str, Any] = "released",
    calibration: str | dict[str, Any] = "none",
    fusion: str | dict[str, Any] | None = None,
    retrieval: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    embed: dict[str, Any] | None = None,
) -> EvalResult:
    """Embed (through the cache when ``cache_dir`` is given) and evaluate in one call.

    Args:
        encoder: any :class:`~mixsearch.encoders.base.Encoder` (``mixsearch.build_encoder``).
        benchmark: a loaded benchmark (``mixsearch.load_benchmark``).
        corpus: a corpus mode (``"released"``, ``"remix"``, ``"replace"``,
            ``"all_multimodal"``) or the full ``corpus`` section as a dict.
        calibration: a registered method name (``"none"``, ``"gr"``, ``"pushdown"``,
            ``"i0t"``, ``"project"``, ``"procrustes"``, see
            :func:`mixsearch.calibrators.available_calibrators`) or the ``calibration`` section
            (e.g. ``{"method": "project", "params": {"k": 2, "estimate": "paired"}}``).
        fusion: a fusion method (``"weighted"``, ``"score"``, ``"joint"``: the encoder's own
            image+text embedding, ``"auto"``: joint when the encoder can) or the ``fusion``
            section as a dict.
        retrieval, metrics: the config sections as dicts (defaults: the paper's;
            ``retrieval={"merge": "rrf"}`` searches each doc modality separately and merges).
        cache_dir: embedding cache folder; None encodes without caching.
        embed: options of :func:`mixsearch.embed.embed_records` (batch size, workers, ...).

    Returns:
        The :class:`~mixsearch.evaluation.EvalResult` (``.metrics["ndcg@10"]``, ``.gap``,
        ``.per_query``, ``.to_json()``).

    Example:
        >>> import mixsearch
        >>> bench = mixsearch.load_benchmark("toy", root="data/toy")
        >>> enc = mixsearch.build_encoder("toy")
        >>> mixsearch.evaluate(enc, bench, calibration="gr").metrics["ndcg@10"]
    """
    from mixsearch.pipeline import (
        apply_skips,
        calibration_pools,
        check_joint,
        embed_all,
        resolve_fusion,
    )

    corpus_cfg = {"mode": corpus} if isinstance(corpus, str) else dict(corpus)
    cal_cfg = {"method": calibration} if isinstance(calibration, str) else dict(calibration)
    if isinstance(fusion, str):
        fusion = {"method": fusion, "query": "joint" if fusion == "joint" else
                  "auto" if fusion == "auto" else "weighted"}
    fusion_cfg = resolve_fusion(dict(fusion or {}), encoder)
    check_joint(encoder, fusion_cfg)
    embed_cfg = {"progress": False, **(embed or {})}
    cache = EmbeddingCache(cache_dir) if cache_dir is not None else None
    embs, stats = embed_all(encoder, benchmark, cache, embed_cfg, corpus_cfg=corpus_cfg,
                            cal_cfg=cal_cfg, fusion_cfg=fusion_cfg)
    if embs is None:
        raise ValueError("embed: a sharded extraction cannot be evaluated; drop num_shards")
    pools = calibration_pools(encoder, benchmark, embs, cal_cfg, cache, embed_cfg)
    # embed={"on_missing": "skip"}: unreadable items leave the evaluation (see apply_skips)
    eval_bench, skipped_docs, _ = apply_skips(benchmark, stats)
    evaluator = Evaluator(eval_bench, embs, corpus=corpus_cfg, calibration=cal_cfg,
                          retrieval=retrieval, metrics=metrics, pools=pools,
                          skipped_docs=skipped_docs)
    return evaluator.run(fusion_cfg)
