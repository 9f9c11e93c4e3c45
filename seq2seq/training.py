"""The training loop: teacher forcing, clipping, validation BLEU, early stopping, resume.

``train(cfg, out_dir)`` reads top to bottom: prepare the data, build the model and the
optimizer (or restore them from ``last/``), then for each epoch run ``train_step`` over the
shuffled length-bucketed batches, validate (loss, perplexity, greedy BLEU/chrF), save
``last/`` (and ``best/`` when validation BLEU improves), and stop early when it has not
improved for ``train.patience`` epochs.

Two ways to scale, both without changing that loop (the README's "Scaling up" section has the commands):

* Several GPUs or nodes: under ``torchrun`` this process is one rank of a data-parallel
  run (:mod:`seq2seq.distributed`). Each rank trains on its share of every global batch of
  ``train.batch_size * world size`` sentences, the model in DistributedDataParallel; the loss
  is normalised by the global token count (:func:`train_step`), rank 0 validates, logs and
  saves, and the ranks agree on when to stop.
* Corpora larger than memory: with ``data.prepared`` the training split is streamed from a
  store made by ``python -m seq2seq.prepare`` (:mod:`seq2seq.store`), a chunk at a time.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint, distributed
from .batching import Batch, Chunk, Example, batch_cuts, encode_pairs, epoch_batches, make_batches
from .config import Config, load_config
from .corpus import Pair, load_corpus
from .device import autocast as device_autocast
from .device import describe as describe_precision
from .device import select_device
from .distributed import World
from .evaluation import METRIC_NAMES, score
from .model import Seq2Seq, build_model, count_parameters
from .store import Store
from .tokenization import PAD, Tokenizer, train_tokenizers
from .tracking import Tracker, truncate_metrics
from .translation import Translator

RUN_CONFIG = "config.yaml"


class TrainError(RuntimeError):
    """A training run that cannot start or go on; the message says why in one line."""


class DivergedError(TrainError):
    """The loss stayed NaN/inf for ``train.max_bad_steps`` steps in a row: the run diverged."""


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


def prepare_data(cfg: Config, tokenizers: tuple[Tokenizer, Tokenizer] | None = None) -> Data:
    """Load the corpus, train (or reuse) tokenizers on the training split, encode, filter;
    with ``data.prepared``, open the store instead (training examples stay on disk)."""
    d = cfg.data
    if d.prepared:
        return _open_store(cfg, tokenizers)
    corpus = load_corpus(d)
    report = list(corpus.report)
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
                          batch_size=batch_size, max_tokens=max_tokens, shuffle=False))


# --- pure helpers ------------------------------------------------------------------
def lr_factor(step: int, total_steps: int, cfg: Config) -> float:
    """Warm-up (linear over ``warmup_steps``), then constant or cosine decay to 0."""
    t = cfg.train
    warm = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0
    if t.lr_schedule != "cosine" or total_steps <= t.warmup_steps:
        return warm
    progress = min(1.0, (step - t.warmup_steps) / max(1, total_steps - t.warmup_steps))
    return warm * 0.5 * (1.0 + math.cos(math.pi * max(0.0, progress)))


def teacher_forcing_ratio(epoch: int, cfg: Config) -> float:
    t = cfg.train
    return max(t.teacher_forcing_min, t.teacher_forcing - t.teacher_forcing_decay * epoch) \
        if t.teacher_forcing < 1.0 or t.teacher_forcing_decay > 0 else 1.0


def sequence_loss(logits: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Summed token cross-entropy over non-pad targets. logits (B, T, V), tgt_out (B, T)."""
    return F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing, reduction="sum")


def scheduled_sampling_logits(model: Seq2Seq, batch: Batch, ratio: float) -> Tensor:
    """Step through time; feed the gold token with probability ``ratio``, else the model's
    own argmax prediction (scheduled sampling). -> logits (B, T, V)."""
    state = model.encode(batch.src, batch.src_len)
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


# --- the run directory ---------------------------------------------------------------
def check_run_dir(out: Path, cfg: Config, *, resume: bool, overwrite: bool) -> None:
    """Refuse a directory that is not writable or holds another run (unless asked)."""
    holds_run = any((out / n).exists() for n in (RUN_CONFIG, "last", "best", "metrics.jsonl"))
    if resume:
        if not holds_run:
            raise TrainError(f"{out}: nothing to resume (no run in this directory)")
        try:
            saved = load_config(out / RUN_CONFIG)
        except Exception as e:  # noqa: BLE001 - reported in one line
            raise TrainError(f"{out / RUN_CONFIG}: cannot read the run's config ({e})") from None
        for section in ("data", "model"):
            if getattr(saved, section) != getattr(cfg, section):
                raise TrainError(f"{out}: holds a run with a different {section} config; "
                                 "resume it with its own config, or use another --out")
    elif holds_run and not overwrite:
        raise TrainError(f"{out}: already holds a run; add --resume to continue it, "
                         "--overwrite to replace it, or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise TrainError(f"{out}: output directory is not writable ({e.strerror})") from None
    if overwrite and not resume:
        import shutil

        for name in ("last", "best", "last.old", "best.old", "last.tmp", "best.tmp"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for name in (RUN_CONFIG, "metrics.jsonl"):
            (out / name).unlink(missing_ok=True)


# --- the loop ------------------------------------------------------------------------
@dataclass
class Progress:
    """Everything about where training stands that ``--resume`` restores."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch_in_epoch: int = 0  # batches of that epoch already done
    step: int = 0  # optimizer steps taken, over the whole run
    best_bleu: float = -1.0  # the best validation score of train.best_metric (BLEU by default; the
    # name is kept so that older checkpoints resume)
    bad_epochs: int = 0  # epochs without a better validation BLEU (early stopping)
    plateau_epochs: int = 0  # the same, for the learning-rate schedule
    lr_scale: float = 1.0  # reduce-on-plateau factor
    skipped_steps: int = 0  # NaN/inf losses skipped
    elapsed: float = 0.0  # training seconds before this process
    wandb_id: str | None = None
    done: bool = False  # stopped early (patience or max_steps); a finished epoch count is not "done"


def save_last(out: Path, cfg: Config, model: Seq2Seq, data: Data, optimizer: torch.optim.Optimizer,
              progress: Progress, world: World = distributed.SINGLE) -> None:
    """Write ``last/`` from rank 0, with every rank's random number generator state (every
    rank calls this; the others wait until it is written)."""
    rng = world.gather(_rng_state())

    def write() -> None:
        tensors, optim_meta = checkpoint.optimizer_to_tensors(optimizer.state_dict())
        for rank, states in enumerate(rng):
            tensors.update({_rng_key(name, rank): state for name, state in states.items()})
        state = {"progress": vars(progress), "optimizer": optim_meta, "python_rng": random.getstate()}
        checkpoint.save(out / "last", config=cfg, model=model, src_tok=data.src_tok, tgt_tok=data.tgt_tok,
                        trainer_tensors=tensors, trainer_state=state)

    world.main_only(write)


def _rng_state() -> dict[str, Tensor]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _rng_key(name: str, rank: int) -> str:
    return f"rng.{name}" if rank == 0 else f"rng.{name}.{rank}"  # rank 0's as a one-process run saves it


def restore(out: Path, optimizer: torch.optim.Optimizer, reset_optimizer: bool, rank: int = 0) -> Progress:
    tensors, state = checkpoint.load_trainer(out / "last")
    try:
        progress = Progress(**state["progress"])
        if not reset_optimizer:
            optimizer.load_state_dict(checkpoint.optimizer_from_tensors(tensors, state["optimizer"]))
        random.setstate(_as_tuple(state["python_rng"]))
        own = _rng_key("torch", rank)
        torch.set_rng_state(tensors.get(own, tensors["rng.torch"]))
        if own not in tensors:  # a rank the saved run did not have: a generator of its own
            torch.manual_seed(int(torch.randint(2**62, ())) + rank)
        cuda = _rng_key("cuda", rank) if _rng_key("cuda", rank) in tensors else "rng.cuda"
        if cuda in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[cuda])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a damaged or foreign trainer state
        where = checkpoint.resolve(out / "last") / checkpoint.TRAINER_JSON
        reason = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise checkpoint.CheckpointError(f"{where}: cannot resume from this training state ({reason})") from None
    return progress


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list) else x


def train_step(net: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, cfg: Config, tf_ratio: float,
               autocast: Any, world: World = distributed.SINGLE) -> tuple[Tensor, int, Tensor, bool]:
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
    """
    if isinstance(net, Seq2Seq):  # a bare model (bench.py times steps this way)
        net = TrainingForward(net)
    with autocast:
        logits = net(batch, tf_ratio)  # (B, T, V)
        loss_sum = sequence_loss(logits, batch.tgt_out, cfg.train.label_smoothing)
    loss_total, tokens = _global_sums(loss_sum, batch.num_tgt_tokens, world)
    optimizer.zero_grad(set_to_none=True)
    (loss_sum / tokens * world.size).backward()
    clip = cfg.train.clip_norm if cfg.train.clip_norm > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    ok = bool(torch.isfinite(loss_total) & torch.isfinite(norm))  # one host sync per step
    if ok:
        optimizer.step()
    return loss_total, int(tokens), norm.detach(), ok


def _global_sums(loss_sum: Tensor, tokens: int, world: World) -> tuple[Tensor, Tensor | int]:
    """(summed loss, target tokens) over all ranks; in one process, as they are."""
    if world.size == 1:
        return loss_sum.detach(), tokens
    sums = torch.stack([loss_sum.detach().double(), torch.tensor(float(tokens), dtype=torch.float64,
                                                                 device=loss_sum.device)])  # (2,)
    world.sum(sums)
    return sums[0].float(), sums[1].float()


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
        self.start = time.perf_counter()

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


@torch.no_grad()
def validate(model: Seq2Seq, data: Data, cfg: Config, device: torch.device, autocast: Any
             ) -> tuple[dict[str, float], list[tuple[str, str, str]]]:
    """Validation loss and perplexity (teacher forced), then greedy BLEU, chrF, exact match."""
    model.eval()
    loss, tokens = 0.0, 0
    for batch in make_batches(data.valid, batch_size=cfg.decode.batch_size, reverse=cfg.data.reverse_source,
                              shuffle=False):
        batch = batch.to(device)
        with autocast:
            logits = model(batch.src, batch.src_len, batch.tgt_in)
        loss += float(sequence_loss(logits, batch.tgt_out))
        tokens += batch.num_tgt_tokens
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
    world = distributed.setup(select_device(cfg.train.device))
    try:
        return _train(cfg, out, world, resume=resume, overwrite=overwrite, reset_optimizer=reset_optimizer)
    finally:
        distributed.teardown(world)


def _train(cfg: Config, out: Path, world: World, *, resume: bool, overwrite: bool,
           reset_optimizer: bool) -> dict[str, Any]:
    say = world.print  # rank 0 speaks for all
    world.main_only(lambda: check_run_dir(out, cfg, resume=resume, overwrite=overwrite))
    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    say(f"# resolved config ({out / RUN_CONFIG})\n{cfg.to_yaml()}", flush=True)

    tokenizers = None
    if resume:
        loaded = checkpoint.load(out / "last")
        tokenizers = (loaded.src_tok, loaded.tgt_tok)
    data = prepare_data(cfg, tokenizers)  # every rank: the same data (or store) in the same order
    for line in data.report:
        say(line, flush=True)
    # on resume: train.* may have changed
    world.main_only(lambda: (out / RUN_CONFIG).write_text(cfg.to_yaml(), encoding="utf-8"))

    model = build_model(cfg.model, data.src_tok.vocab_size, data.tgt_tok.vocab_size)
    if resume:
        model.load_state_dict(loaded.model.state_dict())
    model.to(world.device).train()
    net = distributed.replicate(TrainingForward(model), world)  # DDP with several ranks
    if world.rank:  # other dropout masks than rank 0's (which draws as a one-process run does)
        torch.manual_seed(cfg.train.seed + 1_000_003 * world.rank)
    ranks = f", {world.size} processes of batch_size {cfg.train.batch_size}" if world.size > 1 else ""
    say(f"model: {count_parameters(model):,} parameters, device {world.device}{ranks}, "
        f"{describe_precision(cfg.train.bf16, world.device)}, {torch.get_num_threads()} threads", flush=True)
    fused = world.device.type == "cuda"
    optimizer: torch.optim.Optimizer = (
        torch.optim.SGD(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        if cfg.train.optimizer == "sgd" else
        torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=fused or None))
    progress = restore(out, optimizer, reset_optimizer, world.rank) if resume else Progress()
    if resume and reset_optimizer:  # a fresh schedule; where the run stands in the data is kept
        progress = Progress(epoch=progress.epoch, batch_in_epoch=progress.batch_in_epoch, step=progress.step,
                            best_bleu=progress.best_bleu, skipped_steps=progress.skipped_steps,
                            elapsed=progress.elapsed, wandb_id=progress.wandb_id)
    if progress.done or progress.epoch >= cfg.train.epochs:
        say(f"{out}: training already finished (best valid {METRIC_NAMES[cfg.train.best_metric]} "
            f"{progress.best_bleu:.2f})")
        return {"best_bleu": progress.best_bleu, "step": progress.step, "epoch": progress.epoch}
    world.main_only(lambda: truncate_metrics(out, progress.step))
    autocast = device_autocast(cfg.train.bf16, world.device)
    tracker = Tracker(cfg, out, rank=world.rank, resume_id=progress.wandb_id)  # rank 0 logs, the others not
    progress.wandb_id = tracker.run_id
    flag = StopFlag()
    epoch_steps = steps_per_epoch(data, cfg, world)
    total_steps = cfg.train.max_steps or cfg.train.epochs * epoch_steps
    start = time.perf_counter() - progress.elapsed
    consecutive_bad = 0
    signum = 0  # the signal that stops training, once every rank knows of it
    try:
        with catch_signals(flag):
            while progress.epoch < cfg.train.epochs and not progress.done and not signum:
                tf = teacher_forcing_ratio(progress.epoch, cfg)
                batches = epoch_batches(train_chunks(data, seed=cfg.train.seed * 1000 + progress.epoch),
                                        batch_size=cfg.train.batch_size, max_tokens=cfg.train.max_tokens,
                                        reverse=cfg.data.reverse_source, rank=world.rank, world=world.size,
                                        skip=progress.batch_in_epoch)
                bar = _progress_bar(cfg, epoch_steps, progress) if world.is_main else None
                window = Window(world.device)
                for batch in batches:
                    batch = batch.to(world.device, non_blocking=True)
                    lr = cfg.train.lr * progress.lr_scale * lr_factor(progress.step, total_steps, cfg)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss_sum, tokens, norm, ok = train_step(net, batch, optimizer, cfg, tf, autocast, world)
                    progress.batch_in_epoch += 1
                    if bar is not None:
                        bar.update(1)
                    if not ok:
                        progress.skipped_steps += 1
                        consecutive_bad += 1
                        say(f"warning: non-finite loss or gradient at step {progress.step}; step skipped",
                            file=sys.stderr)
                        if consecutive_bad >= cfg.train.max_bad_steps:
                            kept = (f"The last good checkpoint is {out / 'last'}" if (out / "last").exists()
                                    else "No checkpoint was written yet")
                            raise DivergedError(f"loss was NaN/inf for {consecutive_bad} steps in a row "
                                                f"(step {progress.step}); stopped. {kept}")
                        continue
                    consecutive_bad = 0
                    progress.step += 1
                    window.add(loss_sum, norm, tokens, cfg.train.clip_norm)
                    signum = world.max(flag.signum or 0)  # a signal to any rank stops all after this step
                    stopping = signum or (cfg.train.max_steps and progress.step >= cfg.train.max_steps)
                    if progress.step % cfg.train.log_every == 0 or stopping:
                        _log_window(window, lr, tf, progress, tracker, bar)
                    if stopping:  # the window's steps were logged above, so none are lost
                        break
                if window.steps:  # the epoch's last steps since a record
                    _log_window(window, lr, tf, progress, tracker, bar)
                if bar is not None:
                    bar.close()
                if signum:
                    break
                # the epoch's batches are done, or max_steps is reached
                _end_epoch(cfg, out, model, data, progress, tracker, autocast, start, world)
                if cfg.train.max_steps and progress.step >= cfg.train.max_steps:
                    progress.done = True
                progress.elapsed = time.perf_counter() - start
                save_last(out, cfg, model, data, optimizer, progress, world)
            signum = signum or world.max(flag.signum or 0)  # also a signal after the last step
            if signum:  # saved with the handlers still in place: a second signal cannot cut it short
                progress.elapsed = time.perf_counter() - start
                save_last(out, cfg, model, data, optimizer, progress, world)
    finally:
        tracker.finish()
    if signum:
        name = signal.Signals(signum).name
        say(f"\n{name}: saved {out / 'last'} at step {progress.step}; continue with --resume", file=sys.stderr)
        raise SystemExit(128 + signum)
    summary = {"best_bleu": progress.best_bleu, "step": progress.step, "epoch": progress.epoch,
               "skipped_steps": progress.skipped_steps, "seconds": round(progress.elapsed, 1)}
    say(f"done: best valid {METRIC_NAMES[cfg.train.best_metric]} {progress.best_bleu:.2f} after "
        f"{progress.epoch} epochs, {progress.step} steps, {progress.elapsed:.0f} s; checkpoint {out / 'best'}",
        flush=True)
    return summary


def _log_window(window: Window, lr: float, tf: float, progress: Progress, tracker: Tracker, bar: Any) -> None:
    record = window.record(lr, tf, progress.epoch + 1)
    tracker.log(record, progress.step)
    if bar is not None:
        bar.set_postfix(loss=f"{record['train/loss']:.3f}", tok_s=f"{record['train/tokens_per_s']:,.0f}")


def _end_epoch(cfg: Config, out: Path, model: Seq2Seq, data: Data, progress: Progress, tracker: Tracker,
               autocast: Any, start: float, world: World) -> None:
    """Validate (rank 0; every rank gets its numbers), log, update early stopping and the
    plateau schedule alike on every rank, save best/."""
    metrics, samples = validate(model, data, cfg, world.device, autocast) if world.is_main else ({}, [])
    metrics = world.broadcast(metrics)
    progress.epoch += 1
    progress.batch_in_epoch = 0
    metrics.update({"epoch": progress.epoch, "time/seconds": time.perf_counter() - start,
                    "train/skipped_steps": progress.skipped_steps})
    tracker.log(metrics, progress.step)
    tracker.log_samples(samples, progress.epoch, progress.step)
    world.print(f"epoch {progress.epoch}: valid loss {metrics['valid/loss']:.3f} ppl {metrics['valid/ppl']:.2f} "
                f"BLEU {metrics['valid/bleu']:.2f} chrF {metrics['valid/chrf']:.2f} "
                f"exact {metrics['valid/exact_match']:.1f}%", flush=True)
    for src, ref, hyp in samples[:3]:
        print(f"  {src!r} -> {hyp!r} (ref {ref!r})", flush=True)
    value = metrics[f"valid/{cfg.train.best_metric}"]  # BLEU unless train.best_metric says otherwise
    if value > progress.best_bleu:
        progress.best_bleu = value
        progress.bad_epochs = progress.plateau_epochs = 0
        world.main_only(lambda: checkpoint.save(out / "best", config=cfg, model=model, src_tok=data.src_tok,
                                                tgt_tok=data.tgt_tok))
        tracker.summary({f"best/valid_{cfg.train.best_metric}": value, "best/epoch": progress.epoch})
    else:
        progress.bad_epochs += 1
        progress.plateau_epochs += 1
        if cfg.train.lr_schedule == "plateau" and progress.plateau_epochs > cfg.train.lr_patience:
            progress.lr_scale *= cfg.train.lr_factor
            progress.plateau_epochs = 0
        if progress.bad_epochs >= cfg.train.patience:
            world.print(f"early stop: no better validation BLEU for {progress.bad_epochs} epochs", flush=True)
            progress.done = True


def _progress_bar(cfg: Config, total: int, progress: Progress) -> Any:
    if not cfg.train.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=progress.batch_in_epoch, desc=f"epoch {progress.epoch + 1}",
                leave=False, dynamic_ncols=True)
