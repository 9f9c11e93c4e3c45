"""Figures a training run logs: the attention heatmap (W&B images at validation, and
``python -m seq2seq plots attention``). Needs matplotlib (the ``plots`` extra)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

DPI = 100


def alignment_figure(source: Sequence[str], target: Sequence[str], weights: torch.Tensor, title: str) -> Figure:
    """A heatmap of ``weights`` (T, S): output tokens down, source tokens across."""
    T, S = weights.shape
    fig = Figure(figsize=(max(4.0, 0.45 * S + 2.0), max(3.0, 0.4 * T + 1.5)), dpi=DPI)
    ax = fig.add_subplot()
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), [p.strip() or repr(p) for p in source], rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(T), [p.strip() or repr(p) for p in target], fontsize=9)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
