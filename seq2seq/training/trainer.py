"""The training loop: the schedule of a translation run's steps, validations and saves.

``train(cfg, out_dir)`` reads top to bottom: prepare the data (:mod:`seq2seq.training.batches`),
build the model and the optimizer (or restore them from ``last/``), then for each epoch take a
step on each of the shuffled length-bucketed batches (:mod:`seq2seq.training.stepping` makes
them, the way the config chose), validate (:mod:`seq2seq.training.validation`: loss,
perplexity, greedy BLEU/chrF), save ``last/`` (and ``best/`` when validation improves), and
stop early when it has not improved for ``train.patience`` epochs.

A step with a NaN/inf loss or gradient is skipped; weights that became NaN/inf anyway stop
the run before anything is validated or saved (:mod:`seq2seq.training.guard`), so ``best/``
and ``last/`` only ever hold finite weights.

Two ways to scale, both without changing that loop (docs/scaling.md has the commands):

* Several GPUs or nodes: under ``torchrun`` this process is one rank of a data-parallel
  run (:mod:`seq2seq.runtime.distributed`). Each rank trains on its share of every global batch of
  ``train.batch_size * world size`` sentences, the model in DistributedDataParallel; the loss
  is normalised by the global token count (:func:`seq2seq.training.steps.train_step`), rank 0
  validates, logs and saves, and the ranks agree on when to stop.
* Corpora larger than memory: with ``data.prepared`` the training split is streamed from a
  store made by ``python -m seq2seq prepare`` (:mod:`seq2seq.data.store`), a chunk at a time.
"""

from __future__ import annotations

import random
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..model import checkpoint
from ..model.lm import init_decoder
from ..model.seq2seq import Seq2Seq, build_model, count_parameters
from ..runtime import distributed, threads
from ..runtime.device import describe as describe_precision
from ..runtime.device import select_device
from ..runtime.distributed import World
from ..runtime.threads import ThreadGovernor
from ..translation.evaluation import METRIC_NAMES
from .averaging import EPOCHS, epoch_checkpoints
from .batches import Data, prepare_data
from .guard import Guard
from .loop import Epoch, Stop, StopFlag, catch_signals, exit_on_signal, make_optimizer, no_better_epoch, run_epochs
from .rundir import RUN_CONFIG, Progress, commit_run, lock_run_dir, open_run, restore, save_last
from .stepping import Stepper, device_corpus, epoch_steps
from .steps import TrainingForward
from .tracking import Tracker, truncate_metrics
from .validation import alignments, print_validation, validate


def train(cfg: Config, out: Path, *, resume: bool = False, overwrite: bool = False,
          reset_optimizer: bool = False) -> dict[str, Any]:
    """Train per ``cfg`` into the run directory ``out``; returns the final summary.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), this process is one rank of a data-parallel
    run; every rank calls ``train`` with the same arguments.
    """
    if cfg.data.task == "lm":  # a language model: the same run directory, a loop of its own
        from .lm_training import train_lm

        return train_lm(cfg, out, resume=resume, overwrite=overwrite, reset_optimizer=reset_optimizer)
    world = distributed.setup(select_device(cfg.train.device))
    try:
        with ExitStack() as held:  # one process trains into a directory: rank 0 holds its lock
            world.main_only(lambda: held.enter_context(lock_run_dir(out)))
            trainer = Trainer.start(cfg, out, world, resume=resume, overwrite=overwrite,
                                    reset_optimizer=reset_optimizer)
            return trainer.fit()
    finally:
        distributed.teardown(world)


@dataclass
class Trainer:
    """One training run: what it trains, on what, and where it stands. :meth:`fit` is the loop."""

    cfg: Config
    out: Path
    world: World
    data: Data
    model: Seq2Seq
    optimizer: torch.optim.Optimizer
    progress: Progress
    steps: Stepper  # how each batch's step is made
    guard: Guard  # the NaN/inf guard
    tracker: Tracker | None = None
    flag: StopFlag = field(default_factory=StopFlag)
    started: float = 0.0  # perf_counter() at the run's start, less the time of earlier processes
    signum: int = 0  # the signal that stops training, once every rank knows of it
    saved_at: float = 0.0  # perf_counter() when last/ was last written (or training began)
    governor: ThreadGovernor | None = None  # CPU: fewer threads while other processes take a core

    @classmethod
    def start(cls, cfg: Config, out: Path, world: World, *, resume: bool, overwrite: bool,
              reset_optimizer: bool) -> Trainer:
        """Check the run directory, prepare the data, build (or restore) model and optimizer;
        only then replace an old run (``overwrite``) and write ``config.yaml``."""
        say = world.print  # rank 0 speaks for all
        resume, overwrite = open_run(out, cfg, resume=resume, overwrite=overwrite, world=world)
        random.seed(cfg.train.seed)
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        say(f"# resolved config ({out / RUN_CONFIG})\n{cfg.to_yaml()}", flush=True)
        data, model = _data_and_model(cfg, out, world, resume)
        net = distributed.replicate(TrainingForward(model), world)  # DDP with several ranks
        if world.rank:  # other dropout masks than rank 0's (which draws as a one-process run does)
            torch.manual_seed(cfg.train.seed + 1_000_003 * world.rank)
        ranks = f", {world.size} processes of batch_size {cfg.train.batch_size}" if world.size > 1 else ""
        say(f"model: {count_parameters(model):,} parameters, device {world.device}{ranks}, "
            f"{describe_precision(cfg.train.bf16, world.device)}, {torch.get_num_threads()} threads", flush=True)
        optimizer = make_optimizer(model, cfg, world.device)
        progress = restore(out, optimizer, reset_optimizer, world.rank) if resume else Progress()
        corpus = device_corpus(cfg, world, data)  # train.static_shapes: the batches on the device
        if progress.batch_in_epoch:
            _check_resume_batch(out, progress, epoch_steps(data, cfg, world, corpus))
        if resume and reset_optimizer:
            progress = _fresh_schedule(progress)
        commit_run(out, cfg, resume=resume, overwrite=overwrite, world=world)
        steps = Stepper.start(cfg, world, data, model, net, optimizer, corpus)
        guard = Guard(cfg, out, world, model, optimizer, progress, defer=steps.defer)
        governor = threads.for_training(cfg.train.adapt_threads) if world.device.type == "cpu" else None
        return cls(cfg, out, world, data, model, optimizer, progress, steps, guard, governor=governor)

    # --- the loop ----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Epochs until ``train.epochs``, early stopping, ``max_steps`` or a signal; -> summary."""
        cfg, p, say = self.cfg, self.progress, self.world.print
        if p.done or p.epoch >= cfg.train.epochs:
            say(f"{self.out}: training already finished (best valid {self.metric_name} {p.best:.2f})")
            return {"best": p.best, "step": p.step, "epoch": p.epoch}
        self.world.main_only(lambda: truncate_metrics(self.out, p.step))
        self.tracker = Tracker(cfg, self.out, rank=self.world.rank, resume_id=p.wandb_id)  # rank 0 logs
        p.wandb_id = self.tracker.run_id
        self.started = time.perf_counter() - p.elapsed
        self.saved_at = time.perf_counter()
        try:
            with catch_signals(self.flag):
                run_epochs(p, cfg, self.run_epoch, self.end_epoch, self.save_epoch)
                # a signal during the last step, or its save: saved with the handlers still in place
                self.signum = self.signum or self.world.max(self.flag.signum or 0)
                if self.signum:
                    self.save_last()
        finally:
            self.tracker.finish()
        if self.signum:
            exit_on_signal(self.signum, self.out, p.step, say)
        say(f"done: best valid {self.metric_name} {p.best:.2f} after {p.epoch} epochs, {p.step} steps, "
            f"{p.elapsed:.0f} s; checkpoint {self.out / 'best'}", flush=True)
        return {"best": p.best, "step": p.step, "epoch": p.epoch, "skipped_steps": p.skipped_steps,
                "seconds": round(p.elapsed, 1)}

    @property
    def metric_name(self) -> str:
        return METRIC_NAMES[self.cfg.train.best_metric]

    # --- an epoch ----------------------------------------------------------------------
    def run_epoch(self) -> Stop:
        """The rest of the current epoch's batches (from ``batch_in_epoch`` on resume)."""
        cfg, p, world = self.cfg, self.progress, self.world
        batches, epoch_steps = self.steps.epoch(p.epoch, skip=p.batch_in_epoch)
        epoch = Epoch(cfg, p, self.optimizer, world.device, epoch_steps, self.governor, bar=world.is_main)
        window = epoch.window
        for batch in batches:
            epoch.set_lr()
            loss_sum, tokens, norm, ok = self.steps.step(batch)
            epoch.batch_done()
            if not self.guard.step_counts(ok):  # skipped (with sync_free, counted on the device instead)
                continue
            if self.guard.defer:
                window.add_deferred(loss_sum, norm, tokens, cfg.train.clip_norm, ok)
            else:
                window.add(loss_sum, norm, tokens, cfg.train.clip_norm)
            if epoch.step_done():
                self.log_window(epoch)
            self.signum = world.max(self.flag.signum or 0)  # a signal to any rank stops all after this step
            if epoch.stopped(self.signum):
                break
            if p.batch_in_epoch < epoch_steps and self.save_due():  # the epoch's end saves anyway
                self.save_last(epoch)
        self.guard.settle(window)
        return epoch.end(lambda: self.log_window(epoch))

    def save_due(self) -> bool:
        """Whether it is ``train.save_every`` steps, or (looked at with each metrics record, where
        the ranks agree anyway: any rank's clock decides for all) ``train.save_every_minutes``
        since ``last/`` was saved."""
        t, p = self.cfg.train, self.progress
        if t.save_every and p.step % t.save_every == 0:
            return True
        if t.save_every_minutes and p.step % t.log_every == 0:
            return bool(self.world.max(int(time.perf_counter() - self.saved_at >= 60 * t.save_every_minutes)))
        return False

    def log_window(self, epoch: Epoch) -> None:
        """The metrics record of the steps since the last one (none if every one was skipped)."""
        assert self.tracker is not None
        window = epoch.window
        self.guard.settle(window)
        if not window.steps:  # every step since the last record was skipped
            window.reset()
            return
        self.guard.check_weights()  # once a window: a finite loss can still leave a weight NaN
        record = window.record(epoch.lr, self.steps.tf_ratio, self.progress.epoch + 1)
        if self.governor is not None:
            record["train/threads"] = self.governor.threads
        self.tracker.log(record, self.progress.step)
        if epoch.bar is not None:
            epoch.bar.set_postfix(loss=f"{record['train/loss']:.3f}", tok_s=f"{record['train/tokens_per_s']:,.0f}")

    # --- the epoch's end ---------------------------------------------------------------
    def end_epoch(self) -> None:
        """Validate (rank 0; every rank gets its numbers), log, then early stopping, the
        plateau schedule and best/ (alike on every rank)."""
        cfg, p, world, data, autocast = self.cfg, self.progress, self.world, self.data, self.steps.autocast
        assert self.tracker is not None
        self.guard.check_weights()
        metrics, samples = validate(self.model, data, cfg, world.device, autocast) if world.is_main else ({}, [])
        metrics = world.broadcast(metrics)
        p.epoch += 1
        p.batch_in_epoch = 0
        metrics.update({"epoch": p.epoch, "time/seconds": time.perf_counter() - self.started,
                        "train/skipped_steps": p.skipped_steps})
        self.tracker.log(metrics, p.step)
        self.tracker.log_samples(samples, p.epoch, p.step)
        if world.is_main and cfg.model.attention != "none" and self.tracker.wants_images:
            self.tracker.log_alignments(alignments(self.model, data, cfg, world.device, autocast), p.step)
        print_validation(world, p.epoch, metrics, samples)
        value = metrics[f"valid/{cfg.train.best_metric}"]
        if value > p.best:
            p.best = value
            p.bad_epochs = p.plateau_epochs = 0
            world.main_only(lambda: checkpoint.save(self.out / "best", config=cfg, model=self.model,
                                                    src_tok=data.src_tok, tgt_tok=data.tgt_tok))
            self.tracker.summary({f"best/valid_{cfg.train.best_metric}": value, "best/epoch": p.epoch})
            return
        if no_better_epoch(p, cfg):
            world.print(f"early stop: no better validation {self.metric_name} for {p.bad_epochs} epochs", flush=True)
            p.done = True

    def save_epoch(self) -> None:
        """The saves at an epoch's end: ``last/``, and the epoch's own checkpoint."""
        self.save_last()
        self.keep_epoch()

    def keep_epoch(self) -> None:
        """``train.keep_checkpoints``: this epoch's weights as ``epochs/epoch-K`` (for averaging,
        :mod:`seq2seq.training.averaging`); only the newest N are kept."""
        n = self.cfg.train.keep_checkpoints
        if not n or not self.world.is_main:
            return
        checkpoint.save(self.out / EPOCHS / f"epoch-{self.progress.epoch}", config=self.cfg, model=self.model,
                        src_tok=self.data.src_tok, tgt_tok=self.data.tgt_tok)
        for old in epoch_checkpoints(self.out)[:-n]:
            shutil.rmtree(old)

    def save_last(self, epoch: Epoch | None = None) -> None:
        """Write ``last/``; mid-epoch (``train.save_every``) with the ``epoch``'s metrics window in progress."""
        self.guard.check_weights()
        self.guard.check_optimizer_state()
        p = self.progress
        p.elapsed = time.perf_counter() - self.started
        if epoch is not None:
            self.guard.settle(epoch.window)
            p.window = epoch.window.state()
        try:
            save_last(self.out, self.cfg, self.model, (self.data.src_tok, self.data.tgt_tok), self.optimizer,
                      p, self.world)
        finally:
            if epoch is not None:
                p.window = None
        self.saved_at = time.perf_counter()


# --- the start's parts ---------------------------------------------------------------
def _data_and_model(cfg: Config, out: Path, world: World, resume: bool) -> tuple[Data, Seq2Seq]:
    """The data and the model, on the device in training mode: its weights and tokenizers from
    ``last/`` on resume; else fresh, the decoder from ``model.init_decoder_from`` if set."""
    say = world.print
    loaded = checkpoint.load(out / "last") if resume else None
    lm = checkpoint.load_lm(cfg.model.init_decoder_from) if cfg.model.init_decoder_from and not resume else None
    data = prepare_data(cfg, (loaded.src_tok, loaded.tgt_tok) if loaded else None,
                        lm.tok if lm else None)  # every rank alike
    for line in data.report:
        say(line, flush=True)
    model = build_model(cfg.model, data.src_tok.vocab_size, data.tgt_tok.vocab_size)
    if loaded is not None:
        model.load_state_dict(loaded.model.state_dict())
    if lm is not None:  # the decoder starts as the language model (and its tokenizer is the target's)
        init_decoder(model, lm.model)
        say(f"decoder: started from the language model {lm.path} ({lm.config.model.cell}, "
            f"{lm.tok.vocab_size} target tokens)", flush=True)
    model.to(world.device).train()
    return data, model


def _check_resume_batch(out: Path, progress: Progress, epoch_steps: int) -> None:
    """A run resumed mid-epoch goes on from ``progress.batch_in_epoch``: refused when that is
    past this epoch's ``epoch_steps`` batches (the rest of the epoch would be skipped unseen)."""
    if progress.batch_in_epoch > epoch_steps:
        raise checkpoint.CheckpointError(
            f"{checkpoint.resolve(out / 'last') / checkpoint.TRAINER_JSON}: progress.batch_in_epoch "
            f"{progress.batch_in_epoch} is past this epoch's {epoch_steps} batches "
            "(resume with the run's own train.batch_size and max_tokens)")


def _fresh_schedule(p: Progress) -> Progress:
    """``--reset-optimizer``: the schedule's state starts again (the plateau scale, the epochs
    without a better validation, ``done``); where the run stands in the data, its step count,
    best score and metrics record in progress are kept."""
    return Progress(epoch=p.epoch, batch_in_epoch=p.batch_in_epoch, step=p.step, best=p.best,
                    skipped_steps=p.skipped_steps, elapsed=p.elapsed, wandb_id=p.wandb_id, window=p.window)
