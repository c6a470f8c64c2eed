"""experiments/check_readme.py: the README check reads marked blocks, runs them in a fresh
checkout and reports each broken promise at its page line; the pages' markup is valid."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from experiments import check_readme, options_table
from experiments.check_readme import MarkupError, check_page, first_unmatched, normalise, parse

ROOT = Path(__file__).resolve().parents[1]


def test_parse_reads_commands_their_output_and_options() -> None:
    page = "\n".join([
        "intro",                                  # 1
        "<!-- check exit=any timeout=5 -->",      # 2
        "```text",                                # 3
        "$ echo a \\",                            # 4
        "    b",                                  # 5
        "a b",                                    # 6
        "",                                       # 7
        "$ true",                                 # 8
        "```",                                    # 9
        "```text",                                # 10: unmarked, ignored
        "$ false",
        "```",
    ])
    (block,) = parse(page)
    assert (block.line, block.exit, block.timeout) == (3, None, 5.0)
    assert [(c.line, c.text) for c in block.commands] == [(4, "echo a b"), (8, "true")]
    assert block.commands[0].expected == [(6, "a b")] and block.commands[1].expected == []


@pytest.mark.parametrize(("page", "line", "message"), [
    ("<!-- check -->\n```text\noutput first\n$ true\n```", 3, "output before the first"),
    ("text\n<!-- check -->\nnot a fence", 2, "must be followed by a ``` block"),
    ("<!-- check -->\n```text\n```", 2, "without a `$ ` command"),
    ("<!-- check exits=2 -->\n```text\n$ true\n```", 1, "unknown check option 'exits=2'"),
    ("<!-- check $ echo x -->\nx\n", 1, "without `<!-- end check -->`"),
])
def test_bad_markup_is_named_with_its_line(page: str, line: int, message: str) -> None:
    with pytest.raises(MarkupError, match="line") as err:
        parse(page)
    assert err.value.line == line and message in err.value.message


def test_normalise_and_in_order_matching() -> None:
    roots = ["/tmp/check-readme-x/checkout"]
    assert normalise("[2026-12-03 08:32:12,160][HYDRA]  at /tmp/check-readme-x/checkout/outputs/"
                     "mixsearch/runs/2026-12-03_08-31-59", roots) == \
        "[HYDRA] at outputs/mixsearch/runs/<time>"
    actual = ["x", "ndcg@10=0.5502 recall@1=0.3867", "noise", "done in 3.2 s"]
    assert normalise("results: outputs/mixsearch/runs/2026-12-03_10-11-22_424247_8772", roots) == \
        "results: outputs/mixsearch/runs/<time>"
    assert first_unmatched(["ndcg@10=0.5502 ...", "done in ... s"], actual) is None
    assert first_unmatched(["done in ... s", "ndcg@10=0.5502 ..."], actual) == 1  # order matters
    assert first_unmatched(["ndcg@10=0.5503 ..."], actual) == 0                  # numbers exact


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "root" / "PAGE.md"
    page.parent.mkdir(exist_ok=True)
    page.write_text(text, encoding="utf-8")
    return page


def test_a_kept_promise_passes_and_state_carries_over_within_a_page(tmp_path: Path) -> None:
    page = _page(tmp_path, "\n".join([
        "<!-- check -->", "```text",
        "$ mkdir -p outputs && echo 'ndcg@10=0.5502  at' $PWD/outputs > outputs/log",
        "$ cat outputs/log", "ndcg@10=0.5502 at outputs", "```",
        "<!-- check exit=3 -->", "```text", "$ echo oops; exit 3", "oops", "```",
    ]))
    assert check_page(page, page.parent) == (3, [])
    assert not (page.parent / "outputs").exists()   # the run happened in a temporary checkout


def test_a_broken_promise_is_reported_at_its_line_with_the_closest_output(tmp_path: Path) -> None:
    page = _page(tmp_path, "\n".join([
        "<!-- check -->", "```text",                  # 1, 2
        "$ python -c \"print('ndcg@10=0.7423'); print('recall@1=0.5200')\"",
        "ndcg@10=0.7423",                             # 4: kept
        "recall@1=0.5300",                            # 5: broken
        "$ echo fine; exit 1",                        # 6: wrong exit status
        "fine", "```",
    ]))
    count, mismatches = check_page(page, page.parent)
    assert count == 2 and [m.line for m in mismatches] == [5, 6]
    assert "expected: recall@1=0.5300" in mismatches[0].message
    assert "closest:  recall@1=0.5200" in mismatches[0].message
    assert "ended with exit 1 (expected exit 0)" in mismatches[1].message
    assert str(mismatches[0]).startswith("PAGE.md:5: ") or ":5: " in str(mismatches[0])


def test_a_generated_region_must_equal_the_output(tmp_path: Path) -> None:
    region = ["<!-- check $ printf 'a\\n\\nb\\nc\\n' -->", "a", "", "b", "<!-- end check -->"]
    page = _page(tmp_path, "\n".join(region))
    (mismatch,) = check_page(page, page.parent)[1]
    assert mismatch.line == 5 and "prints more lines than the page has; the next one: c" in mismatch.message
    page.write_text("\n".join(region[:4] + ["c", "<!-- end check -->"]), encoding="utf-8")
    assert check_page(page, page.parent)[1] == []
    page.write_text("\n".join(region[:4] + ["c", "d", "<!-- end check -->"]), encoding="utf-8")
    (mismatch,) = check_page(page, page.parent)[1]
    assert mismatch.line == 6 and "the page has more lines than" in mismatch.message
    page.write_text("\n".join(region[:3] + ["B", "c", "<!-- end check -->"]), encoding="utf-8")
    (mismatch,) = check_page(page, page.parent)[1]
    assert mismatch.line == 4 and "page:   B" in mismatch.message and "output: b" in mismatch.message


def test_a_python_session_is_run_by_doctest(tmp_path: Path) -> None:
    page = _page(tmp_path, "\n".join([
        "<!-- check -->", "```pycon",                 # 1, 2
        ">>> x = 6 * 7",                              # 3
        ">>> x",                                      # 4
        "42",
        ">>> x + 1",                                  # 6
        "44",
        "```",
    ]))
    (mismatch,) = check_page(page, page.parent)[1]
    assert mismatch.line == 6 and "Expected:" in mismatch.message and "43" in mismatch.message


@pytest.mark.parametrize("name", ["README.md", *(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_the_pages_markup_is_valid(name: str) -> None:
    page = ROOT / name if name == "README.md" else ROOT / "docs" / name
    blocks = parse(page.read_text(encoding="utf-8"))
    if name == "README.md":   # the quick start is checked: the default run, GR, a sweep, the API
        commands = [c.text for b in blocks for c in b.commands]
        assert "python run.py" in commands and "python run.py calibration=gr" in commands
        assert any(c.startswith("python run.py -m") for c in commands)
        assert any(b.doctest for b in blocks)


def test_the_options_page_lists_every_option_as_the_schema_defines_it() -> None:
    text = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    for section in options_table.SECTIONS:
        for row in options_table.rows(section):
            assert row in text, f"docs/options.md lacks or has a stale row: {row}"


def test_the_command_line_exits_1_on_a_mismatch(tmp_path: Path, capsys) -> None:
    page = _page(tmp_path, "<!-- check -->\n```text\n$ echo 1\n2\n```\n")
    assert check_readme.main([str(page)]) == 1
    assert "mismatches=1" in capsys.readouterr().out


def test_slow_blocks_run_only_when_asked(tmp_path: Path) -> None:
    page = _page(tmp_path, "<!-- check slow -->\n```text\n$ echo 1\n2\n```\n")
    assert check_page(page, page.parent) == (0, [])
    count, (mismatch,) = check_page(page, page.parent, slow=True)
    assert count == 1 and mismatch.line == 4


def test_a_command_past_its_timeout_is_stopped_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    page = _page(tmp_path, f"<!-- check timeout=1 -->\n```text\n$ sleep 60 & echo $! > {pid_file}; sleep 60\n```\n")
    started = time.monotonic()
    (mismatch,) = check_page(page, page.parent)[1]
    assert time.monotonic() - started < 30 and "timed out after 1 s" in mismatch.message
    child = int(pid_file.read_text())
    for _ in range(50):          # the orphaned child is reaped by init shortly after its kill
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the command's child {child} is still running")
