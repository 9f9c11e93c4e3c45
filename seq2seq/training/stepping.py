"""How a translation run makes its steps, and the batches they take.

Three settings choose it, each ``auto`` where it pays (on CUDA): ``train.sync_free`` (steps
without a host sync: fused Adam skips a NaN/inf step on the device), ``train.static_shapes``
(the training batches as static-shape buckets on the device, :mod:`seq2seq.data.buckets`) and
``train.cuda_graphs`` (each shape's step captured in a CUDA graph, :mod:`seq2seq.training.graphs`).
:class:`Stepper` holds the choice: it hands out each epoch's batches and makes each batch's step
(:mod:`seq2seq.training.steps`) accordingly; the loop that schedules them is the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..config import Config, ConfigError
from ..data.batching import Batch
from ..data.buckets import Bucket, DeviceCorpus, StaticBatch
from ..model.seq2seq import Seq2Seq
from ..runtime.device import autocast as device_autocast
from ..runtime.distributed import World
from .batches import Data, rank_batches, steps_per_epoch
from .graphs import StepGraphs, StepOutputs
from .loop import TrainError
from .steps import static_step, teacher_forcing_ratio, train_step

TrainBatch = Batch | tuple[Bucket, Tensor]  # a packed batch, or static shapes: (bucket, rows (B,))


# --- what to use -----------------------------------------------------------------------
def sync_free(cfg: Config, device: torch.device) -> bool:
    """Whether steps run without a host sync (``train.sync_free``): they need fused Adam, whose
    kernel can skip a step on the device (the config refuses ``true`` with SGD); ``auto`` is on
    for CUDA."""
    wanted = cfg.train.sync_free is True or (cfg.train.sync_free == "auto" and device.type == "cuda")
    return wanted and cfg.train.optimizer == "adam"


def use_static_shapes(cfg: Config, world: World) -> bool:
    """Whether training batches are static-shape buckets on the device (``train.static_shapes``;
    the config refuses ``true`` with ``data.prepared`` or a bridged encoder): ``auto`` is
    on for CUDA in one process."""
    setting = cfg.train.static_shapes
    if setting is True and world.size > 1:
        raise TrainError(f"train.static_shapes: true is for one process (this run has {world.size}); "
                         "set it to auto or false under torchrun")
    possible = world.size == 1 and not cfg.data.prepared and not cfg.model.bridged
    return setting is True or (setting == "auto" and world.device.type == "cuda" and possible)


def use_cuda_graphs(cfg: Config, world: World, defer: bool, static: bool) -> bool:
    """Whether each static shape's step is captured in a CUDA graph (``train.cuda_graphs``; the
    config refuses ``true`` without Adam, sync-free steps or teacher forcing 1, or on
    ``train.device: cpu``): ``auto`` is on for CUDA when all of those hold and the batches
    have ``static`` shapes; ``true`` without CUDA or static shapes is an error."""
    t, device = cfg.train, world.device
    if t.cuda_graphs is True:
        if device.type != "cuda":
            raise ConfigError(f"train.cuda_graphs: true needs CUDA; the device is {device.type}")
        if not static:
            raise TrainError(f"train.cuda_graphs: true needs static shapes, which are for one process "
                             f"(this run has {world.size}); set it to auto or false under torchrun")
        return True
    fits = t.optimizer == "adam" and defer and t.teacher_forcing == 1.0 and t.teacher_forcing_decay == 0.0
    return t.cuda_graphs == "auto" and device.type == "cuda" and static and fits


def device_corpus(cfg: Config, world: World, data: Data) -> DeviceCorpus | None:
    """With static shapes (:func:`use_static_shapes`), the training batches on the device; else None."""
    if not use_static_shapes(cfg, world):
        return None
    return DeviceCorpus(data.train, batch_size=cfg.train.batch_size, max_tokens=cfg.train.max_tokens,
                        pad_multiple=cfg.train.pad_multiple, reverse=cfg.data.reverse_source, device=world.device)


def epoch_steps(data: Data, cfg: Config, world: World, corpus: DeviceCorpus | None) -> int:
    """Optimizer steps in an epoch: the device corpus's batches, or :func:`steps_per_epoch`."""
    return corpus.batches_per_epoch() if corpus is not None else steps_per_epoch(data, cfg, world)


# --- making the steps ----------------------------------------------------------------
@dataclass
class Stepper:
    """A run's steps as chosen: packed batches through :func:`train_step`, or (with a device
    ``corpus``) static-shape batches through :class:`StepGraphs` and :func:`static_step`."""

    cfg: Config
    world: World
    data: Data
    model: Seq2Seq
    net: nn.Module  # TrainingForward(model), in DDP with several ranks
    optimizer: torch.optim.Optimizer
    autocast: Any = field(default_factory=nullcontext)
    defer: bool = False  # train.sync_free: no host sync in a step
    corpus: DeviceCorpus | None = None  # train.static_shapes: the training batches, on the device
    static: StepGraphs | None = None  # ... and their steps (captured in CUDA graphs with train.cuda_graphs)
    tf_ratio: float = 1.0  # the current epoch's teacher forcing ratio

    @classmethod
    def start(cls, cfg: Config, world: World, data: Data, model: Seq2Seq, net: nn.Module,
              optimizer: torch.optim.Optimizer, corpus: DeviceCorpus | None) -> Stepper:
        """Choose sync-free steps and CUDA graphs (``corpus``: static shapes chosen), and say so."""
        say = world.print
        defer = sync_free(cfg, world.device)
        if defer:
            say("sync-free steps: NaN/inf steps are skipped on the device and counted at each record", flush=True)
        graphs = use_cuda_graphs(cfg, world, defer, static=corpus is not None)
        if corpus is not None:
            shapes = ", ".join(f"{s.rows}x{s.src}/{s.tgt}" for s in corpus.shapes)
            say(f"static shapes (batch x source/target width): {shapes}; the corpus on {world.device}"
                + ("; each shape's step in a CUDA graph" if graphs else ""), flush=True)
        stepper = cls(cfg, world, data, model, net, optimizer,
                      autocast=device_autocast(cfg.train.bf16, world.device, cache=not graphs), defer=defer,
                      corpus=corpus)
        if corpus is not None:
            stepper.static = StepGraphs(stepper.static_step, optimizer, world.device, graphs)
        return stepper

    def epoch(self, epoch: int, skip: int) -> tuple[Iterable[TrainBatch], int]:
        """Epoch ``epoch``'s batches from batch ``skip`` on, and how many batches the whole epoch
        has; sets the epoch's teacher forcing ratio."""
        cfg = self.cfg
        self.tf_ratio = teacher_forcing_ratio(epoch, cfg)
        seed = cfg.train.seed * 1000 + epoch
        batches: Iterable[TrainBatch]
        if self.corpus is not None:
            batches = self.corpus.epoch(seed, skip=skip)
        else:
            batches = rank_batches(self.data, cfg, self.world, seed, skip)
        return batches, epoch_steps(self.data, cfg, self.world, self.corpus)

    def step(self, batch: TrainBatch) -> StepOutputs:
        """One training step on ``batch`` -> (summed loss, target tokens, gradient norm, step taken)."""
        if isinstance(batch, Batch):
            return train_step(self.net, batch.to(self.world.device, non_blocking=True), self.optimizer, self.cfg,
                              self.tf_ratio, self.autocast, self.world, self.defer)
        assert self.static is not None
        return self.static(*batch)

    def static_step(self, batch: StaticBatch) -> StepOutputs:
        """:func:`static_step` with this run's model, optimizer and settings (what
        :class:`StepGraphs` runs, or captures)."""
        return static_step(self.model, batch, self.optimizer, self.cfg, self.tf_ratio, self.autocast, self.defer)
