"""Average checkpoints: the element-wise mean of several checkpoints' weights, saved as one.

    python -m seq2seq average --run runs/multi30k_de_en --last 5 --out runs/multi30k_de_en/averaged
    python -m seq2seq average --checkpoints A B C --out D

The checkpoints must share the config's data and model sections and the tokenizers
(:func:`seq2seq.training.averaging.average`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli.errors import run_command
from ..cli.usage import examples
from ..model import checkpoint
from ..model.checkpoint import CheckpointError
from ..training.averaging import EPOCHS, average, epoch_checkpoints


def check_out(out: Path, inputs: Sequence[Path]) -> None:
    """Refuse an ``--out`` that would destroy anything but a checkpoint: one that is, holds or lies
    inside an input (paths compared resolved, links followed; a run directory given as an input
    counts with everything in it; ``OUT.tmp`` and ``OUT.old``, which saving replaces, too), or
    that is neither new, nor an empty folder, nor a checkpoint."""
    target = out.resolve()
    for given in inputs:
        for name in (Path(given).resolve(), checkpoint.resolve(given).resolve()):  # a run: also its best/
            for where in (target, target.with_name(target.name + ".tmp"), target.with_name(target.name + ".old")):
                if where == name:
                    raise ValueError(f"--out {out}: is one of the checkpoints being averaged ({given}); "
                                     "write it elsewhere")
                if name.is_relative_to(where):
                    raise ValueError(f"--out {out}: holds the checkpoints being averaged ({given}); "
                                     "write it elsewhere")
                if where.is_relative_to(name):
                    raise ValueError(f"--out {out}: lies inside a checkpoint being averaged ({given}); "
                                     "write it elsewhere")
    if target.exists() and not checkpoint.is_checkpoint(target) and not (target.is_dir() and not any(target.iterdir())):
        raise ValueError(f"--out {out}: exists and is not a checkpoint (nor an empty folder); "
                         "averaging replaces --out whole, so write it elsewhere")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq average", description=__doc__.split("\n\n")[0],
        **examples(
            "python -m seq2seq average --run runs/multi30k_de_en --last 5 --out runs/multi30k_de_en/averaged",
        ))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoints", type=Path, nargs="+", help="checkpoint directories to average")
    src.add_argument("--run", type=Path, help="a run directory whose epochs/ to average (with --last)")
    p.add_argument("--last", type=int, default=5, help="with --run: the newest N epoch checkpoints (default 5)")
    p.add_argument("--out", type=Path, required=True,
                   help="the averaged checkpoint directory: new, empty, or a checkpoint (replaced whole)")
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
        check_out(args.out, paths)
        mean = average(paths)
        checkpoint.save(args.out, config=mean.config, model=mean.model, src_tok=mean.src_tok, tgt_tok=mean.tgt_tok)
        print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {args.out}")
        return 0

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
