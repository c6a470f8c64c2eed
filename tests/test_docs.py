"""Every document the code, configs and README cite is in the repository, section included."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*ROOT.glob("mixsearch/**/*.py"), *ROOT.glob("experiments/*.py"),
           *(p for p in ROOT.glob("tests/*.py") if p.name != "test_docs.py"),
           *ROOT.glob("conf/**/*.yaml"), ROOT / "README.md", ROOT / "run.py", ROOT / "Makefile"]
CITATION = re.compile(r"docs/([\w-]+\.md)(?: §(\d+))?")
# the team's reference notes outside the repository, by their old names
OUTSIDE = re.compile(r"\b(?:PAPER|MIXBENCH)\.md\b|shared/reference")


def test_citations_point_into_docs_and_their_sections_exist() -> None:
    cited = 0
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        assert not OUTSIDE.search(text), f"{path.relative_to(ROOT)} cites a file outside the repository"
        for name, section in CITATION.findall(text):
            doc = ROOT / "docs" / name
            assert doc.is_file(), f"{path.relative_to(ROOT)} cites docs/{name}, which does not exist"
            if section:
                assert re.search(rf"^## {section}\. ", doc.read_text(encoding="utf-8"), re.M), (
                    f"{path.relative_to(ROOT)} cites docs/{name} §{section}, which has no such section")
            cited += 1
    assert cited > 20  # the loaders, calibration, fusion, configs and tests cite the notes


def test_docs_link_only_inside_the_repository() -> None:
    for doc in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)", doc.read_text(encoding="utf-8")):
            assert not target.startswith("http") and (doc.parent / target).exists(), (doc.name, target)
