"""Comparing a sweep's variants: ``results.csv`` and ``results.md``, the plots, and the rows
over seeds (median, min and max of each variant's scores)."""

from __future__ import annotations

import collections
import csv
import statistics
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..markdown import markdown_table
from ..runs import read_metrics
from .scoring import evaluate_test
from .spec import LM_METRICS, Sweep


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    """``results.csv`` (every column) and ``results.md`` (numbers to 2 decimals)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    lines = markdown_table(columns, [[_cell(row.get(c, "")) for c in columns] for row in rows])
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)


def make_plots(sweep: Sweep, out: Path, statuses: dict[str, str]) -> list[Path]:
    """curves.png, final.png, by_length.png and grad_norm.png in ``out`` (none without matplotlib)."""
    try:
        from .. import plots
    except ImportError as e:
        print(f"warning: no plots ({e}); pip install 'seq2seq[plots]'", file=sys.stderr)
        return []
    label = {v.name: v.name + (" (diverged)" if statuses[v.name] == "diverged" else "") for v in sweep.variants}
    runs = {label[v.name]: read_metrics(out / v.name) for v in sweep.variants}
    tests = {label[v.name]: evaluate_test(out / v.name, sweep) for v in sweep.variants}
    clips = {label[v.name]: v.config.train.clip_norm for v in sweep.variants}
    pick = min if sweep.metric in LM_METRICS else max  # the best validation score: perplexity is lower
    best = {name: pick((r[f"valid/{sweep.metric}"] for r in recs if f"valid/{sweep.metric}" in r), default=0.0)
            for name, recs in runs.items()}
    reference = {label[k]: v for k, v in sweep.reference.items()}
    title = f"sweep {sweep.name}"
    paths = [out / "curves.png", out / "final.png", out / "by_length.png", out / "grad_norm.png"]
    plots.learning_curves(runs, paths[0], sweep.metric, title)
    plots.final_scores(best, {n: t.get(sweep.metric, 0.0) for n, t in tests.items()}, paths[1], sweep.metric,
                       title, reference)
    if sweep.metric in LM_METRICS:  # a language model has no source lengths to bucket by
        paths.remove(out / "by_length.png")
    else:
        plots.by_length({n: t.get("buckets", []) for n, t in tests.items()}, paths[2], sweep.metric,
                        sweep.length_unit, title)
    diverged = [label[n] for n, s in statuses.items() if s == "diverged"]
    plots.grad_norms(runs, out / "grad_norm.png", title, clips, diverged)
    return paths


def _rows_of(rows_by_seed: Mapping[int, list[dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [r for rows in rows_by_seed.values() for r in rows if r["variant"] == name]


def seed_rows(rows_by_seed: Mapping[int, list[dict[str, Any]]], sweep: Sweep) -> list[dict[str, Any]]:
    """One row per variant: its axis values and parameters, then for the validation and test
    score of ``sweep.metric`` the median, min and max over seeds (runs without a score, e.g.
    diverged, are left out and counted in ``status``), the test scores seed by seed, the
    reference, and the median training seconds."""
    metric = sweep.metric
    out_rows = []
    for v in sweep.variants:
        runs = _rows_of(rows_by_seed, v.name)
        first = runs[0]
        row: dict[str, Any] = {k: first[k] for k in first
                               if k not in ("status", "epochs", "seconds") and not k.startswith(("valid_", "test_",
                                                                                                 "reference_"))}
        for col in (f"valid_{metric}", f"test_{metric}"):
            vals = [r[col] for r in runs if isinstance(r.get(col), float)]
            if col in first:
                row.update({f"{col}_median": statistics.median(vals) if vals else "",
                            f"{col}_min": min(vals, default=""), f"{col}_max": max(vals, default="")})
        if f"test_{metric}" in first:
            row[f"test_{metric}_by_seed"] = " / ".join(
                f"{r[f'test_{metric}']:.1f}" if isinstance(r[f"test_{metric}"], float) else "-" for r in runs)
        if sweep.reference:
            row[f"reference_{metric}"] = sweep.reference.get(v.name, "")
        row["seconds_median"] = round(statistics.median(r["seconds"] for r in runs))
        row["status"] = ", ".join(f"{n} {st}" for st, n in collections.Counter(r["status"] for r in runs).items())
        out_rows.append(row)
    return out_rows


def seed_plot(rows_by_seed: Mapping[int, list[dict[str, Any]]], sweep: Sweep, out: Path) -> None:
    """``out/seeds.png``: each variant's test score (chrF: best validation) seed by seed; nothing
    without matplotlib (the sweeps have warned)."""
    try:
        from .. import plots
    except ImportError:
        return
    col = f"test_{sweep.metric}" if sweep.metric != "chrf" else f"valid_{sweep.metric}"
    values = {v.name: [r[col] for r in _rows_of(rows_by_seed, v.name) if isinstance(r[col], float)]
              for v in sweep.variants}
    plots.seed_spread(values, out / "seeds.png", sweep.metric, f"sweep {sweep.name}", sweep.reference,
                      "test" if col.startswith("test") else "best validation")
