"""Prepare a corpus for streamed training (corpora larger than memory).

``python -m seq2seq prepare --config CONFIG --out DIR [--overwrite] [section.key=value ...]``
(also ``seq2seq-prepare``) reads the training split of the config's corpus once and writes
a store (see :mod:`seq2seq.data.store`); then train from it with the same config and
``data.prepared=DIR``::

    python -m seq2seq prepare --config configs/dates.yaml --out /data/dates-10m data.size=10000000
    python train.py --config configs/dates.yaml data.size=10000000 data.prepared=/data/dates-10m
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli.errors import run_command
from ..cli.usage import examples


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq prepare",
                                description="Tokenize a corpus once into a store that training streams from.",
        **examples(
            "python -m seq2seq prepare --config dates --out /data/dates-10m data.size=10000000",
        ))
    p.add_argument("--config", type=Path, required=True, help="the YAML config whose data section names the corpus")
    p.add_argument("--out", type=Path, required=True, help="the store directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a store already at --out")
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = p.parse_intermixed_args(argv)

    def work() -> int:
        from ..config import load_config
        from ..data.store import prepare

        cfg = load_config(args.config, args.overrides)
        summary = prepare(cfg.data, args.out, overwrite=args.overwrite, say=lambda line: print(line, flush=True))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
        print(f"peak RSS {peak:,.0f} MiB; train with data.prepared={args.out} "
              f"({summary['examples']:,} examples)", flush=True)
        return 0

    return run_command(work)  # a user error: one line on stderr, exit status 1, as for train.py


if __name__ == "__main__":
    sys.exit(main())
