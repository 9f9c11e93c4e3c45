"""A language model's data: one language's text, tokenized and batched two ways (scoring:
:mod:`seq2seq.model.lm_scoring`).

Text: ``{data.path}/{split}.{data.tgt_lang}`` (or ``.gz``), one sentence a line; lines that
are empty or whitespace only are dropped. Every sentence ends with EOS, and EOS is also
what the model reads before a sentence's first token, so a sentence of ``n`` tokens has
``n + 1`` predicted tokens (the last is its EOS) in both batchings:

* **stream** (truncated BPTT): the sentences joined into one token stream
  ``EOS s1 EOS s2 EOS ...``, inputs ``stream[:-1]`` and targets ``stream[1:]``, cut into
  ``B`` contiguous rows of ``L = ceil(N / B)`` tokens (the last row padded with PAD, which
  the loss ignores). Batch ``k`` is columns ``[k * bptt, (k + 1) * bptt)`` of all rows:
  row ``b`` of batch ``k + 1`` continues row ``b`` of batch ``k``, so the state carries over.
* **sentence**: each sentence on its own row from a zero state, ``[EOS] + s`` in and
  ``s + [EOS]`` out, padded at the end (an RNN reads left to right, so the padding changes
  no real position's output).

Bits per character: the summed loss in bits over the characters of the text, each line's
newline included (the EOS stands for it); for any tokenizer, so char and BPE models compare.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..config import Config, DataConfig
from .corpus import iter_lines, resolve_file
from .pairs import CorpusError
from .tokenization import EOS, PAD, Tokenizer, train_tokenizer

Sentence = list[int]  # token ids, no EOS


@dataclass
class Split:
    """A split's sentences as token ids and the characters of its text (newlines included)."""

    sentences: list[Sentence]
    chars: int

    @property
    def tokens(self) -> int:
        """Predicted tokens: each sentence's and its EOS."""
        return sum(len(s) + 1 for s in self.sentences)


@dataclass
class LMData:
    tok: Tokenizer
    train: Split
    valid: Split
    test: Split
    report: list[str] = field(default_factory=list)


def read_lines(cfg: DataConfig, split: str) -> list[str]:
    """The non-empty lines of ``{path}/{split}.{tgt_lang}[.gz]``; a CorpusError if none has text."""
    path = resolve_file(Path(cfg.path).expanduser() / f"{split}.{cfg.tgt_lang}")
    lines = [line for line in iter_lines(path, cfg.invalid_utf8) if line is not None and line.strip()]
    if not lines:
        raise CorpusError(f"{path}: no text (every line is empty)")
    return lines


def encode_split(lines: Sequence[str], tok: Tokenizer) -> Split:
    return Split(tok.encode_batch(list(lines)), sum(len(line) + 1 for line in lines))


def prepare_lm_data(cfg: Config, tok: Tokenizer | None = None) -> LMData:
    """Read the three splits, train (or reuse) the tokenizer on the training text, encode."""
    d = cfg.data
    texts = {name: read_lines(d, name) for name in (d.train_split, d.valid_split, d.test_split)}
    if tok is None:
        tok = train_tokenizer(texts[d.train_split], d.tokenizer, d.vocab_size)
    splits = [encode_split(texts[name], tok) for name in (d.train_split, d.valid_split, d.test_split)]
    report = [f"source: {d.path} ({d.tgt_lang}), language model"]
    report += [f"{name}: {len(s.sentences)} lines, {s.tokens:,} tokens, {s.chars:,} characters"
               for name, s in zip(texts, splits)]
    report.append(f"vocabulary: {tok.vocab_size} ({d.tokenizer})")
    return LMData(tok, splits[0], splits[1], splits[2], report)


# --- batching ----------------------------------------------------------------------------
def stream_rows(sentences: Sequence[Sentence], batch_size: int) -> tuple[Tensor, Tensor]:
    """The sentences as one stream cut into ``B = min(batch_size, N)`` rows: inputs and
    targets ``(B, L)`` long, targets the inputs shifted by one along the stream, PAD after the
    stream's end (in the last row only)."""
    stream = [EOS]
    for s in sentences:
        stream += s
        stream.append(EOS)
    n = len(stream) - 1  # predicted tokens
    B = max(1, min(batch_size, n))
    L = math.ceil(n / B)
    x = torch.full((B * L,), PAD, dtype=torch.long)
    y = torch.full((B * L,), PAD, dtype=torch.long)
    x[:n] = torch.tensor(stream[:-1])
    y[:n] = torch.tensor(stream[1:])
    return x.view(B, L), y.view(B, L)  # (B, L)


def stream_batches(x: Tensor, y: Tensor, bptt: int) -> list[tuple[Tensor, Tensor]]:
    """Consecutive ``bptt``-column slices of the rows (the last may be narrower): ``(B, <=bptt)`` each."""
    return [(x[:, i:i + bptt], y[:, i:i + bptt]) for i in range(0, x.shape[1], bptt)]


def sentence_rows(sentences: Sequence[Sentence]) -> tuple[Tensor, Tensor]:
    """``[EOS] + s`` and ``s + [EOS]`` per sentence, padded: inputs and targets ``(B, T)``."""
    T = max(len(s) for s in sentences) + 1
    x = torch.full((len(sentences), T), PAD, dtype=torch.long)
    y = torch.full((len(sentences), T), PAD, dtype=torch.long)
    for i, s in enumerate(sentences):
        x[i, : len(s) + 1] = torch.tensor([EOS, *s])
        y[i, : len(s) + 1] = torch.tensor([*s, EOS])
    return x, y  # (B, T)


TOKENS_PER_LINE = 256  # a padded batch holds at most batch_size * this many positions (past one row)


def cut_sorted(order: Sequence[int], sentences: Sequence[Sentence], batch_size: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most ``batch_size`` sentences and,
    past one sentence, at most ``batch_size * 256`` padded positions (each row padded to the
    batch's longest): a long line is a batch alone, not the other rows padded to its length
    (one 1 MiB line among short ones would make 256 rows of 1 Mi). Sentences under 256 tokens
    are cut every ``batch_size``: the budget never binds for them."""
    budget = batch_size * TOKENS_PER_LINE
    cuts: list[list[int]] = []
    for i in order:  # ascending: the sentence added is the batch's longest
        if cuts and len(cuts[-1]) < batch_size and (len(cuts[-1]) + 1) * (len(sentences[i]) + 1) <= budget:
            cuts[-1].append(i)
        else:
            cuts.append([i])
    return cuts


def sentence_batches(sentences: Sequence[Sentence], batch_size: int, seed: int | None
                     ) -> Iterator[tuple[Tensor, Tensor]]:
    """Padded batches of ``batch_size`` sentences of similar length; with a ``seed``, the
    sentences shuffled, sorted by length within chunks of 50 batches, the batches shuffled."""
    order = list(range(len(sentences)))
    rng = random.Random(seed)
    if seed is not None:
        rng.shuffle(order)
    chunk = 50 * batch_size
    cuts: list[list[int]] = []
    for c in range(0, len(order), chunk):
        cuts += cut_sorted(sorted(order[c:c + chunk], key=lambda i: len(sentences[i])), sentences, batch_size)
    if seed is not None:
        rng.shuffle(cuts)
    for cut in cuts:
        yield sentence_rows([sentences[i] for i in cut])


def shuffled(sentences: Sequence[Sentence], seed: int) -> list[Sentence]:
    """The sentences in a seeded random order (an epoch's stream)."""
    order = list(sentences)
    random.Random(seed).shuffle(order)
    return order
