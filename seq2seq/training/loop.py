"""What every training loop here shares: its errors, the stop flag that signals set, the
learning-rate warm-up and cosine factor, the optimizer and its update (backward, clipping,
the NaN/inf guard), the progress bar, the window of metrics summed between records, what an
epoch without a better validation does, the loop over a run's epochs, the bookkeeping of an
epoch in progress (:class:`Epoch`) and the exit after a signal. The translator's loop
(:mod:`seq2seq.training.trainer`) and the language model's (:mod:`seq2seq.training.lm_training`)
both use these.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
from torch import Tensor, nn

from ..config import Config
from ..runtime.threads import ThreadGovernor
from .rundir import Progress

Stop = Literal["epoch_done", "max_steps", "signal"]  # why an epoch's loop ended (divergence raises)


class TrainError(RuntimeError):
    """A training run that cannot start or go on; the message says why in one line."""


class DivergedError(TrainError):
    """The run diverged: the loss stayed NaN/inf for ``train.max_bad_steps`` steps in a row,
    or a weight became NaN/inf (which no later step can undo)."""


def lr_factor(step: int, total_steps: int, cfg: Config) -> float:
    """Warm-up (linear over ``warmup_steps``), then constant or cosine decay to 0."""
    t = cfg.train
    warm = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0
    if t.lr_schedule != "cosine" or total_steps <= t.warmup_steps:
        return warm
    progress = min(1.0, (step - t.warmup_steps) / max(1, total_steps - t.warmup_steps))
    return warm * 0.5 * (1.0 + math.cos(math.pi * max(0.0, progress)))



# --- signals -----------------------------------------------------------------------
class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between steps, saves last/ and exits."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signum = signum


@contextmanager
def catch_signals(flag: StopFlag) -> Iterator[None]:
    old = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def exit_on_signal(signum: int, out: Path, step: int, say: Callable[..., None] = print) -> NoReturn:
    """After the save that a signal asked for: say where ``last/`` is, and exit with status
    128 + the signal's number (as a shell reports a process that the signal ended)."""
    say(f"\n{signal.Signals(signum).name}: saved {out / 'last'} at step {step}; continue with --resume",
        file=sys.stderr)
    raise SystemExit(128 + signum)


# --- epochs ------------------------------------------------------------------------
def run_epochs(p: Progress, cfg: Config, run_epoch: Callable[[], Stop], end_epoch: Callable[[], None],
               save: Callable[[], None]) -> None:
    """A run's epochs, until ``train.epochs``, ``p.done`` (early stopping, ``train.max_steps``)
    or a signal: ``run_epoch`` takes the rest of the current epoch's steps; after each epoch
    that no signal stopped, ``end_epoch`` validates (and may stop early), then ``save``
    writes ``last/``, marked done when ``max_steps`` ended the epoch."""
    while p.epoch < cfg.train.epochs and not p.done:
        stop = run_epoch()
        if stop == "signal":
            return
        end_epoch()
        p.done = p.done or stop == "max_steps"
        save()


# --- metrics -----------------------------------------------------------------------
class Window:
    """Training metrics summed over the steps since the last record (on the device, so that
    adding a step costs no host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.loss = torch.zeros((), device=self.device)
        self.norm = torch.zeros((), device=self.device)
        self.clipped = torch.zeros((), device=self.device)
        self.tokens = self.steps = 0
        # train.sync_free: steps whose outcome is only on the device until :meth:`settle`
        self.pending_tokens = torch.zeros((), dtype=torch.int64, device=self.device)
        self.pending_steps = torch.zeros((), dtype=torch.int64, device=self.device)
        self.pending_bad = torch.zeros((), dtype=torch.int64, device=self.device)
        self.start = time.perf_counter()

    def add_deferred(self, loss_sum: Tensor, norm: Tensor, tokens: Any, clip_norm: float, ok: Tensor) -> None:
        """:meth:`add` for a step whose outcome ``ok`` (a 0-dim bool tensor) the host has not
        read: a skipped step adds nothing but its count in ``pending_bad``. No host sync."""
        zero = torch.zeros((), device=self.device)
        self.loss += torch.where(ok, loss_sum, zero)
        self.norm += torch.where(ok, norm, zero)
        if clip_norm > 0:
            self.clipped += (norm > clip_norm) & ok
        self.pending_tokens += ok * torch.as_tensor(tokens, device=self.device).to(torch.int64)
        self.pending_steps += ok
        self.pending_bad += ~ok

    def settle(self) -> int:
        """Fold the pending counts into ``tokens`` and ``steps`` (one host sync); -> the
        steps skipped since the last settle."""
        counts = torch.stack([self.pending_tokens, self.pending_steps, self.pending_bad]).tolist()
        self.tokens += counts[0]
        self.steps += counts[1]
        for t in (self.pending_tokens, self.pending_steps, self.pending_bad):
            t.zero_()
        return int(counts[2])

    def state(self) -> dict[str, float]:
        """The sums so far, for a checkpoint taken mid-window (one host sync); see :meth:`restore`."""
        return {"loss": float(self.loss), "norm": float(self.norm), "clipped": float(self.clipped),
                "tokens": self.tokens, "steps": self.steps, "seconds": time.perf_counter() - self.start}

    @classmethod
    def restore(cls, device: torch.device, state: dict[str, float] | None) -> Window:
        """A window that goes on from a saved :meth:`state` (float32 sums, exactly as saved), so a
        resumed run's next record covers the same steps, with the same loss, as an uninterrupted
        run's; ``None``: a fresh window."""
        window = cls(device)
        if state:
            for name in ("loss", "norm", "clipped"):
                setattr(window, name, torch.tensor(float(state[name]), device=device))
            window.tokens, window.steps = int(state["tokens"]), int(state["steps"])
            window.start -= float(state["seconds"])
        return window

    def add(self, loss_sum: Tensor, norm: Tensor, tokens: int, clip_norm: float) -> None:
        self.loss += loss_sum
        self.norm += norm
        if clip_norm > 0:
            self.clipped += norm > clip_norm
        self.tokens += tokens
        self.steps += 1

    def record(self, lr: float, tf: float, epoch: int) -> dict[str, float]:
        """The window's record (means per token or step), and a fresh window."""
        dt = max(time.perf_counter() - self.start, 1e-9)
        mean = float(self.loss) / max(self.tokens, 1)
        record = {"train/loss": mean, "train/ppl": math.exp(min(mean, 50.0)),
                  "train/grad_norm": float(self.norm) / self.steps,
                  "train/clipped_fraction": float(self.clipped) / self.steps,
                  "train/lr": lr, "train/tokens_per_s": self.tokens / dt, "train/teacher_forcing": tf,
                  "epoch": epoch}
        self.reset()
        return record


def no_better_epoch(p: Progress, cfg: Config) -> bool:
    """An epoch whose validation did not beat the best: count it, and with the plateau
    schedule scale the learning rate by ``train.lr_factor`` after ``train.lr_patience`` such
    epochs in a row. -> whether ``train.patience`` such epochs have passed (stop early)."""
    p.bad_epochs += 1
    p.plateau_epochs += 1
    if cfg.train.lr_schedule == "plateau" and p.plateau_epochs > cfg.train.lr_patience:
        p.lr_scale *= cfg.train.lr_factor
        p.plateau_epochs = 0
    return p.bad_epochs >= cfg.train.patience


def set_lr(optimizer: torch.optim.Optimizer, cfg: Config, p: Progress, total_steps: int) -> float:
    """The learning rate of the next step, set in every group: base x plateau factor x warm-up/cosine."""
    lr = cfg.train.lr * p.lr_scale * lr_factor(p.step, total_steps, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def update(net: nn.Module, loss_sum: Tensor, loss_total: Tensor, tokens: Any, optimizer: torch.optim.Optimizer,
           cfg: Config, defer: bool = False, scale: int = 1) -> tuple[Tensor, Any, Tensor, Any]:
    """Backward of ``loss_sum / tokens * scale``, clipping, and the optimizer step unless the
    loss or gradient is NaN/inf (skipped on the device with ``defer``: fused Adam's ``found_inf``).
    -> (``loss_total``, tokens, gradient norm, whether the step was taken: a 0-dim bool tensor
    with ``defer``, else a bool after one host sync)."""
    optimizer.zero_grad(set_to_none=True)
    (loss_sum / tokens * scale).backward()
    clip = cfg.train.clip_norm if cfg.train.clip_norm > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    finite = torch.isfinite(loss_total) & torch.isfinite(norm)  # () bool, on the device
    if defer:
        optimizer.found_inf = (~finite).to(torch.float32)  # type: ignore[attr-defined]
        optimizer.step()  # a no-op on the device when found_inf is 1 (Adam's step count restored too)
        return loss_total, tokens, norm.detach(), finite
    ok = bool(finite)  # one host sync per step
    if ok:
        optimizer.step()
    return loss_total, int(tokens), norm.detach(), ok


def progress_bar(cfg: Config, total: int, p: Progress) -> Any:
    """The epoch's tqdm bar (``train.progress``), from the batches already done; or None."""
    if not cfg.train.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=p.batch_in_epoch, desc=f"epoch {p.epoch + 1}", leave=False,
                dynamic_ncols=True)


def make_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """Adam or plain SGD, per ``train.optimizer``. Adam is the fused kernel on the CPU too: one
    pass over the weights instead of a dozen ``foreach`` passes (12.8M weights, 1 CPU thread:
    ~9 ms a step against ~43 ms)."""
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                            fused=device.type in ("cuda", "cpu") or None)


# --- an epoch in progress ----------------------------------------------------------
class Epoch:
    """What every loop's epoch does alike around its steps: each step's learning rate (the
    schedule over the run's ``total_steps``), the progress bar (``bar``: shown at all), the
    metrics ``window`` (going on from the record a mid-epoch save kept), the counts of batches
    and steps, and the stops after a step (:attr:`stop`: why the epoch's loop ended)."""

    def __init__(self, cfg: Config, p: Progress, optimizer: torch.optim.Optimizer, device: torch.device,
                 epoch_steps: int, governor: ThreadGovernor | None = None, bar: bool = True) -> None:
        self.cfg, self.p, self.optimizer, self.governor = cfg, p, optimizer, governor
        self.total_steps = cfg.train.max_steps or cfg.train.epochs * epoch_steps
        self.bar = progress_bar(cfg, epoch_steps, p) if bar else None
        self.window = Window.restore(device, p.window)  # the record in progress at a mid-epoch save
        p.window = None
        self.lr = 0.0  # the last step's learning rate
        self.stop: Stop = "epoch_done"

    def set_lr(self) -> None:
        """Before a step: its learning rate, in every parameter group."""
        self.lr = set_lr(self.optimizer, self.cfg, self.p, self.total_steps)

    def batch_done(self) -> None:
        """After a batch's step, taken or skipped."""
        self.p.batch_in_epoch += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.governor is not None:
            self.governor.tick()

    def step_done(self) -> bool:
        """After a step that counts; -> whether a metrics record is due (``train.log_every``)."""
        self.p.step += 1
        return self.p.step % self.cfg.train.log_every == 0

    def stopped(self, signum: int) -> bool:
        """After a step that counts: whether the epoch's loop ends here, for a signal
        (``signum`` not 0) or at ``train.max_steps``."""
        if signum:
            self.stop = "signal"
        elif self.cfg.train.max_steps and self.p.step >= self.cfg.train.max_steps:
            self.stop = "max_steps"
        return self.stop != "epoch_done"

    def end(self, log: Callable[[], None]) -> Stop:
        """After the loop: stopped by a signal, ``last/`` keeps the record in progress (the
        resumed run completes it); else ``log`` records the steps since the last record, if any.
        -> why the loop ended."""
        if self.stop == "signal":
            self.p.window = self.window.state()
        elif self.window.steps:  # the epoch's (or max_steps') last steps since a record
            log()
        if self.bar is not None:
            self.bar.close()
        return self.stop
