"""SIGINT and SIGTERM during a run: unwind, record the run as interrupted, exit 128 + signal.

Inside :func:`interruptible`, either signal raises :class:`Interrupted` in the main thread.
It derives from ``BaseException``, so ``except Exception`` blocks do not swallow it, while
``with`` blocks and ``finally`` clauses still run on the way out: cache locks are released,
temp files stay temp files (the next holder of the lock removes them) and trackers are closed.
The entry point catches it, writes ``status.json`` with status ``interrupted`` and exits with
the shell's conventional code (130 for SIGINT, 143 for SIGTERM), which SLURM and shells
report as "killed by signal".
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A handled signal arrived; ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: object) -> None:
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` for the duration of the block.

    Outside the main thread (where Python cannot set handlers) the block runs unchanged. The
    previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in HANDLED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
