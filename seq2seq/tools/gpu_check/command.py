"""The prepared GPU check: one command that measures this toolkit on a GPU in minutes.

    python -m seq2seq gpu_check --out gpu_report --data data/multi30k      # on the GPU machine
    python -m seq2seq gpu_check --out /tmp/dry --device cpu --tiny         # the dry run CI makes

GPU time is scarce (minutes, when at all), so everything is prepared here and tested on the
CPU; the check needs only torch, tokenizers, sacrebleu, safetensors, pyyaml and tqdm
(``datasets`` and ``wandb`` are never imported). Each part is timed and recorded, and a part
that fails is recorded as failed without stopping the others:

  1. ``environment``: device, torch and CUDA versions, bf16;
  2. ``cuda_checks``: bf16 with fused Adam, resume, greedy equal to the CPU's, no host sync
     in a training step (the functions
     tests/test_cuda.py runs under ``pytest -m cuda``; no pytest needed here);
  3. ``train_throughput``: target tokens/s of the recipe's training step at several batch
     sizes, eager (``python -m seq2seq bench``'s step loop), on static shapes, and with each
     shape's step in a CUDA graph, the last against the graph ceiling
     (:data:`~seq2seq.tools.gpu_check.parts.GRAPH_CEILING`);
  4. ``recipe``: ``train.py --config configs/multi30k_de_en.yaml`` to its end (a subprocess
     with a time limit; SIGTERM saves ``last/``), the time at which validation BLEU first
     reaches the reference 22.6, and test BLEU greedy / beam 5;
  5. ``decode``: greedy and beam-5 sentences/s on the test split with the trained model.

Everything goes to ``--out``: ``report.json`` (all figures, the goals and whether each was
met) and ``report.md`` (the same as tables), the run directory and each part's log.

A report says only what this run measured. ``--out`` may be a new or empty folder, or one that
holds an earlier report: that report and the files of its parts (:data:`OUTPUTS`) are replaced
at the start, and nothing else in the folder is touched. A part that did not run reads as
``skipped`` (with why), one that a signal ended as ``stopped``; decode runs only on the
checkpoint this run's recipe trained. Goals are judged (``met``) only on CUDA and not for a
``--tiny`` run: elsewhere the figures are shown, ``met`` is None and ``not_judged`` says why.
Paths are absolute before any part runs (the recipe trains in a subprocess in the repository).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ...cli.errors import check_positive, run_command
from ...cli.usage import examples
from .parts import RECIPE, cuda_checks, decode, environment, recipe, train_throughput
from .report import Report, say

TINY = ("data.source=dates", "data.tokenizer=char", "data.size=400", "model.hidden_dim=32", "model.embed_dim=8",
        "train.epochs=2", "train.log_every=2", "decode.batch_size=64", "train.valid_max_sentences=40",
        "train.batch_size=32")
PARTS = ("cuda_checks", "train_throughput", "recipe", "decode")  # after the environment, each may be skipped
OUTPUTS = ("report.md", "recipe", "recipe.log", "cuda_checks", "cuda_checks.log")  # besides report.json


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m seq2seq gpu_check", description=__doc__.split("\n\n")[0],
        **examples(
            "python -m seq2seq gpu_check --out gpu_report --data data/multi30k",
            "python -m seq2seq gpu_check --out /tmp/dry --device cpu --tiny",
        ))
    p.add_argument("--out", type=Path, required=True, help="the report folder (report.json, report.md, logs)")
    p.add_argument("--data", default=None, help="Multi30k folder, {train,val,test_2016_flickr}.{de,en}.gz "
                                                "(default: the recipe's data.path)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--tiny", action="store_true", help="a dry run of every part on a tiny dates model (CI)")
    p.add_argument("--recipe-timeout", type=float, default=300.0, help="stop the recipe (SIGTERM) after this")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 128 512 2048 (--tiny: 16 32)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per batch size (default 30, --tiny 3)")
    p.add_argument("--skip", action="append", default=[], choices=PARTS)
    args = p.parse_args(argv)
    # absolute now: the recipe's train.py runs with the repository as its working directory
    args.out = Path(os.path.abspath(args.out))
    args.data = os.path.abspath(args.data) if args.data else None
    return args


def check_args(args: argparse.Namespace) -> None:
    """A user error (one line) for options that make no sense together or out of range."""
    t = args.recipe_timeout
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"--recipe-timeout must be a positive number of seconds, got {t}")
    check_positive(args, "steps")
    if args.batch_sizes and min(args.batch_sizes) < 1:
        raise ValueError(f"--batch-sizes must each be >= 1, got {min(args.batch_sizes)}")
    if args.tiny and args.data:
        raise ValueError("--data has no use with --tiny (its model trains on the dates corpus); drop one")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"{args.out}: exists and is not a folder; choose another --out")
    if args.out.is_dir() and any(args.out.iterdir()) and not (args.out / "report.json").is_file():
        raise ValueError(f"{args.out}: exists and is not a gpu_check report folder; choose another --out")


def clear_outputs(out: Path) -> None:
    """Remove what an earlier run left in ``out`` (its report, :data:`OUTPUTS`), so that no
    figure of it can be read as this run's. Called once the new report.json has replaced the old
    one, so the folder reads as a report folder throughout."""
    for name in OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command(lambda: _check(args))


def _check(args: argparse.Namespace) -> int:
    check_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["WANDB_MODE"] = "disabled"
    overrides = [*(TINY if args.tiny else ()), *([f"data.path={args.data}"] if args.data else []),
                 f"train.device={args.device}"]
    sizes = args.batch_sizes or ([16, 32] if args.tiny else [128, 512, 2048])
    steps = args.steps or (3 if args.tiny else 30)
    report = Report(args.out, {"device": args.device, "tiny": args.tiny, "data": args.data, "batch_sizes": sizes,
                               "steps": steps, "recipe": RECIPE, "overrides": overrides})
    report.save()  # replaces an earlier report.json; then the rest of that report goes
    clear_outputs(args.out)
    report.part("environment", lambda: environment(args.device))
    todo = [n for n in PARTS if n not in args.skip]
    for name in PARTS:
        if name not in todo:
            report.skipped(name, "--skip")
        elif name == "cuda_checks":
            report.part(name, lambda: cuda_checks(args.out, args.device))
        elif name == "train_throughput":
            report.part(name, lambda: train_throughput(overrides, sizes, steps, args.device))
        elif name == "recipe":
            report.part(name, lambda: recipe(args.out, overrides, args.recipe_timeout))
        elif report.data["parts"]["recipe"]["status"] != "ok":  # decode: only this run's checkpoint
            report.skipped(name, f"no checkpoint of this run (recipe {report.data['parts']['recipe']['status']})")
        else:
            report.part(name, lambda: decode(args.out / "recipe", args.device, 5))
    failed = [n for n, v in report.data["parts"].items() if v["status"] == "failed"]
    say(f"report in {args.out / 'report.md'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
