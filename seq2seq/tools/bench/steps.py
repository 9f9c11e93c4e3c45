"""The bench's measurement loops: training steps (packed batches as ``train`` makes them, or
static shapes with or without CUDA graphs), decoding, and the profiler over training steps.

Each loop builds a fresh, identically seeded model, takes its warm-up steps outside the timed
block, and times the rest with :func:`~seq2seq.tools.measuring.timed` (CUDA synced at both
ends). Collation is outside the timed block, as in ``train``, which builds an epoch's batches
before its loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...config import Config
from ...data.batching import Batch, make_batches
from ...model.seq2seq import Seq2Seq, build_model
from ...runtime.device import autocast as device_autocast
from ...training.batches import Data
from ...training.loop import TrainError, make_optimizer
from ...training.stepping import sync_free
from ...training.steps import train_step
from ...translation.translator import Translator
from ..measuring import peak_memory_mib, reset_peak_memory, sync, timed


def autocast_for(cfg: Config, device: torch.device) -> Any:
    """bf16 autocast per ``train.bf16``, as ``training.train`` does."""
    return device_autocast(cfg.train.bf16, device)


def fresh_model(cfg: Config, data: Data, device: torch.device) -> tuple[Seq2Seq, torch.optim.Optimizer]:
    """The model and optimizer exactly as ``train`` makes them (seeded; :func:`make_optimizer`)."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, data.src_tok.vocab_size, data.tgt_tok.vocab_size).to(device).train()
    return model, make_optimizer(model, cfg, device)


def _in_memory(data: Data) -> None:
    if not data.train:
        raise TrainError("bench: no training pairs in memory (a data.prepared store is not supported here)")


def bench_batches(cfg: Config, data: Data, n: int) -> list[Batch]:
    """``n`` shuffled training batches (cycling if the epoch is shorter), as ``train`` makes them."""
    _in_memory(data)
    epoch = make_batches(data.train, batch_size=cfg.train.batch_size, max_tokens=cfg.train.max_tokens,
                         reverse=cfg.data.reverse_source, shuffle=True, seed=cfg.train.seed * 1000,
                         pad_multiple=cfg.train.pad_multiple, by=cfg.train.batch_by)
    return [epoch[i % len(epoch)] for i in range(n)]


def _steps(model: Seq2Seq, batches: Sequence[Batch], optimizer: torch.optim.Optimizer, cfg: Config,
           tf_ratio: float, autocast: Any, device: torch.device, defer: bool = False) -> int:
    """A training step on each of ``batches``; -> their target tokens."""
    tokens = 0
    for batch in batches:
        train_step(model, batch.to(device, non_blocking=True), optimizer, cfg, tf_ratio, autocast, defer=defer)
        tokens += batch.num_tgt_tokens
    return tokens


def time_train_steps(cfg: Config, data: Data, batches: Sequence[Batch], warmup: int, tf_ratio: float,
                     device: torch.device) -> tuple[float, float]:
    """Target tokens/s over ``batches[warmup:]`` after ``warmup`` steps, and peak memory (MiB)."""
    model, optimizer = fresh_model(cfg, data, device)
    autocast = autocast_for(cfg, device)
    reset_peak_memory(device)
    defer = sync_free(cfg, device)  # as train does: no host sync per step on CUDA
    _steps(model, batches[:warmup], optimizer, cfg, tf_ratio, autocast, device, defer)
    with timed(device) as clock:
        tokens = _steps(model, batches[warmup:], optimizer, cfg, tf_ratio, autocast, device, defer)
    return tokens / clock.seconds, peak_memory_mib(device)


def time_static_steps(cfg: Config, data: Data, steps: int, device: torch.device, graphs: bool
                      ) -> tuple[float, float, str | None]:
    """Target tokens/s of static-shape training steps (:mod:`seq2seq.data.buckets`, as ``train``
    takes them with ``train.static_shapes``), eager or each shape's step in a CUDA graph, and
    peak memory (MiB). Every shape of the epoch is first stepped ``WARMUP + 1`` times (with
    graphs: its eager warm-up and its capture), outside the timed region; then ``steps``
    batches of a shuffled epoch (cycled) are timed. -> (tokens/s, peak MiB, why capture failed
    or None). Real target tokens only, as :func:`time_train_steps` counts them."""
    from ...data.buckets import DeviceCorpus
    from ...training.graphs import StepGraphs
    from ...training.steps import static_step

    _in_memory(data)
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
    tokens: Any = 0
    with timed(device) as clock:
        for i in range(steps):
            _, n, _, _ = runner(*plan[i % len(plan)])
            tokens = tokens + n  # a tensor on the device with sync-free steps: no host sync
    return int(tokens) / clock.seconds, peak_memory_mib(device), runner.failure


def time_decoding(translator: Translator, lines: Sequence[str], beam_size: int, cfg: Config,
                  device: torch.device) -> tuple[float, float]:
    """Sentences/s of ``translator.translate`` over ``lines`` (after a short warm-up), peak MiB."""
    autocast = autocast_for(cfg, device)
    with autocast:
        translator.translate(lines[:4], beam_size=beam_size)
    reset_peak_memory(device)
    with timed(device) as clock, autocast:
        translator.translate(lines, beam_size=beam_size)
    return len(lines) / clock.seconds, peak_memory_mib(device)


def profile_steps(cfg: Config, data: Data, batches: Sequence[Batch], warmup: int, tf_ratio: float,
                  device: torch.device, rows: int = 25) -> dict[str, Any]:
    """``torch.profiler`` over ``batches[warmup:]``; prints and returns the top ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    model, optimizer = fresh_model(cfg, data, device)
    autocast = autocast_for(cfg, device)
    _steps(model, batches[:warmup], optimizer, cfg, tf_ratio, autocast, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with timed(device) as clock, profile(activities=activities) as prof:
        _steps(model, batches[warmup:], optimizer, cfg, tf_ratio, autocast, device)
        sync(device)  # inside the profile: the device's last kernels are in it
    averages = prof.key_averages()
    keys = ["self_device_time_total"] if device.type == "cuda" else []
    keys.append("self_cpu_time_total")  # on CUDA: where the host spends its time (launches, syncs)
    result: dict[str, Any] = {"steps": len(batches) - warmup, "teacher_forcing": tf_ratio, "wall_s": clock.seconds}
    for key in keys:
        print(averages.table(sort_by=key, row_limit=rows))
        events = sorted(averages, key=lambda e: getattr(e, key), reverse=True)
        total = sum(getattr(e, key) for e in averages) or 1.0
        result[f"top_ops_by_{key}"] = [
            {"op": e.key, "self_ms": getattr(e, key) / 1e3, "self_pct": 100.0 * getattr(e, key) / total,
             "calls": e.count} for e in events[:rows]]
    return result
