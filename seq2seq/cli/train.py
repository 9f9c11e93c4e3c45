"""The ``train`` command (``train.py``): train an encoder-decoder RNN translator, or an RNN
language model (``data.task: lm``), from a YAML config and dotted overrides.

A user error (a bad config key, a missing file, a run already in ``--out``) ends with one line
``error: ...`` on stderr and exit status 1 (:mod:`seq2seq.cli.errors`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import run_command

if TYPE_CHECKING:
    from ..config import Config

EXAMPLES = """examples:
  python train.py                                    # the shipped default (dates), about a minute on a CPU
  python train.py --config multi30k_de_en_attention  # a shipped config, by name
  python train.py --config my.yaml --out runs/mine train.lr=3e-4 model.cell=gru"""


def parser() -> argparse.ArgumentParser:
    from ..config.shipped import top_level_names

    p = argparse.ArgumentParser(
        prog="train.py", description="Train an encoder-decoder RNN translator, or an RNN language model "
                                     "(data.task: lm).",
        epilog="Overrides use dotted names and must name a config field.\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help=f"a YAML file, or the name of a shipped config ({', '.join(top_level_names())}); "
                        "default: dates, or with --resume the run's own config")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last/ checkpoint")
    p.add_argument("--reset-optimizer", action="store_true",
                   help="with --resume: fresh optimizer and schedule (fine-tuning)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``train`` command: train the config's model into its run directory."""
    args = parser().parse_intermixed_args(argv)  # overrides may come before and after the options
    return run_command(lambda: _train(args), _train_errors)


def _train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..training.trainer import train

    config_path = _config_path(args)
    cfg = load_config(config_path, args.overrides)
    out = args.out or Path("runs") / config_path.stem
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        print("\n".join(announce(config_path, out, cfg)), flush=True)
    train(cfg, out, resume=args.resume, overwrite=args.overwrite, reset_optimizer=args.reset_optimizer)
    return 0


def announce(config_path: Path, out: Path, cfg: Config) -> list[str]:
    """A run's first lines: its config file, its folder, and how to watch it."""
    from ..training.tracking import METRICS_FILE, wandb_mode

    lines = [f"config: {config_path}", f"run folder: {out}", f"watch it: tail -f {out / METRICS_FILE}"]
    mode = wandb_mode(cfg.tracking)
    if mode == "online":
        lines.append(f"or in W&B: project {cfg.tracking.project} (wandb prints the run's link as it starts)")
    elif mode == "offline":
        lines.append(f"W&B logs offline into {out / 'wandb'}; `wandb sync {out / 'wandb'}/offline-run-*` uploads them")
    return lines


def _config_path(args: argparse.Namespace) -> Path:
    """``--config``; else, resuming, the run's own config; else the default."""
    from ..config.shipped import default_config, resolve
    from ..model.checkpoint import check_regular_files
    from ..training.rundir import run_config_path

    if args.config is not None:
        return resolve(args.config)  # load_config says so if it is neither a file nor a shipped name
    if args.resume and args.out is not None and run_config_path(args.out).exists():
        config_path = run_config_path(args.out)
        check_regular_files(config_path.parent, (config_path.name,))  # a FIFO would block
        return config_path
    return default_config()


def _train_errors() -> tuple[type[BaseException], ...]:
    from ..training.loop import TrainError

    return (TrainError,)

