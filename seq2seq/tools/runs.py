"""The training runs the tools start and read: a run's output sent to a log file, the records
of its ``metrics.jsonl``, and the first epoch whose metric reaches a threshold."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def output_to(log: Path, *, stderr: bool = False) -> Iterator[None]:
    """Printing (stdout; also stderr with ``stderr``) appended to ``log`` for the block."""
    with open(log, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f), \
            (contextlib.redirect_stderr(f) if stderr else contextlib.nullcontext()):
        yield


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (a line torn by a kill is skipped)."""
    records = []
    path = run_dir / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def first_crossing(records: Sequence[dict[str, Any]], metric: str, threshold: float) -> dict[str, Any] | None:
    """The first epoch record whose ``metric`` is at least ``threshold``, or ``None``."""
    return next((r for r in records if metric in r and r[metric] >= threshold), None)
