"""Scores: sacreBLEU BLEU and chrF with their signatures, exact match, BLEU by length.

:func:`evaluate_split` translates a split and scores it, also by source length; the
``evaluate`` command (``python -m seq2seq evaluate``, :func:`main`) prints its report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

if TYPE_CHECKING:
    from .translator import Translator, Warn


@dataclass(frozen=True)
class Scores:
    bleu: float
    chrf: float
    exact_match: float  # percent of hypotheses identical to their reference
    bleu_signature: str
    chrf_signature: str
    n: int


def score(hyps: Sequence[str], refs: Sequence[str]) -> Scores:
    """Corpus BLEU (13a, cased) and chrF of ``hyps`` against one reference each."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not refs:
        raise ValueError("no sentences to score")
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(list(hyps), [list(refs)])
    c = chrf.corpus_score(list(hyps), [list(refs)])
    exact = 100.0 * sum(h == r for h, r in zip(hyps, refs)) / len(refs)
    return Scores(bleu=b.score, chrf=c.score, exact_match=exact,
                  bleu_signature=str(bleu.get_signature()), chrf_signature=str(chrf.get_signature()),
                  n=len(refs))


METRIC_NAMES = {"bleu": "BLEU", "chrf": "chrF", "exact_match": "exact match"}  # for messages and plots
DEFAULT_BUCKETS = (10, 20, 30, 40)


@dataclass(frozen=True)
class Bucket:
    label: str
    n: int
    bleu: float


def length_groups(src_lengths: Sequence[int], edges: Sequence[int] = DEFAULT_BUCKETS) -> list[tuple[str, list[int]]]:
    """The source-length buckets (lengths in words or characters; edges are upper bounds) as
    ``(label, indices of the sentences in it)``.

    With edges (10, 20) the buckets are 1-10, 11-20 and 21+. Empty buckets are left out.
    """
    bounds = [0, *edges]
    labels = [f"{lo + 1}-{hi}" for lo, hi in zip(bounds, bounds[1:])] + [f"{bounds[-1] + 1}+"]
    groups: list[list[int]] = [[] for _ in labels]
    for i, n in enumerate(src_lengths):
        k = next((j for j, hi in enumerate(edges) if n <= hi), len(edges))
        groups[k].append(i)
    return [(label, idx) for label, idx in zip(labels, groups) if idx]


def bleu_by_length(src_lengths: Sequence[int], hyps: Sequence[str], refs: Sequence[str],
                   edges: Sequence[int] = DEFAULT_BUCKETS) -> list[Bucket]:
    """Corpus BLEU within source-length buckets (lengths in words; edges are upper bounds).

    With edges (10, 20) the buckets are 1-10, 11-20 and 21+. Empty buckets are left out.
    """
    return _bleu_within(length_groups(src_lengths, edges), hyps, refs)


def _bleu_within(groups: Sequence[tuple[str, list[int]]], hyps: Sequence[str], refs: Sequence[str]) -> list[Bucket]:
    out = []
    for label, idx in groups:
        b = sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]])
        out.append(Bucket(label, len(idx), b.score))
    return out


LENGTH_UNITS = ("words", "chars")


def source_lengths(sources: Sequence[str], unit: str = "words") -> list[int]:
    """Each source's length: words (split on whitespace) or chars (without the surrounding whitespace)."""
    if unit == "words":
        return [len(s.split()) for s in sources]
    if unit == "chars":
        return [len(s.strip()) for s in sources]
    raise ValueError(f"length unit must be one of {', '.join(LENGTH_UNITS)}; got {unit!r}")


@dataclass(frozen=True)
class Evaluation:
    """A split translated and scored (:func:`evaluate_split`)."""

    hyps: list[str]
    scores: Scores
    buckets: list[Bucket]  # BLEU by source length
    bucket_exact_match: list[float]  # exact match (percent) within each of ``buckets``


def evaluate_split(translator: Translator, sources: Sequence[str], refs: Sequence[str], beam_size: int | None,
                   *, edges: Sequence[int] = DEFAULT_BUCKETS, length_unit: str = "words",
                   warn: Warn | None = None) -> Evaluation:
    """Translate ``sources`` (beam ``beam_size``; None: the translator's own) and score the
    translations against ``refs``: corpus scores, and BLEU and exact match by source length
    (``length_unit`` words or chars, buckets up to each of ``edges``)."""
    groups = length_groups(source_lengths(sources, length_unit), edges)
    hyps = translator.translate_best(list(sources), beam_size=beam_size, warn=warn)
    scores = score(hyps, refs)
    exact = [100.0 * sum(hyps[i] == refs[i] for i in idx) / len(idx) for _, idx in groups]
    return Evaluation(hyps, scores, _bleu_within(groups, hyps, refs), exact)


def format_report(scores: Scores, buckets: Sequence[Bucket] = ()) -> str:
    lines = [
        f"BLEU = {scores.bleu:.2f}  {scores.bleu_signature}",
        f"chrF = {scores.chrf:.2f}  {scores.chrf_signature}",
        f"exact match = {scores.exact_match:.2f}%  ({scores.n} sentences)",
    ]
    if buckets:
        lines.append("BLEU by source length (words):")
        lines += [f"  {b.label:>7}  n={b.n:<5d} BLEU = {b.bleu:.2f}" for b in buckets]
    return "\n".join(lines)
