"""Run the shell examples that a markdown page marks as checked and compare their output with it.

A page marks a block by putting ``<!-- check -->`` on the line before its opening fence (HTML
comments do not render). Options go inside the marker: ``<!-- check exit=2 timeout=900 -->``
(``exit=N`` is the status every command of the block must end with, ``exit=any`` accepts any;
the default is 0; ``timeout`` is in seconds per command, default 600; ``slow`` blocks run only
with ``--slow``). Inside the block a line
starting with ``$ `` is a command (a trailing backslash continues it on the next line) and the
lines after it, up to the next command, are the output the page promises.

Each promised line must appear in the command's output (stdout and stderr together), in the
page's order; lines the page leaves out of the output are allowed (abridged output), and
``...`` inside a promised line stands for any text. Numbers are compared exactly. Both sides are
normalised first: terminal colour codes and log lines' leading ``[time]`` are dropped, time stamps (``2026-12-03_08-31-59``, a run folder's ``2026-12-03_08-31-59_424247_8772``,
``2026-12-03 08:32:12,160``) become
``<time>``, the absolute path of the temporary checkout is cut to a relative one, and runs of
blanks become one space.

All checked blocks of one page run in order in one fresh checkout: a temporary folder with
links to the repository's files, but its own empty ``data/``, ``outputs/`` and cache, with the
hub, datasets and W&B offline; what a reader following the page from a fresh clone would see.

    python -m experiments.check_readme README.md docs/*.md      # exit 1 on any mismatch
    python -m experiments.check_readme --show README.md         # also print what each command printed
    python -m experiments.check_readme --slow docs/calibration.md   # include the slow blocks
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^\s*<!--\s*check\b(?P<options>[^>]*?)-->\s*$")
FENCE = re.compile(r"^\s*(```+|~~~+)")
END = re.compile(r"^\s*<!--\s*end check\s*-->\s*$")
# Folders a run writes: the temporary checkout gets fresh ones instead of links to the repository's.
OWN_STATE = {"data", "outputs", "multirun", ".cache", "wandb", ".git", ".pytest_cache"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# a time stamp, with the microseconds and process id that make a run folder's name unique
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[_ T]\d{2}[-:]\d{2}[-:]\d{2}(?:[.,]\d+|_\d{6}_\d+)?")
LOG_PREFIX = re.compile(r"^\[<time>\]")   # a log line's time prefix: shown pages leave it out
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "WANDB_MODE": "disabled", "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false"}


class MarkupError(ValueError):
    """A checked block the checker cannot read (bad marker, no command, output before a command)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line, self.message = line, message


@dataclass
class Command:
    """One ``$ `` command of a checked block and the output lines the page promises for it."""

    line: int                      # 1-based line of the ``$`` in the page
    text: str
    expected: list[tuple[int, str]] = field(default_factory=list)   # (page line, text)


@dataclass
class Block:
    """A checked block: its commands, the exit status they must end with (None = any), a timeout.
    A Python session block (``>>> ``) has no commands but its ``doctest`` text."""

    line: int
    commands: list[Command]
    exit: int | None = 0
    timeout: float = 600.0
    doctest: str | None = None
    slow: bool = False             # run only when asked (--slow): sweeps that take many minutes
    exact: bool = False            # a generated region: output and page lines must be equal
    end: int = 0                   # the region's end marker line


@dataclass
class Mismatch:
    """A promise of the page that the output does not keep, located by page and line."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _options(text: str, line: int) -> dict[str, object]:
    """The ``exit`` / ``timeout`` options of a marker."""
    options: dict[str, object] = {}
    for token in shlex.split(text):
        key, _, value = token.partition("=")
        if key == "exit" and value:
            options["exit"] = None if value == "any" else int(value)
        elif key == "timeout" and value:
            options["timeout"] = float(value)
        elif token == "slow":
            options["slow"] = True
        else:
            raise MarkupError(line, f"unknown check option {token!r} (exit=N|any, timeout=S, slow)")
    return options


def _commands(lines: list[tuple[int, str]], start: int) -> list[Command]:
    """The commands of a block body (page line, text) and the output lines promised after each."""
    commands: list[Command] = []
    pending: Command | None = None
    for number, text in lines:
        if pending is not None:                      # continuation of a command
            pending.text = pending.text[:-1].rstrip() + " " + text.strip()
        elif text.startswith("$ "):
            pending = Command(number, text[2:].strip())
            commands.append(pending)
        elif text.strip():
            if not commands:
                raise MarkupError(number, "output before the first `$ ` command")
            commands[-1].expected.append((number, text))
        if pending is not None and not pending.text.endswith("\\"):
            pending = None
    if not commands:
        raise MarkupError(start, "a checked block without a `$ ` command")
    return commands


def _region(lines: list[str], i: int, command: str, options: dict[str, object]) -> Block:
    """A generated region: the page's Markdown from the marker to ``<!-- end check -->`` must
    be exactly the output of ``command`` (blank lines aside)."""
    end = next((j for j in range(i + 1, len(lines)) if END.match(lines[j])), None)
    if end is None:
        raise MarkupError(i + 1, "a `<!-- check $ ... -->` region without `<!-- end check -->`")
    body = [(j + 1, lines[j]) for j in range(i + 1, end) if lines[j].strip()]
    return Block(i + 1, [Command(i + 1, command, body)], exact=True, end=end + 1, **options)


def parse(text: str) -> list[Block]:
    """The checked blocks of a markdown page, in page order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    for i, line in enumerate(lines):
        marker = MARKER.match(line)
        if not marker:
            continue
        option_text, _, command = marker["options"].partition("$ ")
        options = _options(option_text, i + 1)
        if command.strip():
            blocks.append(_region(lines, i, command.strip(), options))
            continue
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not fence:
            raise MarkupError(i + 1, "a check marker must be followed by a ``` block")
        end = next((j for j in range(i + 2, len(lines))
                    if lines[j].strip().startswith(fence.group(1))), None)
        if end is None:
            raise MarkupError(i + 2, "the checked block is never closed")
        body = [(j + 1, lines[j]) for j in range(i + 2, end)]
        if next((t for _, t in body if t.strip()), "").lstrip().startswith(">>> "):
            blocks.append(Block(i + 2, [], doctest="\n".join(t for _, t in body) + "\n", **options))
        else:
            blocks.append(Block(i + 2, _commands(body, i + 2), **options))
    return blocks


def normalise(line: str, roots: list[str]) -> str:
    """``line`` with time stamps as ``<time>``, absolute checkout paths made relative and runs of
    blanks as one space (applied to the page's lines and to the output alike)."""
    for root in roots:
        line = line.replace(root.rstrip("/") + "/", "").replace(root.rstrip("/"), ".")
    line = LOG_PREFIX.sub("", STAMP.sub("<time>", ANSI.sub("", line)))
    return " ".join(line.split())


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")))


def first_unmatched(expected: list[str], actual: list[str]) -> int | None:
    """Index of the first expected line not found in ``actual`` after its predecessors' matches
    (an in-order subsequence match), or None when all are found."""
    position = 0
    for index, want in enumerate(expected):
        pattern = _pattern(want)
        while position < len(actual) and not pattern.fullmatch(actual[position]):
            position += 1
        if position == len(actual):
            return index
        position += 1
    return None


def make_checkout(root: Path, into: Path) -> Path:
    """A fresh checkout of ``root`` under ``into``: links to its entries, no run state."""
    checkout = into / "checkout"
    checkout.mkdir()
    for entry in sorted(root.iterdir()):
        if entry.name not in OWN_STATE:
            (checkout / entry.name).symlink_to(entry.resolve(), entry.is_dir())
    return checkout


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXSEARCH_")}
    env.update(OFFLINE_ENV)
    return env


def _check_command(page: str, command: Command, block: Block, checkout: Path, root: Path,
                   show: bool) -> list[Mismatch]:
    """Run one command in the checkout and compare its output with the page's promise."""
    started = time.monotonic()
    # its own process group, so a timeout ends the command's children too
    proc = subprocess.Popen(["bash", "-c", command.text], cwd=checkout, env=_environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    status: int | str
    try:
        output, _ = proc.communicate(timeout=block.timeout)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        status = f"timed out after {block.timeout:.0f} s"
    roots = [str(checkout.resolve()), str(checkout), str(root.resolve())]
    actual = [normalise(line, roots) for line in output.splitlines()]
    if show:
        print(f"--- {page}:{command.line}: $ {command.text}  ({time.monotonic() - started:.1f} s, "
              f"exit {status})\n" + "\n".join(actual))
    problems = []
    if isinstance(status, str) or (block.exit is not None and status != block.exit):
        tail = "\n    ".join(actual[-5:])
        problems.append(Mismatch(page, command.line, f"`{command.text}` ended with "
                                 f"{status if isinstance(status, str) else f'exit {status}'} "
                                 f"(expected exit {block.exit}); its last lines:\n    {tail}"))
    expected = [normalise(text, roots) for _, text in command.expected]
    if block.exact:
        return problems + _compare_region(page, command, block, expected, [a for a in actual if a])
    missing = first_unmatched(expected, actual)
    if missing is not None:
        closest = difflib.get_close_matches(expected[missing], actual, n=1, cutoff=0.0)
        problems.append(Mismatch(
            page, command.expected[missing][0],
            f"`{command.text}` printed no line matching (in this order)\n"
            f"    expected: {expected[missing]}\n"
            f"    closest:  {closest[0] if closest else '(no output)'}"))
    return problems


def _check_doctest(page: str, block: Block, checkout: Path, show: bool) -> list[Mismatch]:
    """Run a ``>>> `` block with Python's doctest (ELLIPSIS, NORMALIZE_WHITESPACE) in the
    checkout and report its first failing example at its page line."""
    script = checkout / f".check-readme-block-{block.line}.txt"
    script.write_text(block.doctest or "", encoding="utf-8")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "doctest", "-o", "ELLIPSIS", "-o", "NORMALIZE_WHITESPACE",
             script.name], cwd=checkout, env=_environment(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=block.timeout, check=False)
    except subprocess.TimeoutExpired:
        return [Mismatch(page, block.line, f"the Python session timed out after {block.timeout:.0f} s")]
    finally:
        script.unlink()
    if show:
        print(f"--- {page}:{block.line}: doctest (exit {proc.returncode})\n{proc.stdout}")
    if proc.returncode == 0:
        return []
    found = re.search(r'File "[^"]*", line (\d+)', proc.stdout)
    line = block.line + int(found.group(1)) if found else block.line
    report = proc.stdout.split("*" * 70)[1 if found else 0].strip()
    return [Mismatch(page, line, "the Python session differs:\n    " + report.replace("\n", "\n    "))]


def _compare_region(page: str, command: Command, block: Block, expected: list[str],
                    actual: list[str]) -> list[Mismatch]:
    """The first line where a generated region and the command's output differ."""
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return [Mismatch(page, command.expected[index][0],
                             f"differs from the output of `{command.text}`\n"
                             f"    page:   {want}\n    output: {got}")]
    if len(expected) != len(actual):
        line = command.expected[len(actual)][0] if len(expected) > len(actual) else block.end
        extra = (f"the page has more lines than `{command.text}` prints"
                 if len(expected) > len(actual) else
                 f"`{command.text}` prints more lines than the page has; the next one: "
                 f"{actual[len(expected)]}")
        return [Mismatch(page, line, extra)]
    return []


def check_page(path: Path, root: Path = ROOT, show: bool = False,
               slow: bool = False) -> tuple[int, list[Mismatch]]:
    """Run every checked block of ``path`` in one fresh checkout of ``root`` (blocks marked
    ``slow`` only when ``slow`` is set).

    Returns:
        The number of commands run and the mismatches, in page order.
    """
    page = os.path.relpath(path, root) if path.is_absolute() else str(path)
    try:
        blocks = parse(path.read_text(encoding="utf-8"))
    except MarkupError as err:
        return 0, [Mismatch(page, err.line, err.message)]
    mismatches: list[Mismatch] = []
    count = 0
    with tempfile.TemporaryDirectory(prefix="check-readme-") as tmp:
        checkout = make_checkout(root, Path(tmp))
        for block in (b for b in blocks if slow or not b.slow):
            if block.doctest is not None:
                count += 1
                mismatches += _check_doctest(page, block, checkout, show)
            for command in block.commands:
                count += 1
                mismatches += _check_command(page, command, block, checkout, root, show)
    return count, mismatches


def main(argv: list[str] | None = None) -> int:
    """Check the pages named on the command line; exit 1 when any promise is not kept."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="+", type=Path, help="markdown files (README.md docs/*.md)")
    parser.add_argument("--show", action="store_true", help="print every command's normalised output")
    parser.add_argument("--slow", action="store_true", help="also run the blocks marked slow")
    args = parser.parse_args(argv)
    total, failed, started = 0, 0, time.monotonic()
    for path in args.pages:
        count, mismatches = check_page(path.resolve(), ROOT, args.show, args.slow)
        for mismatch in mismatches:
            print(mismatch)
        total, failed = total + count, failed + len(mismatches)
        print(f"{path}: {count} commands, {len(mismatches)} mismatches")
    print(f"pages={len(args.pages)} commands={total} mismatches={failed} "
          f"seconds={time.monotonic() - started:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
