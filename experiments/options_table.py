"""Print every option of the run config's checked sections as Markdown tables (docs/options.md).

The rows come from the structured configs in :mod:`mixsearch.schema` (defaults, allowed
values, the mode each option applies in), so the page cannot drift from the code:
``make check-readme`` compares the page with this script's output.

    python -m experiments.options_table
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mixsearch import schema

SECTIONS = ("corpus", "calibration", "fusion", "retrieval", "metrics", "embed")


def _allowed(meta: dict[str, Any]) -> str:
    """The allowed values (a registry's names are read now) and bounds of an option."""
    choices = meta.get("choices")
    if callable(choices):
        choices = list(choices())
    parts = [" \\| ".join(f"`{c}`" for c in choices)] if choices else []
    low, high = meta.get("lo"), meta.get("hi")
    if high is not None:
        parts.append(f"[{low}, {high}]")
    elif low is not None:
        parts.append(f"≥ {low}")
    return " ".join(parts)


def rows(section: str) -> list[str]:
    """The Markdown table of one section: option, default, allowed values, when it applies."""
    lines = ["| option | default | allowed | applies when |", "|---|---|---|---|"]
    for item in dataclasses.fields(schema.schema(section)):
        default = (item.default if item.default is not dataclasses.MISSING
                   else item.default_factory())  # type: ignore[misc]
        when = "; ".join(w.describe(section) for w in item.metadata.get("when", ()))
        lines.append(f"| `{section}.{item.name}` | `{default!r}` | {_allowed(item.metadata)} | {when} |")
    return lines


def main() -> None:
    """Print the tables, one heading per section."""
    for section in SECTIONS:
        print(f"\n### `{section}`\n")
        print("\n".join(rows(section)))


if __name__ == "__main__":
    main()
