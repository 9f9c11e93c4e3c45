"""The training loop: teacher forcing, clipping, validation BLEU, early stopping, resume.

``train(cfg, out_dir)`` reads top to bottom: prepare the data, build the model and the
optimizer (or restore them from ``last/``), then for each epoch run ``train_step`` over the
shuffled length-bucketed batches, validate (loss, perplexity, greedy BLEU/chrF), save
``last/`` (and ``best/`` when validation BLEU improves), and stop early when it has not
improved for ``train.patience`` epochs.

A step with a NaN/inf loss or gradient is skipped; weights that became NaN/inf anyway (a
finite loss whose update overflowed) stop the run before anything is validated or saved:
the weights are checked after a skipped step, at each metrics record, before validation
and before each save, so ``best/`` and ``last/`` only ever hold finite weights.

Two ways to scale, both without changing that loop (the README's "Scaling up" section has the commands):

* Several GPUs or nodes: under ``torchrun`` this process is one rank of a data-parallel
  run (:mod:`seq2seq.runtime.distributed`). Each rank trains on its share of every global batch of
  ``train.batch_size * world size`` sentences, the model in DistributedDataParallel; the loss
  is normalised by the global token count (:func:`train_step`), rank 0 validates, logs and
  saves, and the ranks agree on when to stop.
* Corpora larger than memory: with ``data.prepared`` the training split is streamed from a
  store made by ``python -m seq2seq prepare`` (:mod:`seq2seq.data.store`), a chunk at a time.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..config import Config, ConfigError
from ..data.batching import Batch, Chunk, Example, batch_cuts, encode_pairs, epoch_batches, make_batches
from ..data.buckets import Bucket, DeviceCorpus, StaticBatch
from ..data.corpus import Pair, load_corpus
from ..data.store import Store
from ..data.tokenization import PAD, Tokenizer, train_tokenizer, train_tokenizers
from ..model import checkpoint
from ..model.lm import init_decoder
from ..model.loss import sequence_loss
from ..model.seq2seq import Seq2Seq, build_model, count_parameters
from ..runtime import distributed, threads
from ..runtime.device import autocast as device_autocast
from ..runtime.device import describe as describe_precision
from ..runtime.device import select_device
from ..runtime.distributed import World
from ..runtime.threads import ThreadGovernor
from ..translation.evaluation import METRIC_NAMES, score
from ..translation.translator import Alignment, Translator
from .averaging import EPOCHS, epoch_checkpoints
from .graphs import StepGraphs
from .loop import (
    DivergedError,
    StopFlag,
    TrainError,
    Window,
    catch_signals,
    make_optimizer,
    no_better_epoch,
    progress_bar,
    set_lr,
    update,
)
from .rundir import (
    RUN_CONFIG,
    Progress,
    check_run_dir,
    has_checkpoint,
    lock_run_dir,
    replace_run,
    restore,
    save_last,
    write_run_config,
)
from .tracking import Tracker, truncate_metrics


# --- data --------------------------------------------------------------------------
@dataclass
class Data:
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    train: list[Example]
    valid: list[Example]
    valid_pairs: list[Pair]
    report: list[str] = field(default_factory=list)
    store: Store | None = None  # with data.prepared: the training split, on disk (``train`` is then empty)


def prepare_data(cfg: Config, tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
                 tgt_tok: Tokenizer | None = None) -> Data:
    """Load the corpus, train (or reuse) tokenizers on the training split, encode, filter;
    with ``data.prepared``, open the store instead (training examples stay on disk).
    ``tgt_tok``: the target tokenizer to use (a language model's); only the source's is trained."""
    d = cfg.data
    if d.prepared:
        return _open_store(cfg, tokenizers)
    corpus = load_corpus(d)
    report = list(corpus.report)
    if tokenizers is None and tgt_tok is not None:
        tokenizers = (train_tokenizer([s for s, _ in corpus.train], d.tokenizer, d.vocab_size), tgt_tok)
    if tokenizers is None:
        tokenizers = train_tokenizers(corpus.train, d.tokenizer, d.vocab_size, d.joint_vocab)
    src_tok, tgt_tok = tokenizers
    train, too_long, empty = encode_pairs(corpus.train, src_tok, tgt_tok, d.max_len)
    report.append(f"train: {len(train)} pairs kept, {too_long} longer than max_len={d.max_len} "
                  f"and {empty} empty after tokenization dropped")
    if not train:
        raise TrainError(f"no training pairs left after filtering (max_len={d.max_len})")
    valid, _, _ = encode_pairs(corpus.valid, src_tok, tgt_tok, d.max_len)
    report.append(f"vocabulary: source {src_tok.vocab_size}, target {tgt_tok.vocab_size} ({d.tokenizer})")
    return Data(src_tok, tgt_tok, train, valid, list(corpus.valid), report)


def _open_store(cfg: Config, tokenizers: tuple[Tokenizer, Tokenizer] | None) -> Data:
    store = Store(cfg.data.prepared)
    store.check(cfg.data)
    if tokenizers is not None and [t.to_json() for t in tokenizers] != [store.src_tok.to_json(),
                                                                       store.tgt_tok.to_json()]:
        raise TrainError(f"{store.path}: its tokenizers are not the checkpoint's (was it prepared again?); "
                         "resume with the store the run was trained on")
    valid_pairs = store.valid_pairs()
    valid, _, _ = encode_pairs(valid_pairs, store.src_tok, store.tgt_tok, cfg.data.max_len)
    report = [*store.report, f"train: streamed from {store.path}, up to {store.block * store.chunk_blocks:,} "
                             "examples in memory at a time"]
    return Data(store.src_tok, store.tgt_tok, [], valid, valid_pairs, report, store)


def train_chunks(data: Data, seed: int) -> Iterable[Chunk]:
    """An epoch's training examples for ``batching.epoch_batches``: one chunk in memory, or
    the store's chunks, read one at a time."""
    if data.store is not None:
        return data.store.chunks(seed)
    return [(data.train, range(len(data.train)), seed)]


def steps_per_epoch(data: Data, cfg: Config, world: World) -> int:
    """Optimizer steps in an epoch (a global batch a step), for the schedule and progress bar.

    In memory, the batches of a length-sorted pass; streamed, the store's estimate. The
    shuffled epoch can differ by a few with a token budget, as batches fall differently.
    """
    batch_size, max_tokens = cfg.train.batch_size * world.size, cfg.train.max_tokens * world.size
    if data.store is not None:
        return data.store.estimated_batches(batch_size, max_tokens)
    return len(batch_cuts([len(s) for s, _ in data.train], [len(t) for _, t in data.train],
                          batch_size=batch_size, max_tokens=max_tokens, shuffle=False, by=cfg.train.batch_by))


# --- pure helpers ------------------------------------------------------------------
def teacher_forcing_ratio(epoch: int, cfg: Config) -> float:
    t = cfg.train
    return max(t.teacher_forcing_min, t.teacher_forcing - t.teacher_forcing_decay * epoch) \
        if t.teacher_forcing < 1.0 or t.teacher_forcing_decay > 0 else 1.0


def scheduled_sampling_logits(model: Seq2Seq, batch: Batch | StaticBatch, ratio: float, padded: bool = False
                              ) -> Tensor:
    """Step through time; feed the gold token with probability ``ratio``, else the model's
    own argmax prediction (scheduled sampling). -> logits (B, T, V). ``padded``: the padded
    encoder (static shapes)."""
    state = model.encode(batch.src, batch.src_len, padded)
    prev = batch.tgt_in[:, 0]  # (B,) BOS
    steps = []
    T = batch.tgt_in.shape[1]
    for t in range(T):
        logits, state = model.decode_step(prev, state)  # (B, V)
        steps.append(logits)
        if t + 1 < T:
            gold = batch.tgt_in[:, t + 1]
            use_gold = torch.rand(gold.shape, device=gold.device) < ratio
            prev = torch.where(use_gold, gold, logits.argmax(-1))
    return torch.stack(steps, dim=1)  # (B, T, V)


class TrainingForward(nn.Module):
    """The training forward pass in one module call: teacher forcing, or scheduled sampling
    below ratio 1. DistributedDataParallel synchronises the gradients of what runs through
    the ``forward`` of the module it wraps, so both paths go through this one."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, ratio: float) -> Tensor:
        if ratio >= 1.0:
            return self.model(batch.src, batch.src_len, batch.tgt_in)  # (B, T, V)
        return scheduled_sampling_logits(self.model, batch, ratio)  # (B, T, V)


# --- one step ------------------------------------------------------------------------
def train_step(net: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, cfg: Config, tf_ratio: float,
               autocast: Any, world: World = distributed.SINGLE, defer: bool = False
               ) -> tuple[Tensor, Any, Tensor, Any]:
    """One optimizer step on ``batch``, this rank's share of the step's global batch.

    ``net`` is ``TrainingForward(model)``, in DistributedDataParallel when there are several
    ranks (a bare ``Seq2Seq`` is wrapped here). -> (summed loss and target tokens of the
    *global* batch, gradient norm before clipping, whether the step was taken: not when the
    loss or gradient is NaN/inf, which every rank sees alike).

    The gradient is that of the global batch's mean token loss, as one process would take
    it: each rank divides its summed loss by the global token count (one all-reduce of two
    numbers before backward) and multiplies it by the world size, which DDP's averaging of
    the ranks' gradients divides out again. So N ranks with ``batch_size`` B take the steps
    of one process with N * B, up to the order of floating-point sums.

    ``defer`` (``train.sync_free``; fused Adam only): no host sync. The step is always
    launched, and the fused kernel skips it on the device when the loss or gradient is not
    finite (``found_inf``, as a GradScaler would set it); "taken" is then a 0-dim bool tensor,
    and the target-token count a tensor in a data-parallel run.
    """
    if isinstance(net, Seq2Seq):  # a bare model (bench.py times steps this way)
        net = TrainingForward(net)
    with autocast:
        logits = net(batch, tf_ratio)  # (B, T, V)
        loss_sum = sequence_loss(logits, batch.tgt_out, cfg.train.label_smoothing)
    loss_total, tokens = _global_sums(loss_sum, batch.num_tgt_tokens, world)
    return update(net, loss_sum, loss_total, tokens, optimizer, cfg, defer, scale=world.size)


def static_step(model: Seq2Seq, batch: StaticBatch, optimizer: torch.optim.Optimizer, cfg: Config,
                tf_ratio: float, autocast: Any, defer: bool = False) -> tuple[Tensor, Any, Tensor, Any]:
    """:func:`train_step` on a static-shape batch (:mod:`seq2seq.data.buckets`; one process), with
    nothing a CUDA graph cannot capture when ``defer``: the padded encoder, and the token count
    the loss is divided by counted on the device (exact: padding rows are all PAD). The same
    returns as :func:`train_step`; with ``defer``, the token count is a 0-dim tensor."""
    with autocast:
        if tf_ratio >= 1.0:
            logits = model(batch.src, batch.src_len, batch.tgt_in, padded=True)  # (B, T, V)
        else:
            logits = scheduled_sampling_logits(model, batch, tf_ratio, padded=True)  # (B, T, V)
        loss_sum = sequence_loss(logits, batch.tgt_out, cfg.train.label_smoothing)
    tokens = (batch.tgt_out != PAD).sum()  # () int64, on the device
    return update(model, loss_sum, loss_sum.detach(), tokens, optimizer, cfg, defer)


def _global_sums(loss_sum: Tensor, tokens: int, world: World) -> tuple[Tensor, Tensor | int]:
    """(summed loss, target tokens) over all ranks; in one process, as they are."""
    if world.size == 1:
        return loss_sum.detach(), tokens
    sums = torch.stack([loss_sum.detach().double(), torch.tensor(float(tokens), dtype=torch.float64,
                                                                 device=loss_sum.device)])  # (2,)
    world.sum(sums)
    return sums[0].float(), sums[1].float()


@torch.inference_mode()
def validate(model: Seq2Seq, data: Data, cfg: Config, device: torch.device, autocast: Any
             ) -> tuple[dict[str, float], list[tuple[str, str, str]]]:
    """Validation loss and perplexity (teacher forced; summed on the device, read once), then
    greedy BLEU, chrF, exact match (``Translator``: length-sorted batches of ``decode.batch_size``)."""
    model.eval()
    summed, tokens = torch.zeros((), dtype=torch.float64, device=device), 0
    for batch in make_batches(data.valid, batch_size=cfg.decode.batch_size, reverse=cfg.data.reverse_source,
                              shuffle=False, by=cfg.train.batch_by):
        batch = batch.to(device, non_blocking=True)
        with autocast:
            logits = model(batch.src, batch.src_len, batch.tgt_in)
        summed += sequence_loss(logits, batch.tgt_out)
        tokens += batch.num_tgt_tokens
    loss = float(summed)
    pairs = data.valid_pairs[: cfg.train.valid_max_sentences or None]
    translator = Translator(model, data.src_tok, data.tgt_tok, cfg.data, cfg.decode, device)
    with autocast:
        hyps = translator.translate_best([s for s, _ in pairs], beam_size=1)
    refs = [t for _, t in pairs]
    s = score(hyps, refs)
    model.train()
    mean = loss / max(tokens, 1)
    metrics = {"valid/loss": mean, "valid/ppl": math.exp(min(mean, 50.0)), "valid/bleu": s.bleu,
               "valid/chrf": s.chrf, "valid/exact_match": s.exact_match}
    samples = [(src, ref, hyp) for (src, ref), hyp in zip(pairs[: cfg.train.samples], hyps)]
    return metrics, samples


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


Stop = Literal["epoch_done", "max_steps", "signal"]  # why an epoch's loop ended (divergence raises)


@dataclass
class Trainer:
    """One training run: what it trains, on what, and where it stands. :meth:`fit` is the loop."""

    cfg: Config
    out: Path
    world: World
    data: Data
    model: Seq2Seq
    net: nn.Module  # TrainingForward(model), in DDP with several ranks
    optimizer: torch.optim.Optimizer
    progress: Progress
    autocast: Any = field(default_factory=nullcontext)
    tracker: Tracker | None = None
    flag: StopFlag = field(default_factory=StopFlag)
    started: float = 0.0  # perf_counter() at the run's start, less the time of earlier processes
    consecutive_bad: int = 0  # NaN/inf steps in a row
    signum: int = 0  # the signal that stops training, once every rank knows of it
    defer: bool = False  # train.sync_free: steps' outcomes read at each record, not each step
    bad_run: Tensor | None = None  # sync_free: NaN/inf steps in a row so far, on the device
    worst_run: Tensor | None = None  # ... and the longest such run since the last record
    saved_at: float = 0.0  # perf_counter() when last/ was last written (or training began)
    corpus: DeviceCorpus | None = None  # train.static_shapes: the training batches, on the device
    static: StepGraphs | None = None  # ... and their steps (captured in CUDA graphs with train.cuda_graphs)
    tf_ratio: float = 1.0  # the current epoch's teacher forcing ratio
    governor: ThreadGovernor | None = None  # CPU: fewer threads while other processes take a core

    @classmethod
    def start(cls, cfg: Config, out: Path, world: World, *, resume: bool, overwrite: bool,
              reset_optimizer: bool) -> Trainer:
        """Check the run directory, prepare the data, build (or restore) model and optimizer;
        only then replace an old run (``overwrite``) and write ``config.yaml``."""
        say = world.print  # rank 0 speaks for all
        world.main_only(lambda: check_run_dir(out, cfg, resume=resume, overwrite=overwrite))
        if resume and not has_checkpoint(out):  # killed before its first checkpoint: nothing to restore
            say(f"{out}: no checkpoint saved yet; starting the run from the beginning", flush=True)
            resume = overwrite = False
        random.seed(cfg.train.seed)
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        say(f"# resolved config ({out / RUN_CONFIG})\n{cfg.to_yaml()}", flush=True)
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
        net = distributed.replicate(TrainingForward(model), world)  # DDP with several ranks
        if world.rank:  # other dropout masks than rank 0's (which draws as a one-process run does)
            torch.manual_seed(cfg.train.seed + 1_000_003 * world.rank)
        ranks = f", {world.size} processes of batch_size {cfg.train.batch_size}" if world.size > 1 else ""
        say(f"model: {count_parameters(model):,} parameters, device {world.device}{ranks}, "
            f"{describe_precision(cfg.train.bf16, world.device)}, {torch.get_num_threads()} threads", flush=True)
        optimizer = make_optimizer(model, cfg, world.device)
        progress = restore(out, optimizer, reset_optimizer, world.rank) if resume else Progress()
        corpus = None
        if use_static_shapes(cfg, world):
            corpus = DeviceCorpus(data.train, batch_size=cfg.train.batch_size, max_tokens=cfg.train.max_tokens,
                                  pad_multiple=cfg.train.pad_multiple, reverse=cfg.data.reverse_source,
                                  device=world.device)
        if progress.batch_in_epoch:  # resumed mid-epoch: past the epoch's end, the rest would be skipped unseen
            epoch_steps = corpus.batches_per_epoch() if corpus else steps_per_epoch(data, cfg, world)
            if progress.batch_in_epoch > epoch_steps:
                raise checkpoint.CheckpointError(
                    f"{checkpoint.resolve(out / 'last') / checkpoint.TRAINER_JSON}: progress.batch_in_epoch "
                    f"{progress.batch_in_epoch} is past this epoch's {epoch_steps} batches "
                    "(resume with the run's own train.batch_size and max_tokens)")
        if resume and reset_optimizer:  # a fresh schedule; where the run stands in the data is kept
            progress = Progress(epoch=progress.epoch, batch_in_epoch=progress.batch_in_epoch, step=progress.step,
                                best=progress.best, skipped_steps=progress.skipped_steps,
                                elapsed=progress.elapsed, wandb_id=progress.wandb_id, window=progress.window)

        def commit() -> None:  # the new run is ready: only now is the old one replaced
            if overwrite and not resume:
                replace_run(out)
            write_run_config(out, cfg)  # on resume too: train.* may change

        world.main_only(commit)
        defer = sync_free(cfg, world.device)
        if defer:
            say("sync-free steps: NaN/inf steps are skipped on the device and counted at each record", flush=True)
        graphs = use_cuda_graphs(cfg, world, defer, static=corpus is not None)
        if corpus is not None:
            shapes = ", ".join(f"{s.rows}x{s.src}/{s.tgt}" for s in corpus.shapes)
            say(f"static shapes (batch x source/target width): {shapes}; the corpus on {world.device}"
                + ("; each shape's step in a CUDA graph" if graphs else ""), flush=True)
        zero = torch.zeros((), dtype=torch.int64, device=world.device)
        trainer = cls(cfg, out, world, data, model, net, optimizer, progress,
                      autocast=device_autocast(cfg.train.bf16, world.device, cache=not graphs), defer=defer,
                      bad_run=zero.clone(), worst_run=zero.clone(), corpus=corpus)
        if corpus is not None:
            trainer.static = StepGraphs(trainer.static_step, optimizer, world.device, graphs)
        if world.device.type == "cpu":
            trainer.governor = threads.for_training(cfg.train.adapt_threads)
        return trainer

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
                while p.epoch < cfg.train.epochs and not p.done:
                    stop = self.run_epoch()
                    if stop == "signal":
                        break
                    self.end_epoch()  # validate, early stopping, best/
                    p.done = p.done or stop == "max_steps"
                    self.save_last()
                    self.keep_epoch()
                # a signal during the last step, or its save: saved with the handlers still in place
                self.signum = self.signum or self.world.max(self.flag.signum or 0)
                if self.signum:
                    self.save_last()
        finally:
            self.tracker.finish()
        if self.signum:
            say(f"\n{signal.Signals(self.signum).name}: saved {self.out / 'last'} at step {p.step}; "
                "continue with --resume", file=sys.stderr)
            raise SystemExit(128 + self.signum)
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
        tf = self.tf_ratio = teacher_forcing_ratio(p.epoch, cfg)
        seed = cfg.train.seed * 1000 + p.epoch
        batches: Iterable[Batch | tuple[Bucket, Tensor]]
        if self.corpus is not None:
            batches = self.corpus.epoch(seed, skip=p.batch_in_epoch)
            epoch_steps = self.corpus.batches_per_epoch()
        else:
            batches = epoch_batches(train_chunks(self.data, seed=seed),
                                    batch_size=cfg.train.batch_size, max_tokens=cfg.train.max_tokens,
                                    reverse=cfg.data.reverse_source, rank=world.rank, world=world.size,
                                    skip=p.batch_in_epoch, pad_multiple=cfg.train.pad_multiple,
                                    by=cfg.train.batch_by)
            epoch_steps = steps_per_epoch(self.data, cfg, world)
        total_steps = cfg.train.max_steps or cfg.train.epochs * epoch_steps
        bar = progress_bar(cfg, epoch_steps, p) if world.is_main else None
        window = Window.restore(world.device, p.window)  # the record in progress at a mid-epoch save
        p.window = None
        stop: Stop = "epoch_done"
        lr = 0.0
        for batch in batches:
            lr = set_lr(self.optimizer, cfg, p, total_steps)
            if isinstance(batch, Batch):
                loss_sum, tokens, norm, ok = train_step(self.net, batch.to(world.device, non_blocking=True),
                                                        self.optimizer, cfg, tf, self.autocast, world, self.defer)
            else:  # static shapes: (bucket, rows)
                assert self.static is not None
                loss_sum, tokens, norm, ok = self.static(*batch)
            p.batch_in_epoch += 1
            if bar is not None:
                bar.update(1)
            if self.governor is not None:
                self.governor.tick()
            if self.defer:  # outcome on the device: a skipped step still counts as a step here
                assert self.bad_run is not None and self.worst_run is not None
                self.bad_run.mul_(~ok).add_(~ok)  # (run + 1) if skipped, else 0
                torch.maximum(self.worst_run, self.bad_run, out=self.worst_run)
                window.add_deferred(loss_sum, norm, tokens, cfg.train.clip_norm, ok)
            elif not self.step_was_finite(ok):
                continue
            else:
                window.add(loss_sum, norm, tokens, cfg.train.clip_norm)
            p.step += 1
            if p.step % cfg.train.log_every == 0:
                self.log_window(window, lr, tf, bar)
            self.signum = world.max(self.flag.signum or 0)  # a signal to any rank stops all after this step
            if self.signum:
                stop = "signal"
                break
            if cfg.train.max_steps and p.step >= cfg.train.max_steps:
                stop = "max_steps"
                break
            if p.batch_in_epoch < epoch_steps and self.save_due():  # the epoch's end saves anyway
                self.save_last(window)
        self.settle(window)
        if stop == "signal":  # last/ keeps the record in progress; the resumed run completes it
            p.window = window.state()
        elif window.steps:  # the epoch's (or max_steps') last steps since a record
            self.log_window(window, lr, tf, bar)
        if bar is not None:
            bar.close()
        return stop

    def static_step(self, batch: StaticBatch) -> tuple[Tensor, Any, Tensor, Any]:
        """:func:`static_step` with this run's model, optimizer and settings (what
        :class:`StepGraphs` runs, or captures)."""
        return static_step(self.model, batch, self.optimizer, self.cfg, self.tf_ratio, self.autocast, self.defer)

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

    def settle(self, window: Window) -> None:
        """train.sync_free: read the window's skipped steps (one host sync): count them, warn,
        and stop the run if ``max_bad_steps`` came in a row since the last record."""
        if not self.defer:
            return
        assert self.bad_run is not None and self.worst_run is not None
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

    def log_window(self, window: Window, lr: float, tf: float, bar: Any) -> None:
        assert self.tracker is not None
        self.settle(window)
        if not window.steps:  # every step since the last record was skipped
            window.reset()
            return
        self.check_weights()  # once a window: a finite loss can still leave a weight NaN
        record = window.record(lr, tf, self.progress.epoch + 1)
        if self.governor is not None:
            record["train/threads"] = self.governor.threads
        self.tracker.log(record, self.progress.step)
        if bar is not None:
            bar.set_postfix(loss=f"{record['train/loss']:.3f}", tok_s=f"{record['train/tokens_per_s']:,.0f}")

    # --- the epoch's end ---------------------------------------------------------------
    def end_epoch(self) -> None:
        """Validate (rank 0; every rank gets its numbers), log, then early stopping, the
        plateau schedule and best/ (alike on every rank)."""
        cfg, p, world, data = self.cfg, self.progress, self.world, self.data
        assert self.tracker is not None
        self.check_weights()
        metrics, samples = validate(self.model, data, cfg, world.device, self.autocast) if world.is_main else ({}, [])
        metrics = world.broadcast(metrics)
        p.epoch += 1
        p.batch_in_epoch = 0
        metrics.update({"epoch": p.epoch, "time/seconds": time.perf_counter() - self.started,
                        "train/skipped_steps": p.skipped_steps})
        self.tracker.log(metrics, p.step)
        self.tracker.log_samples(samples, p.epoch, p.step)
        if world.is_main and cfg.model.attention != "none" and self.tracker.wants_images:
            self.tracker.log_alignments(self.alignments(), p.step)
        world.print(f"epoch {p.epoch}: valid loss {metrics['valid/loss']:.3f} ppl {metrics['valid/ppl']:.2f} "
                    f"BLEU {metrics['valid/bleu']:.2f} chrF {metrics['valid/chrf']:.2f} "
                    f"exact {metrics['valid/exact_match']:.1f}%", flush=True)
        for src, ref, hyp in samples[:3]:
            print(f"  {src!r} -> {hyp!r} (ref {ref!r})", flush=True)
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

    def alignments(self, n: int = 2) -> list[Alignment]:
        """The attention of the first ``n`` validation sentences (greedy), for W&B."""
        translator = Translator(self.model, self.data.src_tok, self.data.tgt_tok, self.cfg.data, self.cfg.decode,
                                self.world.device)
        with self.autocast:
            return [translator.alignment(src, beam_size=1) for src, _ in self.data.valid_pairs[:n] if src.strip()]

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

    def save_last(self, window: Window | None = None) -> None:
        """Write ``last/``; mid-epoch (``train.save_every``) with the metrics ``window`` in progress."""
        self.check_weights()
        self.check_optimizer_state()
        p = self.progress
        p.elapsed = time.perf_counter() - self.started
        if window is not None:
            self.settle(window)
            p.window = window.state()
        try:
            save_last(self.out, self.cfg, self.model, (self.data.src_tok, self.data.tgt_tok), self.optimizer,
                      p, self.world)
        finally:
            if window is not None:
                p.window = None
        self.saved_at = time.perf_counter()


def sync_free(cfg: Config, device: torch.device) -> bool:
    """Whether steps run without a host sync (``train.sync_free``): they need fused Adam, whose
    kernel can skip a step on the device (the config refuses ``true`` with SGD); ``auto`` is on
    for CUDA."""
    wanted = cfg.train.sync_free is True or (cfg.train.sync_free == "auto" and device.type == "cuda")
    return wanted and cfg.train.optimizer == "adam"


def use_static_shapes(cfg: Config, world: World) -> bool:
    """Whether training batches are static-shape buckets on the device (``train.static_shapes``;
    the config refuses ``true`` with ``data.prepared`` or a bidirectional encoder): ``auto`` is
    on for CUDA in one process."""
    setting = cfg.train.static_shapes
    if setting is True and world.size > 1:
        raise TrainError(f"train.static_shapes: true is for one process (this run has {world.size}); "
                         "set it to auto or false under torchrun")
    possible = world.size == 1 and not cfg.data.prepared and not cfg.model.bidirectional
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
