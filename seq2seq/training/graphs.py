"""The whole training step in a CUDA graph, one graph per static batch shape (``train.cuda_graphs``).

On a GPU this model's eager step is launch-bound: some hundreds of small kernels, each
launched from Python, whatever the batch size. A CUDA graph records the step once --
forward, backward, gradient clipping and the fused Adam step -- and replays it with one
launch. PyTorch's whole-network recipe (``torch.cuda.graphs``, "Whole-network capture"):

1. warm up: the first :data:`WARMUP` steps of each shape run eagerly, on a side stream
   (they are real training steps; they also create Adam's state and cuDNN's workspaces);
2. capture: the next step of that shape is recorded with ``torch.cuda.graph``, reading the
   shape's fixed input tensors (a :class:`~seq2seq.data.buckets.StaticBatch`), each graph with its
   own memory pool (graphs of different shapes replay in any order);
3. replay: each later step of that shape writes its batch into the same input tensors
   (:meth:`StaticBatch.fill`) and replays the graph; its outputs are the same tensors each time.

What a graph needs of the step (``training.static_step``):

* no host sync and no host data: the loss is divided by a token count computed on the device,
  NaN/inf steps are skipped by the fused Adam kernel (``found_inf``, ``train.sync_free``);
* the learning rate as a device tensor: for the capture, each parameter group's ``lr`` is
  :attr:`StepGraphs.lr` (0-dim, filled before each replay) and its ``capturable`` flag is set,
  both restored after it, so ``param_groups`` hold plain numbers as checkpoints save them. Fused
  Adam computes alike either way (its step count is on the device anyway), so eager steps
  and replays train alike;
* autocast without its weight cache (``cache_enabled=False``; ``device.autocast``);
* dropout: PyTorch registers its CUDA generator with each graph, and each replay draws new
  numbers (the generator's offset advances by the graph's draws); cuDNN's RNN dropout keeps
  its state in a device buffer, which replays advance too.

Capture failing for any reason (an operation a graph cannot hold, memory) costs nothing
but speed: one warning line, and every later step runs eagerly (the step being captured
included). tests/test_graphs.py covers the bookkeeping on the CPU (a capture made to fail);
tests/test_cuda.py, under ``pytest -m cuda``, checks graphs against eager steps on a GPU.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.buckets import Bucket, Shape, StaticBatch

WARMUP = 3  # eager steps of each shape before it is captured

StepOutputs = tuple[Tensor, Any, Tensor, Any]  # summed loss, target tokens, gradient norm, step taken
StepFn = Callable[[StaticBatch], StepOutputs]


@dataclass
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    outputs: StepOutputs  # the step's outputs, rewritten by each replay


class StepGraphs:
    """Training steps on static shapes: each shape's batch tensors, its eager warm-up steps,
    then (``graphs``) its captured step, replayed.

    Args:
        step: one training step on a :class:`StaticBatch` -> (summed loss, target tokens,
            gradient norm, step taken), without host syncs (``training.static_step``).
        optimizer: the optimizer ``step`` steps (fused Adam for graphs).
        device: where the batches live.
        graphs: capture CUDA graphs (CUDA only); False: every step eager, on the same tensors.
        warmup: eager steps of each shape before its capture (default :data:`WARMUP`).
    """

    def __init__(self, step: StepFn, optimizer: torch.optim.Optimizer, device: torch.device, graphs: bool,
                 warmup: int | None = None) -> None:
        self.step, self.optimizer, self.device = step, optimizer, device
        self.graphs, self.warmup = graphs, WARMUP if warmup is None else warmup
        self.inputs: dict[Shape, StaticBatch] = {}
        self.captured: dict[Shape, _Graph] = {}
        self.eager_steps: dict[Shape, int] = {}
        self.lr = torch.zeros((), device=device)  # the learning rate graphs read (filled before each replay)
        self.side = torch.cuda.Stream(device) if graphs and device.type == "cuda" else None
        self.failure: str | None = None  # why graphs were given up, if they were

    def __call__(self, bucket: Bucket, rows: Tensor) -> StepOutputs:
        """One training step on ``bucket``'s rows ``rows`` ``(B,)``."""
        shape = bucket.shape
        batch = self.inputs.get(shape)
        if batch is None:
            batch = self.inputs[shape] = StaticBatch.empty(shape, self.device)
        batch.fill(bucket, rows)
        graph = self.captured.get(shape)
        if graph is not None:
            self.lr.fill_(self.optimizer.param_groups[0]["lr"])
            graph.graph.replay()
            return graph.outputs
        if self.graphs and self.eager_steps.get(shape, 0) >= self.warmup:
            try:
                self.captured[shape] = graph = _Graph(*self.capture(batch))
            except Exception as e:  # noqa: BLE001 - any failure: eager steps from here on
                self.give_up(shape, e)
            else:
                self.lr.fill_(self.optimizer.param_groups[0]["lr"])
                graph.graph.replay()  # capture records the step without running it
                return graph.outputs
        self.eager_steps[shape] = self.eager_steps.get(shape, 0) + 1
        return self.eager(batch)

    def eager(self, batch: StaticBatch) -> StepOutputs:
        """The step run eagerly; while graphs are still wanted, on the side stream (PyTorch's
        recipe warms up there), its outputs handed back to the current stream."""
        if self.side is None or not self.graphs:
            return self.step(batch)
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            outputs = self.step(batch)
        current.wait_stream(self.side)
        for t in outputs:
            if isinstance(t, Tensor):
                t.record_stream(current)  # read on the current stream: not reused before that is done
        return outputs

    def capture(self, batch: StaticBatch) -> tuple[Any, StepOutputs]:
        """Record one step on ``batch`` in a CUDA graph (nothing runs) -> (graph, its outputs)."""
        graph = torch.cuda.CUDAGraph()
        groups = self.optimizer.param_groups
        saved = [(g["lr"], g.get("capturable", False)) for g in groups]
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the gradients
        try:
            for g in groups:
                g["lr"], g["capturable"] = self.lr, True
            with torch.cuda.graph(graph):
                outputs = self.step(batch)
        finally:
            for g, (lr, capturable) in zip(groups, saved):
                g["lr"], g["capturable"] = lr, capturable
        return graph, outputs

    def give_up(self, shape: Shape, error: BaseException) -> None:
        """No more graphs: one warning line; every step from here on is eager."""
        self.graphs = False
        self.captured.clear()
        self.optimizer.zero_grad(set_to_none=True)  # the failed capture's gradients, if any
        first = (str(error).splitlines() or [""])[0][:300]
        self.failure = f"{type(error).__name__}: {first}"
        print(f"warning: CUDA graph capture failed at batch shape {shape.rows}x{shape.src}/{shape.tgt} "
              f"({self.failure}); training goes on without graphs", file=sys.stderr, flush=True)

    @property
    def replaying(self) -> bool:
        """Whether any shape is captured."""
        return bool(self.captured)

