"""The bench's figures: each measured quantity with its samples, its baseline, their ratio, and
the table the command prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class Figure:
    """One measured quantity: its samples (one per repeat; ``None``: not reached) and baseline."""

    unit: str
    better: str  # "higher" or "lower"
    description: str
    baseline: str | None = None  # the name of the figure it is compared with
    samples: list[float | None] = field(default_factory=list)

    @property
    def value(self) -> float | None:
        """The median of the samples; ``None`` if there are none or any is ``None``."""
        if not self.samples or any(s is None for s in self.samples):
            return None
        return statistics.median(s for s in self.samples if s is not None)


def ratio(figures: dict[str, Figure], name: str) -> float | None:
    """``value / baseline value`` of figure ``name``; ``None`` without a baseline or a value."""
    fig = figures[name]
    if fig.baseline is None:
        return None
    base = figures[fig.baseline].value
    return fig.value / base if fig.value is not None and base else None


def new_figures(metric: str, threshold: float) -> dict[str, Figure]:
    what = f"{metric} >= {threshold:g}"
    return {
        "train_tokens_per_s": Figure("tokens/s", "higher", "training, teacher forcing 1.0 (one RNN call)",
                                     "train_tokens_per_s_tutorial"),
        "train_tokens_per_s_tutorial": Figure("tokens/s", "higher",
                                              "training, tutorial step loop (teacher forcing 0.5)"),
        "train_tokens_per_s_bf16": Figure("tokens/s", "higher", "training, teacher forcing 1.0, bf16 autocast",
                                          "train_tokens_per_s_fp32"),
        "train_tokens_per_s_fp32": Figure("tokens/s", "higher", "training, teacher forcing 1.0, fp32"),
        "time_to_threshold": Figure("s", "lower", f"time to {what}, teacher forcing 1.0",
                                    "time_to_threshold_tutorial"),
        "time_to_threshold_tutorial": Figure("s", "lower", f"time to {what}, teacher forcing 0.5"),
        "greedy_sents_per_s": Figure("sentences/s", "higher", "greedy decoding, batched",
                                     "greedy_sents_per_s_batch1"),
        "greedy_sents_per_s_batch1": Figure("sentences/s", "higher", "greedy decoding, one sentence at a time"),
        "beam5_sents_per_s": Figure("sentences/s", "higher", "beam-5 decoding, batched",
                                    "beam5_sents_per_s_batch1"),
        "beam5_sents_per_s_batch1": Figure("sentences/s", "higher", "beam-5 decoding, one sentence at a time"),
        "peak_memory_train": Figure("MiB", "lower", "peak memory, training, teacher forcing 1.0",
                                    "peak_memory_train_tutorial"),
        "peak_memory_train_tutorial": Figure("MiB", "lower", "peak memory, training, tutorial step loop"),
        "peak_memory_beam5": Figure("MiB", "lower", "peak memory, beam-5 decoding, batched",
                                    "peak_memory_beam5_batch1"),
        "peak_memory_beam5_batch1": Figure("MiB", "lower", "peak memory, beam-5 decoding, one at a time"),
    }


def _fmt(x: float | None) -> str:
    if x is None:
        return "not reached"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def _versus(figures: dict[str, Figure], name: str) -> str:
    base, r = figures[name].baseline, ratio(figures, name)
    if base is None:
        return "(baseline)"
    return f"{r:.2f}x {base}" if r is not None else f"- {base}"


def format_table(figures: dict[str, Figure]) -> str:
    """figure | value (median) | unit | value / baseline value, and the baseline's name."""
    rows = [("figure", "value", "unit", "ratio vs baseline")]
    rows += [(name, _fmt(f.value), f.unit, _versus(figures, name)) for name, f in figures.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def figures_json(figures: dict[str, Figure]) -> dict[str, dict[str, object]]:
    """Each figure as the JSON keeps it: its value, unit, direction, baseline, ratio and samples."""
    return {name: {"value": f.value, "unit": f.unit, "better": f.better, "description": f.description,
                   "baseline": f.baseline, "ratio": ratio(figures, name), "samples": f.samples}
            for name, f in figures.items()}
