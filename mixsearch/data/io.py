"""Shared readers for benchmark files: JSON lines, qrels TSV and image references.

Every error names the file and, where there is one, the line or record id, so that a broken
download can be found without a debugger.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from mixsearch.data.benchmark import DataError, ImageRef, Qrels

# Id fields of the formats in docs/formats.md §8.2, in the order they are tried.
ID_KEYS = ("id", "_id", "query_id", "corpus_id", "qid", "did")

_QID_COLUMNS = frozenset({"query_id", "query-id", "qid"})
_CID_COLUMNS = frozenset({"corpus_id", "corpus-id", "doc_id", "did"})
_SCORE_COLUMNS = frozenset({"score", "relevance"})
_IGNORED_COLUMNS = frozenset({"q0", "iteration"})
_KNOWN_COLUMNS = _QID_COLUMNS | _CID_COLUMNS | _SCORE_COLUMNS | _IGNORED_COLUMNS


class MissingImageError(DataError):
    """An image path that none of the resolution rules finds on disk."""


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """Yield ``("file:line", object)`` for each non-blank line of a JSON-lines file.

    Raises:
        DataError: the file is missing, a line is not valid JSON or not a JSON object
            (names ``file:line``).
    """
    for where, line in _lines(path, "file"):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: invalid JSON: {e.msg} (column {e.colno})") from e
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield where, obj


def _lines(path: str | os.PathLike, what: str) -> Iterator[tuple[str, str]]:
    """Yield ``("file:line", line)`` for each non-blank line.

    Raises:
        DataError: the file is missing, or a line is not valid UTF-8 (names ``file:line``).
    """
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError as e:
        raise DataError(f"{what} not found: {path}") from e
    lineno = 0
    with f:
        try:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield f"{path}:{lineno}", line
        except UnicodeDecodeError as e:
            # The decoder works on blocks, so its position says nothing about the line:
            # find the first undecodable line from the bytes.
            raise DataError(_undecodable(path, e)) from e


def _undecodable(path: str | os.PathLike, err: UnicodeDecodeError) -> str:
    """``file:line: not valid UTF-8 ...`` for the first line that does not decode."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                byte = raw[e.start : e.start + 1].hex()
                return (f"{path}:{lineno}: not valid UTF-8 (byte 0x{byte} at column "
                        f"{e.start + 1}); re-save the file as UTF-8")
    return f"{path}: not valid UTF-8 ({err.reason})"


def record_id(row: dict, where: str) -> str:
    """The record's id as a string, from the first id field present (:data:`ID_KEYS`)."""
    for key in ID_KEYS:
        value = row.get(key)
        if value is not None and value != "":
            return str(value)
    raise DataError(f"{where}: no id field (expected one of {', '.join(ID_KEYS)})")


def text_value(value: object, where: str) -> str | None:
    """Normalise a text field: ``None``, a missing key and ``""`` all mean no text."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: text must be a string or null, got {type(value).__name__}")
    return value


class ImageResolver:
    """Finds image files named by (usually relative) paths, counting which rule found each.

    Releases disagree on the path form (bare name, ``images/<f>``, ``<subset>/images/<f>``;
    docs/formats.md §10 Q3), so candidates are tried in order (§8.5): ``image_root/p``,
    ``image_root/basename(p)``, ``subset_dir/p``, ``subset_dir/images/basename(p)``,
    ``root/p``. Absolute paths are used as they are.
    """

    def __init__(
        self, root: str | os.PathLike, subset_dir: str | os.PathLike, image_root: str | None = None
    ) -> None:
        root, subset_dir = Path(root), Path(subset_dir)
        rules = []
        if image_root is not None:
            base = Path(image_root)
            rules += [
                ("image_root", lambda p: base / p),
                ("image_root/basename", lambda p: base / Path(p).name),
            ]
        rules += [
            ("subset_dir", lambda p: subset_dir / p),
            ("subset_dir/images/basename", lambda p: subset_dir / "images" / Path(p).name),
            ("root", lambda p: root / p),
        ]
        self._rules = rules
        self.hits: Counter[str] = Counter()

    def candidates(self, p: str) -> list[tuple[str, Path]]:
        """The ``(rule, path)`` pairs tried for ``p``, in order."""
        if os.path.isabs(p):
            return [("absolute", Path(p))]
        return [(name, rule(p)) for name, rule in self._rules]

    def resolve(self, p: str, where: str) -> str:
        """The first existing candidate for ``p``; counts the rule that found it.

        Raises:
            MissingImageError: no candidate exists (names the file, ``where`` and the tries).
        """
        tried = self.candidates(p)
        for name, cand in tried:
            if cand.is_file():
                self.hits[name] += 1
                return str(cand)
        raise MissingImageError(
            f"image file not found: {p!r} for {where} (tried {', '.join(str(c) for _, c in tried)})"
        )


def image_value(value: object, where: str, resolver: ImageResolver | None) -> ImageRef | None:
    """Turn an image field into a lazy :class:`ImageRef` without decoding it.

    Accepts ``None``/``""`` (no image), a path string, or an HF ``Image`` struct
    ``{"bytes": ..., "path": ...}`` (bytes win; a struct with only a path is resolved like a
    path string). ``where`` names the file and record for messages and image origins.

    Raises:
        MissingImageError: a path that does not resolve to a file.
        DataError: a value of another type, or a path where no resolver is available.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        if value.get("bytes"):
            return ImageRef(data=value["bytes"], origin=where)
        value = value.get("path")
        if not value:
            return None
    if not isinstance(value, str):
        raise DataError(f"{where}: unsupported image value of type {type(value).__name__}")
    if resolver is None:
        raise DataError(f"{where}: image given as a path {value!r} but no folder to resolve it in")
    return ImageRef(path=resolver.resolve(value, where), origin=where)


def _qrels_columns(fields: list[str], where: str) -> tuple[bool, int, int, int, int]:
    """``(is_header, qid column, cid column, score column, column count)`` from a first row."""
    names = [f.strip().lower() for f in fields]
    if not any(n in _KNOWN_COLUMNS - _IGNORED_COLUMNS for n in names):
        if len(fields) == 3:  # qid cid score
            return False, 0, 1, 2, 3
        if len(fields) == 4:  # TREC: qid Q0|iteration cid score
            return False, 0, 2, 3, 4
        raise DataError(
            f"{where}: cannot tell the qrels columns: no header naming query_id/corpus_id/score "
            f"and {len(fields)} columns (headerless qrels need 3: qid cid score, or 4: qid Q0 cid score)"
        )
    unknown = [f for f, n in zip(fields, names, strict=True) if n not in _KNOWN_COLUMNS]
    if unknown:
        raise DataError(
            f"{where}: unknown qrels column(s) {unknown}; known: {sorted(_KNOWN_COLUMNS)}"
        )
    found = []
    for role, allowed in (
        ("query id", _QID_COLUMNS),
        ("corpus id", _CID_COLUMNS),
        ("score", _SCORE_COLUMNS),
    ):
        idx = [i for i, n in enumerate(names) if n in allowed]
        if len(idx) != 1:
            raise DataError(
                f"{where}: qrels header needs exactly one {role} column ({sorted(allowed)}), got {fields}"
            )
        found.append(idx[0])
    return True, found[0], found[1], found[2], len(fields)


def _int_score(text: str, where: str) -> int:
    try:
        value = float(text)  # accepts "1" and "1.0"; grades are ints either way
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise DataError(f"{where}: score {text!r} is not an integer")
    return int(value)


def read_qrels(path: str | os.PathLike) -> Qrels:
    """Read a qrels file into ``qrels[qid][cid] = grade``.

    Tab-separated with a header (``query_id|query-id|qid``, ``corpus_id|corpus-id|doc_id|did``,
    ``score|relevance``; ``Q0``/``iteration`` columns ignored) or headerless and
    whitespace-separated (``qid cid score`` or TREC ``qid Q0 cid score``). Scores are ints;
    zero grades are kept (judged non-relevant).

    Raises:
        DataError: missing file, bad row, non-integer score, duplicate (qid, cid) pair or no
            rows; names ``file:line``.
    """
    qrels: Qrels = {}
    layout = None
    rows = 0
    for where, line in _lines(path, "qrels file"):
        # Tabs when present, so ids may contain spaces; otherwise any whitespace.
        fields = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        if layout is None:
            layout = _qrels_columns(fields, where)
            if layout[0]:
                continue
        _, qi, ci, si, ncols = layout
        if len(fields) != ncols:
            raise DataError(f"{where}: expected {ncols} qrels columns, got {len(fields)}")
        qid, cid = fields[qi].strip(), fields[ci].strip()
        if not qid or not cid:
            raise DataError(f"{where}: empty query or corpus id")
        judged = qrels.setdefault(qid, {})
        if cid in judged:
            raise DataError(f"{where}: duplicate qrels pair (query {qid!r}, doc {cid!r})")
        judged[cid] = _int_score(fields[si].strip(), where)
        rows += 1
    if rows == 0:
        raise DataError(f"{path}: qrels file has no judgement rows")
    return qrels
