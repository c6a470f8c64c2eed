"""Quiet terminal output: a warning once per cause per sweep, no third-party bars with
progress off, data and model errors as one line."""

from __future__ import annotations

import logging
import sys

import pytest
from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

from mixsearch.data.benchmark import DataError
from mixsearch.logs import OncePerSweep, one_line_error, progress_bars_off


def _record(msg: str, *args, name: str = "mixsearch.x", level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_cause_passes_once_and_counts_do_not_make_a_new_cause() -> None:
    once = OncePerSweep()
    trunc = "%s: %d of %d texts exceed the context length %d and are truncated"
    assert once.filter(_record(trunc, "toy:toy_clip", 24, 64, 48))
    assert not once.filter(_record(trunc, "toy:toy_clip", 3, 64, 48))  # same cause, other counts
    assert once.filter(_record(trunc, "clip_b16", 3, 64, 77))  # another encoder: another cause
    assert once.filter(_record("%s (ignored)", "calibration.source='crossfit' has no effect"))
    assert not once.filter(_record("%s (ignored)", "calibration.source='crossfit' has no effect"))
    assert once.filter(_record("%s (ignored)", "corpus.p=0.3 has no effect"))
    assert once.filter(_record(trunc, "toy:toy_clip", 24, 64, 48, name="mixsearch.y"))  # other logger
    # other levels always pass: each job's result and each error stay visible
    for _ in range(2):
        assert once.filter(_record("job %s failed", "3", level=logging.ERROR))
        assert once.filter(_record("benchmark %s", "toy", level=logging.INFO))


def test_jobs_in_other_processes_share_the_causes_through_the_sweep_dir(tmp_path) -> None:
    first, second = OncePerSweep(tmp_path / "seen"), OncePerSweep(tmp_path / "seen")
    assert first.filter(_record("%s is slow", "model a"))
    assert not second.filter(_record("%s is slow", "model a"))  # as a later job in a new process
    assert second.filter(_record("%s is slow", "model b"))
    assert not first.filter(_record("%s is slow", "model b"))
    assert len((tmp_path / "seen").read_text().split()) == 2


def test_progress_off_silences_bars_that_libraries_draw_unconditionally(capsys) -> None:
    def library_code() -> None:  # as mteb's wrappers: no switch
        for _ in tqdm(range(3), desc="Building multimodal embeddings", file=sys.stderr, mininterval=0):
            pass
        for _ in auto_tqdm(range(3), desc="Computing text hashes", file=sys.stderr, mininterval=0):
            pass
        tqdm(range(2), "positional", None, True, sys.stderr, None, 0.0, 10.0, None, None, False).close()

    with progress_bars_off():
        library_code()
    assert capsys.readouterr().err == ""
    with progress_bars_off(False):
        library_code()
    err = capsys.readouterr().err
    assert "Building multimodal embeddings" in err and "Computing text hashes" in err and "positional" in err
    library_code()  # restored after the block
    assert "Computing text hashes" in capsys.readouterr().err


def test_one_line_error_names_the_log_file_holding_the_traceback(tmp_path) -> None:
    handler = logging.FileHandler(tmp_path / "run.log")
    logging.getLogger().addHandler(handler)
    try:
        try:
            raise DataError("corpus.jsonl:3: invalid JSON\nsecond line")
        except DataError as e:
            line = one_line_error("data", e)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert line == (f"data error: DataError: corpus.jsonl:3: invalid JSON second line "
                    f"(traceback: {tmp_path / 'run.log'})")
    log = (tmp_path / "run.log").read_text()
    assert log.startswith("Traceback (most recent call last):") and "DataError: corpus.jsonl:3" in log


@pytest.mark.parametrize("level", [logging.WARNING])
def test_the_filter_sits_on_terminal_handlers_only(level, tmp_path) -> None:
    from mixsearch.logs import quiet_repeated_warnings

    root = logging.getLogger()
    stream, file = logging.StreamHandler(sys.stderr), logging.FileHandler(tmp_path / "job.log")
    root.addHandler(stream)
    root.addHandler(file)
    try:
        once = quiet_repeated_warnings(tmp_path)
        assert once in stream.filters and once not in file.filters
        assert quiet_repeated_warnings(tmp_path) is once and stream.filters.count(once) == 1
    finally:
        for h in (stream, file):
            root.removeHandler(h)
            h.close()
