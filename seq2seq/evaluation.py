"""Scores: sacreBLEU BLEU and chrF with their signatures, exact match, BLEU by length.

:func:`evaluate_split` translates a split and scores it, also by source length; the
``evaluate`` command (``python -m seq2seq.evaluation``, :func:`main`) prints its report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

from .errors import check_positive, require_stdout, run_command

if TYPE_CHECKING:
    from .translation import Translator, Warn


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


def main(argv: Sequence[str] | None = None) -> int:
    """The ``evaluate`` command: translate a test set and print its scores."""
    p = argparse.ArgumentParser(
        prog="python -m seq2seq.evaluation",
        description="Translate a test set and score it: sacreBLEU BLEU and chrF (with signatures), "
                    "exact match, and BLEU by source length.")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--split", default=None,
                   help="a split of the checkpoint's corpus (default: its data.test_split)")
    p.add_argument("--src", type=Path, default=None, help="source file (with --ref), one sentence a line")
    p.add_argument("--ref", type=Path, default=None, help="reference file (with --src)")
    p.add_argument("--data-path", default=None, help="override the corpus location (data.path)")
    p.add_argument("--beam", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--output", type=Path, default=None, help="write the hypotheses here")
    p.add_argument("--json", type=Path, default=None, help="write the scores as JSON here")
    p.add_argument("--buckets", type=int, nargs="+", default=list(DEFAULT_BUCKETS), metavar="N",
                   help=f"source-length bucket edges in words (default: {' '.join(map(str, DEFAULT_BUCKETS))})")
    args = p.parse_args(argv)

    def work() -> int:
        import contextlib
        import dataclasses
        import glob
        import json

        from .corpus import load_split, read_parallel_files
        from .device import select_device
        from .outputs import check_outputs, open_output
        from .translation import Translator

        if (args.src is None) != (args.ref is None):
            raise ValueError("--src and --ref go together")
        check_positive(args, "beam", "batch_size")
        check_outputs({"--output": args.output, "--json": args.json}, {"--src": args.src, "--ref": args.ref})
        if args.json is None:  # the scores go to stdout only
            require_stdout("--json FILE")
        translator = Translator.from_checkpoint(args.checkpoint, select_device(args.device, "--device"))
        if args.batch_size is not None:
            translator.decode = dataclasses.replace(translator.decode, batch_size=args.batch_size)
        if args.src is not None:
            pairs = read_parallel_files(args.src, args.ref)
            name = f"{args.src} / {args.ref}"
        else:
            data = translator.data
            if args.data_path:
                data = dataclasses.replace(data, path=args.data_path)
            split = args.split or data.test_split
            if data.source in ("files", "tsv", "jsonl") and Path(data.path).is_dir():  # never write over the corpus
                corpus = {f"the corpus's {p.name}": p for p in sorted(Path(data.path).glob(f"{glob.escape(split)}.*"))}
                check_outputs({"--output": args.output, "--json": args.json}, corpus)
            pairs = load_split(data, split)
            name = f"{data.source}:{split}"
        beam = args.beam or translator.decode.beam_size

        def warn(i: int, msg: str) -> None:
            print(f"warning: sentence {i + 1}: {msg}", file=sys.stderr)

        if any(b < 1 for b in args.buckets) or list(args.buckets) != sorted(set(args.buckets)):
            edges = " ".join(map(str, args.buckets))
            raise ValueError(f"--buckets must be increasing positive word counts, got {edges}")
        with contextlib.ExitStack() as stack:  # opened (so known writable) before decoding, replaced at the end
            hyp_file = stack.enter_context(open_output(args.output)) if args.output else None
            json_file = stack.enter_context(open_output(args.json)) if args.json else None
            result = evaluate_split(translator, [s for s, _ in pairs], [t for _, t in pairs], beam,
                                    edges=tuple(args.buckets), warn=warn)
            print(f"{name}: {len(pairs)} sentences, beam {beam}")
            print(format_report(result.scores, result.buckets))
            if hyp_file is not None:
                hyp_file.write("".join(h + "\n" for h in result.hyps))
            if json_file is not None:
                json_file.write(json.dumps({
                    "data": name, "beam": beam, **dataclasses.asdict(result.scores),
                    "buckets": [dataclasses.asdict(b) for b in result.buckets]}, indent=2) + "\n")
        return 0

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
