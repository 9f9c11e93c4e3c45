"""Training a language model (``data.task: lm``): truncated BPTT over a token stream, or
sentence at a time.

``train_lm(cfg, out)`` is what ``train.py`` runs for an LM config (:func:`seq2seq.training.trainer.train`
hands it over). It uses the translator's parts: the config, the run directory (lock,
``--resume``, ``--overwrite``, ``last/`` with the optimizer and RNG states, ``best/``),
``metrics.jsonl`` and W&B (:mod:`seq2seq.training.tracking`), the fused loss, the optimizer, the
learning-rate schedule, the NaN guard and the signal handling; only the epoch differs:

* ``train.lm_batching: stream`` (truncated BPTT): each epoch the training sentences, in a
  seeded random order, become one token stream cut into ``train.batch_size`` rows
  (:func:`seq2seq.data.lm_data.stream_rows`); a batch is the next ``train.bptt`` steps of every
  row. The state starts at zero each epoch and is carried from one batch to the next,
  detached at each boundary: the values flow on, the gradients stop (memory stays bounded).
* ``sentence``: padded batches of ``train.batch_size`` sentences, each from a zero state.

Validation (each epoch) and test (at the end, with ``best/``) report the perplexity per token
(``valid/ppl``, read as the model trains: as a stream or by sentence) and bits per character
(``valid/bpc``); the test also by sentence from a zero state (``test/ppl_sentence``, what
``python -m seq2seq generate --score`` computes), so stream and sentence models compare.
Early stopping and the plateau schedule follow the validation perplexity.

Validation and test read by sentence (``lm_batching: sentence``, ``test/ppl_sentence``) are
computed in fp32 whatever ``train.bf16`` (:func:`seq2seq.model.lm_scoring.sentence_log_probs`),
as ``generate --score`` is; the streams under the run's precision.

Resume: ``last/`` holds the carried state (``lm.hidden``, ``lm.cell``, in fp32 whatever the
run's precision) with the optimizer, so a run resumed mid-epoch (after Ctrl-C) goes on from
the same state, with or without ``train.bf16``. A finished run (its epochs, early stopping or
``train.max_steps``, mid-epoch too) resumed trains nothing and tests nothing again: it says
so, and returns the summary of its test (a run stopped before its test gets the test, once).
One process only.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import Config
from ..data.lm_data import LMData, Split, prepare_lm_data, sentence_batches, shuffled, stream_batches, stream_rows
from ..data.tokenization import PAD
from ..model import checkpoint
from ..model.decoder import DecoderState
from ..model.lm import LanguageModel, build_lm, detach_state
from ..model.lm_scoring import bits_per_char, perplexity, split_nll
from ..model.loss import sequence_loss
from ..model.sampling import sample
from ..model.seq2seq import count_parameters
from ..runtime import threads
from ..runtime.device import autocast as device_autocast
from ..runtime.device import describe as describe_precision
from ..runtime.device import select_device
from ..runtime.threads import ThreadGovernor
from .loop import (
    DivergedError,
    Epoch,
    Stop,
    StopFlag,
    TrainError,
    catch_signals,
    exit_on_signal,
    make_optimizer,
    no_better_epoch,
    run_epochs,
    update,
)
from .rundir import RUN_CONFIG, Progress, commit_run, lock_run_dir, open_run, restore, save_last
from .tracking import METRICS_FILE, Tracker, truncate_metrics


def train_lm(cfg: Config, out: Path, *, resume: bool = False, overwrite: bool = False,
             reset_optimizer: bool = False) -> dict[str, Any]:
    """Train the language model of ``cfg`` into the run directory ``out``; -> the final summary."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainError("data.task lm trains in one process; run it without torchrun")
    with lock_run_dir(out):
        return LMTrainer.start(cfg, out, resume=resume, overwrite=overwrite, reset_optimizer=reset_optimizer).fit()


def epoch_batches(data: LMData, cfg: Config, epoch: int) -> list[tuple[Tensor, Tensor]]:
    """An epoch's batches, inputs and targets ``(B, T)``: the next ``bptt`` steps of the
    streams, or padded sentences (a seeded order per epoch either way)."""
    t = cfg.train
    seed = t.seed * 1000 + epoch
    if t.lm_batching == "stream":
        x, y = stream_rows(shuffled(data.train.sentences, seed), t.batch_size)  # (B, L)
        return stream_batches(x, y, t.bptt)
    return list(sentence_batches(data.train.sentences, t.batch_size, seed))


@dataclass
class LMTrainer:
    """One LM training run; :meth:`fit` is the loop."""

    cfg: Config
    out: Path
    device: torch.device
    data: LMData
    model: LanguageModel
    optimizer: torch.optim.Optimizer
    progress: Progress
    autocast: Any = field(default_factory=nullcontext)
    carried: DecoderState | None = None  # stream: the state after the last batch done
    tracker: Tracker | None = None
    flag: StopFlag = field(default_factory=StopFlag)
    started: float = 0.0
    consecutive_bad: int = 0
    governor: ThreadGovernor | None = None  # CPU: fewer threads while other processes take a core

    @classmethod
    def start(cls, cfg: Config, out: Path, *, resume: bool, overwrite: bool, reset_optimizer: bool) -> LMTrainer:
        resume, overwrite = open_run(out, cfg, resume=resume, overwrite=overwrite)
        device = select_device(cfg.train.device)
        random.seed(cfg.train.seed)
        torch.manual_seed(cfg.train.seed)
        print(f"# resolved config ({out / RUN_CONFIG})\n{cfg.to_yaml()}", flush=True)
        loaded = checkpoint.load_lm(out / "last") if resume else None
        data = prepare_lm_data(cfg, loaded.tok if loaded else None)
        for line in data.report:
            print(line, flush=True)
        model = build_lm(cfg.model, data.tok.vocab_size)
        if loaded is not None:
            model.load_state_dict(loaded.model.state_dict())
        model.to(device).train()
        print(f"model: {count_parameters(model):,} parameters ({cfg.model.cell}, {cfg.model.num_layers} x "
              f"{cfg.model.hidden_dim}), device {device}, {describe_precision(cfg.train.bf16, device)}, "
              f"{torch.get_num_threads()} threads; {cfg.train.lm_batching} batching"
              + (f", bptt {cfg.train.bptt}" if cfg.train.lm_batching == "stream" else ""), flush=True)
        optimizer = make_optimizer(model, cfg, device)
        progress = restore(out, optimizer, reset_optimizer, 0) if resume else Progress()
        if loaded is not None and progress.batch_in_epoch:
            _check_same_batches(out, loaded.config, cfg, progress.batch_in_epoch)
        carried = _restore_state(out, model, cfg, device) if resume and progress.batch_in_epoch else None
        commit_run(out, cfg, resume=resume, overwrite=overwrite)
        governor = threads.for_training(cfg.train.adapt_threads) if device.type == "cpu" else None
        return cls(cfg, out, device, data, model, optimizer, progress,
                   autocast=device_autocast(cfg.train.bf16, device), carried=carried, governor=governor)

    # --- the loop ----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Epochs until ``train.epochs``, early stopping, ``max_steps`` or a signal; then the test."""
        cfg, p = self.cfg, self.progress
        tested = self.tested() if p.done or p.epoch >= cfg.train.epochs else None
        if tested is not None:  # finished and tested: as the translator's loop, nothing to do
            print(f"{self.out}: training already finished (best valid ppl {p.best:.3f}, test ppl "
                  f"{tested['test/ppl']:.3f}); nothing to resume", flush=True)
            return self.summary(tested)
        truncate_metrics(self.out, p.step)
        self.tracker = Tracker(cfg, self.out, resume_id=p.wandb_id)
        p.wandb_id = self.tracker.run_id
        self.started = time.perf_counter() - p.elapsed
        signum, summary = 0, {}
        try:
            with catch_signals(self.flag):
                run_epochs(p, cfg, self.run_epoch, self.end_epoch, self.save_last)
                signum = self.flag.signum or 0
                if signum:
                    self.save_last()
            if not signum:
                summary = self.test()
        finally:
            self.tracker.finish()
        if signum:
            exit_on_signal(signum, self.out, p.step)
        print(f"done: best valid ppl {p.best:.3f} after {p.epoch} epochs, {p.step} steps, {p.elapsed:.0f} s; "
              f"test ppl {summary['test/ppl']:.3f} (by sentence {summary['test/ppl_sentence']:.3f}), "
              f"bpc {summary['test/bpc']:.4f}; checkpoint {self.out / 'best'}", flush=True)
        return self.summary(summary)

    def summary(self, test: dict[str, float]) -> dict[str, Any]:
        p = self.progress
        return {"best": p.best, "step": p.step, "epoch": p.epoch, "skipped_steps": p.skipped_steps,
                "seconds": round(p.elapsed, 1), **test}

    def tested(self) -> dict[str, float] | None:
        """The test metrics that ``metrics.jsonl`` holds for this run's last step, or None."""
        path = self.out / METRICS_FILE
        found = None
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line torn by a kill
                if isinstance(record, dict) and "test/ppl" in record and record.get("step") == self.progress.step:
                    found = {k: v for k, v in record.items() if k.startswith("test/")}
        return found

    def run_epoch(self) -> Stop:
        """The rest of the current epoch's batches; -> why it ended: epoch_done, max_steps, signal."""
        cfg, p = self.cfg, self.progress
        batches = epoch_batches(self.data, cfg, p.epoch)
        epoch = Epoch(cfg, p, self.optimizer, self.device, len(batches), self.governor)
        stream = cfg.train.lm_batching == "stream"
        state = self.carried
        if stream and state is None:
            state = self.model.initial_state(batches[0][0].shape[0], self.device)
        for x, y in batches[p.batch_in_epoch:]:
            epoch.set_lr()
            x, y = x.to(self.device), y.to(self.device)
            start = state if stream else self.model.initial_state(x.shape[0], self.device)
            assert start is not None
            loss_sum, tokens, norm, ok, state = self.train_step(x, y, start)
            epoch.batch_done()
            self.carried = state if stream else None
            if not self.step_was_finite(ok):
                continue
            epoch.window.add(loss_sum, norm, tokens, cfg.train.clip_norm)
            if epoch.step_done():
                self.log_window(epoch)
            if epoch.stopped(self.flag.signum or 0):
                break
        return epoch.end(lambda: self.log_window(epoch))

    def train_step(self, x: Tensor, y: Tensor, state: DecoderState
                   ) -> tuple[Tensor, int, Tensor, bool, DecoderState]:
        """One optimizer step on inputs and targets ``(B, T)`` from ``state``; -> summed loss,
        target tokens, gradient norm, whether the step was taken, and the state after the
        batch, detached (truncated BPTT's cut: the next batch's gradients stop here)."""
        with self.autocast:
            logits, new_state = self.model(x, state)  # (B, T, V)
            loss_sum = sequence_loss(logits, y, self.cfg.train.label_smoothing)
        tokens = int((y != PAD).sum())
        loss_total, _, norm, ok = update(self.model, loss_sum, loss_sum.detach(), max(tokens, 1), self.optimizer,
                                         self.cfg)
        return loss_total, tokens, norm, ok, detach_state(new_state)

    def step_was_finite(self, ok: bool) -> bool:
        """The NaN guard: ``max_bad_steps`` skipped steps in a row end the run."""
        if ok:
            self.consecutive_bad = 0
            return True
        self.progress.skipped_steps += 1
        self.consecutive_bad += 1
        print(f"warning: non-finite loss or gradient at step {self.progress.step}; step skipped", file=sys.stderr)
        if self.consecutive_bad >= self.cfg.train.max_bad_steps:
            raise DivergedError(f"loss was NaN/inf for {self.consecutive_bad} steps in a row "
                                f"(step {self.progress.step}); stopped")
        return False

    def log_window(self, epoch: Epoch) -> None:
        """The metrics record of the steps since the last one (none if every one was skipped)."""
        assert self.tracker is not None
        window = epoch.window
        if not window.steps:
            window.reset()
            return
        record = window.record(epoch.lr, 1.0, self.progress.epoch + 1)
        record.pop("train/teacher_forcing")
        if self.governor is not None:
            record["train/threads"] = self.governor.threads
        self.tracker.log(record, self.progress.step)

    # --- the epoch's end ---------------------------------------------------------------
    def evaluate(self, split: Split, prefix: str) -> dict[str, float]:
        nll = split_nll(self.model, split, self.cfg, self.device, self.autocast)
        return {f"{prefix}/loss": nll / max(split.tokens, 1), f"{prefix}/ppl": perplexity(nll, split.tokens),
                f"{prefix}/bpc": bits_per_char(nll, split.chars)}

    def end_epoch(self) -> None:
        """Validate, log a sample, then early stopping, the plateau schedule and ``best/``."""
        cfg, p = self.cfg, self.progress
        assert self.tracker is not None
        metrics = self.evaluate(self.data.valid, "valid")
        p.epoch += 1
        p.batch_in_epoch = 0
        self.carried = None  # the next epoch's streams start from zero
        metrics.update({"epoch": p.epoch, "time/seconds": time.perf_counter() - self.started,
                        "train/skipped_steps": p.skipped_steps})
        self.tracker.log(metrics, p.step)
        with self.autocast:
            text = sample(self.model, self.data.tok, num=1, max_tokens=200,
                          generator=torch.Generator().manual_seed(p.epoch))[0]
        self.model.train()
        print(f"epoch {p.epoch}: valid loss {metrics['valid/loss']:.4f} ppl {metrics['valid/ppl']:.3f} "
              f"bpc {metrics['valid/bpc']:.4f}; sample: {text!r}", flush=True)
        ppl = metrics["valid/ppl"]
        if p.best < 0 or ppl < p.best:  # best: the lowest validation perplexity (-1: none yet)
            p.best = ppl
            p.bad_epochs = p.plateau_epochs = 0
            self.save(self.out / "best")
            self.tracker.summary({"best/valid_ppl": ppl, "best/epoch": p.epoch})
            return
        if no_better_epoch(p, cfg):
            print(f"early stop: no better validation perplexity for {p.bad_epochs} epochs", flush=True)
            p.done = True

    def test(self) -> dict[str, float]:
        """The test split with ``best/``'s weights: perplexity as trained and by sentence, bpc."""
        assert self.tracker is not None
        best = checkpoint.load_lm(self.out / "best", self.device)
        model, self.model = self.model, best.model
        try:
            metrics = self.evaluate(self.data.test, "test")
            nll = split_nll(self.model, self.data.test, self.cfg, self.device, self.autocast, batching="sentence")
            metrics["test/ppl_sentence"] = perplexity(nll, self.data.test.tokens)
        finally:
            self.model = model
        self.tracker.log(metrics, self.progress.step)
        self.tracker.summary(metrics)
        return metrics

    def save(self, directory: Path) -> None:
        checkpoint.save(directory, config=self.cfg, model=self.model, src_tok=self.data.tok, tgt_tok=self.data.tok)

    def save_last(self) -> None:
        """``last/`` with the optimizer, RNGs and (mid-epoch, streaming) the carried state."""
        p = self.progress
        p.elapsed = time.perf_counter() - self.started
        extra = {}
        if self.carried is not None:  # in fp32: a bf16 run's state, resumed without bf16, is no dtype error
            extra["lm.hidden"] = self.carried.hidden.float()
            if self.carried.cell is not None:
                extra["lm.cell"] = self.carried.cell.float()
        save_last(self.out, self.cfg, self.model, (self.data.tok, self.data.tok), self.optimizer, p, extra=extra)


EPOCH_KEYS = ("lm_batching", "batch_size", "bptt", "seed")  # what cuts an epoch into its batches


def _check_same_batches(out: Path, saved: Config, cfg: Config, done: int) -> None:
    """A run stopped mid-epoch goes on from batch ``done`` of the same batches: refused in one
    line if a key that cuts the epoch differs (the rest of the epoch would skip or repeat text)."""
    for key in EPOCH_KEYS:
        before, now = getattr(saved.train, key), getattr(cfg.train, key)
        if before != now:
            raise checkpoint.CheckpointError(
                f"{out / 'last'}: stopped mid-epoch ({done} batches done) with train.{key}={before}, resumed with "
                f"{now}; resume with train.{key}={before} (it may change at an epoch's end)")


def _restore_state(out: Path, model: LanguageModel, cfg: Config, device: torch.device) -> DecoderState | None:
    """The carried state saved with ``last/`` mid-epoch (stream batching), or None."""
    if cfg.train.lm_batching != "stream":
        return None
    tensors, _ = checkpoint.load_trainer(out / "last")
    if "lm.hidden" not in tensors:
        return None
    hidden = tensors["lm.hidden"].to(device, torch.float32)  # fp32 (older bf16 runs saved bf16)
    state = model.initial_state(hidden.shape[1], device)
    if hidden.shape != state.hidden.shape or (state.cell is not None and "lm.cell" not in tensors):
        raise checkpoint.CheckpointError(f"{out / 'last'}: the saved LM state does not fit the model")
    cell = tensors["lm.cell"].to(device, torch.float32) if state.cell is not None else None
    return DecoderState(hidden=hidden, cell=cell, context=state.context)
