"""Checkpoint averaging: the element-wise mean of several checkpoints' weights, saved as one.

    python -m seq2seq.average --run runs/multi30k_de_en --last 5 --out runs/multi30k_de_en/averaged
    python -m seq2seq.average --checkpoints A B C --out D

The last few epochs of a run sit around a minimum; their mean usually sits closer to it, and
translates better than any one of them (Junczys-Dowmunt et al. 2016; Vaswani et al. 2017 do
the same). ``--run DIR --last N`` takes the newest ``N`` of ``DIR/epochs/epoch-K``, which
training keeps when ``train.keep_checkpoints`` is N or more. The checkpoints must share the
config's data and model sections and the tokenizers; the first one's config and tokenizers
go with the mean.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from . import checkpoint
from .checkpoint import CheckpointError, Loaded
from .errors import run_command

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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq.average", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoints", type=Path, nargs="+", help="checkpoint directories to average")
    src.add_argument("--run", type=Path, help="a run directory whose epochs/ to average (with --last)")
    p.add_argument("--last", type=int, default=5, help="with --run: the newest N epoch checkpoints (default 5)")
    p.add_argument("--out", type=Path, required=True, help="the averaged checkpoint directory (replaced whole)")
    args = p.parse_args(argv)

    def work() -> int:
        if args.run is not None:
            if args.last < 1:
                raise ValueError(f"--last must be >= 1, got {args.last}")
            found = epoch_checkpoints(args.run)
            if len(found) < args.last:
                raise CheckpointError(f"{args.run / EPOCHS}: {len(found)} epoch checkpoints, --last asks for "
                                      f"{args.last} (train with train.keep_checkpoints={args.last} or more)")
            paths = found[-args.last:]
        else:
            paths = list(args.checkpoints)
        out = args.out.resolve()
        if any(out == Path(x).resolve() for x in paths):
            raise ValueError(f"--out {args.out}: is one of the checkpoints being averaged; write it elsewhere")
        mean = average(paths)
        checkpoint.save(args.out, config=mean.config, model=mean.model, src_tok=mean.src_tok, tgt_tok=mean.tgt_tok)
        print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {args.out}")
        return 0

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
