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
import contextlib
import ctypes
import dataclasses
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..cli.errors import run_command
from ..config import Config, load_config
from ..data.batching import Batch, make_batches
from ..model.seq2seq import Seq2Seq, build_model
from ..runtime import malloc
from ..runtime.device import autocast as device_autocast
from ..runtime.device import cpu_bf16_flags, cpu_name, select_device
from ..runtime.device import describe as describe_precision
from ..training.batches import Data, prepare_data
from ..training.loop import TrainError, make_optimizer
from ..training.stepping import sync_free
from ..training.steps import train_step
from ..training.trainer import train
from ..translation.translator import Translator

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "configs" / "dates.yaml"
# --quick: a small dates run that finishes in under 2 minutes on 2 (shared) CPU cores: 5,400
# training pairs in 85 batches, 3-4 s an epoch; valid exact match passes 20% in about 5 epochs.
QUICK = ("data.size=6000", "train.batch_size=64", "train.valid_max_sentences=150")
QUICK_DECODE_SENTENCES = 150
QUICK_THREADS = 1  # a model this small runs faster on one thread, and much faster on busy cores
SYNTHETIC = ("dates", "addition")


# --- figures ---------------------------------------------------------------------------
@dataclass
class Figure:
    """One measured quantity: its samples (one per repeat; ``None``: not reached) and baseline."""

    unit: str
    better: str  # "higher" or "lower"
    description: str
    baseline: str | None = None  # the name of the figure it is compared with
    samples: list[float | None] = field(default_factory=list)

    @property
    def value(self) -> float | None:
        """The median of the samples; ``None`` if there are none or any is ``None``."""
        if not self.samples or any(s is None for s in self.samples):
            return None
        return statistics.median(s for s in self.samples if s is not None)


def ratio(figures: dict[str, Figure], name: str) -> float | None:
    """``value / baseline value`` of figure ``name``; ``None`` without a baseline or a value."""
    fig = figures[name]
    if fig.baseline is None:
        return None
    base = figures[fig.baseline].value
    return fig.value / base if fig.value is not None and base else None


def new_figures(metric: str, threshold: float) -> dict[str, Figure]:
    what = f"{metric} >= {threshold:g}"
    return {
        "train_tokens_per_s": Figure("tokens/s", "higher", "training, teacher forcing 1.0 (one RNN call)",
                                     "train_tokens_per_s_tutorial"),
        "train_tokens_per_s_tutorial": Figure("tokens/s", "higher",
                                              "training, tutorial step loop (teacher forcing 0.5)"),
        "train_tokens_per_s_bf16": Figure("tokens/s", "higher", "training, teacher forcing 1.0, bf16 autocast",
                                          "train_tokens_per_s_fp32"),
        "train_tokens_per_s_fp32": Figure("tokens/s", "higher", "training, teacher forcing 1.0, fp32"),
        "time_to_threshold": Figure("s", "lower", f"time to {what}, teacher forcing 1.0",
                                    "time_to_threshold_tutorial"),
        "time_to_threshold_tutorial": Figure("s", "lower", f"time to {what}, teacher forcing 0.5"),
        "greedy_sents_per_s": Figure("sentences/s", "higher", "greedy decoding, batched",
                                     "greedy_sents_per_s_batch1"),
        "greedy_sents_per_s_batch1": Figure("sentences/s", "higher", "greedy decoding, one sentence at a time"),
        "beam5_sents_per_s": Figure("sentences/s", "higher", "beam-5 decoding, batched",
                                    "beam5_sents_per_s_batch1"),
        "beam5_sents_per_s_batch1": Figure("sentences/s", "higher", "beam-5 decoding, one sentence at a time"),
        "peak_memory_train": Figure("MiB", "lower", "peak memory, training, teacher forcing 1.0",
                                    "peak_memory_train_tutorial"),
        "peak_memory_train_tutorial": Figure("MiB", "lower", "peak memory, training, tutorial step loop"),
        "peak_memory_beam5": Figure("MiB", "lower", "peak memory, beam-5 decoding, batched",
                                    "peak_memory_beam5_batch1"),
        "peak_memory_beam5_batch1": Figure("MiB", "lower", "peak memory, beam-5 decoding, one at a time"),
    }


# --- device: clocks and memory ------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak-memory window; ``False`` where the CPU's high-water mark cannot be reset.

    On the CPU, memory that the previous phase freed but the C allocator kept would count
    towards this phase's peak, so it is first handed back to the system (glibc ``malloc_trim``).
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    try:  # Linux: "5" resets the peak RSS to the current RSS (proc(5), clear_refs)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda, "cpu_threads": torch.get_num_threads()}
    return {"type": "cpu", "name": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "omp_wait": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},  # how threads wait
            "malloc": malloc.applied}  # glibc's allocator, as seq2seq/runtime/malloc.py set it (None: left alone)


def autocast_for(cfg: Config, device: torch.device) -> Any:
    """bf16 autocast per ``train.bf16``, as ``training.train`` does."""
    return device_autocast(cfg.train.bf16, device)


# --- training throughput ------------------------------------------------------------------
def fresh_model(cfg: Config, data: Data, device: torch.device) -> tuple[Seq2Seq, torch.optim.Optimizer]:
    """The model and optimizer exactly as ``train`` makes them (seeded; :func:`make_optimizer`)."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, data.src_tok.vocab_size, data.tgt_tok.vocab_size).to(device).train()
    return model, make_optimizer(model, cfg, device)


def bench_batches(cfg: Config, data: Data, n: int) -> list[Batch]:
    """``n`` shuffled training batches (cycling if the epoch is shorter), as ``train`` makes them."""
    if not data.train:
        raise TrainError("bench: no training pairs in memory (a data.prepared store is not supported here)")
    epoch = make_batches(data.train, batch_size=cfg.train.batch_size, max_tokens=cfg.train.max_tokens,
                         reverse=cfg.data.reverse_source, shuffle=True, seed=cfg.train.seed * 1000,
                         pad_multiple=cfg.train.pad_multiple, by=cfg.train.batch_by)
    return [epoch[i % len(epoch)] for i in range(n)]


def time_train_steps(cfg: Config, data: Data, batches: Sequence[Batch], warmup: int, tf_ratio: float,
                     device: torch.device) -> tuple[float, float]:
    """Target tokens/s over ``batches[warmup:]`` after ``warmup`` steps, and peak memory (MiB)."""
    model, optimizer = fresh_model(cfg, data, device)
    autocast = autocast_for(cfg, device)
    reset_peak_memory(device)
    defer = sync_free(cfg, device)  # as train does: no host sync per step on CUDA
    for batch in batches[:warmup]:
        train_step(model, batch.to(device, non_blocking=True), optimizer, cfg, tf_ratio, autocast, defer=defer)
    sync(device)
    tokens = 0
    start = time.perf_counter()
    for batch in batches[warmup:]:
        train_step(model, batch.to(device, non_blocking=True), optimizer, cfg, tf_ratio, autocast, defer=defer)
        tokens += batch.num_tgt_tokens
    sync(device)
    seconds = time.perf_counter() - start
    return tokens / seconds, peak_memory_mib(device)


def time_static_steps(cfg: Config, data: Data, steps: int, device: torch.device, graphs: bool
                      ) -> tuple[float, float, str | None]:
    """Target tokens/s of static-shape training steps (:mod:`seq2seq.data.buckets`, as ``train``
    takes them with ``train.static_shapes``), eager or each shape's step in a CUDA graph, and
    peak memory (MiB). Every shape of the epoch is first stepped ``WARMUP + 1`` times (with
    graphs: its eager warm-up and its capture), outside the timed region; then ``steps``
    batches of a shuffled epoch (cycled) are timed. -> (tokens/s, peak MiB, why capture failed
    or None). Real target tokens only, as :func:`time_train_steps` counts them."""
    from ..data.buckets import DeviceCorpus
    from ..training.graphs import StepGraphs
    from ..training.steps import static_step

    if not data.train:
        raise TrainError("bench: no training pairs in memory (a data.prepared store is not supported here)")
    model, optimizer = fresh_model(cfg, data, device)
    t = cfg.train
    corpus = DeviceCorpus(data.train, batch_size=t.batch_size, max_tokens=t.max_tokens, pad_multiple=t.pad_multiple,
                          reverse=cfg.data.reverse_source, device=device)
    autocast = device_autocast(t.bf16, device, cache=not graphs)
    defer = sync_free(cfg, device)
    runner = StepGraphs(lambda b: static_step(model, b, optimizer, cfg, 1.0, autocast, defer), optimizer, device,
                        graphs)
    plan = list(corpus.epoch(seed=t.seed * 1000))
    reset_peak_memory(device)
    first: dict[Any, tuple[Any, Any]] = {}
    for bucket, rows in plan:
        first.setdefault(bucket.shape, (bucket, rows))
    for bucket, rows in first.values():
        for _ in range(runner.warmup + 1):
            runner(bucket, rows)
    sync(device)
    tokens: Any = 0
    start = time.perf_counter()
    for i in range(steps):
        _, n, _, _ = runner(*plan[i % len(plan)])
        tokens = tokens + n  # a tensor on the device with sync-free steps: no host sync
    sync(device)
    seconds = time.perf_counter() - start
    return int(tokens) / seconds, peak_memory_mib(device), runner.failure


# --- time to threshold --------------------------------------------------------------------
def default_threshold(cfg: Config, quick: bool) -> tuple[str, float]:
    """(metric in metrics.jsonl, threshold): exact match for synthetic tasks, BLEU otherwise."""
    if cfg.data.source == "dates":
        return "valid/exact_match", 20.0 if quick else 90.0
    if cfg.data.source == "addition":
        return "valid/exact_match", 50.0
    return "valid/bleu", 15.0


def first_crossing(records: Sequence[dict[str, Any]], metric: str, threshold: float) -> dict[str, Any] | None:
    """The first epoch record whose ``metric`` is at least ``threshold``, or ``None``."""
    return next((r for r in records if metric in r and r[metric] >= threshold), None)


@dataclass
class ThresholdRun:
    seconds: float | None  # time/seconds at the first crossing; None: not reached
    epoch: int | None
    step: int | None
    best: float  # the best value of the metric seen
    epochs_run: int
    checkpoint: Path


@contextlib.contextmanager
def quiet_training(log: Path) -> Iterator[None]:
    """The trainer's printing goes to ``log``; W&B stays off whatever the environment says."""
    old = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "disabled"
    try:
        with open(log, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f):
            yield
    finally:
        if old is None:
            del os.environ["WANDB_MODE"]
        else:
            os.environ["WANDB_MODE"] = old


def run_to_threshold(cfg: Config, out: Path, metric: str, threshold: float, max_epochs: int) -> ThresholdRun:
    """Train into ``out`` until an epoch's ``metric`` reaches ``threshold`` (or ``max_epochs``).

    The run is extended one epoch at a time with ``train(..., resume=True)``, which continues
    exactly where the previous call stopped (weights, optimizer, schedule, random state), so it
    stops at the first crossing instead of training every epoch. A cosine schedule depends on
    the epoch count, so such a run is made in one call of ``max_epochs`` instead.
    """
    cfg = replace(cfg, train=replace(cfg.train, progress=False), tracking=replace(cfg.tracking, wandb="disabled"))
    one_call = cfg.train.lr_schedule == "cosine"
    records: list[dict[str, Any]] = []
    hit = None
    epochs_run = 0
    with quiet_training(out.parent / f"{out.name}.log"):
        for epochs in ([max_epochs] if one_call else range(1, max_epochs + 1)):
            summary = train(replace(cfg, train=replace(cfg.train, epochs=epochs)), out, resume=epochs_run > 0)
            lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            records = [r for r in map(json.loads, lines) if metric in r]
            hit = first_crossing(records, metric, threshold)
            if hit is not None or summary["epoch"] <= epochs_run:  # reached, or stopped early
                break
            epochs_run = summary["epoch"]
    epochs_run = max((int(r["epoch"]) for r in records), default=0)
    best = max((float(r[metric]) for r in records), default=float("nan"))
    if hit is None:
        return ThresholdRun(None, None, None, best, epochs_run, out / "best")
    return ThresholdRun(float(hit["time/seconds"]), int(hit["epoch"]), int(hit["step"]), best, epochs_run,
                        out / "best")


# --- decoding -----------------------------------------------------------------------------
def time_decoding(translator: Translator, lines: Sequence[str], beam_size: int, cfg: Config,
                  device: torch.device) -> tuple[float, float]:
    """Sentences/s of ``translator.translate`` over ``lines`` (after a short warm-up), peak MiB."""
    autocast = autocast_for(cfg, device)
    with autocast:
        translator.translate(lines[:4], beam_size=beam_size)
    reset_peak_memory(device)
    sync(device)
    start = time.perf_counter()
    with autocast:
        translator.translate(lines, beam_size=beam_size)
    sync(device)
    return len(lines) / (time.perf_counter() - start), peak_memory_mib(device)


# --- profiling ----------------------------------------------------------------------------
def profile_steps(cfg: Config, data: Data, batches: Sequence[Batch], warmup: int, tf_ratio: float,
                  device: torch.device, rows: int = 25) -> dict[str, Any]:
    """``torch.profiler`` over ``batches[warmup:]``; prints and returns the top ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    model, optimizer = fresh_model(cfg, data, device)
    autocast = autocast_for(cfg, device)
    for batch in batches[:warmup]:
        train_step(model, batch.to(device, non_blocking=True), optimizer, cfg, tf_ratio, autocast)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for batch in batches[warmup:]:
            train_step(model, batch.to(device, non_blocking=True), optimizer, cfg, tf_ratio, autocast)
        sync(device)
    wall = time.perf_counter() - start
    averages = prof.key_averages()
    keys = ["self_device_time_total"] if device.type == "cuda" else []
    keys.append("self_cpu_time_total")  # on CUDA: where the host spends its time (launches, syncs)
    result: dict[str, Any] = {"steps": len(batches) - warmup, "teacher_forcing": tf_ratio, "wall_s": wall}
    for key in keys:
        print(averages.table(sort_by=key, row_limit=rows))
        events = sorted(averages, key=lambda e: getattr(e, key), reverse=True)
        total = sum(getattr(e, key) for e in averages) or 1.0
        result[f"top_ops_by_{key}"] = [
            {"op": e.key, "self_ms": getattr(e, key) / 1e3, "self_pct": 100.0 * getattr(e, key) / total,
             "calls": e.count} for e in events[:rows]]
    return result


# --- the run ------------------------------------------------------------------------------
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


# --- output -------------------------------------------------------------------------------
def _fmt(x: float | None) -> str:
    if x is None:
        return "not reached"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def _versus(figures: dict[str, Figure], name: str) -> str:
    base, r = figures[name].baseline, ratio(figures, name)
    if base is None:
        return "(baseline)"
    return f"{r:.2f}x {base}" if r is not None else f"- {base}"


def format_table(figures: dict[str, Figure]) -> str:
    """figure | value (median) | unit | value / baseline value, and the baseline's name."""
    rows = [("figure", "value", "unit", "ratio vs baseline")]
    rows += [(name, _fmt(f.value), f.unit, _versus(figures, name)) for name, f in figures.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}" for a, b, c, d in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def to_json(figures: dict[str, Figure], details: dict[str, Any], cfg: Config, s: Settings,
            device: torch.device, argv: Sequence[str], started: float, load_start: Sequence[float]) -> dict[str, Any]:
    return {
        "figures": {name: {"value": f.value, "unit": f.unit, "better": f.better, "description": f.description,
                           "baseline": f.baseline, "ratio": ratio(figures, name), "samples": f.samples}
                    for name, f in figures.items()},
        "device": device_info(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": shlex.join([Path(sys.executable).name, "-m", "seq2seq", "bench", *argv]),
        "repeats": s.repeats,
        "settings": dataclasses.asdict(s),
        "config": cfg.to_dict(),
        "details": details,
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": time.time() - started,
    }


# --- entry point --------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m seq2seq bench", description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Overrides use dotted names, e.g. train.batch_size=256 model.hidden_dim=256")
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: configs/dates.yaml)")
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
    for name in ("repeats", "steps", "threshold_epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("warmup", "decode_sentences", "threads"):
        value = getattr(args, name)
        if value is not None and value < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.threshold is not None and not 0 <= args.threshold <= 100:  # BLEU or exact match, in percent
        p.error(f"--threshold must be in [0, 100], got {args.threshold}")  # nan fails this too
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    def body() -> int:
        started, load_start = time.time(), os.getloadavg()
        threads = args.threads if args.threads is not None else (QUICK_THREADS if args.quick else 0)
        if threads:
            torch.set_num_threads(threads)
        overrides = [*(QUICK if args.quick else ()), *args.overrides]
        if args.device is not None:
            overrides.append(f"train.device={args.device}")
        cfg = load_config(args.config or DEFAULT_CONFIG, overrides)
        device = select_device(cfg.train.device)
        metric, threshold = default_threshold(cfg, args.quick)
        s = Settings(steps=args.steps or (15 if args.quick else 50),
                     warmup=args.warmup if args.warmup is not None else (3 if args.quick else 5),
                     repeats=args.repeats, metric=metric,
                     threshold=threshold if args.threshold is None else args.threshold,
                     threshold_epochs=args.threshold_epochs or cfg.train.epochs,
                     decode_sentences=args.decode_sentences if args.decode_sentences is not None
                     else (QUICK_DECODE_SENTENCES if args.quick else 0),
                     skip=tuple(args.skip))
        info = device_info(device)
        log(f"{info['name']} ({device.type}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"load average {load_start[0]:.2f}")
        if args.profile:
            data = prepare_data(cfg)
            result = profile_steps(cfg, data, bench_batches(cfg, data, s.warmup + s.steps), s.warmup, 1.0, device)
            out: dict[str, Any] = {"profile": result, "device": info, "torch": torch.__version__,
                                   "command": shlex.join([Path(sys.executable).name, "-m", "seq2seq", "bench", *argv]),
                                   "config": cfg.to_dict(), "load_average": {"start": list(load_start),
                                                                             "end": list(os.getloadavg())}}
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
