"""Lossless subword and character tokenizers built on Hugging Face ``tokenizers``.

Two kinds, both with ``decode(encode(s)) == s`` for any Unicode string:

* ``"bpe"``: byte-level BPE (GPT-2 style). Text is mapped to its UTF-8 bytes, so
  the 256 byte symbols cover everything and no character is ever unknown; merges
  are learned from the training texts up to ``vocab_size`` tokens.
* ``"char"``: one token per character seen in training, plus 256 byte-fallback
  tokens ``<0x00>`` .. ``<0xFF>``: a character never seen in training becomes the
  tokens of its UTF-8 bytes instead of ``<unk>``. Meant for small synthetic corpora
  (dates, addition), where the vocabulary stays small (about 4 + 256 + #chars).

Neither kind has a normalizer (no NFKC, no lowercasing) or adds prefix spaces, so
spacing, tabs, control characters and accents survive unchanged.

The special tokens have the same ids in every tokenizer: ``PAD, BOS, EOS, UNK =
0, 1, 2, 3``. They live in the model's vocabulary only, not as "added tokens", so
a text that literally contains ``"<s>"`` is tokenized as ordinary characters and
round-trips. ``encode`` never adds BOS/EOS; ``decode`` skips the four specials.

A tokenizer is saved as one JSON file: ``{"format", "kind", "tokenizer"}`` where
``tokenizer`` is the library's own JSON. Loading parses JSON only; it never runs code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from ..config import MAX_BPE_VOCAB
from ..config.parsing import MiB, ParseError, load_json, read_text

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # in id order
KINDS = ("char", "bpe")
FORMAT = "seq2seq-tokenizer/1"
MAX_TOKENIZER_BYTES = 512 * MiB  # a BPE vocabulary of MAX_BPE_VOCAB entries and its merges is ~100 MB


class TokenizerError(ValueError):
    """A missing or unreadable tokenizer file; the message names the file."""


class Tokenizer:
    """A trained tokenizer of kind ``"char"`` or ``"bpe"`` wrapping a HF tokenizer."""

    def __init__(self, hf: HFTokenizer, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"tokenizer kind must be one of {KINDS}, got {kind!r}")
        for i, tok in enumerate(SPECIAL_TOKENS):
            if hf.token_to_id(tok) != i:
                raise ValueError(f"special token {tok!r} must have id {i}, got {hf.token_to_id(tok)}")
        self.kind = kind
        self._hf = hf
        self._vocab_size = hf.get_vocab_size(with_added_tokens=True)
        ids = hf.get_vocab(with_added_tokens=True).values()
        if len(set(ids)) != len(ids) or min(ids) < 0 or max(ids) != len(ids) - 1:  # the embedding's rows
            raise ValueError(f"token ids must be 0..{len(ids) - 1}, each once (the embedding's rows); "
                             f"got ids up to {max(ids)}" + (" with repeats" if len(set(ids)) != len(ids) else ""))
        self._vocab_size = len(ids)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS/EOS."""
        return list(self._hf.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of many texts at once (parallel, no offsets computed)."""
        return [list(e.ids) for e in self._hf.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; PAD, BOS, EOS and UNK are skipped."""
        return self._hf.decode([i for i in map(int, ids) if i > UNK], skip_special_tokens=False)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Each id's own text, for plot labels (a byte-level piece of a longer character may
        show as U+FFFD); special tokens by name."""
        return [SPECIAL_TOKENS[i] if i <= UNK else self._hf.decode([i], skip_special_tokens=False)
                for i in map(int, ids)]

    def to_json(self) -> str:
        """The tokenizer as a JSON string (what :meth:`save` writes)."""
        return json.dumps({"format": FORMAT, "kind": self.kind, "tokenizer": json.loads(self._hf.to_str())},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> Tokenizer:
        """Inverse of :meth:`to_json`; raises :class:`TokenizerError` naming ``source``."""
        try:
            data: Any = load_json(text)
        except json.JSONDecodeError as e:
            raise TokenizerError(f"{source}: not a tokenizer file (invalid JSON: {e.msg})") from None
        except ParseError as e:
            raise TokenizerError(f"{source}: not a tokenizer file (JSON {e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TokenizerError(f"{source}: not a tokenizer file (expected format {FORMAT!r})")
        if data.get("kind") not in KINDS:
            raise TokenizerError(f"{source}: unknown tokenizer kind {data.get('kind')!r}")
        try:
            hf = HFTokenizer.from_str(json.dumps(data["tokenizer"]))
            return cls(hf, data["kind"])
        except Exception as e:  # the library raises a bare Exception on bad JSON
            reason = " ".join(str(e).split())[:200]
            raise TokenizerError(f"{source}: corrupt tokenizer ({reason})") from None

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to ``path`` as one JSON file."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer written by :meth:`save`; :class:`TokenizerError` if missing or corrupt."""
        try:
            text = read_text(path, MAX_TOKENIZER_BYTES)
        except FileNotFoundError:
            raise TokenizerError(f"{path}: tokenizer file not found") from None
        except ParseError as e:
            raise TokenizerError(f"{path}: tokenizer file {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise TokenizerError(f"{path}: cannot read tokenizer file ({type(e).__name__})") from None
        return cls.from_json(text, source=str(path))

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _byte_token(b: int) -> str:
    return f"<0x{b:02X}>"  # the spelling the BPE model's byte fallback looks up


def _train_char(texts: Iterable[str]) -> HFTokenizer:
    """Vocabulary: specials, then every seen character (sorted), then 256 byte tokens."""
    seen: set[str] = set()
    for text in texts:
        seen.update(text)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for token in [*sorted(seen), *(_byte_token(b) for b in range(256))]:
        vocab.setdefault(token, len(vocab))
    # A BPE model without merges and without a pre-tokenizer splits text into characters;
    # a character missing from the vocabulary falls back to its UTF-8 byte tokens.
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    hf.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return hf


def _train_bpe(texts: Iterable[str], vocab_size: int) -> HFTokenizer:
    """Byte-level BPE: GPT-2 pre-tokenization, all 256 bytes in the initial alphabet."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator(texts, trainer)
    # Training registers the specials as "added tokens", which would match "<s>" written
    # in the input text (and decode would then drop it). Keep them in the model vocab only.
    data = json.loads(hf.to_str())
    data["added_tokens"] = []
    return HFTokenizer.from_str(json.dumps(data))


def train_tokenizer(texts: Iterable[str], kind: str, vocab_size: int = 8000) -> Tokenizer:
    """Train a ``"char"`` or ``"bpe"`` tokenizer on ``texts``.

    ``vocab_size`` (specials and the 256 byte symbols included) applies to BPE only;
    it is an upper bound, reached when the texts offer enough merges, and at most
    ``MAX_BPE_VOCAB`` (the library allocates for it up front).
    """
    if kind == "char":
        return Tokenizer(_train_char(texts), "char")
    if kind == "bpe":
        if vocab_size < len(SPECIAL_TOKENS) + 256:
            raise ValueError(f"BPE vocab_size must be >= {len(SPECIAL_TOKENS) + 256}, got {vocab_size}")
        if vocab_size > MAX_BPE_VOCAB:
            raise ValueError(f"BPE vocab_size must be <= {MAX_BPE_VOCAB}, got {vocab_size}")
        return Tokenizer(_train_bpe(texts, vocab_size), "bpe")
    raise ValueError(f"tokenizer kind must be one of {KINDS}, got {kind!r}")


def train_tokenizers(pairs: Sequence[tuple[str, str]], kind: str, vocab_size: int = 8000,
                     joint: bool = False) -> tuple[Tokenizer, Tokenizer]:
    """Source and target tokenizers trained on ``pairs``; with ``joint``, one tokenizer on both sides."""
    if joint:
        shared = train_tokenizer([text for pair in pairs for text in pair], kind, vocab_size)
        return shared, shared
    return (train_tokenizer([s for s, _ in pairs], kind, vocab_size),
            train_tokenizer([t for _, t in pairs], kind, vocab_size))
