"""Data-parallel training over several processes (GPUs, nodes): the world, and its collectives.

``torchrun --nproc_per_node=N train.py ...`` starts N processes, each with ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK`` (and the rendezvous address) in its environment. :func:`setup`
reads them, puts the process on its device (``cuda:LOCAL_RANK``, or the CPU) and joins the
process group (NCCL on CUDA, gloo on the CPU). Without them -- a plain ``python train.py``
-- the world is one process and every collective of :class:`World` returns its input
untouched, so the training loop has one code path.

What the loop does with a world (see ``training.train``):

* every rank builds the same shuffled global batches and trains on its share
  (``batching.epoch_batches``); the model is wrapped in ``DistributedDataParallel``;
* per step, the summed loss and token count are all-reduced before backward
  (``training.train_step``), and the ranks agree whether a signal asked to stop;
* rank 0 alone validates (the metrics are broadcast, so early stopping decides alike on
  every rank), writes checkpoints, ``metrics.jsonl`` and W&B; :meth:`World.main_only` makes
  the others wait, and raise rank 0's error if it fails.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes of a run (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the process's index on its node: its GPU
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: Tensor) -> Tensor:
        """``values`` summed over the ranks (in place)."""
        if self.size > 1:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def max(self, value: int) -> int:
        """The largest of the ranks' ``value``s."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` (any picklable object), on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def main_only(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on rank 0 while the others wait (a barrier); if it raises, every rank
        raises that error, so no rank goes on alone."""
        error: BaseException | None = None
        if self.is_main:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - re-raised on every rank just below
                error = e
        error = self.broadcast(error)
        if error is not None:
            raise error

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on rank 0 only (one copy of the log, not one per process)."""
        if self.is_main:
            print(*args, **kwargs)


SINGLE = World()  # a plain one-process run


def setup(device: torch.device) -> World:
    """The world described by torchrun's environment, process group joined; ``device`` is the
    resolved ``train.device`` (each rank then takes ``cuda:LOCAL_RANK``)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=size)
    return World(rank=rank, size=size, local_rank=local_rank, device=device)


def teardown(world: World) -> None:
    """Leave the process group. The DDP wrapper, kept alive by reference cycles, holds it too:
    collected first, so that its gloo threads do not outlive the interpreter (an abort at exit)."""
    if world.size > 1 and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def replicate(module: nn.Module, world: World) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` (which averages gradients over the ranks during
    backward), or ``module`` itself in a one-process world."""
    if world.size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)
