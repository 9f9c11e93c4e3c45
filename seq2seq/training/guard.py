"""A translation run's NaN/inf guard.

A step whose loss or gradient is NaN/inf is skipped and counted: at once, or with
``train.sync_free`` from counters on the device, read at each metrics record. ``train.max_bad_steps``
skipped steps in a row stop the run (:class:`~seq2seq.training.loop.DivergedError`), and so do
weights that became NaN/inf anyway (a finite loss whose update overflowed) or an optimizer state
that did: the weights are checked after a skipped step, at each metrics record, before validation
and before each save (the optimizer state too), so ``best/`` and ``last/`` only ever hold finite
weights.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import Config
from ..model import checkpoint
from ..runtime.distributed import World
from .loop import DivergedError, Window
from .rundir import Progress


@dataclass
class Guard:
    """The guard of one run: its ``model`` and ``optimizer``, where it stands (``progress``),
    and the NaN/inf steps counted so far."""

    cfg: Config
    out: Path
    world: World
    model: nn.Module
    optimizer: torch.optim.Optimizer
    progress: Progress
    defer: bool = False  # train.sync_free: steps' outcomes read at each record, not each step
    consecutive_bad: int = 0  # NaN/inf steps in a row
    bad_run: Tensor = field(init=False)  # sync_free: NaN/inf steps in a row so far, on the device
    worst_run: Tensor = field(init=False)  # ... and the longest such run since the last record

    def __post_init__(self) -> None:
        zero = torch.zeros((), dtype=torch.int64, device=self.world.device)
        self.bad_run, self.worst_run = zero.clone(), zero.clone()

    def step_counts(self, ok: Any) -> bool:
        """Whether the step just made counts as a step: one taken, or with ``defer`` any (its
        outcome ``ok``, a 0-dim bool tensor, goes into the counters on the device)."""
        if not self.defer:
            return self.step_was_finite(ok)
        self.bad_run.mul_(~ok).add_(~ok)  # (run + 1) if skipped, else 0
        torch.maximum(self.worst_run, self.bad_run, out=self.worst_run)
        return True

    def step_was_finite(self, ok: bool) -> bool:
        """The NaN guard: count a skipped step; ``max_bad_steps`` of them in a row end the run,
        and so does a skipped step whose cause is a non-finite weight."""
        p = self.progress
        if ok:
            self.consecutive_bad = 0
            return True
        self.check_weights()
        p.skipped_steps += 1
        self.consecutive_bad += 1
        self.world.print(f"warning: non-finite loss or gradient at step {p.step}; step skipped", file=sys.stderr)
        if self.consecutive_bad >= self.cfg.train.max_bad_steps:
            raise DivergedError(f"loss was NaN/inf for {self.consecutive_bad} steps in a row "
                                f"(step {p.step}); stopped. {self.kept()}")
        return False

    def settle(self, window: Window) -> None:
        """train.sync_free: read the window's skipped steps (one host sync): count them, warn,
        and stop the run if ``max_bad_steps`` came in a row since the last record."""
        if not self.defer:
            return
        bad = window.settle()
        worst = int(self.worst_run)
        self.worst_run.copy_(self.bad_run)  # the next record's longest run starts with the current one
        if not bad:
            return
        p = self.progress
        p.skipped_steps += bad
        self.world.print(f"warning: {bad} steps with a non-finite loss or gradient up to step {p.step}; "
                         "skipped", file=sys.stderr)
        self.check_weights()
        if worst >= self.cfg.train.max_bad_steps:
            raise DivergedError(f"loss was NaN/inf for {worst} steps in a row (by step {p.step}); "
                                f"stopped. {self.kept()}")

    def check_weights(self) -> None:
        """Stop the run (:class:`DivergedError`) if a weight is NaN/inf; one host sync. Every
        rank holds the same weights, so every rank stops alike."""
        bad = checkpoint.first_non_finite(dict(self.model.named_parameters()))
        if bad is not None:
            raise DivergedError(f"weights became NaN/inf (tensor {bad}) by step {self.progress.step}; stopped "
                                f"(is train.lr={self.cfg.train.lr:g} too high?). {self.kept()}")

    def check_optimizer_state(self) -> None:
        """Stop the run (:class:`DivergedError`) if Adam's moments hold NaN/inf: a resume from
        them would turn the next step's weights NaN. One host sync; at each save."""
        state = {f"{i}.{k}": v for i, s in enumerate(self.optimizer.state.values())
                 for k, v in s.items() if isinstance(v, Tensor)}
        bad = checkpoint.first_non_finite(state)
        if bad is not None:
            raise DivergedError(f"optimizer state became NaN/inf (state {bad}) by step {self.progress.step}; "
                                f"stopped. {self.kept()}")

    def kept(self) -> str:
        """Where the last good checkpoint is, for a message that stops the run."""
        return (f"The last good checkpoint is {self.out / 'last'}" if (self.out / "last").exists()
                else "No checkpoint was written yet")
