"""The CUDA checks: bf16 with fused Adam, resume, greedy equal to the CPU's, no host sync in a
training step, and the whole step in CUDA graphs (equal to eager steps, the fallback when a
capture fails, dropout per replay, train() on static shapes).

Plain functions, as the GPU machine may have no pytest; tests/test_cuda.py runs each under
pytest too, and tests/test_gpu_check.py runs their logic on the CPU. Each takes a scratch
folder and a device, and raises AssertionError with what differed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..runs import read_metrics

ROOT = Path(__file__).resolve().parents[3]
CHECK_MODEL = ("data.size=1200", "model.hidden_dim=32", "model.embed_dim=8", "train.progress=false",
               "train.batch_size=32", "train.epochs=2", "train.log_every=5", "model.dropout=0.1",
               "decode.batch_size=64", "train.valid_max_sentences=40", "tracking.wandb=disabled")


def _check_config(*overrides: str) -> Any:
    from ...config import load_config

    return load_config("dates", [*CHECK_MODEL, *overrides])


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train/loss"]) for r in read_metrics(run) if "train/loss" in r]


def _assert_learned(run: Path) -> None:
    """The run's training losses are finite and fall."""
    losses = [x for _, x in _losses(run)]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0], losses


@contextlib.contextmanager
def _sync_watch(device: Any) -> Iterator[Callable[[], None]]:
    """Yields ``watch()``: from its call to the block's end, on CUDA, any synchronizing call
    raises (``torch.cuda.set_sync_debug_mode("error")``); on the CPU it does nothing."""
    import torch

    def watch() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")

    try:
        yield watch
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")


def check_bf16_fused_training(tmp: Path, device: str = "cuda") -> None:
    """bf16 autocast and fused Adam on the device; the loss is finite and falls."""
    import torch

    from ...training.loop import make_optimizer
    from ...training.trainer import train

    cfg = _check_config(f"train.device={device}", "train.bf16=auto")
    assert make_optimizer(torch.nn.Linear(2, 2).to(device), cfg, torch.device(device)).defaults["fused"]
    train(cfg, tmp / "bf16")
    _assert_learned(tmp / "bf16")


def check_resume(tmp: Path, device: str = "cuda") -> None:
    """Stopped after epoch 1 and resumed: the same records; losses within 2% (cuDNN's LSTM is not
    bit-reproducible; on the CPU the curves are equal, tests/test_training.py)."""
    from ...training.trainer import train

    train(_check_config(f"train.device={device}"), tmp / "whole")
    train(_check_config(f"train.device={device}", "train.epochs=1"), tmp / "split")
    train(_check_config(f"train.device={device}"), tmp / "split", resume=True)
    a, b = _losses(tmp / "whole"), _losses(tmp / "split")
    assert [s for s, _ in a] == [s for s, _ in b], (a, b)
    assert all(abs(x - y) <= 0.02 * abs(y) for (_, x), (_, y) in zip(b, a)), (a, b)


def check_greedy_matches_cpu(tmp: Path, device: str = "cuda") -> None:
    """An fp32 model's greedy translations on the device equal the CPU's."""
    import torch

    from ...training.trainer import train
    from ...translation.translator import Translator

    train(_check_config("train.device=cpu", "train.bf16=false", "train.epochs=1"), tmp / "fp32")
    lines = ["1999/01/02", "march 3, 2011", "5/17/1953", "24 aug 2040", "12.10.1987"]
    cpu = Translator.from_checkpoint(tmp / "fp32" / "best", torch.device("cpu")).translate_best(lines, beam_size=1)
    dev = Translator.from_checkpoint(tmp / "fp32" / "best", torch.device(device)).translate_best(lines, beam_size=1)
    assert dev == cpu, (dev, cpu)


def check_no_sync_in_step(tmp: Path, device: str = "cuda") -> None:
    """A training step (``train.sync_free``) reads nothing back to the host: on CUDA, run under
    ``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronizing call."""
    import torch

    from ...training.batches import prepare_data
    from ...training.steps import train_step
    from ..bench.steps import bench_batches, fresh_model

    cfg = _check_config(f"train.device={device}", "train.sync_free=true")
    dev = torch.device(device)
    data = prepare_data(cfg)
    model, optimizer = fresh_model(cfg, data, dev)
    batches = [b.to(dev) for b in bench_batches(cfg, data, 5)]  # moved before the watch begins
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16)
    train_step(model, batches[0], optimizer, cfg, 1.0, autocast, defer=True)  # warm-up: lazy state
    with _sync_watch(dev) as watch:
        watch()
        for batch in batches[1:]:
            train_step(model, batch, optimizer, cfg, 1.0, autocast, defer=True)


def _graph_runner(device: str, *, graphs: bool, bf16: bool, dropout: float, lr: float, defer: bool
                  ) -> tuple[Any, Any]:
    """A small LSTM's static-shape step on random sentence pairs (three shapes) in a
    :class:`~seq2seq.training.graphs.StepGraphs`, from fixed initial weights; -> (runner, corpus)."""
    import random

    import torch

    from ...config import ModelConfig
    from ...data.buckets import DeviceCorpus
    from ...model.seq2seq import build_model
    from ...training.graphs import StepGraphs
    from ...training.loop import make_optimizer
    from ...training.steps import static_step

    dev = torch.device(device)
    rng = random.Random(0)
    pairs = [([rng.randrange(4, 60) for _ in range(rng.randint(1, 20))],
              [rng.randrange(4, 60) for _ in range(rng.randint(1, 22))]) for _ in range(600)]
    corpus = DeviceCorpus(pairs, batch_size=32, max_tokens=0, pad_multiple=8, reverse=True, device=dev)
    cfg = _check_config(f"train.device={device}", "train.clip_norm=1.0", "train.label_smoothing=0.1")
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_dim=16, hidden_dim=32, num_layers=2, dropout=dropout), 60, 60).to(dev)
    optimizer = make_optimizer(model, cfg, dev)
    for group in optimizer.param_groups:
        group["lr"] = lr
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False)
    runner = StepGraphs(lambda b: static_step(model, b, optimizer, cfg, 1.0, autocast, defer=defer), optimizer, dev,
                        graphs)
    return runner, corpus


def _graph_runs(device: str, *, graphs: bool, steps: int, bf16: bool = False, dropout: float = 0.0,
                lr: float = 1e-3, defer: bool = True, repeat_one: bool = False, watch_syncs: bool = False) -> Any:
    """``steps`` training steps of :func:`_graph_runner`'s runner, with or without CUDA graphs.
    -> (the steps' mean token losses, the runner, the steps watched).
    ``repeat_one``: every step on the same batch; ``watch_syncs`` (CUDA): once every shape is
    captured, the steps run under ``torch.cuda.set_sync_debug_mode("error")`` (the losses are
    read at the end)."""
    import torch

    dev = torch.device(device)
    runner, corpus = _graph_runner(device, graphs=graphs, bf16=bf16, dropout=dropout, lr=lr, defer=defer)
    plan = list(corpus.epoch(seed=0))  # (bucket, rows on the device)
    losses, watching, watched = [], False, 0
    with _sync_watch(dev) as watch:
        for i in range(steps):
            bucket, rows = plan[0] if repeat_one else plan[i % len(plan)]
            if watch_syncs and dev.type == "cuda" and not watching and len(runner.captured) == len(corpus.buckets):
                watch()
                watching = True
            watched += watching
            loss, tokens, _, _ = runner(bucket, rows)
            losses.append((loss / tokens).clone())  # a replay rewrites its outputs in place
    return [float(x) for x in losses], runner, watched


def _graphs_expected(device: str, runner: Any) -> None:
    """On CUDA every shape met was captured; on the CPU, which cannot capture, the runner fell back."""
    if device == "cuda":
        assert runner.failure is None and runner.replaying, runner.failure
    else:
        assert runner.failure is not None and not runner.replaying


def check_graphs_equal_eager(tmp: Path, device: str = "cuda") -> None:
    """The whole step in CUDA graphs trains as eager steps do: the same losses over 60 steps of
    three shapes (fp32 within 1e-4, bf16 autocast within 2e-2, relative), with replays that
    make no synchronizing CUDA call (the steps after the last shape's capture, step 36).
    On the CPU both runs are eager (capture fails): equal."""
    from ...training.graphs import WARMUP

    for bf16, tol in ((False, 1e-4), (True, 2e-2)):
        eager, _, _ = _graph_runs(device, graphs=False, steps=60, bf16=bf16)
        graphed, runner, watched = _graph_runs(device, graphs=True, steps=60, bf16=bf16, watch_syncs=True)
        _graphs_expected(device, runner)
        assert len(runner.inputs) > 1, runner.inputs  # several shapes
        if device == "cuda":  # each shape: WARMUP eager steps, then replays, the last ones watched for syncs
            assert len(runner.captured) == len(runner.inputs) and set(runner.eager_steps.values()) == {WARMUP}
            assert watched >= 20, watched
        assert all(abs(g - e) <= tol * abs(e) for g, e in zip(graphed, eager)), (bf16, graphed, eager)
        assert device == "cuda" or graphed == eager


def check_graph_fallback(tmp: Path, device: str = "cuda") -> None:
    """A step a graph cannot hold (here: one that reads the NaN check back to the host, a sync)
    fails to capture; one warning, and the steps go on eagerly with the eager run's losses."""
    eager, _, _ = _graph_runs(device, graphs=False, steps=20, defer=False)
    graphed, runner, _ = _graph_runs(device, graphs=True, steps=20, defer=False)
    assert runner.failure is not None and not runner.graphs and not runner.replaying
    assert all(abs(g - e) <= 1e-4 * abs(e) for g, e in zip(graphed, eager)), (graphed, eager)


def check_dropout_advances_per_replay(tmp: Path, device: str = "cuda") -> None:
    """Dropout in a graph draws new masks at each replay: the same batch, learning rate 0 (the
    weights stay as they are), and every step's loss differs from the others."""
    from ...training.graphs import WARMUP

    losses, runner, _ = _graph_runs(device, graphs=True, steps=WARMUP + 6, dropout=0.3, lr=0.0, repeat_one=True)
    _graphs_expected(device, runner)
    replays = losses[WARMUP:]
    assert len(set(replays)) == len(replays), replays


def check_graphed_training(tmp: Path, device: str = "cuda") -> None:
    """train() on static shapes -- on CUDA with the step in CUDA graphs (``auto``) -- learns:
    finite losses that fall."""
    from ...training.trainer import train

    train(_check_config(f"train.device={device}", "train.static_shapes=true"), tmp / "graphs")
    _assert_learned(tmp / "graphs")


CUDA_CHECKS = {"bf16_fused_training": check_bf16_fused_training, "resume": check_resume,
               "greedy_matches_cpu": check_greedy_matches_cpu, "no_sync_in_step": check_no_sync_in_step,
               "graphs_equal_eager": check_graphs_equal_eager, "graph_fallback": check_graph_fallback,
               "dropout_advances_per_replay": check_dropout_advances_per_replay,
               "graphed_training": check_graphed_training}
