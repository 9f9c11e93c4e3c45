"""The training loop: teacher forcing, clipping, validation BLEU, early stopping, resume.

``train(cfg, out_dir)`` reads top to bottom: prepare the data, build the model and the
optimizer (or restore them from ``last/``), then for each epoch run ``train_step`` over the
shuffled length-bucketed batches, validate (loss, perplexity, greedy BLEU/chrF), save
``last/`` (and ``best/`` when validation BLEU improves), and stop early when it has not
improved for ``train.patience`` epochs.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import checkpoint
from .batching import Batch, Example, encode_pairs, make_batches
from .config import Config, load_config
from .corpus import Pair, load_corpus
from .evaluation import score
from .model import Seq2Seq, build_model, count_parameters
from .tokenization import PAD, Tokenizer, train_tokenizer
from .tracking import Tracker, truncate_metrics
from .translation import Translator

RUN_CONFIG = "config.yaml"


class TrainError(RuntimeError):
    """A training run that cannot start or go on; the message says why in one line."""


# --- data --------------------------------------------------------------------------
@dataclass
class Data:
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    train: list[Example]
    valid: list[Example]
    valid_pairs: list[Pair]
    report: list[str] = field(default_factory=list)


def prepare_data(cfg: Config, tokenizers: tuple[Tokenizer, Tokenizer] | None = None) -> Data:
    """Load the corpus, train (or reuse) tokenizers on the training split, encode, filter."""
    d = cfg.data
    corpus = load_corpus(d)
    report = list(corpus.report)
    if tokenizers is None:
        if d.joint_vocab:
            joint = train_tokenizer([t for p in corpus.train for t in p], d.tokenizer, d.vocab_size)
            tokenizers = (joint, joint)
        else:
            tokenizers = (train_tokenizer([s for s, _ in corpus.train], d.tokenizer, d.vocab_size),
                          train_tokenizer([t for _, t in corpus.train], d.tokenizer, d.vocab_size))
    src_tok, tgt_tok = tokenizers
    train, too_long, empty = encode_pairs(corpus.train, src_tok, tgt_tok, d.max_len)
    report.append(f"train: {len(train)} pairs kept, {too_long} longer than max_len={d.max_len} "
                  f"and {empty} empty after tokenization dropped")
    if not train:
        raise TrainError(f"no training pairs left after filtering (max_len={d.max_len})")
    valid, _, _ = encode_pairs(corpus.valid, src_tok, tgt_tok, d.max_len)
    report.append(f"vocabulary: source {src_tok.vocab_size}, target {tgt_tok.vocab_size} ({d.tokenizer})")
    return Data(src_tok, tgt_tok, train, valid, list(corpus.valid), report)


def select_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("train.device is 'cuda' but CUDA is not available on this machine")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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
    best_bleu: float = -1.0
    bad_epochs: int = 0  # epochs without a better validation BLEU (early stopping)
    plateau_epochs: int = 0  # the same, for the learning-rate schedule
    lr_scale: float = 1.0  # reduce-on-plateau factor
    skipped_steps: int = 0  # NaN/inf losses skipped
    elapsed: float = 0.0  # training seconds before this process
    wandb_id: str | None = None
    done: bool = False  # stopped early (patience or max_steps); a finished epoch count is not "done"


def save_last(out: Path, cfg: Config, model: Seq2Seq, data: Data, optimizer: torch.optim.Optimizer,
              progress: Progress) -> None:
    tensors, optim_meta = checkpoint.optimizer_to_tensors(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    state = {"progress": vars(progress), "optimizer": optim_meta, "python_rng": random.getstate()}
    checkpoint.save(out / "last", config=cfg, model=model, src_tok=data.src_tok, tgt_tok=data.tgt_tok,
                    trainer_tensors=tensors, trainer_state=state)


def restore(out: Path, optimizer: torch.optim.Optimizer, reset_optimizer: bool) -> Progress:
    tensors, state = checkpoint.load_trainer(out / "last")
    try:
        progress = Progress(**state["progress"])
        if not reset_optimizer:
            optimizer.load_state_dict(checkpoint.optimizer_from_tensors(tensors, state["optimizer"]))
        random.setstate(_as_tuple(state["python_rng"]))
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a damaged or foreign trainer state
        where = checkpoint.resolve(out / "last") / checkpoint.TRAINER_JSON
        reason = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise checkpoint.CheckpointError(f"{where}: cannot resume from this training state ({reason})") from None
    return progress


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list) else x


def train_step(model: Seq2Seq, batch: Batch, optimizer: torch.optim.Optimizer, cfg: Config,
               tf_ratio: float, autocast: Any) -> tuple[Tensor, Tensor, bool]:
    """One optimizer step. -> (summed loss, gradient norm before clipping, whether it was taken)."""
    with autocast:
        if tf_ratio >= 1.0:
            logits = model(batch.src, batch.src_len, batch.tgt_in)  # (B, T, V)
        else:
            logits = scheduled_sampling_logits(model, batch, tf_ratio)
        loss_sum = sequence_loss(logits, batch.tgt_out, cfg.train.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    (loss_sum / batch.num_tgt_tokens).backward()
    clip = cfg.train.clip_norm if cfg.train.clip_norm > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    ok = bool(torch.isfinite(loss_sum) & torch.isfinite(norm))  # one host sync per step
    if ok:
        optimizer.step()
    return loss_sum.detach(), norm.detach(), ok


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
    """Train per ``cfg`` into the run directory ``out``; returns the final summary."""
    device = select_device(cfg.train.device)
    check_run_dir(out, cfg, resume=resume, overwrite=overwrite)
    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    print(f"# resolved config ({out / RUN_CONFIG})\n{cfg.to_yaml()}", flush=True)

    tokenizers = None
    if resume:
        loaded = checkpoint.load(out / "last")
        tokenizers = (loaded.src_tok, loaded.tgt_tok)
    data = prepare_data(cfg, tokenizers)
    for line in data.report:
        print(line, flush=True)
    (out / RUN_CONFIG).write_text(cfg.to_yaml(), encoding="utf-8")  # on resume: train.* may have changed

    model = build_model(cfg.model, data.src_tok.vocab_size, data.tgt_tok.vocab_size)
    if resume:
        model.load_state_dict(loaded.model.state_dict())
    model.to(device).train()
    print(f"model: {count_parameters(model):,} parameters, device {device}", flush=True)
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                 fused=fused or None)
    progress = restore(out, optimizer, reset_optimizer) if resume else Progress()
    if resume and reset_optimizer:  # a fresh schedule; where the run stands in the data is kept
        progress = Progress(epoch=progress.epoch, batch_in_epoch=progress.batch_in_epoch, step=progress.step,
                            best_bleu=progress.best_bleu, skipped_steps=progress.skipped_steps,
                            elapsed=progress.elapsed, wandb_id=progress.wandb_id)
    if progress.done or progress.epoch >= cfg.train.epochs:
        print(f"{out}: training already finished (best valid BLEU {progress.best_bleu:.2f})")
        return {"best_bleu": progress.best_bleu, "step": progress.step, "epoch": progress.epoch}
    truncate_metrics(out, progress.step)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.train.bf16
                else nullcontext())
    tracker = Tracker(cfg, out, resume_id=progress.wandb_id)
    progress.wandb_id = tracker.run_id
    flag = StopFlag()
    batches_per_epoch = len(make_batches(data.train, batch_size=cfg.train.batch_size,
                                         max_tokens=cfg.train.max_tokens, reverse=False, shuffle=False))
    total_steps = cfg.train.max_steps or cfg.train.epochs * batches_per_epoch
    start = time.perf_counter() - progress.elapsed
    consecutive_bad = 0
    try:
        with catch_signals(flag):
            while progress.epoch < cfg.train.epochs and not progress.done and flag.signum is None:
                tf = teacher_forcing_ratio(progress.epoch, cfg)
                batches = make_batches(data.train, batch_size=cfg.train.batch_size,
                                       max_tokens=cfg.train.max_tokens, reverse=cfg.data.reverse_source,
                                       shuffle=True, seed=cfg.train.seed * 1000 + progress.epoch)
                bar = _progress_bar(cfg, len(batches), progress)
                window_loss = torch.zeros((), device=device)
                window_norm = torch.zeros((), device=device)
                window_clipped = torch.zeros((), device=device)
                window_tokens = window_steps = 0
                window_start = time.perf_counter()
                for batch in batches[progress.batch_in_epoch:]:
                    batch = batch.to(device, non_blocking=True)
                    lr = cfg.train.lr * progress.lr_scale * lr_factor(progress.step, total_steps, cfg)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss_sum, norm, ok = train_step(model, batch, optimizer, cfg, tf, autocast)
                    progress.batch_in_epoch += 1
                    if bar is not None:
                        bar.update(1)
                    if not ok:
                        progress.skipped_steps += 1
                        consecutive_bad += 1
                        print(f"warning: non-finite loss or gradient at step {progress.step}; step skipped",
                              file=sys.stderr)
                        if consecutive_bad >= cfg.train.max_bad_steps:
                            raise TrainError(f"loss was NaN/inf for {consecutive_bad} steps in a row "
                                             f"(step {progress.step}); stopped. The last good checkpoint "
                                             f"is {out / 'last'}")
                        continue
                    consecutive_bad = 0
                    progress.step += 1
                    window_loss += loss_sum
                    window_norm += norm
                    if cfg.train.clip_norm > 0:
                        window_clipped += norm > cfg.train.clip_norm
                    window_tokens += batch.num_tgt_tokens
                    window_steps += 1
                    stopping = flag.signum is not None or (cfg.train.max_steps and progress.step >= cfg.train.max_steps)
                    if progress.step % cfg.train.log_every == 0 or progress.batch_in_epoch == len(batches) or stopping:
                        dt = max(time.perf_counter() - window_start, 1e-9)
                        mean = float(window_loss) / max(window_tokens, 1)
                        record = {"train/loss": mean, "train/ppl": math.exp(min(mean, 50.0)),
                                  "train/grad_norm": float(window_norm) / window_steps,
                                  "train/clipped_fraction": float(window_clipped) / window_steps,
                                  "train/lr": lr, "train/tokens_per_s": window_tokens / dt,
                                  "train/teacher_forcing": tf, "epoch": progress.epoch + 1}
                        tracker.log(record, progress.step)
                        if bar is not None:
                            bar.set_postfix(loss=f"{mean:.3f}", tok_s=f"{window_tokens / dt:,.0f}")
                        window_loss.zero_()
                        window_norm.zero_()
                        window_clipped.zero_()
                        window_tokens = window_steps = 0
                        window_start = time.perf_counter()
                    if stopping:  # the window's steps were logged above, so none are lost
                        break
                if bar is not None:
                    bar.close()
                if flag.signum is not None:
                    break
                finished_epoch = progress.batch_in_epoch >= len(batches)
                hit_max = bool(cfg.train.max_steps and progress.step >= cfg.train.max_steps)
                if finished_epoch or hit_max:
                    _end_epoch(cfg, out, model, data, optimizer, progress, tracker, device, autocast, start)
                    if hit_max:
                        progress.done = True
                progress.elapsed = time.perf_counter() - start
                save_last(out, cfg, model, data, optimizer, progress)
    finally:
        tracker.finish()
    if flag.signum is not None:
        progress.elapsed = time.perf_counter() - start
        save_last(out, cfg, model, data, optimizer, progress)
        name = signal.Signals(flag.signum).name
        print(f"\n{name}: saved {out / 'last'} at step {progress.step}; "
              f"continue with --resume", file=sys.stderr)
        raise SystemExit(128 + flag.signum)
    summary = {"best_bleu": progress.best_bleu, "step": progress.step, "epoch": progress.epoch,
               "skipped_steps": progress.skipped_steps, "seconds": round(progress.elapsed, 1)}
    print(f"done: best valid BLEU {progress.best_bleu:.2f} after {progress.epoch} epochs, "
          f"{progress.step} steps, {progress.elapsed:.0f} s; checkpoint {out / 'best'}", flush=True)
    return summary


def _end_epoch(cfg: Config, out: Path, model: Seq2Seq, data: Data, optimizer: torch.optim.Optimizer,
               progress: Progress, tracker: Tracker, device: torch.device, autocast: Any,
               start: float) -> None:
    """Validate, log, update early stopping and the plateau schedule, save best/."""
    metrics, samples = validate(model, data, cfg, device, autocast)
    progress.epoch += 1
    progress.batch_in_epoch = 0
    metrics.update({"epoch": progress.epoch, "time/seconds": time.perf_counter() - start,
                    "train/skipped_steps": progress.skipped_steps})
    tracker.log(metrics, progress.step)
    tracker.log_samples(samples, progress.epoch, progress.step)
    print(f"epoch {progress.epoch}: valid loss {metrics['valid/loss']:.3f} ppl {metrics['valid/ppl']:.2f} "
          f"BLEU {metrics['valid/bleu']:.2f} chrF {metrics['valid/chrf']:.2f} "
          f"exact {metrics['valid/exact_match']:.1f}%", flush=True)
    for src, ref, hyp in samples[:3]:
        print(f"  {src!r} -> {hyp!r} (ref {ref!r})", flush=True)
    value = metrics[f"valid/{cfg.train.best_metric}"]  # BLEU unless train.best_metric says otherwise
    if value > progress.best_bleu:
        progress.best_bleu = value
        progress.bad_epochs = progress.plateau_epochs = 0
        checkpoint.save(out / "best", config=cfg, model=model, src_tok=data.src_tok, tgt_tok=data.tgt_tok)
        tracker.summary({f"best/valid_{cfg.train.best_metric}": value, "best/epoch": progress.epoch})
    else:
        progress.bad_epochs += 1
        progress.plateau_epochs += 1
        if cfg.train.lr_schedule == "plateau" and progress.plateau_epochs > cfg.train.lr_patience:
            progress.lr_scale *= cfg.train.lr_factor
            progress.plateau_epochs = 0
        if progress.bad_epochs >= cfg.train.patience:
            print(f"early stop: no better validation BLEU for {progress.bad_epochs} epochs", flush=True)
            progress.done = True


def _progress_bar(cfg: Config, total: int, progress: Progress) -> Any:
    if not cfg.train.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=progress.batch_in_epoch, desc=f"epoch {progress.epoch + 1}",
                leave=False, dynamic_ncols=True)
