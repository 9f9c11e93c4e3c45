"""The ``evaluate`` command: translate a test set (a split of the checkpoint's corpus, or
``--src``/``--ref`` files) and print its scores (:mod:`seq2seq.translation.evaluation`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..translation.evaluation import DEFAULT_BUCKETS, evaluate_split, format_report
from .decoding import add_precision_options, precision_changes
from .errors import check_positive, require_stdout, run_command
from .usage import examples

if TYPE_CHECKING:
    from ..translation.translator import Translator


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m seq2seq evaluate",
        description="Translate a test set and score it: sacreBLEU BLEU and chrF (with signatures), "
                    "exact match, and BLEU by source length.",
        **examples(
            "python -m seq2seq evaluate --checkpoint runs/multi30k_de_en_attention --beam 5",
            "python -m seq2seq evaluate --checkpoint runs/dates --src test.src --ref test.ref --json scores.json",
        ))
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--split", default=None,
                   help="a split of the checkpoint's corpus (default: its data.test_split)")
    p.add_argument("--src", type=Path, default=None, help="source file (with --ref), one sentence a line")
    p.add_argument("--ref", type=Path, default=None, help="reference file (with --src)")
    p.add_argument("--data-path", default=None, help="override the corpus location (data.path)")
    p.add_argument("--beam", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add_precision_options(p)
    p.add_argument("--output", type=Path, default=None, help="write the hypotheses here")
    p.add_argument("--json", type=Path, default=None, help="write the scores as JSON here")
    p.add_argument("--buckets", type=int, nargs="+", default=list(DEFAULT_BUCKETS), metavar="N",
                   help=f"source-length bucket edges in words (default: {' '.join(map(str, DEFAULT_BUCKETS))})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``evaluate`` command: translate a test set and print its scores."""
    args = parser().parse_args(argv)
    return run_command(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    """Check the options, load the checkpoint, score the test set."""
    from ..runtime.device import select_device
    from ..translation.translator import Translator
    from .outputs import check_outputs

    if (args.src is None) != (args.ref is None):
        raise ValueError("--src and --ref go together")
    check_positive(args, "beam", "batch_size")
    check_outputs({"--output": args.output, "--json": args.json}, {"--src": args.src, "--ref": args.ref})
    if args.json is None:  # the scores go to stdout only
        require_stdout("--json FILE")
    changes = precision_changes(args) | ({} if args.batch_size is None else {"batch_size": args.batch_size})
    translator = Translator.from_checkpoint(args.checkpoint, select_device(args.device, "--device"), **changes)
    pairs, name = _pairs(args, translator)
    beam = translator.beam_size(args.beam)
    if any(b < 1 for b in args.buckets) or list(args.buckets) != sorted(set(args.buckets)):
        edges = " ".join(map(str, args.buckets))
        raise ValueError(f"--buckets must be increasing positive word counts, got {edges}")
    _score(args, translator, pairs, name, beam)
    return 0


def _pairs(args: argparse.Namespace, translator: Translator) -> tuple[list[tuple[str, str]], str]:
    """The pairs to score, ``--src``/``--ref`` or a split of the checkpoint's corpus, and their name."""
    import dataclasses
    import glob

    from ..data.corpus import load_split, read_parallel_files
    from .outputs import check_outputs

    if args.src is not None:
        return read_parallel_files(args.src, args.ref), f"{args.src} / {args.ref}"
    data = translator.data
    if args.data_path:
        data = dataclasses.replace(data, path=args.data_path)
    split = args.split or data.test_split
    if data.source in ("files", "tsv", "jsonl") and Path(data.path).is_dir():  # never write over the corpus
        corpus = {f"the corpus's {p.name}": p for p in sorted(Path(data.path).glob(f"{glob.escape(split)}.*"))}
        check_outputs({"--output": args.output, "--json": args.json}, corpus)
    return load_split(data, split), f"{data.source}:{split}"


def _score(args: argparse.Namespace, translator: Translator, pairs: list[tuple[str, str]], name: str,
           beam: int) -> None:
    """Translate and score ``pairs``: the report on stdout, the hypotheses to ``--output``, the
    scores to ``--json``."""
    import contextlib
    import dataclasses
    import json

    from ..translation import precision
    from .outputs import open_output

    def warn(i: int, msg: str) -> None:
        print(f"warning: sentence {i + 1}: {msg}", file=sys.stderr)

    with contextlib.ExitStack() as stack:  # opened (so known writable) before decoding, replaced at the end
        hyp_file = stack.enter_context(open_output(args.output)) if args.output else None
        json_file = stack.enter_context(open_output(args.json)) if args.json else None
        result = evaluate_split(translator, [s for s, _ in pairs], [t for _, t in pairs], beam,
                                edges=tuple(args.buckets), warn=warn)
        how = precision.describe(translator.decode, translator.device)
        print(f"{name}: {len(pairs)} sentences, beam {beam}, {how}")
        print(format_report(result.scores, result.buckets))
        if hyp_file is not None:
            hyp_file.write("".join(h + "\n" for h in result.hyps))
        if json_file is not None:
            json_file.write(json.dumps({
                "data": name, "beam": beam, "precision": precision.resolve(translator.decode, translator.device),
                **dataclasses.asdict(result.scores),
                "buckets": [dataclasses.asdict(b) for b in result.buckets]}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
