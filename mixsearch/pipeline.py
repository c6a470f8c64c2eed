"""One run from a resolved config: load → embed (cached) → mix → calibrate → fuse → search →
score → record. The config is a plain dict (``run.py`` resolves the Hydra config first)."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixsearch.config import ConfigError, build, section, split_dataset_section
from mixsearch.data.benchmark import Benchmark
from mixsearch.data.validate import check_ids
from mixsearch.diagnostics import task_breakdown
from mixsearch.embed import Embeddings
from mixsearch.embed.cache import EmbeddingCache
from mixsearch.embed.devices import extract_on_devices, resolve_devices
from mixsearch.embed.embeddings import digest
from mixsearch.embed.extract import embed_benchmark, embed_records, has_field
from mixsearch.encoders.base import Encoder, joint_unsupported_message
from mixsearch.logs import progress_bars_off
from mixsearch.metrics import display_name
from mixsearch.schema import validate
from mixsearch.statefiles import write_state_files
from mixsearch.tracking import (
    claim_run_dir,
    git_commit,
    package_versions,
    start_tracker,
    trec_run_text,
    write_results,
)

log = logging.getLogger(__name__)
# The terminal summary also goes to the job's log file (run.log); conf/hydra/default.yaml gives
# this logger the file handler only, so the terminal does not show it twice.
results_log = logging.getLogger("mixsearch.results")

# Roles of calibration pools, keyed by the embeddings that feed them.
_CALIBRATION_ROLES = {
    "calibration/queries/text": "query_text",
    "calibration/queries/image": "query_image",
    "calibration/corpus/text": "doc_text",
    "calibration/corpus/image": "doc_image",
    "calibration/queries/joint": "query_joint",
    "calibration/corpus/joint": "doc_joint",
}
_FIELD_OF_ROLE = {"query_text": "text", "query_image": "image", "doc_text": "text",
                  "doc_image": "image", "query_joint": "joint", "doc_joint": "joint"}


# Jobs of a multirun with the basic launcher share one process. Sweeps over calibration,
# fusion or corpus options reuse the same benchmark and encoder: build each once, not once per
# job (a CLIP-L checkpoint takes seconds to load, the evaluation itself milliseconds). Only the
# most recent few are kept so a sweep over models does not hold every model in memory.
_MEMO: OrderedDict[str, Any] = OrderedDict()
_MEMO_SIZE = 2


def build_shared(spec: dict[str, Any], option: str) -> Any:
    """:func:`~mixsearch.config.build`, reusing the object built from an identical section."""
    key = option + ":" + json.dumps(spec, sort_keys=True, default=str)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    obj = build(spec, option)
    _MEMO[key] = obj
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return obj


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _needs_screenshots(bench: Benchmark, corpus_cfg: dict[str, Any]) -> bool:
    if corpus_cfg.get("mode") != "replace":
        return False
    how = corpus_cfg.get("replace_with", "auto")
    return how == "screenshot" or (how == "auto" and any(r.image is None for r in bench.corpus))


def _needs_pools(cal_cfg: dict[str, Any]) -> bool:
    from mixsearch.calibrators import build_calibrator

    method = build_calibrator(cal_cfg.get("method", "none"), cal_cfg.get("params"))
    return method.fits_state and cal_cfg.get("source", "auto") in ("train", "auto")


def joint_splits(fusion_cfg: dict[str, Any]) -> tuple[str, ...]:
    """The splits ``fusion`` embeds jointly: corpus for ``method=joint``, queries for
    ``query=joint`` (with their calibration splits)."""
    out = []
    if fusion_cfg.get("method") == "joint":
        out += ["corpus", "calibration/corpus"]
    if fusion_cfg.get("query") == "joint":
        out += ["queries", "calibration/queries"]
    return tuple(out)


def resolve_fusion(fusion_cfg: dict[str, Any], encoder: Encoder) -> dict[str, Any]:
    """``fusion.method=auto`` (and ``fusion.query=auto``) become ``joint`` for an encoder that
    embeds image+text items jointly and ``weighted`` for one that does not: each model's own
    recipe (VLM2Vec's rows of Table 1 are joint, the CLIP family's α-weighted), so one sweep
    over both kinds of model runs each as its paper row did. ``fusion.query=auto`` takes the
    encoder's ``recipe_query`` when it has one (VLM2Vec: ``text``, the seed's queries)."""
    joint = bool(getattr(encoder, "supports_joint", False))
    out = dict(fusion_cfg)
    for key in ("method", "query"):
        if out.get(key) == "auto":
            out[key] = "joint" if joint else "weighted"
    # a model whose recipe embeds queries its own way (VLM2Vec: text only, as the seed)
    recipe = getattr(encoder, "recipe_query", None)
    if fusion_cfg.get("query") == "auto" and recipe:
        out["query"] = recipe
    return out


def check_joint(encoder: Encoder, fusion_cfg: dict[str, Any]) -> None:
    """Fail before any extraction when ``fusion`` needs joint embeddings the encoder lacks.

    Raises:
        ConfigError: names the encoder and the option, and says to use ``fusion=weighted``.
    """
    if fusion_cfg.get("method") == "joint" and not encoder.supports_joint:
        raise ConfigError(joint_unsupported_message(encoder.name))


def embed_all(
    encoder: Encoder,
    bench: Benchmark,
    cache: EmbeddingCache | None,
    embed_cfg: dict[str, Any],
    *,
    corpus_cfg: dict[str, Any],
    cal_cfg: dict[str, Any],
    fusion_cfg: dict[str, Any] | None = None,
) -> tuple[dict[str, Embeddings] | None, list[dict[str, Any]]]:
    """Embed every split the run needs. Returns ``(None, stats)`` for a shard-only job.

    Raises:
        DataError: an id the run file cannot hold (:func:`~mixsearch.data.validate.check_ids`),
            before anything is embedded.
    """
    check_ids(bench)  # loaders check too; a benchmark built by hand reaches here unchecked
    embed_cfg = extraction_options(embed_cfg)
    splits = ["queries", "corpus"]
    if _needs_pools(cal_cfg):
        splits += [f"calibration/{k}" for k in sorted(bench.calibration)]
    joint = joint_splits(fusion_cfg or {})
    if "queries" in joint and not getattr(encoder, "supports_joint", False):
        # image+text queries only: a dual encoder's text-only queries need no joint embedding
        if any(r.text is not None and r.image is not None for r in bench.queries):
            raise ConfigError(joint_unsupported_message(encoder.name).replace(
                "fusion=joint", "fusion.query=joint"))
        joint = tuple(s for s in joint if "queries" not in s)
    embs, stats = embed_benchmark(encoder, bench, splits=tuple(splits), joint_splits=joint,
                                  cache=cache, **embed_cfg)
    # embed_benchmark leaves out the entries a shard-only job could not complete
    incomplete = embs is None or len(embs) < len(stats)
    if _needs_screenshots(bench, corpus_cfg):
        from mixsearch.corpus import screenshot_records

        shots = screenshot_records([r for r in bench.corpus if r.text is not None])
        entry: dict[str, Any] = {}
        e = embed_records(
            encoder, shots, "image", cache=cache, dataset_key=_dataset_key(bench),
            split="corpus_screenshot", stats=entry, **embed_cfg,
        )
        stats.append(entry)
        if e is None:
            incomplete = True
        elif embs is not None:
            embs["corpus/screenshot"] = e
    if incomplete:
        return None, stats
    return embs, stats


def extraction_options(embed_cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``embed`` section as :func:`embed_records` takes it: without ``devices``, which
    :func:`run` acts on (one extraction process per device) before anything embeds here."""
    return {k: v for k, v in embed_cfg.items() if k != "devices"}


def _dataset_key(bench: Benchmark) -> str:
    return bench.cache_key()


def benchmark_metrics(bench: Benchmark, metrics_cfg: dict[str, Any]) -> dict[str, Any]:
    """The metrics section plus the measures the benchmark's own papers report
    (``meta["measures"]``: M-BEIR's Recall@k is ``hit``), so its headline is always there."""
    extra = [m for m in bench.meta.get("measures") or () if m not in metrics_cfg["measures"]]
    if not extra:
        return metrics_cfg
    log.info("%s: adding metrics.measures %s (the benchmark's headline)", bench.name, extra)
    return {**metrics_cfg, "measures": [*metrics_cfg["measures"], *extra]}


def calibration_pools(
    encoder: Encoder,
    bench: Benchmark,
    embs: dict[str, Embeddings],
    cal_cfg: dict[str, Any],
    cache: EmbeddingCache | None,
    embed_cfg: dict[str, Any],
) -> dict[str, np.ndarray] | None:
    """Raw embeddings per role (query_text, query_image, doc_text, doc_image) for ``gr``.

    Sources: the benchmark's own calibration splits, and ``calibration.train_sets``: a list of
    ``{dataset: <loader section>, split, role, n, seed}`` naming training data elsewhere (the
    paper's recipe draws its means from the training splits of several datasets).
    """
    if not _needs_pools(cal_cfg):
        return None
    embed_cfg = extraction_options(embed_cfg)
    pools: dict[str, list[np.ndarray]] = {}
    for key, role in _CALIBRATION_ROLES.items():
        if key in embs:
            pools.setdefault(role, []).append(embs[key].vectors)
    for i, item in enumerate(cal_cfg.get("train_sets") or []):
        opt = f"calibration.train_sets[{i}]"
        role = item.get("role")
        if role not in _FIELD_OF_ROLE:
            raise ConfigError(f"{opt}.role: {role!r} is not one of {sorted(_FIELD_OF_ROLE)}")
        other = build(item["dataset"], f"{opt}.dataset")
        field = _FIELD_OF_ROLE[role]
        records = [r for r in other.split(item.get("split", "queries")) if has_field(r, field)]
        n = item.get("n")
        if n is not None and n < len(records):
            rng = random.Random(item.get("seed", 0))
            records = rng.sample(records, n)
        if not records:
            raise ConfigError(f"{opt}: no {field} items in {other.name} split {item.get('split')!r}")
        e = embed_records(
            encoder, records, field, cache=cache, dataset_key=_dataset_key(other),
            split=f"calibration:{item.get('split', 'queries')}",
            role="query" if role.startswith("query") else "document", **embed_cfg,
        )
        if e is None:
            raise ConfigError(f"{opt}: calibration extraction is incomplete (sharded job?)")
        pools.setdefault(role, []).append(e.vectors)
    if not pools:
        if cal_cfg.get("source") == "train":
            raise ConfigError(
                f"calibration.source=train: {bench.name} has no calibration split and "
                "calibration.train_sets is empty; use source=crossfit, transductive or files"
            )
        return None
    return {role: np.concatenate(parts) for role, parts in pools.items()}


def input_digests(embs: dict[str, Embeddings], pools: dict[str, np.ndarray] | None) -> dict[str, str]:
    """``embedding.digests`` of metrics.json: a digest (:func:`~mixsearch.embed.embeddings.digest`)
    of the vectors this run used, per ``split/field`` and per calibration pool role
    (``pool/<role>``, which includes ``calibration.train_sets``), so two results can be traced
    to their exact inputs."""
    out = {key: digest(e) for key, e in sorted(embs.items())}
    out.update({f"pool/{role}": digest(rows) for role, rows in sorted((pools or {}).items())})
    return out


def skipped_items(stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items that ``embed.on_missing=skip`` left out, from the extraction stats: one dict per
    item with ``entry`` (``split/field``), ``id`` and ``reason``."""
    out = []
    for st in stats:
        reasons = st.get("skip_reasons") or {}
        out += [{"entry": st["entry"], "id": i, "reason": reasons.get(i, "unreadable")}
                for i in st.get("skipped") or []]
    return out


def skip_policy(dataset_cfg: dict[str, Any], embed_cfg: dict[str, Any]) -> dict[str, Any]:
    """``dataset.on_missing=skip`` (the one documented option) also skips images that cannot
    be decoded at extraction: the embed options with ``on_missing=skip``. ``embed.on_missing``
    alone (older configs) still skips only what extraction cannot read."""
    if dataset_cfg.get("on_missing") == "skip":
        return {**embed_cfg, "on_missing": "skip"}
    return embed_cfg


def image_files(bench: Benchmark) -> dict[tuple[str, str], str]:
    """``(split, id) -> image file`` of the queries and documents whose image is a file."""
    out = {}
    for split, records in (("queries", bench.queries), ("corpus", bench.corpus)):
        for r in records:
            if r.image is not None and r.image.path is not None:
                out[(split, r.id)] = r.image.path
    for name, records in bench.calibration.items():
        for r in records:
            if r.image is not None and r.image.path is not None:
                out[(f"calibration/{name}", r.id)] = r.image.path
    return out


def apply_skips(
    bench: Benchmark, stats: list[dict[str, Any]]
) -> tuple[Benchmark, dict[str, str], list[dict[str, Any]]]:
    """What ``embed.on_missing=skip`` left out, applied before the evaluation.

    Returns:
        ``(benchmark without queries whose image is unreadable, {doc id: reason} for the
        Evaluator's ``skipped_docs``, the skipped items as :func:`skipped_items` lists them)``.
    """
    skipped = skipped_items(stats)
    docs = {s["id"]: s["reason"] for s in skipped if s["entry"] in ("corpus/image", "corpus/joint")}
    return drop_skipped_queries(bench, skipped), docs, skipped


def drop_skipped_queries(bench: Benchmark, skipped: list[dict[str, Any]]) -> Benchmark:
    """The benchmark without queries whose image could not be read (with their qrels): such a
    query cannot be asked as the benchmark poses it. Logged with the count and first ids."""
    gone = {s["id"] for s in skipped if s["entry"] in ("queries/image", "queries/joint")}
    if not gone:
        return bench
    log.warning("%d quer(y/ies) dropped from the evaluation: unreadable image (first: %s)",
                len(gone), ", ".join(sorted(gone)[:5]))
    return dataclasses.replace(
        bench, queries=[q for q in bench.queries if q.id not in gone],
        qrels={q: judged for q, judged in bench.qrels.items() if q not in gone},
        absent_qrels={q: judged for q, judged in bench.absent_qrels.items() if q not in gone})


def encoder_compute(
    encoder: Encoder,
    bench: Benchmark,
    stats: list[dict[str, Any]],
    fusion_cfg: dict[str, Any],
    embed_cfg: dict[str, Any],
) -> dict[str, Any]:
    """``encoder.compute`` of metrics.json: GFLOPs per text, image (and joint) document,
    parameters and items/s (:func:`mixsearch.compute.measure_compute`), measured once per
    encoder and input kind in a process (the jobs of a sweep share it)."""
    from mixsearch.compute import compute_samples, measure_compute
    from mixsearch.embed.extract import resolve_amp

    fields = ("text", "image", "joint") if fusion_cfg.get("method") == "joint" else ("text", "image")
    encoded = sum(s.get("encoded_items", 0) for s in stats)
    seconds = sum(s.get("seconds", 0.0) for s in stats if s.get("encoded_items"))
    speed = encoded / seconds if encoded and seconds else None
    key = "compute:" + json.dumps([getattr(encoder, "name", ""), _fingerprint(encoder), fields,
                                    bench.name, embed_cfg.get("max_image_side")])
    if key not in _MEMO:
        amp = resolve_amp(embed_cfg.get("amp", "auto"), encoder.device)
        _MEMO[key] = measure_compute(encoder, compute_samples(bench.corpus, fields),
                                     encoded_items_per_s=speed, amp=amp,
                                     max_image_side=embed_cfg.get("max_image_side"))
    out = dict(_MEMO[key])
    if speed:  # this run's own extraction speed beats an earlier job's sample timing
        out.update(items_per_s=speed, items_per_s_source="extraction")
    return out


def gflops_per_doc(
    compute: dict[str, Any], counts: dict[str, int], fusion_cfg: dict[str, Any]
) -> float | None:
    """Mean GFLOPs to embed one document of this run's corpus mix: a text or image document
    costs one text or image embedding; an image+text one costs both (α-fusion, late fusion)
    or one joint embedding (``fusion=joint``). ``None`` when a needed figure is unknown."""
    g_text, g_image = compute.get("gflops_per_text"), compute.get("gflops_per_image")
    joint = fusion_cfg.get("method") == "joint"
    g_both = compute.get("gflops_per_joint") if joint else (
        None if g_text is None or g_image is None else g_text + g_image)
    total, n = 0.0, 0
    for modality, g in (("text", g_text), ("image", g_image), ("image+text", g_both)):
        k = int(counts.get(modality, 0))
        if k and g is None:
            return None
        total, n = total + k * (g or 0.0), n + k
    return total / n if n else None


def _fingerprint(encoder: Encoder) -> str:
    """The encoder's fingerprint hash in the compute memo key. A duck-typed plug-in without
    ``fingerprint_hash`` is keyed by its name alone (logged); an error raised while
    fingerprinting propagates, since a blank key would hand this model another model's figures."""
    fingerprint_hash = getattr(encoder, "fingerprint_hash", None)
    if not callable(fingerprint_hash):
        log.warning("encoder %r has no fingerprint_hash(): its compute figures are memoised "
                    "by its name alone", getattr(encoder, "name", type(encoder).__name__))
        return ""
    return fingerprint_hash()


def save_means(folder: Path, means: dict[str, np.ndarray]) -> dict[str, str]:
    """Write each fitted mean vector as ``<role>.npy`` so later runs can reuse it with
    ``calibration.source=files calibration.files.<role>=...`` (or ``calibration.state_dir``).
    Cross-fitted means (one row per item, not one vector) are not reusable and are not written."""
    return save_state(folder, {role: m for role, m in means.items() if m is not None and m.ndim == 1})


def save_state(folder: Path, state: dict[str, np.ndarray]) -> dict[str, str]:
    """Write each array of a calibration state as ``<key>.npy`` (atomically) with the folder's
    ``checksums.json`` (:mod:`mixsearch.statefiles`), reusable with
    ``calibration.source=files calibration.state_dir=<folder>``. Returns key -> path."""
    return write_state_files(folder, state)


def run(cfg: dict[str, Any], *, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Run one evaluation job and write its results into ``cfg['paths']['output_dir']``.

    The config is checked first (:func:`mixsearch.schema.validate`), before any tracker,
    model or data is touched.

    Args:
        cfg: the resolved run config as plain dicts.
        overrides: the job's command-line overrides (they decide whether an option of an
            inactive mode is an error or a warning).

    Returns:
        The result contract written to ``metrics.json`` (empty for a shard-only job).

    Raises:
        ConfigError: a wrong option, named.
        RunDirInUse: another live run holds the output dir.
    """
    warnings = validate(cfg, overrides=overrides)
    run_dir = Path(cfg["paths"]["output_dir"])
    with claim_run_dir(run_dir):  # two live runs never share a dir
        tracker = start_tracker(cfg, run_dir)
        try:
            # embed.progress=false: no bars at all, also those third-party encoders draw
            with progress_bars_off(not section(cfg, "embed").get("progress", True)):
                out = _run(cfg, run_dir, tracker, warnings)
        except BaseException as e:
            tracker.finish(ok=False, error=e)
            raise
        tracker.finish(ok=True)
    return out


def _run(cfg: dict[str, Any], run_dir: Path, tracker: Any, warnings: list[str]) -> dict[str, Any]:
    from mixsearch.evaluation import Evaluator

    t0 = time.perf_counter()
    seed_everything(int(cfg.get("seed", 0)))
    corpus_cfg, cal_cfg = section(cfg, "corpus"), section(cfg, "calibration")
    dataset_spec, dataset_opts = split_dataset_section(cfg["dataset"])
    embed_cfg = skip_policy(section(cfg, "dataset"), section(cfg, "embed"))
    devices = resolve_devices(embed_cfg.get("devices"))
    embed_cfg = extraction_options(embed_cfg)
    # images are decoded through embed_records, so the decode size travels with its options
    embed_cfg = {**embed_cfg, "max_image_side": dataset_opts["max_image_side"]}

    bench = build_shared(dataset_spec, "dataset")
    log.info("benchmark %s: %d queries, %d docs", bench.name, len(bench.queries), len(bench.corpus))
    if devices:
        if embed_cfg.get("num_shards", 1) != 1:
            raise ConfigError("embed.devices shards the extraction itself; drop embed.num_shards")
        # before this process builds its model: the devices are the extraction processes'
        per_device = extract_on_devices(cfg, devices)
    encoder = build_shared(cfg["model"], "model")
    fusion_cfg = resolve_fusion(section(cfg, "fusion"), encoder)
    if fusion_cfg != section(cfg, "fusion"):
        log.info("fusion=auto: %s for %s", fusion_cfg["method"], encoder.name)
        cfg = {**cfg, "fusion": {**cfg["fusion"], **fusion_cfg}}  # results record the choice
    check_joint(encoder, fusion_cfg)
    cache_dir = cfg["paths"].get("cache_dir")
    cache = EmbeddingCache(cache_dir) if cache_dir else None

    embs, stats = embed_all(encoder, bench, cache, embed_cfg, corpus_cfg=corpus_cfg,
                            cal_cfg=cal_cfg, fusion_cfg=fusion_cfg)
    encoded = sum(s.get("encoded_items", 0) for s in stats)
    cached = sum(s.get("cached_items", 0) for s in stats)
    if encoded == 0:
        print(f"embeddings: all {cached} items taken from the cache ({len(stats)} entries)")
    else:
        print(f"embeddings: encoded {encoded} items, {cached} taken from the cache")
    if embs is None:
        print(f"shard {embed_cfg.get('shard')}/{embed_cfg.get('num_shards')} done; "
              "run without embed.num_shards to merge the shards and evaluate")
        return {}

    pools = calibration_pools(encoder, bench, embs, cal_cfg, cache, embed_cfg)
    # embed.on_missing=skip: unreadable items leave the evaluation, named in metrics.json
    eval_bench, skipped_docs, skipped = apply_skips(bench, stats)
    evaluator = Evaluator(
        eval_bench, embs, corpus=corpus_cfg, calibration=cal_cfg,
        retrieval=section(cfg, "retrieval"), metrics=benchmark_metrics(bench, section(cfg, "metrics")),
        pools=pools,
        skipped_docs=skipped_docs,
    )
    files = image_files(bench)
    for s in skipped:
        split = s["entry"].split("/")[0]
        s["dropped"] = split == "queries" or s["id"] in evaluator.dropped
        s["file"] = files.get((s["entry"].rsplit("/", 1)[0], s["id"]))
    if evaluator.dropped:
        log.warning("%d doc(s) dropped from the evaluated corpus: unreadable image (first: %s); "
                    "their qrels still count", len(evaluator.dropped),
                    ", ".join(sorted(evaluator.dropped)[:5]))
    result = evaluator.run(fusion_cfg)
    out = result.to_json()
    query_task = bench.meta.get("query_task")
    if query_task and len(set(query_task.values())) > 1:  # M-BEIR task=all: UniIR's per-task view
        out.update(task_breakdown(result.per_query, query_task, bench.meta.get("task_headline")))
        result.per_query["task"] = result.per_query["qid"].map(query_task)
    cal = evaluator.calibration
    if cal.method == "gr":
        mean_files = save_means(run_dir / "means", cal.means)
        if mean_files:
            out["calibration"]["mean_files"] = mean_files
            out["calibration"]["state_dir"] = str(run_dir / "means")
    elif cal.reusable_state:
        out["calibration"]["state_files"] = save_state(run_dir / "calibration_state", cal.reusable_state)
        out["calibration"]["state_dir"] = str(run_dir / "calibration_state")
    out["benchmark"] = {"name": bench.name, "n_queries": len(bench.queries),
                        "n_docs": len(bench.corpus), **{k: v for k, v in bench.meta.items()
                                                          if isinstance(v, (str, int, float, type(None)))}}
    compute = encoder_compute(encoder, bench, stats, fusion_cfg, embed_cfg)
    compute["gflops_per_doc"] = gflops_per_doc(compute, out["corpus"]["counts"], fusion_cfg)
    out["encoder"] = {**encoder.describe(), "supports_joint": bool(getattr(encoder, "supports_joint", False)),
                      "compute": compute}
    out["embedding"] = {"entries": stats, "encoded_items": encoded, "cached_items": cached,
                        "text_stats": encoder.text_stats(), "digests": input_digests(embs, pools)}
    if devices:  # what each extraction process encoded (this process read them back)
        out["embedding"]["devices"] = [
            {"device": d, "encoded_items": sum(s.get("encoded_items", 0) for s in st)}
            for d, st in zip(devices, per_device, strict=True)]
    out["skipped"] = skipped
    out["config"] = cfg
    out["config_warnings"] = warnings
    out["versions"] = package_versions()
    out["git"] = git_commit()
    out["seconds"] = round(time.perf_counter() - t0, 3)
    write_results(run_dir, out, result.per_query, run=trec_run_text(result.ranked, result.scores))
    tracker.log_result(out, result.per_query)
    summary = format_summary(out) + f"\nresults: {run_dir}"
    print(summary)
    results_log.info("%s", summary)
    return out


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def format_summary(out: dict[str, Any]) -> str:
    """A few lines for the terminal: the main metrics and the modality diagnostics."""
    m = out["metrics"]
    cal = out.get("calibration", {})
    model = (out.get("encoder") or {}).get("name")
    fusion = ((out.get("config") or {}).get("fusion") or {})
    fused = fusion.get("method")
    if fused in ("weighted", "score"):
        fused = f"{fused} (alpha={fusion.get('alpha')})"
    lines = [
        (f"model={model}  " if model else "")
        + f"{out['benchmark']['name']}  calibration={cal.get('method')} (source={cal.get('source')})"
        f"  corpus={out.get('corpus', {}).get('mode')}" + (f"  fusion={fused}" if fused else ""),
        "  " + "  ".join(f"{k}={m[k]:.4f}" for k in ("ndcg@10", "recall@1", "mrr@10", "ndcg@100") if k in m),
        *(["  " + "  ".join(f"{display_name(k)}={m[k]:.4f}" for k in ("hit@5", "hit@10") if k in m)]
          if "hit@5" in m or "hit@10" in m else []),
    ]
    gap = out.get("gap") or {}
    if gap.get("centroid_distance_before") is not None:
        lines.append(
            f"  modality gap (text-image centroid distance): {gap['centroid_distance_before']:.3f}"
            f" -> {_num(gap.get('centroid_distance_after')):.3f}"
        )
    macro = out.get("task_headline_macro")
    if macro:
        names = sorted({display_name(m) for m in macro["measures"].values()})
        lines.append(f"  {len(macro['measures'])} tasks: mean of each task's {' / '.join(names)} "
                     f"(UniIR's average) = {macro['value']:.4f}")
    by = out.get("by_target_modality") or {}
    if by:
        parts = []
        for mod, v in by.items():
            val = v.get("ndcg@10") if isinstance(v, dict) else v
            if isinstance(val, (int, float)):
                parts.append(f"{mod}={val:.3f}")
        if parts:
            lines.append("  ndcg@10 by target modality: " + "  ".join(parts))
    return "\n".join(lines)
