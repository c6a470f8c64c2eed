"""Write mixsearch runs as mteb result files (``python -m experiments.report export-mteb``).

Per run (a folder holding ``metrics.json``) the exporter writes, as mteb's ResultCache does,

    OUT/<org>__<model>/<revision>/<TaskName>.json           the model's plain use
    OUT/<org>__<model>/<revision>/experiments/<name>/<TaskName>.json   anything else
    ... and a ``model_meta.json`` beside each.

The task file is a :class:`mteb.TaskResult` (``dataset_revision``, ``task_name``,
``mteb_version``, ``scores`` per split with ``main_score``, ``hf_subset``, ``languages`` and
the metrics in mteb's names such as ``ndcg_at_10``, ``evaluation_time``, ``kg_co2_emissions``),
written with mteb's own ``TaskResult.to_disk``. A top-level ``mixsearch`` block (ignored by
mteb's loader) names the source run and, for benchmarks that are not mteb tasks (MixBench, toy,
M-BEIR), says so.

"Plain use" is calibration ``none``, fusion ``joint`` or ``weighted`` at alpha 0.5, the
released corpus and one exact index. Every other setting becomes an ``experiment_kwargs``
entry of the model meta, and mteb's own serialisation (sorted ``key_value`` pairs joined by
``__``) names the experiment folder, e.g. ``experiments/calibration_gr__fusion_score``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NOT_MTEB = ("{task} is not an mteb task: mixsearch wrote this file in mteb's result format from "
            "its own benchmark {bench}; mteb cannot evaluate or re-run it.")
_PREFIX = {"mixbench": "MixBench", "toy": "", "mbeir": "MBEIR", "beir": "BEIR"}
# mixsearch measure name -> mteb metric prefix (measure@k -> <prefix>_at_k)
MEASURE_NAMES = {"ndcg": "ndcg", "recall": "recall", "mrr": "mrr", "map": "map",
                 "precision": "precision", "hit": "hit_rate", "hit_rate": "hit_rate",
                 "mbeir_recall": "hit_rate"}


class ExportError(ValueError):
    """A run that cannot be exported (the message names the run folder)."""


def mteb_metric(name: str) -> str:
    """mteb's name of a mixsearch metric: ``ndcg@10`` -> ``ndcg_at_10``."""
    measure, _, k = name.partition("@")
    prefix = MEASURE_NAMES.get(measure, re.sub(r"\W", "_", measure))
    return f"{prefix}_at_{k}" if k else prefix


def task_name(bench: Mapping[str, Any]) -> str:
    """The mteb task name of a run's benchmark: the mteb task itself, or a CamelCase name such
    as ``MixBenchMSCOCO`` / ``ToyCOCO`` for benchmarks that are not mteb tasks."""
    if bench.get("mteb_task"):
        return str(bench["mteb_task"])
    source, *rest = str(bench["name"]).split("/")
    parts = [_PREFIX.get(source, source.capitalize())]
    parts += [re.sub(r"[^0-9A-Za-z]", "", p[:1].upper() + p[1:]) for p in rest]
    return "".join(parts)


def experiment_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a run that differ from the model's plain use (module docstring)."""
    cal, fusion = config.get("calibration") or {}, config.get("fusion") or {}
    corpus, retrieval = config.get("corpus") or {}, config.get("retrieval") or {}
    out: dict[str, Any] = {}
    if cal.get("method", "none") != "none":
        out["calibration"] = cal["method"]
        if cal.get("source", "auto") != "auto":
            out["calibration_source"] = cal["source"]
        if cal.get("params"):
            out["calibration_params"] = dict(cal["params"])
    method = fusion.get("method", "weighted")
    if method != "joint" and (method != "weighted" or float(fusion.get("alpha", 0.5)) != 0.5):
        out["fusion"] = method
        if float(fusion.get("alpha", 0.5)) != 0.5:  # the default weight stays out of the name
            out["fusion_alpha"] = float(fusion["alpha"])
    if fusion.get("query", "weighted") != "weighted" or float(fusion.get("query_alpha", 0.5)) != 0.5:
        out["fusion_query"] = f"{fusion.get('query')}:{fusion.get('query_alpha')}"
    if corpus.get("mode", "released") != "released":
        out["corpus"] = corpus["mode"]
        out.update({f"corpus_{k}": corpus[k] for k in ("ratio", "p", "seed") if k in corpus})
    for key, plain in (("merge", "single"), ("backend", "exact")):
        if retrieval.get(key, plain) != plain:
            out[f"retrieval_{key}"] = retrieval[key]
    # scoring other than mteb's (pytrec_eval over the task's whole qrels, linear gain)
    metrics = config.get("metrics") or {}
    for key, plain in (("absent_qrels", "count"), ("gain", "linear"), ("ndcg_variant", "trec")):
        if metrics.get(key, plain) != plain:
            out[f"metrics_{key}"] = metrics[key]
    return out


def model_identity(encoder: Mapping[str, Any], model_cfg: Mapping[str, Any]) -> tuple[str, str]:
    """``(name, revision)`` of the model in mteb's ``org/model`` form."""
    meta = encoder.get("model_meta") or {}
    if meta.get("name"):
        return str(meta["name"]), str(meta.get("revision") or "no_revision_available")
    revision = str(model_cfg.get("revision") or encoder.get("revision") or "no_revision_available")
    ident = str(encoder.get("model_id_or_path") or "")
    if not ident:
        ident = str(encoder.get("model_name") or encoder.get("name") or "unknown")
        if ident.startswith("hf-hub:"):
            ident = ident.removeprefix("hf-hub:")
        elif str(encoder.get("name", "")).startswith("toy:"):
            ident = "mixsearch/" + str(encoder["name"]).split(":", 1)[1]
        elif encoder.get("pretrained"):
            ident = f"open_clip/{ident}-{encoder['pretrained']}"
    if "/" not in ident or Path(ident).exists() or ident.startswith("local-dir:"):
        ident = "local/" + Path(ident.removeprefix("local-dir:")).name
    return ident, revision


def model_meta(name: str, revision: str, encoder: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
    """An :class:`mteb.ModelMeta` for the run's model: mteb's own entry when mteb knows the model,
    else one built from what the run recorded."""
    import mteb
    from mteb.models.model_meta import ModelMeta

    try:
        meta = mteb.get_model_meta(name, revision=revision, fetch_from_hf=False)
    except Exception:  # noqa: BLE001 - mteb raises several types for unknown models
        meta = None
    if meta is None or meta.name != name:
        modalities = [m for m in ("text", "image") if m in (encoder.get("modalities") or ["text", "image"])]
        compute = encoder.get("compute") or {}
        meta = ModelMeta(
            loader=None, name=name, revision=revision, release_date=None, languages=None,
            n_parameters=encoder.get("parameters") or compute.get("parameters"),
            memory_usage_mb=None, max_tokens=None, embed_dim=encoder.get("dim"), license=None,
            open_weights=None, public_training_code=None, public_training_data=None,
            framework=[], similarity_fn_name="cosine", use_instructions=None,
            training_datasets=None, modalities=modalities or ["text"])
    return meta.model_copy(update={"revision": revision, "experiment_kwargs": dict(kwargs) or None})


def _languages(bench: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``(hf_subset, languages)`` of the benchmark (mteb's own for mteb tasks)."""
    if bench.get("mteb_task"):
        import mteb

        meta = mteb.get_task(str(bench["mteb_task"])).metadata
        subset = str(bench.get("hf_subset") or "default")
        return subset, list(meta.hf_subsets_to_langscripts.get(subset, meta.languages))
    return str(bench.get("subset") or "default"), ["eng-Latn"]


def task_result(run: Mapping[str, Any], run_dir: Path) -> Any:
    """The :class:`mteb.TaskResult` of one run's ``metrics.json`` (``run``)."""
    from mteb import TaskResult, __version__

    bench, config = run["benchmark"], run.get("config") or {}
    name = task_name(bench)
    if bench.get("mteb_task"):
        main = str(bench.get("main_score") or "ndcg_at_10")
    else:
        main = mteb_metric(str(config.get("main_metric", "ndcg@10")))
    scores = {mteb_metric(k): float(v) for k, v in run["metrics"].items()}
    if main not in scores:
        raise ExportError(f"{run_dir}: the task's main score {main} is not among the run's metrics "
                          f"{sorted(scores)}; rerun with metrics.ks / metrics.measures covering it")
    subset, languages = _languages(bench)
    entry = {"main_score": scores[main], "hf_subset": subset, "languages": languages, **scores}
    split = str(bench.get("split") or "test")
    return TaskResult(dataset_revision=str(bench.get("revision") or "no_revision_available"),
                      task_name=name, mteb_version=__version__, scores={split: [entry]},
                      evaluation_time=run.get("seconds"), kg_co2_emissions=None)


def _note(run: Mapping[str, Any], run_dir: Path, name: str, kwargs: Mapping[str, Any]) -> dict:
    bench = run["benchmark"]
    note = {"source_run": str(run_dir), "benchmark": bench["name"], "mteb_task": bool(bench.get("mteb_task")),
            "settings": dict(kwargs), "mixsearch_version": (run.get("versions") or {}).get("mixsearch")}
    if not bench.get("mteb_task"):
        note["note"] = NOT_MTEB.format(task=name, bench=bench["name"])
    return note


def run_dirs(path: Path) -> list[Path]:
    """Run folders under ``path`` (itself, or every folder below holding ``metrics.json``)."""
    found = sorted(p.parent for p in Path(path).rglob("metrics.json"))
    if not found:
        raise ExportError(f"{path}: no metrics.json in this folder or below (a run or sweep folder)")
    return found


def export_runs(paths: Iterable[Path], out: Path) -> list[Path]:
    """Export every run under ``paths`` into ``out``; returns the task files written.

    Raises:
        ExportError: two runs that would write the same file (they differ in a setting that
            mteb's layout has no place for), or a run without the task's main score.
    """
    written: dict[Path, Path] = {}
    for run_dir in (d for p in paths for d in run_dirs(Path(p))):
        run = json.loads((run_dir / "metrics.json").read_text())
        config = run.get("config") or {}
        name, revision = model_identity(run.get("encoder") or {}, config.get("model") or {})
        kwargs = experiment_kwargs(config)
        meta = model_meta(name, revision, run.get("encoder") or {}, kwargs)
        folder = Path(out) / meta.model_name_as_path() / revision
        if meta.experiment_name:
            folder = folder / "experiments" / meta.experiment_name
        result = task_result(run, run_dir)
        check = str(run["benchmark"].get("revision_check") or "")
        if check.startswith("unverified"):
            log.warning("%s: dataset_revision %s is mteb's pinned one, but the run read a local "
                        "copy whose revision is %s", run_dir, result.dataset_revision, check)
        target = folder / f"{result.task_name}.json"
        if target in written:
            raise ExportError(f"{run_dir} and {written[target]} both export to {target}: they differ "
                              "in a setting mteb's result layout cannot tell apart; export them separately")
        folder.mkdir(parents=True, exist_ok=True)
        result.to_disk(target)
        data = json.loads(target.read_text())
        data["mixsearch"] = _note(run, run_dir, result.task_name, kwargs)
        target.write_text(json.dumps(data, indent=2))
        (folder / "model_meta.json").write_text(json.dumps(meta.to_dict(), default=str, indent=4))
        written[target] = run_dir
    return sorted(written)


def main(argv: list[str]) -> int:
    """``export-mteb RUN_OR_SWEEP_DIR... --out DIR``: prints each file written; 2 on bad input."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m experiments.report export-mteb",
                                     description="Write runs as mteb result files.")
    parser.add_argument("runs", nargs="+", type=Path, help="run or sweep dirs")
    parser.add_argument("--out", type=Path, required=True, help="results folder to write into")
    args = parser.parse_args(argv)
    try:
        paths = export_runs(args.runs, args.out)
    except (ExportError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(f"wrote {p}" for p in paths))
    return 0
