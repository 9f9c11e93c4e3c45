"""Sample from a language model, or score text with it.

    python -m seq2seq generate --checkpoint DIR [--prompt TEXT] [--temperature T] [--top-k K]
                               [--max-tokens N] [--num N] [--seed S]
    python -m seq2seq generate --checkpoint DIR --score FILE

Sampling prints ``--num`` samples, one a line, drawn in batches of up to ``--batch-size``
(default 1,024; :mod:`seq2seq.model.sampling`), each batch printed as it ends;
the same ``--seed`` gives the same samples. A prompt may hold characters the model never saw:
the tokenizers fall back to their UTF-8 bytes (:mod:`seq2seq.data.tokenization`).

Scoring (``--score FILE``; ``-`` reads standard input, and a pipe or a FIFO reads as a
file does) prints one line per line of ``FILE``, in order: the line's log-probability
(natural log, its end of line included) and its token count, tab-separated; then on stderr
the file's perplexity per token and bits per character. What is scored is what training
reads: a blank line (empty or whitespace only), which training drops, is not scored, its
row ``0.0000`` and ``0`` tokens, and it counts in no total; so the test split scored this way
has the run's ``test/ppl_sentence``. Each line is scored from the zero state and in fp32
(whatever ``train.bf16``), so a line's score depends neither on its neighbours nor, beyond
fp32's rounding (about one part in a million), on the batch it is scored in. A long line
is read a slice of steps at a time: memory stays bounded and SIGTERM or Ctrl-C ends the
command between slices. A FIFO that no writer opens within
``FIFO_WAIT_S`` seconds is a one-line error, not a wait without end.

Like every command, a user error (a translator's checkpoint, a missing file, a bad option)
ends with one line ``error: ...`` and exit status 1.
"""

from __future__ import annotations

import argparse
import errno
import io
import math
import os
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import check_positive, require_stdout, run_command
from .usage import examples

if TYPE_CHECKING:
    import torch

    from ..model.checkpoint import LoadedLM


SAMPLE_BATCH = 1024  # samples drawn in one batch at most (--batch-size)
FIFO_WAIT_S = 10.0  # --score of a FIFO: how long to wait for a writer to open it
UTF8_HINT = "--score reads UTF-8 text: convert the file (iconv -f LATIN1 -t UTF-8) or remove the line"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seq2seq generate",
                                description="Sample text from a language model (data.task: lm), or score a file.",
        **examples(
            'python -m seq2seq generate --checkpoint runs/lm/char --prompt "A dog" --num 5 --seed 1',
            "python -m seq2seq generate --checkpoint runs/lm/char --score captions.txt",
        ))
    p.add_argument("--checkpoint", type=Path, required=True, help="LM checkpoint directory (or its run directory)")
    p.add_argument("--prompt", default="", help="text the samples continue (default: a new sentence)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 is greedy (default 1)")
    p.add_argument("--top-k", type=int, default=0, help="draw from the K likeliest tokens only (default 0: all)")
    p.add_argument("--max-tokens", type=int, default=200, help="tokens drawn at most per sample (default 200)")
    p.add_argument("--num", type=int, default=1,
                   help="samples, drawn in batches of --batch-size, printed as each batch ends (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same samples")
    p.add_argument("--score", type=Path, default=None, metavar="FILE",
                   help="print each line's log-probability and the file's perplexity instead of sampling "
                        "('-': standard input; blank lines are not scored, as training drops them)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"lines per batch when scoring (default: the config's decode.batch_size); "
                        f"samples per batch when sampling (default {SAMPLE_BATCH})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``generate`` command: sample from a language model, or score a file with it."""
    args = parser().parse_args(argv)
    return run_command(lambda: _generate(args))


def _generate(args: argparse.Namespace) -> int:
    source = _check_options(args)  # before torch and the checkpoint load
    try:
        from ..model import checkpoint
        from ..runtime.device import select_device

        device = select_device(args.device, "--device")
        loaded = checkpoint.load_lm(args.checkpoint, device)
        if source is not None:
            return _score(loaded, source, _input_name(args.score), args.batch_size or loaded.config.decode.batch_size,
                          device)
        return _sample(loaded, args)
    finally:
        if source is not None and source is not _stdin():
            source.close()


def _check_options(args: argparse.Namespace) -> BinaryIO | None:
    """The options checked, standard output open and ``--score``'s input opened (-> it), before
    the checkpoint is read."""
    check_positive(args, "num", "max_tokens", "batch_size")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise ValueError(f"--top-k must be >= 0, got {args.top_k}")
    if not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be in [0, 2**63), got {args.seed}")
    _check_utf8(args.prompt, "--prompt")
    require_stdout("a shell redirection")
    return None if args.score is None else open_input(args.score)


def _check_utf8(text: str, option: str) -> None:
    """A user error if ``text`` (an argument, decoded with surrogateescape) is not valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        at = len(text[: e.start].encode("utf-8", "surrogateescape")) + 1
        code = ord(text[e.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"character U+{code:04X}"
        raise ValueError(f"{option} is not valid UTF-8 ({what} at byte {at}); give it as UTF-8 text") from None


def _stdin() -> BinaryIO:
    if sys.stdin is None:
        raise ValueError("standard input is closed; give --score a file")
    return sys.stdin.buffer


def _input_name(path: Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def open_input(path: Path) -> BinaryIO:
    """``--score``'s input: standard input for ``-``; else the file, pipe or FIFO, opened
    without blocking (a FIFO's plain open waits for a writer without end): a FIFO waits up to
    :data:`FIFO_WAIT_S` seconds for a writer, then is a one-line error. A missing file or a
    folder is an OSError naming it."""
    if str(path) == "-":
        return _stdin()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        first = _wait_for_writer(fd, path) if stat.S_ISFIFO(mode) else b""
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return io.BufferedReader(_Prefixed(first, io.FileIO(fd, "rb", closefd=True)))


def _wait_for_writer(fd: int, path: Path) -> bytes:
    """A FIFO opened without blocking: -> the first bytes a writer sent (b"" while it sends none
    yet); a ValueError if no writer opens it within :data:`FIFO_WAIT_S` seconds. A read that
    finds no writer gives end of file at once; one with a writer but no data would block."""
    deadline = time.monotonic() + FIFO_WAIT_S
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return b""  # a writer, nothing written yet
        if data:
            return data
        if time.monotonic() >= deadline:
            raise ValueError(f"{path}: no writer (a FIFO that nothing opened for writing within {FIFO_WAIT_S:g} s); "
                             "start its writer first, or pipe the text into --score -")
        time.sleep(0.05)


class _Prefixed(io.RawIOBase):
    """``raw``'s bytes after ``prefix`` (the bytes read while waiting for a FIFO's writer)."""

    def __init__(self, prefix: bytes, raw: io.FileIO) -> None:
        self.prefix, self.raw = prefix, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        return self.raw.readinto(buffer) or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def _sample(loaded: LoadedLM, args: argparse.Namespace) -> int:
    """Print ``--num`` samples, one a line, each batch as it ends."""
    import torch

    from ..model.sampling import sample
    from ..translation.translator import one_line

    generator = torch.Generator().manual_seed(args.seed)
    batch = args.batch_size or SAMPLE_BATCH
    for start in range(0, args.num, batch):  # memory bounded by the batch, whatever --num is
        texts = sample(loaded.model, loaded.tok, prompt=args.prompt, num=min(batch, args.num - start),
                       max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                       generator=generator)
        sys.stdout.write("".join(one_line(t) + "\n" for t in texts))
        sys.stdout.flush()
    return 0


def _score(loaded: LoadedLM, source: BinaryIO, name: str, batch_size: int, device: torch.device) -> int:
    """Print each line's log-probability and token count (a blank line: 0.0000 and 0, not
    scored); the totals, of the scored lines, on stderr."""
    from ..data.corpus import iter_stream_lines
    from ..model.lm_scoring import bits_per_char, perplexity, sentence_log_probs

    lines = [line or "" for line in iter_stream_lines(source, name, "error", UTF8_HINT)]
    if not lines:
        raise ValueError(f"{name}: no lines to score")
    scored = [i for i, line in enumerate(lines) if line.strip()]  # as training reads text (lm_data.read_lines)
    if not scored:
        raise ValueError(f"{name}: no text to score (every line is blank; blank lines are not scored)")
    ids = loaded.tok.encode_batch([lines[i] for i in scored])
    scores = sentence_log_probs(loaded.model, ids, batch_size, device)
    rows = ["0.0000\t0\n"] * len(lines)
    for i, lp, s in zip(scored, scores, ids):
        rows[i] = f"{lp:.4f}\t{len(s) + 1}\n"
    sys.stdout.write("".join(rows))
    nll, tokens, chars = -sum(scores), sum(len(s) + 1 for s in ids), sum(len(lines[i]) + 1 for i in scored)
    blank = len(lines) - len(scored)
    print(f"{name}: {len(lines)} lines" + (f" ({blank} blank, not scored)" if blank else "") + f", {tokens} tokens, "
          f"log-probability {-nll:.2f}, perplexity {perplexity(nll, tokens):.4f}, "
          f"bits per character {bits_per_char(nll, chars):.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
