"""A count-based baseline for the language model: interpolated Kneser-Ney n-grams.

    python -m seq2seq ngram --config configs/lm_multi30k_en_char.yaml [--order 3 5 7] [overrides]
    python -m seq2seq ngram --checkpoint RUN_DIR [--order 5]   (the LM's own data and tokenizer)

Overrides apply with ``--config``, before or after ``--order``; with ``--checkpoint`` the
run's config and tokenizer are used as they are, and an override is refused in one line.

It reads the same text and tokens as the LM (:func:`seq2seq.data.lm_data.prepare_lm_data`): each
sentence after ``order - 1`` EOS symbols (the start), its tokens and its EOS predicted, the
same ``n + 1`` tokens a sentence as the LM's, so the perplexities compare one for one (the
LM's "by sentence" figure: no context across sentences either). The model (Chen & Goodman's
interpolated Kneser-Ney, one discount per order, ``D = n1 / (n1 + 2 n2)``)::

    P_k(w | h) = (max(c_k(h w) - D_k, 0) + D_k * N1+(h .) * P_{k-1}(w | h')) / sum_v c_k(h v)
    P_0(w) = 1 / V

where ``c_k`` is the raw count at the highest order and the continuation count ``N1+(. h w)``
(distinct left neighbours) below it, ``h'`` is ``h`` without its first token, and a context
never seen backs off to ``P_{k-1}`` whole. Every ``P_k(. | h)`` sums to 1 over the vocabulary.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

from ..cli.errors import run_command
from ..cli.usage import examples
from ..data.tokenization import EOS

Gram = tuple[int, ...]


class KneserNey:
    """Interpolated Kneser-Ney of order ``order`` over token ids ``0 .. vocab_size - 1``."""

    def __init__(self, sentences: Sequence[Sequence[int]], order: int, vocab_size: int) -> None:
        if order < 1:
            raise ValueError(f"--order must be >= 1, got {order}")
        self.order, self.vocab_size = order, vocab_size
        top: Counter[Gram] = Counter()
        for s in sentences:
            seq = [EOS] * (order - 1) + list(s) + [EOS]
            top.update(tuple(seq[i - order + 1:i + 1]) for i in range(order - 1, len(seq)))
        self.counts: dict[int, Counter[Gram]] = {order: top}  # k -> k-gram -> count
        for k in range(order - 1, 0, -1):  # continuation counts: distinct left neighbours
            self.counts[k] = Counter(g[1:] for g in self.counts[k + 1])
        self.totals: dict[int, dict[Gram, int]] = {}  # k -> context -> sum of its k-grams' counts
        self.types: dict[int, dict[Gram, int]] = {}  # k -> context -> distinct next tokens
        self.discount: dict[int, float] = {}
        for k, counts in self.counts.items():
            totals: dict[Gram, int] = defaultdict(int)
            types: dict[Gram, int] = defaultdict(int)
            for g, c in counts.items():
                totals[g[:-1]] += c
                types[g[:-1]] += 1
            self.totals[k], self.types[k] = dict(totals), dict(types)
            n1 = sum(1 for c in counts.values() if c == 1)
            n2 = sum(1 for c in counts.values() if c == 2)
            self.discount[k] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5

    def prob(self, history: Sequence[int], token: int) -> float:
        """P(token | the last ``order - 1`` tokens of ``history``)."""
        h = tuple(history[len(history) - self.order + 1:]) if self.order > 1 else ()
        p = 1.0 / self.vocab_size
        for k in range(1, self.order + 1):  # from the unigram up, each order interpolating the one below
            ctx = h[len(h) - k + 1:] if k > 1 else ()
            total = self.totals[k].get(ctx, 0)
            if total:
                d = self.discount[k]
                p = (max(self.counts[k].get((*ctx, token), 0) - d, 0.0) + d * self.types[k][ctx] * p) / total
        return p

    def sentence_log_prob(self, sentence: Sequence[int]) -> float:
        """ln P of the sentence's tokens and its EOS, from the start symbols."""
        seq = [EOS] * (self.order - 1) + list(sentence) + [EOS]
        return sum(math.log(self.prob(seq[:i], seq[i])) for i in range(self.order - 1, len(seq)))


MAX_ORDER = 16  # --order at most: memory grows with it (a 100-gram of Multi30k's characters ran out of 24 GB)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq ngram",
                                description="Kneser-Ney n-gram perplexity on an LM config's valid and test text.",
        **examples(
            "python -m seq2seq ngram --config lm_multi30k_en_char --order 3 5 7",
        ))
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="an LM config (data.task: lm)")
    source.add_argument("--checkpoint", help="an LM checkpoint or run directory: its config and tokenizer")
    p.add_argument("--order", nargs="+", default=["5"], metavar="ORDER", help="n-gram orders to measure (default 5)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="config overrides, with --config (anywhere on the line, after --order too)")
    args = p.parse_args(argv)
    orders, trailing = [], []
    for value in args.order:  # --order takes every word after it: the overrides among them are overrides
        if "=" in value:
            trailing.append(value)
            continue
        try:
            orders.append(int(value))
        except ValueError:
            p.error(f"argument --order: invalid int value: {value!r}")
    overrides = in_given_order([*args.overrides, *trailing], sys.argv[1:] if argv is None else list(argv))

    def run() -> int:
        from ..config import ConfigError, load_config
        from ..data.lm_data import prepare_lm_data
        from ..model.lm_scoring import bits_per_char, perplexity

        tok = None
        if args.checkpoint and overrides:
            raise ValueError(f"{overrides[0]}: overrides apply with --config; --checkpoint uses the run's own config "
                             "and tokenizer as they are (give --config RUN_DIR/config.yaml to change the config)")
        if args.checkpoint:
            from ..model.checkpoint import load_lm

            loaded = load_lm(args.checkpoint)
            cfg, tok = loaded.config, loaded.tok
        else:
            cfg = load_config(args.config, overrides)
        if cfg.data.task != "lm":
            raise ConfigError(f"{args.config}: data.task must be lm, got {cfg.data.task!r}")
        for order in orders:
            if not 1 <= order <= MAX_ORDER:
                raise ValueError(f"--order must be in [1, {MAX_ORDER}], got {order} (the counts of every order "
                                 f"up to it are held in memory: 1.8 GB at 12 for Multi30k's characters)")
        data = prepare_lm_data(cfg, tok)
        print(f"{cfg.data.path} ({cfg.data.tgt_lang}), {cfg.data.tokenizer} tokens, vocabulary {data.tok.vocab_size}")
        for order in orders:
            start = time.perf_counter()
            model = KneserNey(data.train.sentences, order, data.tok.vocab_size)
            row = [f"order {order}:"]
            for name, split in (("valid", data.valid), ("test", data.test)):
                nll = -sum(model.sentence_log_prob(s) for s in split.sentences)
                row.append(f"{name} ppl {perplexity(nll, split.tokens):.3f} bpc {bits_per_char(nll, split.chars):.4f}")
            print(" ".join(row) + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        return 0

    return run_command(run)


def in_given_order(overrides: list[str], argv: list[str]) -> list[str]:
    """``overrides`` in the order the command line gives them (a later one wins), whichever
    argument took them (the positionals, or ``--order``'s words)."""
    left = list(overrides)
    ordered = []
    skip = False
    for word in argv:
        if skip or word.startswith("-"):
            skip = word in ("--config", "--checkpoint") and not skip
            continue
        if word in left:
            left.remove(word)
            ordered.append(word)
    return ordered + left


if __name__ == "__main__":
    sys.exit(main())
