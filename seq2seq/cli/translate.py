"""The ``translate`` command (``translate.py``): translate one sentence per line, stdin to
stdout by default, in the input's order; ``--nbest N`` prints n-best lists, and on a terminal
it prompts for one sentence at a time.

A user error (a missing checkpoint, a bad option, an input line over 1 MiB) ends with one line
``error: ...`` on stderr and exit status 1 (:mod:`seq2seq.cli.errors`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..config.parsing import ParseError, bounded_lines
from .decoding import add_precision_options, precision_changes
from .errors import check_positive, require_stdout, run_command
from .usage import examples

if TYPE_CHECKING:
    from ..translation.translator import Translator


def _read_lines(stream: Any, warn: Callable[[int, str], None], name: str = "standard input") -> Iterator[str]:
    """Lines of a binary stream (called ``name`` in errors), split on b'\\n' only; invalid UTF-8
    replaced, with a warning; a line over 1 MiB is an error naming the stream and line."""
    try:
        for i, raw in enumerate(bounded_lines(stream)):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                warn(i, f"invalid UTF-8 at byte {e.start}; undecodable bytes replaced")
                yield raw.decode("utf-8", errors="replace")
    except ParseError as e:
        raise ValueError(f"{name}: {e}") from None


def _format(index: int, nbest: list[Any], n: int) -> str:
    """One input's output lines: the best translation, or with ``n > 1`` the n-best list as
    ``index ||| hypothesis ||| score`` lines (fewer than ``n`` if fewer exist, e.g. an empty line)."""
    if n == 1:
        return nbest[0].text + "\n"
    return "".join(f"{index} ||| {t.text} ||| {t.score:.4f}\n" for t in nbest[:n])


def _utf8_stdout() -> TextIO:
    """stdout writing UTF-8 whatever the locale: input is read as UTF-8, so output is written so."""
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.encoding.lower().replace("-", "") != "utf8":
        sys.stdout.reconfigure(encoding="utf-8")
    return sys.stdout


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="translate.py",
        description="Translate one sentence per line: stdin to stdout by default, in the input's order.",
        **examples(
            'echo "Ein Hund rennt im Schnee." | python translate.py --checkpoint runs/multi30k_de_en_attention',
            "python translate.py --checkpoint runs/dates --input dates.txt --output iso.txt --beam 5",
            "python translate.py --checkpoint runs/multi30k_de_en_attention --quantize int8 < de.txt > en.txt",
        ))
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory (or a run directory)")
    p.add_argument("--input", type=Path, default=None, help="input file (default: stdin)")
    p.add_argument("--output", type=Path, default=None, help="output file (default: stdout)")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the checkpoint's decode.beam_size)")
    p.add_argument("--nbest", type=int, default=1, help="print N best as 'index ||| hypothesis ||| score'")
    p.add_argument("--batch-size", type=int, default=None, help="sentences per batch")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--max-len-ratio", type=float, default=None,
                   help="output length limit: R * source length + decode.max_len_offset")
    p.add_argument("--length-penalty", type=float, default=None, help="alpha of the length normalisation")
    add_precision_options(p)
    p.add_argument("--chunk", type=int, default=10_000, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``translate`` command: translate the input's lines with a checkpoint."""
    args = parser().parse_args(argv)
    return run_command(lambda: _translate(args))


def _translate(args: argparse.Namespace) -> int:
    """Translate the input (a terminal: line by line as typed) into the output."""
    from .outputs import open_output

    translator = _load(args)
    beam = translator.beam_size(args.beam)
    if args.nbest > beam:
        raise ValueError(f"--nbest ({args.nbest}) must not exceed the beam size ({beam})")

    if args.input is None and args.output is None and sys.stdin.isatty():
        return _interactive(translator, beam, args.nbest)
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open(args.input, "rb")) if args.input else sys.stdin.buffer
        # a file is replaced whole at the end (seq2seq.cli.outputs): a failure keeps the old one
        out = stack.enter_context(open_output(args.output)) if args.output else _utf8_stdout()
        _translate_stream(translator, src, out, beam, args.nbest, args.chunk,
                          str(args.output) if args.output else "standard output",
                          f"--input {args.input}" if args.input else "standard input")
    return 0


def _load(args: argparse.Namespace) -> Translator:
    """The checkpoint's translator with the command line's decode options, every option checked
    (and the outputs found writable) before the checkpoint is read."""
    from ..runtime.device import select_device
    from ..translation.translator import Translator
    from .outputs import check_outputs

    check_positive(args, "beam", "nbest", "batch_size")
    if args.max_len_ratio is not None and args.max_len_ratio <= 0:
        raise ValueError(f"--max-len-ratio must be > 0, got {args.max_len_ratio}")
    check_outputs({"--output": args.output}, {"--input": args.input})
    if args.output is None:
        require_stdout("--output FILE")
    changes: dict[str, Any] = {name: getattr(args, name) for name in ("batch_size", "max_len_ratio", "length_penalty")
                               if getattr(args, name) is not None}
    changes.update(precision_changes(args))
    _check_decode_options(changes)
    return Translator.from_checkpoint(args.checkpoint, select_device(args.device, "--device"), **changes)


def _check_decode_options(changes: dict[str, Any]) -> None:
    """The decode options given on the command line, checked as the config checks them
    (finite, in range), before a checkpoint is loaded; the error names the option."""
    from ..config import ConfigError, DecodeConfig

    try:
        DecodeConfig(**changes)
    except ConfigError as e:  # "decode.max_len_ratio: must be a finite number, got inf"
        key, _, why = str(e).partition(": ")
        raise ValueError(f"--{key.removeprefix('decode.').replace('_', '-')} {why}") from None


def _translate_stream(translator: Any, src: Any, out: TextIO, beam: int, nbest: int, chunk: int,
                      out_name: str = "standard output", src_name: str = "standard input") -> None:
    """Translate ``chunk`` lines at a time so memory stays bounded; write in input order to
    ``out`` (``out_name`` and ``src_name`` name the two in errors).

    Warnings name the 1-based line number of the input.
    """
    offset = 0  # input lines before the current chunk

    def warn(i: int, msg: str) -> None:
        print(f"warning: line {offset + i + 1}: {msg}", file=sys.stderr)

    def read_warn(i: int, msg: str) -> None:  # i counts from the start of the stream
        print(f"warning: line {i + 1}: {msg}", file=sys.stderr)

    buffer: list[str] = []

    def flush() -> None:
        nonlocal offset
        results = translator.translate(buffer, beam_size=beam, nbest=nbest, warn=warn)
        try:
            out.write("".join(_format(offset + i, nb, nbest) for i, nb in enumerate(results)))
            out.flush()
        except BrokenPipeError:
            raise
        except OSError as e:  # a full disk (or /dev/full): name the output, not a temporary file
            raise OSError(e.errno, e.strerror, out_name) from None
        offset += len(buffer)
        buffer.clear()

    for line in _read_lines(src, read_warn, src_name):
        buffer.append(line)
        if len(buffer) >= chunk:
            flush()
    if buffer:
        flush()


def _interactive(translator: Any, beam: int, nbest: int = 1) -> int:
    """Prompt ``> `` on a terminal, translate each typed line, stop at EOF (Ctrl-D).

    The prompt goes to stderr (``input`` without readline), so stdout holds translations only.
    """
    if isinstance(sys.stdin, io.TextIOWrapper):  # a bad byte typed is repaired with a warning, not fatal
        sys.stdin.reconfigure(errors="surrogateescape")
    print("Type a sentence and press Enter (Ctrl-D to quit).", file=sys.stderr)
    index = 0

    def warn(i: int, msg: str) -> None:
        print(f"warning: {msg}", file=sys.stderr)

    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        results = translator.translate([line], beam_size=beam, nbest=nbest, warn=warn)
        print(_format(index, results[0], nbest), end="", flush=True)
        index += 1
