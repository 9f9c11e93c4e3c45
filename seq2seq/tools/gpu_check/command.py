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
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ...cli.usage import examples
from .parts import RECIPE, cuda_checks, decode, environment, recipe, train_throughput
from .report import Report, say

TINY = ("data.source=dates", "data.tokenizer=char", "data.size=400", "model.hidden_dim=32", "model.embed_dim=8",
        "train.epochs=2", "train.log_every=2", "decode.batch_size=64", "train.valid_max_sentences=40",
        "train.batch_size=32")
PARTS = ("cuda_checks", "train_throughput", "recipe", "decode")  # after the environment, each may be skipped


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
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()) and not (args.out / "report.json").exists():
        print(f"error: {args.out}: exists and is not a gpu_check report folder; choose another --out",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["WANDB_MODE"] = "disabled"
    overrides = [*(TINY if args.tiny else ()), *([f"data.path={args.data}"] if args.data else []),
                 f"train.device={args.device}"]
    sizes = args.batch_sizes or ([16, 32] if args.tiny else [128, 512, 2048])
    steps = args.steps or (3 if args.tiny else 30)
    report = Report(args.out, {"device": args.device, "tiny": args.tiny, "data": args.data, "batch_sizes": sizes,
                               "steps": steps, "recipe": RECIPE, "overrides": overrides})
    report.part("environment", lambda: environment(args.device))
    todo = [n for n in PARTS if n not in args.skip]
    if "cuda_checks" in todo:
        report.part("cuda_checks", lambda: cuda_checks(args.out, args.device))
    if "train_throughput" in todo:
        report.part("train_throughput", lambda: train_throughput(overrides, sizes, steps, args.device))
    if "recipe" in todo:
        report.part("recipe", lambda: recipe(args.out, overrides, args.recipe_timeout))
    if "decode" in todo and (args.out / "recipe" / "best").is_dir():
        report.part("decode", lambda: decode(args.out / "recipe", args.device, 5))
    failed = [n for n, v in report.data["parts"].items() if v["status"] == "failed"]
    say(f"report in {args.out / 'report.md'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
