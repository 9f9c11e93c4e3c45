"""Scoring text with a language model: each sentence's log-probability, the NLL of a split
read as streams or as sentences, perplexity and bits per character (batches from
:mod:`seq2seq.data.lm_data`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import Config
from ..data.lm_data import TOKENS_PER_LINE, Sentence, Split, cut_sorted, sentence_rows, stream_batches, stream_rows
from ..data.tokenization import PAD
from .lm import LanguageModel, detach_state


def row_nll(logits: Tensor, y: Tensor) -> Tensor:
    """Summed negative log-likelihood (nats, fp32) of each row: logits ``(B, T, V)``, targets
    ``(B, T)`` with PAD ignored -> ``(B,)``."""
    nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=PAD, reduction="none")
    return nll.view(y.shape).sum(dim=1)  # (B,)


def score_batches(sentences: Sequence[Sentence], batch_size: int) -> list[list[int]]:
    """The sentences' indices, shortest first, cut into batches (:func:`cut_sorted`)."""
    return cut_sorted(sorted(range(len(sentences)), key=lambda i: len(sentences[i])), sentences, batch_size)


SCORE_SLICE = TOKENS_PER_LINE  # steps of a batch read in one forward pass when scoring sentences


@torch.no_grad()
def sentence_log_probs(model: LanguageModel, sentences: Sequence[Sentence], batch_size: int,
                       device: torch.device | str = "cpu") -> list[float]:
    """Each sentence's log-probability (nats, its EOS included), each from a zero state; in
    the input order. Computed in fp32 whatever the run's ``train.bf16``: a sentence's score
    does not depend on the batch it is scored in, beyond fp32's rounding. A batch is read :data:`SCORE_SLICE` steps a
    forward pass, the state carried from one to the next (the RNN reads left to right: the
    same sum), so memory is bounded by the batch's rows times the slice, however long a
    sentence is, and a signal is handled between slices."""
    was_training = model.training
    model.eval()
    out = [0.0] * len(sentences)
    fp32 = torch.autocast(torch.device(device).type, enabled=False)  # even inside a caller's autocast
    for cut in score_batches(sentences, batch_size):
        x, y = sentence_rows([sentences[i] for i in cut])  # (B, T)
        state = model.initial_state(len(cut), device)
        total: Tensor | None = None
        for start in range(0, x.shape[1], SCORE_SLICE):
            with fp32:
                logits, state = model(x[:, start:start + SCORE_SLICE].to(device), state)
            nll = row_nll(logits, y[:, start:start + SCORE_SLICE].to(device))  # (B,)
            total = nll if total is None else total + nll
        assert total is not None
        for i, value in zip(cut, total.tolist()):
            out[i] = -value
    model.train(was_training)
    return out


@torch.no_grad()
def stream_nll(model: LanguageModel, sentences: Sequence[Sentence], batch_size: int, bptt: int,
               device: torch.device | str = "cpu", autocast: Any = None) -> float:
    """The summed NLL (nats) of the text read as ``batch_size`` streams, the state carried
    from one ``bptt`` slice to the next (the way the stream model trains)."""
    was_training = model.training
    model.eval()
    x, y = stream_rows(sentences, batch_size)
    state = model.initial_state(x.shape[0], device)
    total = 0.0
    for xb, yb in stream_batches(x, y, bptt):
        with autocast or nullcontext():
            logits, state = model(xb.to(device), state)
        total += float(row_nll(logits, yb.to(device)).sum())
        state = detach_state(state)
    model.train(was_training)
    return total


def split_nll(model: LanguageModel, split: Split, cfg: Config, device: torch.device | str, autocast: Any = None,
              batching: str | None = None) -> float:
    """The summed NLL (nats) of ``split`` as ``train.lm_batching`` (or ``batching``) reads it:
    as streams under ``autocast``, or by sentence in fp32 (:func:`sentence_log_probs`)."""
    t = cfg.train
    if (batching or t.lm_batching) == "stream":
        return stream_nll(model, split.sentences, t.batch_size, t.bptt, device, autocast)
    return -sum(sentence_log_probs(model, split.sentences, cfg.decode.batch_size, device))


def perplexity(nll: float, tokens: int) -> float:
    """``exp(nll / tokens)``, capped at ``exp(50)``."""
    return math.exp(min(nll / max(tokens, 1), 50.0))


def bits_per_char(nll: float, chars: int) -> float:
    return nll / math.log(2) / max(chars, 1)
