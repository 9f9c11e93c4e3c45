"""Benchmark: training tokens/s, time to a quality threshold, decoding sentences/s, peak memory.

``python -m seq2seq bench [--config PATH] [--device cpu|cuda|auto] [--quick] [--repeats N]
[--json OUT] [section.key=value ...]`` measures, in one run, on the same data and model, each
figure next to a baseline measured the same way, and prints ``value / baseline value``:

* ``train_tokens_per_s``: target tokens/s of ``training.train_step`` with teacher forcing 1.0
  (the whole target in one RNN call), end to end: batch to the device, loss, backward,
  clipping, Adam. Baseline ``train_tokens_per_s_tutorial``: the tutorial-style step loop, the
  same ``train_step`` with teacher forcing 0.5, which runs ``scheduled_sampling_logits`` (one
  ``decode_step`` per target token).
* ``time_to_threshold``: seconds of ``training.train`` on the config until the first epoch
  whose validation metric reaches ``--threshold`` (exact match for synthetic data, BLEU
  otherwise; ``time/seconds`` in metrics.jsonl, so training plus each epoch's validation).
  Baseline ``time_to_threshold_tutorial``: the same run with ``train.teacher_forcing=0.5``.
* ``greedy_sents_per_s``, ``beam5_sents_per_s``: ``Translator.translate`` over the valid
  split, tokenization and detokenization included, in batches of ``decode.batch_size``.
  Baselines ``*_batch1``: the same search one sentence at a time (``decode.batch_size=1``).
* ``peak_memory_train``, ``peak_memory_beam5`` (baselines as above): CUDA:
  ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS (``resource.getrusage``),
  whose high-water mark is reset (Linux ``/proc/self/clear_refs``) before each phase. On the
  CPU it includes the interpreter and libraries (about 0.4 GB).

A ratio is ``value / baseline`` whatever the unit: above 1 is better for the rates, below 1
for seconds and memory (each figure's ``better`` in the JSON says which).

Training steps run on a fixed list of length-bucketed batches from ``batching.make_batches``
(collation is outside the timed region, as in ``train``, which builds an epoch's batches
before its loop). Each repeat builds a fresh, identically seeded model, takes ``--warmup``
steps and then times ``--steps`` steps, with ``torch.cuda.synchronize()`` at both ends on
CUDA; the two modes alternate so that a change in machine load hits both. A figure is the
median of its ``--repeats`` samples; the JSON keeps every sample.

The decoding figures use the model trained by the (first) threshold run, so that output
lengths are realistic; with ``--skip threshold`` they use an untrained model, which runs to the
length limit. ``--profile`` instead runs ``--steps`` training steps under ``torch.profiler``
and prints the top operators by self time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...cli.errors import run_command
from ...cli.usage import examples
from ...config import Config, load_config
from ...runtime.device import select_device
from ...training.batches import prepare_data
from ...training.loop import TrainError
from ..measuring import device_info
from .figures import Figure, figures_json, format_table
from .phases import Settings, log, run
from .steps import bench_batches, profile_steps
from .threshold import default_threshold

# --quick: a small dates run that finishes in under 2 minutes on 2 (shared) CPU cores: 5,400
# training pairs in 85 batches, 3-4 s an epoch; valid exact match passes 20% in about 5 epochs.
QUICK = ("data.size=6000", "train.batch_size=64", "train.valid_max_sentences=150")
QUICK_DECODE_SENTENCES = 150
QUICK_THREADS = 1  # a model this small runs faster on one thread, and much faster on busy cores


def command_line(argv: Sequence[str]) -> str:
    return shlex.join([Path(sys.executable).name, "-m", "seq2seq", "bench", *argv])


def load_average(start: Sequence[float]) -> dict[str, list[float]]:
    return {"start": list(start), "end": list(os.getloadavg())}


def to_json(figures: dict[str, Figure], details: dict[str, Any], cfg: Config, s: Settings,
            device: torch.device, argv: Sequence[str], started: float, load_start: Sequence[float]) -> dict[str, Any]:
    return {
        "figures": figures_json(figures),
        "device": device_info(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": command_line(argv),
        "repeats": s.repeats,
        "settings": dataclasses.asdict(s),
        "config": cfg.to_dict(),
        "details": details,
        "load_average": load_average(load_start),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": time.time() - started,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m seq2seq bench", description=__doc__.split("\n\n")[0] if __doc__ else None,
        **examples(
            "python -m seq2seq bench --quick",
            "python -m seq2seq bench --config multi30k_de_en --device cpu --repeats 3 --json bench.json",
            note="Overrides use dotted names, e.g. train.batch_size=256 model.hidden_dim=256",
        ))
    p.add_argument("--config", type=Path, default=None,
                   help="a YAML config, or a shipped config's name (default: dates)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="sets train.device (default: the config's, normally auto)")
    p.add_argument("--quick", action="store_true", help="a small dates run: under 2 minutes on 2 CPU cores")
    p.add_argument("--repeats", type=int, default=1, help="samples per figure; the figure is their median")
    p.add_argument("--json", type=Path, default=None, help="write every figure and sample here")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 50, --quick 15)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5, --quick 3)")
    p.add_argument("--threshold", type=float, default=None,
                   help="validation exact match (synthetic data) or BLEU to reach; default per config")
    p.add_argument("--threshold-epochs", type=int, default=None,
                   help="give up the threshold after this many epochs (default: train.epochs)")
    p.add_argument("--decode-sentences", type=int, default=None,
                   help=f"decode the first N valid sentences (default: all; --quick {QUICK_DECODE_SENTENCES})")
    p.add_argument("--threads", type=int, default=None,
                   help=f"torch.set_num_threads (default: torch's own; --quick {QUICK_THREADS})")
    p.add_argument("--skip", action="append", choices=("train", "precision", "threshold", "decode"), default=[],
                   help="leave a phase out (repeatable)")
    p.add_argument("--profile", action="store_true",
                   help="only profile --steps training steps (teacher forcing 1.0) with torch.profiler")
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = p.parse_intermixed_args(argv)
    _check_ranges(p, args)
    return args


def _check_ranges(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for least, names in ((1, ("repeats", "steps", "threshold_epochs")), (0, ("warmup", "decode_sentences", "threads"))):
        for name in names:
            value = getattr(args, name)
            if value is not None and value < least:
                p.error(f"--{name.replace('_', '-')} must be >= {least}")
    if args.threshold is not None and not 0 <= args.threshold <= 100:  # BLEU or exact match, in percent
        p.error(f"--threshold must be in [0, 100], got {args.threshold}")  # nan fails this too


def bench_config(args: argparse.Namespace) -> Config:
    """The config: ``--config`` (or the dates default), ``--quick``'s sizes, the overrides, ``--device``."""
    overrides = [*(QUICK if args.quick else ()), *args.overrides]
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    return load_config(args.config or "dates", overrides)


def settings(args: argparse.Namespace, cfg: Config) -> Settings:
    """The run's settings: the options, or their defaults (smaller with ``--quick``)."""
    metric, threshold = default_threshold(cfg, args.quick)
    return Settings(steps=args.steps or (15 if args.quick else 50),
                    warmup=args.warmup if args.warmup is not None else (3 if args.quick else 5),
                    repeats=args.repeats, metric=metric,
                    threshold=threshold if args.threshold is None else args.threshold,
                    threshold_epochs=args.threshold_epochs or cfg.train.epochs,
                    decode_sentences=args.decode_sentences if args.decode_sentences is not None
                    else (QUICK_DECODE_SENTENCES if args.quick else 0),
                    skip=tuple(args.skip))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    def body() -> int:
        started, load_start = time.time(), os.getloadavg()
        threads = args.threads if args.threads is not None else (QUICK_THREADS if args.quick else 0)
        if threads:
            torch.set_num_threads(threads)
        cfg = bench_config(args)
        device = select_device(cfg.train.device)
        s = settings(args, cfg)
        info = device_info(device)
        log(f"{info['name']} ({device.type}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"load average {load_start[0]:.2f}")
        if args.profile:
            data = prepare_data(cfg)
            result = profile_steps(cfg, data, bench_batches(cfg, data, s.warmup + s.steps), s.warmup, 1.0, device)
            out: dict[str, Any] = {"profile": result, "device": info, "torch": torch.__version__,
                                   "command": command_line(argv), "config": cfg.to_dict(),
                                   "load_average": load_average(load_start)}
        else:
            figures, details = run(cfg, s, device)
            print(format_table(figures))
            out = to_json(figures, details, cfg, s, device, argv, started, load_start)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
            log(f"wrote {args.json}")
        return 0

    return run_command(body, (TrainError,))


if __name__ == "__main__":
    sys.exit(main())
