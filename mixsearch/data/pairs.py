"""Image–caption pairs (e.g. MSCOCO / Google WIT / VisualNews training splits) as calibration
data for GR-CLIP's means.

The paper fits its means on the *training* splits of several datasets (docs/paper.md §2), which
MixBench does not ship. A pairs file is the smallest common form of those splits: JSON lines
``{"id": str, "text": str | null, "image": path | null}`` (the MixBench25 ``corpus.jsonl``
schema; ``query_id``/``corpus_id``/``_id`` also accepted as the id), images resolved against
``image_root`` or the file's folder.

The benchmark it returns has no qrels: its texts are split ``queries`` (role ``query_text``
when the captions are query-like) and its records split ``corpus`` (roles ``doc_text`` and
``doc_image``); ``calibration.train_sets`` names which.
"""

from __future__ import annotations

from pathlib import Path

from mixsearch.data.benchmark import Benchmark, DataError, Record
from mixsearch.data.io import ImageResolver, image_value, read_jsonl, record_id, text_value


def load_pairs(path: str, *, image_root: str | None = None, name: str | None = None) -> Benchmark:
    """Read a pairs file into a calibration-only :class:`Benchmark`.

    Args:
        path: the JSON-lines file.
        image_root: folder the image paths are relative to (default: the file's folder).
        name: benchmark name (default: ``pairs/<file stem>``).

    Raises:
        DataError: missing file, bad JSON (names ``file:line``), duplicate id, a row with
            neither text nor image, or a missing image file (names the file and the id).
    """
    file = Path(path)
    resolver = ImageResolver(file.parent, file.parent, image_root)
    records: list[Record] = []
    seen: set[str] = set()
    for where, row in read_jsonl(file):
        rid = record_id(row, where)
        if rid in seen:
            raise DataError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        origin = f"{where}#{rid}"
        rec = Record(rid, text_value(row.get("text"), origin),
                     image_value(row.get("image"), origin, resolver))
        if rec.text is None and rec.image is None:
            raise DataError(f"{where}: record {rid!r} has neither text nor image")
        records.append(rec)
    if not records:
        raise DataError(f"{file}: no records")
    texts = [Record(r.id, r.text) for r in records if r.text is not None]
    return Benchmark(
        name=name or f"pairs/{file.stem}", queries=texts, corpus=records, qrels={},
        meta={"loader": "pairs", "path": str(file), "image_resolution": dict(resolver.hits)},
    )
