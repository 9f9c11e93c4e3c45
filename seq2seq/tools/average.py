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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq average", description=__doc__.split("\n\n")[0],
        **examples(
            "python -m seq2seq average --run runs/multi30k_de_en --last 5 --out runs/multi30k_de_en/averaged",
        ))
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
