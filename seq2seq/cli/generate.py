"""Sample from a language model, or score text with it.

    python -m seq2seq generate --checkpoint DIR [--prompt TEXT] [--temperature T] [--top-k K]
                               [--max-tokens N] [--num N] [--seed S]
    python -m seq2seq generate --checkpoint DIR --score FILE

Sampling prints ``--num`` samples, one a line, drawn in batches of up to ``--batch-size``
(default 1,024; :mod:`seq2seq.model.sampling`), each batch printed as it ends;
the same ``--seed`` gives the same samples. A prompt may hold characters the model never saw:
the tokenizers fall back to their UTF-8 bytes (:mod:`seq2seq.data.tokenization`).

Scoring prints one line per line of ``FILE``, in order: the line's log-probability (natural
log, its end of line included) and its token count, tab-separated; then on stderr the file's
perplexity per token and bits per character. Each line is scored from the zero state, so a
line's score does not depend on its neighbours (nor on the batch it was scored in).

Like every command, a user error (a translator's checkpoint, a missing file, a bad option)
ends with one line ``error: ...`` and exit status 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import check_positive, require_stdout, run_command
from .usage import examples

if TYPE_CHECKING:
    import torch

    from ..model.checkpoint import LoadedLM


SAMPLE_BATCH = 1024  # samples drawn in one batch at most (--batch-size)


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
                   help="print each line's log-probability and the file's perplexity instead of sampling")
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
    _check_options(args)  # before torch and the checkpoint load
    from ..model import checkpoint
    from ..runtime.device import autocast, select_device

    device = select_device(args.device, "--device")
    loaded = checkpoint.load_lm(args.checkpoint, device)
    if args.score is not None:
        return _score(loaded, args.score, args.batch_size or loaded.config.decode.batch_size, device,
                      autocast(loaded.config.train.bf16, device))
    return _sample(loaded, args)


def _check_options(args: argparse.Namespace) -> None:
    """The options checked, standard output open and ``--score``'s file readable, before the
    checkpoint is read."""
    check_positive(args, "num", "max_tokens", "batch_size")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k < 0:
        raise ValueError(f"--top-k must be >= 0, got {args.top_k}")
    if not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be in [0, 2**63), got {args.seed}")
    require_stdout("a shell redirection")
    if args.score is not None:
        with open(args.score, "rb"):  # a missing file is refused before the checkpoint is read
            pass


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


def _score(loaded: LoadedLM, path: Path, batch_size: int, device: torch.device, autocast: Any) -> int:
    """Print each line's log-probability and token count; the totals on stderr."""
    from ..data.corpus import iter_lines
    from ..model.lm_scoring import bits_per_char, perplexity, sentence_log_probs

    lines = [line or "" for line in iter_lines(path, "error")]
    if not lines:
        raise ValueError(f"{path}: no lines to score")
    ids = loaded.tok.encode_batch(lines)
    scores = sentence_log_probs(loaded.model, ids, batch_size, device, autocast)
    sys.stdout.write("".join(f"{lp:.4f}\t{len(s) + 1}\n" for lp, s in zip(scores, ids)))
    nll, tokens, chars = -sum(scores), sum(len(s) + 1 for s in ids), sum(len(line) + 1 for line in lines)
    print(f"{path}: {len(lines)} lines, {tokens} tokens, log-probability {-nll:.2f}, "
          f"perplexity {perplexity(nll, tokens):.4f}, bits per character {bits_per_char(nll, chars):.4f}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
