"""Translate lines of text with a model and its tokenizers: batched, order-preserving.

Lines are tokenized exactly as in training (same tokenizer, same ``max_len`` limit, same
source reversal), sorted by length so that each batch holds similar lengths, searched
(greedy or beam), detokenized, and put back in the input order. An empty line (or one
that tokenizes to nothing) gives an empty translation without touching the model.

A line in gives exactly one line out: a translation never contains a line break (any
character ``str.splitlines`` breaks on becomes a space), and a line that is not valid
Unicode (unpaired surrogates, e.g. from ``surrogateescape`` decoding) is repaired with
U+FFFD and a warning instead of crashing the tokenizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import DataConfig, DecodeConfig
from ..data.batching import pad_sequences, reverse_source
from ..data.tokenization import BOS, EOS, Tokenizer
from ..model import checkpoint
from ..model.search import Hypothesis, max_lengths, search
from ..model.seq2seq import Seq2Seq
from ..runtime import threads
from . import precision

Warn = Callable[[int, str], None]

# Every character str.splitlines() breaks a line on: \n \v \f \r \x1c \x1d \x1e \x85 \u2028 \u2029.
_LINE_BREAKS = dict.fromkeys(map(ord, "\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"), " ")


def one_line(text: str) -> str:
    """``text`` with every line break replaced by a space, so it prints as one line."""
    return text.translate(_LINE_BREAKS)


@dataclass(frozen=True)
class Translation:
    text: str
    score: float


@dataclass(frozen=True)
class Alignment:
    """One translation's attention: ``weights[t, s]`` is how much output token ``t`` (the
    last is EOS) read source token ``s``, the source in reading order (un-reversed)."""

    source: list[str]  # source pieces, (S,)
    target: list[str]  # output pieces and "</s>", (T,)
    weights: torch.Tensor  # (T, S), each row sums to 1
    text: str  # the translation


class Translator:
    """Text in, text out: tokenize, batch by length, search (greedy or beam), detokenize, in
    the input order. ``from_checkpoint`` builds one from a checkpoint directory."""

    def __init__(self, model: Seq2Seq, src_tok: Tokenizer, tgt_tok: Tokenizer, data: DataConfig,
                 decode: DecodeConfig, device: torch.device | str = "cpu") -> None:
        self.model = model
        self.src_tok = src_tok
        self.tgt_tok = tgt_tok
        self.data = data
        self.decode = decode
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu",
                        decode: DecodeConfig | None = None, **changes: Any) -> Translator:
        """The checkpoint's translator, decoding by ``decode`` (default: the checkpoint's decode
        section) with ``changes`` to it (e.g. ``quantize="int8"``), in the precision they ask for
        (:mod:`~seq2seq.translation.precision`)."""
        return cls.from_loaded(checkpoint.load(path, device), device, decode, **changes)

    @classmethod
    def from_loaded(cls, loaded: checkpoint.Loaded, device: torch.device | str = "cpu",
                    decode: DecodeConfig | None = None, **changes: Any) -> Translator:
        """As :meth:`from_checkpoint`, from a checkpoint already loaded onto ``device``."""
        decode = dataclasses.replace(decode or loaded.config.decode, **changes)
        model = precision.prepare(loaded.model, decode, torch.device(device))
        return cls(model, loaded.src_tok, loaded.tgt_tok, loaded.config.data, decode, device)

    def encode_source(self, lines: Sequence[str], warn: Warn | None = None) -> list[list[int]]:
        """Token ids per line, cut to ``data.max_len`` (with a warning), reversed if trained so."""
        texts = list(lines)
        for i, text in enumerate(texts):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                if warn is not None:
                    warn(i, "not valid UTF-8 text (undecodable bytes or unpaired surrogates); replaced with U+FFFD")
                texts[i] = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        out = []
        for i, ids in enumerate(self.src_tok.encode_batch(texts)):
            if len(ids) > self.data.max_len:
                if warn is not None:
                    warn(i, f"{len(ids)} source tokens, cut to the model's limit of {self.data.max_len}")
                ids = ids[: self.data.max_len]
            out.append(reverse_source(ids) if self.data.reverse_source else ids)
        return out

    def beam_size(self, beam_size: int | None = None) -> int:
        """The beam a search asked for ``beam_size`` uses: ``beam_size``, or the checkpoint's
        ``decode.beam_size`` when None; ValueError under 1 (never silently another)."""
        if beam_size is None:
            return self.decode.beam_size
        if beam_size < 1:
            raise ValueError(f"beam size must be >= 1, got {beam_size}")
        return beam_size

    @torch.inference_mode()
    def translate(self, lines: Sequence[str], *, beam_size: int | None = None, nbest: int = 1,
                  warn: Warn | None = None) -> list[list[Translation]]:
        """One n-best list (best first) per input line, in the input order; texts are single lines.

        An empty source gives the single hypothesis ``Translation("", 0.0)``.
        """
        beam = self.beam_size(beam_size)
        if nbest > beam:
            raise ValueError(f"nbest ({nbest}) must not exceed the beam size ({beam})")
        was_training = self.model.training
        self.model.eval()
        sources = self.encode_source(lines, warn)
        results: list[list[Translation]] = [[Translation("", 0.0)] for _ in lines]
        order = sorted((i for i, s in enumerate(sources) if s), key=lambda i: len(sources[i]))
        for start in range(0, len(order), self.decode.batch_size):
            idx = order[start: start + self.decode.batch_size]
            _, _, hyps = self._search([sources[i] for i in idx], beam, nbest)
            if self.device.type == "cpu":
                threads.shared().tick()  # fewer threads while other processes take a core
            for i, nb in zip(idx, hyps):
                results[i] = [Translation(one_line(self.tgt_tok.decode(h.tokens)), h.score) for h in nb]
        self.model.train(was_training)
        return results

    @torch.inference_mode()
    def alignment(self, line: str, *, beam_size: int | None = None) -> Alignment:
        """Translate ``line`` and return the attention of each output step over its source."""
        ids = self.encode_source([line])[0]
        if not ids:
            raise ValueError("the source sentence is empty")
        was_training = self.model.training
        self.model.eval()
        src, src_len, hyps = self._search([ids], self.beam_size(beam_size), 1)
        best = hyps[0][0]
        tgt_in = torch.tensor([[BOS, *best.tokens]], device=self.device)  # (1, T)
        weights = self.model.alignment(src, src_len, tgt_in)[0].float().cpu()  # (T, S)
        self.model.train(was_training)
        if self.data.reverse_source:  # the model read it reversed: columns back in reading order
            ids, weights = reverse_source(ids), weights.flip(-1)
        return Alignment(self.src_tok.pieces(ids), [*self.tgt_tok.pieces(best.tokens), "</s>"], weights,
                         one_line(self.tgt_tok.decode(best.tokens)))

    def _search(self, sources: Sequence[list[int]], beam: int, nbest: int
                ) -> tuple[Tensor, Tensor, list[list[Hypothesis]]]:
        """Pad token ids (model order) onto the device and search: -> src (B, S), src_len (B,), n-best lists."""
        src, src_len = pad_sequences(sources)  # (B, S), (B,)
        src, src_len = src.to(self.device), src_len.to(self.device)
        limit = max_lengths(src_len, self.decode.max_len_ratio, self.decode.max_len_offset)
        return src, src_len, search(self.model, src, src_len, beam_size=beam, bos=BOS, eos=EOS, max_len=limit,
                                    alpha=self.decode.length_penalty, nbest=nbest)

    def translate_best(self, lines: Sequence[str], *, beam_size: int | None = None,
                       warn: Warn | None = None) -> list[str]:
        return [nb[0].text for nb in self.translate(lines, beam_size=beam_size, warn=warn)]
