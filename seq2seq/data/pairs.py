"""What every corpus source gives: sentence pairs, the result of reading a split, and its error.

The readers (:mod:`seq2seq.data.corpus` for local files, :mod:`seq2seq.data.hub` for Hugging Face
``datasets``) share these, and so import this module rather than each other.
"""

from __future__ import annotations

from typing import NamedTuple

Pair = tuple[str, str]  # (source sentence, target sentence)


class CorpusError(ValueError):
    """A problem with the corpus; the one-line message names the file, line and key."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))  # one line, whatever was embedded


class Read(NamedTuple):
    """What a reader found: the pairs, how many were skipped for invalid UTF-8, and where."""

    pairs: list[Pair]
    skipped: int
    where: str
