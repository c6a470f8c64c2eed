"""``python -m mixsearch index DIR --out INDEX`` and ``python -m mixsearch search INDEX "query"``:
search your own folder of images, texts and image+text pairs (docs/viewer.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from mixsearch.config import ConfigError, build
from mixsearch.data.benchmark import DataError
from mixsearch.encoders.base import EncoderError


def _model(name: str, overrides: list[str]) -> tuple[dict[str, Any], str]:
    """The ``model`` section of config ``name`` (conf/model/<name>.yaml) and the cache dir."""
    from mixsearch.compose import compose_config

    cfg = compose_config([f"model={name}", *overrides])
    return cfg["model"], cfg["paths"]["cache_dir"]


def cmd_index(args: argparse.Namespace) -> int:
    import numpy as np

    from mixsearch.collection import (
        embed_items,
        load_means,
        scan_folder,
        transductive_means,
        write_index,
    )
    from mixsearch.embed.cache import EmbeddingCache

    spec, cache_dir = _model(args.model, args.set)
    coll = scan_folder(args.folder)
    c = coll.counts()
    print(f"{coll.root}: {c['image']} images, {c['text']} texts, {c['image+text']} image+text pairs"
          + (f", {len(coll.skipped)} files skipped" if coll.skipped else ""))
    encoder = build(spec, "model")
    text, image, st = embed_items(encoder, coll.items, EmbeddingCache(args.cache or cache_dir),
                                  batch_size=args.batch_size)
    print(f"embeddings: encoded {st.encoded} items, {st.cached} taken from the cache")
    for item_id, why in sorted((st.skipped or {}).items()):
        print(f"warning: skipped {item_id}: {why}", file=sys.stderr)
    means = None
    if args.calibration == "gr":
        means = load_means(args.means) if args.means else transductive_means(
            _stack(text, encoder.dim), _stack(image, encoder.dim))
        dims = {r: len(v) for r, v in vars(means).items() if isinstance(v, np.ndarray)}
        wrong = {r: d for r, d in dims.items() if d != encoder.dim}
        if wrong:
            raise DataError(f"--means {args.means}: {', '.join(f'{r} has dim {d}' for r, d in wrong.items())}"
                            f", but {encoder.name} embeds in dim {encoder.dim}")
    meta = write_index(args.out, coll, encoder, spec, text, image, means, st.skipped or {})
    cal = "none" if means is None else f"gr, means {means.source}" + (
        f" ({args.means})" if args.means else f" (fitted on this collection: {means.n_samples})")
    skipped = f", {len(meta['skipped'])} skipped (listed in index.json)" if meta["skipped"] else ""
    print(f"index: {args.out} ({len(meta['items'])} items{skipped}, model {encoder.name}, fingerprint "
          f"{meta['model']['fingerprint_hash']}, calibration {cal})")
    return 0


def _stack(rows: dict, dim: int):
    import numpy as np

    return np.stack(list(rows.values())) if rows else np.zeros((0, dim), np.float32)


def cmd_search(args: argparse.Namespace) -> int:
    from mixsearch.collection import check_encoder, embed_query, read_index, search

    index = read_index(args.index)
    if args.model:
        spec, _ = _model(args.model, args.set)
    else:
        spec = index.meta["model"]["spec"]
    encoder = build(spec, "model")
    check_encoder(index, encoder)
    if not args.query and not args.image:
        raise DataError("give a query text, --image FILE, or both")
    calibration = args.calibration or ("gr" if index.means is not None else "none")
    qt, qi = embed_query(encoder, args.query, args.image)
    hits = search(index, qt, qi, k=args.k, calibration=calibration, alpha=args.alpha)
    print(f"{len(hits)} of {len(index.items)} items · calibration={calibration} · {index.meta['model']['name']}")
    print(f"{'rank':>4}  {'score':>7}  {'modality':<10}  path / snippet")
    for rank, (row, score) in enumerate(hits, 1):
        it = index.items[row]
        what = it["id"] + (f": {_short(it['text'])}" if it["text"] else "")
        print(f"{rank:>4}  {score:7.4f}  {it['modality']:<10}  {what}")
    if args.html:
        from mixsearch.viewer import render_page, write_view
        from mixsearch.viewer.payload import search_payload

        payload = search_payload(index, args.query, args.image, hits, calibration, alpha=args.alpha)
        out = write_view(args.html, render_page(payload, "", title=f"mixsearch · {args.query or args.image}"))
        print(f"html: {out}")
    return 0


def _short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mixsearch", description=(
        "Index a folder of images, texts and image+text pairs, then search it (docs/viewer.md)."))
    sub = p.add_subparsers(dest="command", required=True)
    ix = sub.add_parser("index", help="embed a folder into an index")
    ix.add_argument("folder", help="images, .txt/.md files and .jsonl image+text pairs (recursive)")
    ix.add_argument("--out", required=True, help="index folder to write")
    ix.add_argument("--model", default="toy", help="model config name (conf/model), default toy")
    ix.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. --set model.device=cpu (repeatable)")
    ix.add_argument("--calibration", choices=("gr", "none"), default="gr",
                    help="gr (default): store GR means; none: no means")
    ix.add_argument("--means", help="shared means: a means .npz or a run's means/ folder "
                    "(default: fitted on the collection itself, labelled transductive)")
    ix.add_argument("--cache", help="embedding cache folder (default paths.cache_dir)")
    ix.add_argument("--batch-size", type=int, default=64)
    ix.set_defaults(func=cmd_index)
    se = sub.add_parser("search", help="rank an index's items for a query")
    se.add_argument("index", help="index folder")
    se.add_argument("query", nargs="?", default=None, help="query text")
    se.add_argument("--image", help="query image (alone or with the text)")
    se.add_argument("-k", type=int, default=10, help="results shown (default 10)")
    se.add_argument("--calibration", choices=("gr", "none"),
                    help="default: gr when the index holds means, else none")
    se.add_argument("--alpha", type=float, default=0.5, help="text weight of image+text items")
    se.add_argument("--model", help="query model config (default: the index's own); a model "
                    "with another fingerprint is refused")
    se.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    se.add_argument("--html", help="also write the results as a self-contained HTML page")
    se.set_defaults(func=cmd_search)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input, with the message)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (DataError, ConfigError, EncoderError, ValueError) as e:
        print(f"mixsearch {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
