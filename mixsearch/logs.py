"""Quiet, useful terminal output: each distinct warning once per sweep, and one line per error.

* :class:`OncePerSweep` is a logging filter for the terminal: a warning whose *cause* (logger,
  message template and its non-numeric arguments, e.g. the encoder's name) was already shown in
  this sweep is not shown again. Counts in a message ("24 of 64 texts are truncated") do not
  make a new cause. Each job's own ``run.log`` still records every warning. Jobs of one sweep
  in other processes (joblib, submitit) share the causes through a file in the sweep dir.
* :func:`one_line_error` prints a data, model or config error as one line naming the log file
  that holds the traceback.
* :func:`progress_bars_off` silences every tqdm bar (mteb's, ``datasets``', the hub's) while
  ``embed.progress=false``: libraries that draw bars without a switch get none either.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The file in a sweep dir listing the causes of warnings already shown (one hash a line).
SEEN_FILE = ".warnings_shown"


def cause(record: logging.LogRecord) -> str:
    """What makes two warnings the same: the logger, the message template and its non-numeric
    arguments (names, options, ids), as a short hash."""
    args = record.args if isinstance(record.args, tuple) else (record.args,) if record.args else ()
    words = [repr(a) for a in args if not isinstance(a, (int, float))]
    text = "\x1f".join([record.name, str(record.msg), *words])
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]


class OncePerSweep(logging.Filter):
    """Lets each distinct warning (:func:`cause`) through once; other levels pass.

    Args:
        seen_file: file shared by the sweep's processes (None: this process only).
    """

    def __init__(self, seen_file: Path | None = None) -> None:
        super().__init__()
        self.seen_file = seen_file
        self.seen: set[str] = set()

    def _load(self) -> None:
        if self.seen_file is not None and self.seen_file.is_file():
            self.seen.update(self.seen_file.read_text(encoding="utf-8").split())

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = cause(record)
        self._load()
        if key in self.seen:
            return False
        self.seen.add(key)
        if self.seen_file is not None:
            try:  # O_APPEND: one short line per write, safe across processes
                with open(self.seen_file, "a", encoding="utf-8") as f:
                    f.write(key + "\n")
            except OSError:  # an unwritable sweep dir only costs repeated warnings
                pass
        return True


_FILTER: OncePerSweep | None = None


def quiet_repeated_warnings(sweep_dir: str | os.PathLike | None) -> OncePerSweep:
    """Attach the sweep's :class:`OncePerSweep` to the terminal handlers of the root logger.

    Hydra configures logging afresh for each job, so call it at the start of every job; the
    filter (and what it has seen) lives for the process.
    """
    global _FILTER
    seen_file = Path(sweep_dir) / SEEN_FILE if sweep_dir is not None else None
    if _FILTER is None or _FILTER.seen_file != seen_file:
        _FILTER = OncePerSweep(seen_file)
    for handler in logging.getLogger().handlers:
        terminal = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
        if terminal and _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return _FILTER


def log_file() -> Path | None:
    """The file the root logger writes to (Hydra's ``<run dir>/<job>.log``; the most recently
    added regular file when there are several), if any."""
    for handler in reversed(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler) and not Path(handler.baseFilename).is_char_device():
            return Path(handler.baseFilename)
    return None


def one_line_error(kind: str, error: BaseException) -> str:
    """Write ``error``'s traceback to the log file only and return the one line to print:
    ``<kind> error: <Type>: <message> (traceback: <log file>)``."""
    path = log_file()
    where = ""
    if path is not None:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
            where = f" (traceback: {path})"
        except OSError:
            pass
    message = str(error).strip().replace("\n", " ")
    return f"{kind} error: {type(error).__name__}: {message}{where}"


def print_error(kind: str, error: BaseException) -> None:
    """Print :func:`one_line_error` to stderr."""
    print(one_line_error(kind, error), file=sys.stderr)


@contextmanager
def progress_bars_off(off: bool = True) -> Iterator[None]:
    """While active (and ``off``), every ``tqdm`` bar is created disabled, including those of
    libraries that draw bars unconditionally (mteb's model wrappers and content hashes)."""
    if not off:
        yield
        return
    from tqdm import std

    original = std.tqdm.__init__

    def disabled(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if len(args) > 10:  # ``disable`` given positionally (the 11th parameter)
            args = (*args[:10], True, *args[11:])
        else:
            kwargs["disable"] = True
        original(self, *args, **kwargs)

    std.tqdm.__init__ = disabled  # subclasses (tqdm.auto, the hub's) call it too
    try:
        yield
    finally:
        std.tqdm.__init__ = original
