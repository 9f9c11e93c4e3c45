"""The Markdown tables of the tools' reports (a sweep's ``results.md``, the GPU check's ``report.md``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """``| a | b |``, ``|---|---|``, then a line per row: the table's lines, cells as given."""
    lines = [_row(header), "|" + "---|" * len(header)]
    return lines + [_row(row) for row in rows]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
