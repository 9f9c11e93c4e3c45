"""The bench's phases: training throughput, bf16 against fp32, time to threshold and decoding,
each figure measured ``repeats`` times next to its baseline, the two alternating so that a
change in machine load hits both."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ...config import Config
from ...runtime.device import cpu_bf16_flags
from ...runtime.device import describe as describe_precision
from ...training.batches import Data, prepare_data
from ...translation.translator import Translator
from .figures import Figure, new_figures
from .steps import bench_batches, fresh_model, time_decoding, time_train_steps
from .threshold import run_to_threshold


@dataclass
class Settings:
    steps: int
    warmup: int
    repeats: int
    metric: str
    threshold: float
    threshold_epochs: int
    decode_sentences: int
    skip: tuple[str, ...]


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cfg: Config, s: Settings, device: torch.device) -> tuple[dict[str, Figure], dict[str, Any]]:
    """Measure every figure ``s.repeats`` times; returns the figures and run details."""
    figures = new_figures(s.metric, s.threshold)
    details: dict[str, Any] = {}
    t = time.perf_counter()
    data = prepare_data(cfg)
    details["data"] = data.report + [f"prepared in {time.perf_counter() - t:.1f} s"]
    if "train" not in s.skip:
        measure_training(cfg, s, data, device, figures, details)
    if "precision" not in s.skip:
        measure_precision(cfg, s, data, device, figures, details)
    with tempfile.TemporaryDirectory(prefix="seq2seq-bench-") as tmp:
        trained = None if "threshold" in s.skip else measure_threshold(cfg, s, Path(tmp), figures, details)
        if "decode" not in s.skip:
            measure_decoding(cfg, s, data, device, trained, figures, details)
    return {k: f for k, f in figures.items() if f.samples}, details


def measure_training(cfg: Config, s: Settings, data: Data, device: torch.device, figures: dict[str, Figure],
                     details: dict[str, Any]) -> None:
    batches = bench_batches(cfg, data, s.warmup + s.steps)
    real = sum(b.num_tgt_tokens for b in batches)
    details["train"] = {"steps": s.steps, "warmup": s.warmup, "batch_size": cfg.train.batch_size,
                        "max_tokens": cfg.train.max_tokens,
                        "timed_target_tokens": sum(b.num_tgt_tokens for b in batches[s.warmup:]),
                        "target_fill": real / sum(b.tgt_out.numel() for b in batches),  # real / padded
                        "max_target_len": max(b.tgt_out.shape[1] for b in batches)}
    for r in range(s.repeats):
        for name, tf in (("", 1.0), ("_tutorial", 0.5)):
            tok_s, mib = time_train_steps(cfg, data, batches, s.warmup, tf, device)
            figures["train_tokens_per_s" + name].samples.append(tok_s)
            figures["peak_memory_train" + name].samples.append(mib)
            log(f"train tf={tf} repeat {r + 1}/{s.repeats}: {tok_s:,.0f} tokens/s, peak {mib:,.0f} MiB")


def measure_precision(cfg: Config, s: Settings, data: Data, device: torch.device, figures: dict[str, Figure],
                      details: dict[str, Any]) -> None:
    """The training step in bf16 autocast against fp32, alternating in each repeat (the same
    batches and seeded model), whatever ``train.bf16`` says."""
    batches = bench_batches(cfg, data, s.warmup + s.steps)
    details["precision"] = {"config_bf16": cfg.train.bf16, "resolved": describe_precision(cfg.train.bf16, device),
                            "cpu_bf16_flags": list(cpu_bf16_flags()) if device.type == "cpu" else None}
    for r in range(s.repeats):
        for name, bf16 in (("_bf16", True), ("_fp32", False)):
            run_cfg = replace(cfg, train=replace(cfg.train, bf16=bf16))
            tok_s, _ = time_train_steps(run_cfg, data, batches, s.warmup, 1.0, device)
            figures["train_tokens_per_s" + name].samples.append(tok_s)
            log(f"train{name} repeat {r + 1}/{s.repeats}: {tok_s:,.0f} tokens/s")


def measure_threshold(cfg: Config, s: Settings, tmp: Path, figures: dict[str, Figure],
                      details: dict[str, Any]) -> Path:
    """Time-to-threshold runs in ``tmp``; returns the first teacher-forcing-1.0 run's best/."""
    runs: dict[str, list[dict[str, Any]]] = {"": [], "_tutorial": []}
    for r in range(s.repeats):
        for name, tf in (("", 1.0), ("_tutorial", 0.5)):
            run_cfg = replace(cfg, train=replace(cfg.train, teacher_forcing=tf, teacher_forcing_decay=0.0))
            res = run_to_threshold(run_cfg, tmp / f"run{name}{r}", s.metric, s.threshold, s.threshold_epochs)
            figures["time_to_threshold" + name].samples.append(res.seconds)
            runs[name].append({"seconds": res.seconds, "epoch": res.epoch, "step": res.step, "best": res.best,
                               "epochs_run": res.epochs_run})
            reached = f"{res.seconds:.1f} s (epoch {res.epoch})" if res.seconds is not None else "not reached"
            log(f"threshold tf={tf} repeat {r + 1}/{s.repeats}: {reached}, best {s.metric} {res.best:.2f}")
    details["threshold"] = {"metric": s.metric, "threshold": s.threshold, "max_epochs": s.threshold_epochs,
                            "runs": runs[""], "runs_tutorial": runs["_tutorial"]}
    return tmp / "run0" / "best"


def measure_decoding(cfg: Config, s: Settings, data: Data, device: torch.device, trained: Path | None,
                     figures: dict[str, Figure], details: dict[str, Any]) -> None:
    if trained is not None and trained.exists():
        batched = Translator.from_checkpoint(trained, device, cfg.decode)
        details["decode_model"] = "trained: the first teacher-forcing-1.0 threshold run's best/"
    else:
        model, _ = fresh_model(cfg, data, device)
        batched = Translator(model, data.src_tok, data.tgt_tok, cfg.data, cfg.decode, device)
        details["decode_model"] = "untrained (no threshold run): outputs run to the length limit"
    one_at_a_time = Translator(batched.model, batched.src_tok, batched.tgt_tok, cfg.data,
                               replace(cfg.decode, batch_size=1), device)
    lines = [src for src, _ in data.valid_pairs][: s.decode_sentences or None]
    details["decode"] = {"split": cfg.data.valid_split, "sentences": len(lines), "batch_size": cfg.decode.batch_size}
    for r in range(s.repeats):
        for beam, prefix in ((1, "greedy"), (5, "beam5")):
            for name, translator in (("", batched), ("_batch1", one_at_a_time)):
                sent_s, mib = time_decoding(translator, lines, beam, cfg, device)
                figures[f"{prefix}_sents_per_s{name}"].samples.append(sent_s)
                if beam == 5:
                    figures[f"peak_memory_beam5{name}"].samples.append(mib)
                log(f"decode beam {beam}{' one at a time' if name else ''} repeat {r + 1}/{s.repeats}: "
                    f"{sent_s:,.1f} sentences/s")
