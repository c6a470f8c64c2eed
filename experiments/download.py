"""Pre-fetch (or check) every model and dataset a reproduction needs, for offline compute nodes.

    python -m experiments.download --models clip_b16,openclip_b16 --datasets mixbench_mscoco
    python -m experiments.download --check --models ... --datasets ...   # cache only, no network
    python -m experiments.download --print --models vlm2vec_qwen2vl_7b   # the commands only

Names are config names (``conf/model``, ``conf/dataset``); trailing ``key=value`` arguments are
Hydra overrides applied to each (``paths.hf_cache=/shared/hf``, ``dataset.root=...``).
transformers, Sentence Transformers and mteb checkpoints, LoRA adapters (with their base model)
and the MixBench repos are fetched with ``snapshot_download``, open_clip ``hf-hub:`` models
through open_clip itself; the MixBench loader then runs once so its caches are complete. Each
model's exact pre-download commands (``hf download REPO [--revision R]``) are printed first.
Local paths, mteb's baselines, the toy model and toy data need nothing. Exit status 2 names
everything missing and how to pre-download it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mixsearch.compose import compose_config
from mixsearch.preflight import (
    check_dataset,
    check_model,
    download_commands,
    is_hub_dataset,
    model_files,
)

#: what snapshot_download fetches of a transformers / Sentence Transformers / adapter repo
_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.jinja", "*.py"]

HINT = ("`make download` (python -m experiments.download) must run on a machine with access to "
        "the Hugging Face hub, writing into the HF_HOME / paths.hf_cache the compute nodes read.")


def _section(group: str, name: str, overrides: list[str]) -> dict[str, Any]:
    """The ``group`` section of the run config with ``group=name`` and ``overrides``."""
    return compose_config([f"{group}={name}", *overrides])[group]


def fetch_model(name: str, spec: dict[str, Any]) -> None:
    """Download every hub repo of a model config into the cache its encoder reads."""
    for kind, repo, rev in model_files(name, spec):
        if kind == "openclip":
            import open_clip

            open_clip.create_model_from_pretrained(f"hf-hub:{repo}", cache_dir=spec.get("cache_dir"))
            open_clip.get_tokenizer(f"hf-hub:{repo}", cache_dir=spec.get("cache_dir"))
        else:
            from huggingface_hub import snapshot_download

            snapshot_download(repo, revision=rev, cache_dir=spec.get("cache_dir"),
                              allow_patterns=_PATTERNS)


def fetch_dataset(name: str, spec: dict[str, Any]) -> None:
    """Download a MixBench subset (hub repo files and pinned qrels), then load it once; an
    mteb task (``dataset=mteb``) is loaded once through mteb, which caches its pinned revision."""
    from huggingface_hub import snapshot_download

    from mixsearch.config import build, split_dataset_section

    if not is_hub_dataset(spec):
        return
    if str(spec["_target_"]).endswith("load_mteb_task"):  # mteb's loader fills the datasets cache
        build(split_dataset_section(spec)[0], f"dataset ({name})")
        return
    subset, cache = spec["subset"], spec.get("cache_dir")
    snapshot_download(spec["repo"], repo_type="dataset", revision=spec.get("revision"),
                      allow_patterns=[f"{subset}/*", "*.md", "*.json"], cache_dir=cache)
    snapshot_download(spec["qrels_repo"], repo_type="dataset", revision=spec.get("qrels_revision"),
                      allow_patterns=[f"{subset}/qrels/*"], cache_dir=cache)
    build(split_dataset_section(spec)[0], f"dataset ({name})")


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m experiments.download",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="", help="comma-separated model config names")
    parser.add_argument("--datasets", default="", help="comma-separated dataset config names")
    parser.add_argument("--check", action="store_true",
                        help="only check that everything is cached (never touches the network)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="only print the commands that pre-download the models")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every config")
    args = parser.parse_args(argv)
    if args.check:  # before datasets/transformers are imported: they read these at import
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    items = [("model", m) for m in args.models.split(",") if m] + \
            [("dataset", d) for d in args.datasets.split(",") if d]
    problems = []
    for group, name in items:
        spec = _section(group, name, args.overrides)
        if group == "model" and not args.check:
            # the exact commands first, so a failed fetch still says what to run elsewhere
            for cmd in download_commands(name, spec):
                print(cmd)
        if args.print_only:
            continue
        if args.check:
            problem = (check_model if group == "model" else check_dataset)(name, spec)
        else:
            try:
                (fetch_model if group == "model" else fetch_dataset)(name, spec)
                problem = None
            except Exception as e:  # noqa: BLE001 - report every item, then fail once
                problem = f"{group} {name}: {type(e).__name__}: {e}"
        if problem:
            problems.append(problem)
        print(f"{group} {name}: {'MISSING' if problem else 'ok'}", file=sys.stderr)
    if problems:
        print("not available offline:\n  " + "\n  ".join(problems) + f"\n{HINT}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
