"""Checkpoint averaging: the element-wise mean of several checkpoints' weights (the command:
:mod:`seq2seq.tools.average`).

The last few epochs of a run sit around a minimum; their mean usually sits closer to it, and
translates better than any one of them (Junczys-Dowmunt et al. 2016; Vaswani et al. 2017 do
the same). ``--run DIR --last N`` takes the newest ``N`` of ``DIR/epochs/epoch-K``, which
training keeps when ``train.keep_checkpoints`` is N or more. The checkpoints must share the
config's data and model sections and the tokenizers; the first one's config and tokenizers
go with the mean.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from ..model import checkpoint
from ..model.checkpoint import CheckpointError, Loaded

EPOCHS = "epochs"  # <run>/epochs/epoch-K: the epoch-end checkpoints that train.keep_checkpoints keeps


def epoch_checkpoints(run: Path) -> list[Path]:
    """``run/epochs/epoch-K``, oldest first."""
    found = [p for p in (run / EPOCHS).glob("epoch-*") if p.is_dir() and re.fullmatch(r"epoch-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def average(paths: Sequence[Path]) -> Loaded:
    """The first checkpoint with its weights replaced by the mean over ``paths`` (in float64,
    then back to each tensor's dtype)."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = checkpoint.load(paths[0])
    sums = {k: v.detach().to(torch.float64).clone() for k, v in first.model.state_dict().items()}
    for path in paths[1:]:
        other = checkpoint.load(path)
        for section in ("data", "model"):
            if getattr(other.config, section) != getattr(first.config, section):
                raise CheckpointError(f"{path}: its {section} config differs from {paths[0]}'s; "
                                      "only checkpoints of one run can be averaged")
        if other.src_tok.to_json() != first.src_tok.to_json() or other.tgt_tok.to_json() != first.tgt_tok.to_json():
            raise CheckpointError(f"{path}: its tokenizers differ from {paths[0]}'s")
        for k, v in other.model.state_dict().items():
            sums[k] += v.detach().to(torch.float64)
    state = first.model.state_dict()
    first.model.load_state_dict({k: (sums[k] / len(paths)).to(state[k].dtype) for k in state})
    return first
