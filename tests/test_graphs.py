"""The CUDA-graph wrapper (seq2seq/training/graphs.py) on the CPU: a CPU cannot capture, so what is
tested here is the bookkeeping around capture -- each shape's fixed batch tensors, the
learning rate and ``capturable`` flag swapped in for the capture only, and the fallback to
eager steps with one warning line when capture fails. Graphs against eager steps on a GPU:
tests/test_cuda.py (``pytest -m cuda``) and ``python -m seq2seq gpu_check``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.data.buckets import DeviceCorpus, StaticBatch
from seq2seq.model.seq2seq import build_model
from seq2seq.training import graphs, stepping
from seq2seq.training.graphs import StepGraphs
from seq2seq.training.loop import make_optimizer
from seq2seq.training.steps import static_step
from seq2seq.training.trainer import train

CPU = torch.device("cpu")


def examples(n: int) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(4, 30, (int(torch.randint(1, 12, (), generator=g)),), generator=g).tolist(),
             torch.randint(4, 30, (int(torch.randint(1, 20, (), generator=g)),), generator=g).tolist())
            for _ in range(n)]


def runner(cfg: Any, want_graphs: bool, warmup: int = 1) -> tuple[StepGraphs, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_dim=8, hidden_dim=16, num_layers=2, dropout=0.0), 30, 30)
    optimizer = make_optimizer(model, cfg, CPU)
    fp32 = torch.autocast("cpu", enabled=False)
    return StepGraphs(lambda b: static_step(model, b, optimizer, cfg, 1.0, fp32, defer=True), optimizer, CPU,
                      want_graphs, warmup=warmup), model


def run(steps: StepGraphs, corpus: DeviceCorpus, n: int) -> list[float]:
    losses = []
    for bucket, rows in list(corpus.epoch(seed=1))[:n]:
        for group in steps.optimizer.param_groups:
            group["lr"] = 0.01
        loss, tokens, _, ok = steps(bucket, rows)
        assert bool(ok)
        losses.append(float(loss) / int(tokens))
    return losses


def test_each_shape_keeps_its_batch_tensors(tiny_config: Any) -> None:
    """The step reads the same tensors for every batch of a shape (what a graph needs)."""
    corpus = DeviceCorpus(examples(120), batch_size=8, max_tokens=0, pad_multiple=8, reverse=True, device=CPU)
    assert len(corpus.shapes) > 1
    seen: dict[Any, set[int]] = {}

    def step(batch: StaticBatch) -> Any:
        seen.setdefault(batch.shape, set()).add(id(batch))
        return torch.zeros(()), torch.zeros((), dtype=torch.long), torch.zeros(()), torch.ones((), dtype=torch.bool)

    steps = StepGraphs(step, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), CPU, graphs=False)
    for bucket, rows in corpus.epoch(seed=0):
        steps(bucket, rows)
    assert set(seen) == set(corpus.shapes) and all(len(ids) == 1 for ids in seen.values())


def test_a_failed_capture_falls_back_to_eager_steps_with_one_warning(tiny_config: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A CPU cannot capture: after each shape's warm-up the capture fails, once; one warning
    line says so, and every step -- the one being captured too -- is the eager run's."""
    cfg = tiny_config()
    corpus = DeviceCorpus(examples(160), batch_size=8, max_tokens=0, pad_multiple=8, reverse=True, device=CPU)
    eager, eager_model = runner(cfg, want_graphs=False)
    graphed, graphed_model = runner(cfg, want_graphs=True)
    assert run(graphed, corpus, 12) == run(eager, corpus, 12)
    for a, b in zip(graphed_model.parameters(), eager_model.parameters()):
        assert torch.equal(a, b)
    err = capsys.readouterr().err
    assert err.count("warning: CUDA graph capture failed") == 1, err
    assert "training goes on without graphs" in err and len(err.strip().splitlines()) == 1
    assert graphed.failure is not None and not graphed.graphs and not graphed.replaying


def test_the_capture_sees_a_device_learning_rate_and_capturable_adam(tiny_config: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the capture every group's lr is the runner's lr tensor and ``capturable`` is set;
    after it (here, after it failed) the plain numbers are back, as checkpoints save them."""
    cfg = tiny_config()
    steps, _ = runner(cfg, want_graphs=True, warmup=0)
    inside: list[tuple[Any, Any]] = []

    class Graph:
        def replay(self) -> None:
            raise AssertionError("not reached")

    @contextmanager
    def capture(graph: Any) -> Any:
        inside.extend((g["lr"], g["capturable"]) for g in steps.optimizer.param_groups)
        raise RuntimeError("operation not permitted when stream is capturing")
        yield

    monkeypatch.setattr(graphs.torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(graphs.torch.cuda, "graph", capture)
    corpus = DeviceCorpus(examples(20), batch_size=8, max_tokens=0, pad_multiple=8, reverse=True, device=CPU)
    run(steps, corpus, 1)
    assert inside and all(lr is steps.lr and capturable is True for lr, capturable in inside)
    assert all(g["lr"] == 0.01 and g["capturable"] is False for g in steps.optimizer.param_groups)
    assert steps.failure == "RuntimeError: operation not permitted when stream is capturing"


@pytest.mark.smoke
def test_training_goes_on_when_capture_fails(tmp_path: Path, tiny_config: Any, metrics: Any,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """train() with graphs asked for (forced on here: the CPU cannot capture): one warning,
    and the run's records equal those of static shapes without graphs."""
    cfg = tiny_config("train.static_shapes=true", "train.sync_free=true", "train.epochs=1", "train.batch_size=32")
    train(cfg, tmp_path / "eager")
    monkeypatch.setattr(stepping, "use_cuda_graphs", lambda *args, **kwargs: True)
    monkeypatch.setattr(graphs, "WARMUP", 1)
    train(cfg, tmp_path / "graphs")
    err = capsys.readouterr().err
    assert err.count("warning: CUDA graph capture failed") == 1, err

    def losses(run: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["train/loss"]) for r in metrics(run) if "train/loss" in r]

    assert losses(tmp_path / "graphs") == losses(tmp_path / "eager") and losses(tmp_path / "eager")
