"""One entry for every command: ``python -m seq2seq <command> [args]`` (also ``seq2seq``).

``python -m seq2seq --help`` lists the commands; ``python -m seq2seq <command> --help`` gives
a command's options. A command's module is imported only when that command runs, so this
stays light. The older forms work as before: ``train.py``, ``translate.py``,
``python -m seq2seq.<module>`` and the ``seq2seq-*`` console scripts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

Main = Callable[[Sequence[str] | None], int]

COMMANDS = {  # name: one line on what it does
    "train": "train an encoder-decoder RNN translator (as train.py)",
    "translate": "translate one sentence per line, stdin to stdout by default (as translate.py)",
    "evaluate": "translate a test set and score it: BLEU, chrF, exact match, BLEU by source length",
    "download": "fetch a public corpus (Multi30k) into data/, each file checked",
    "prepare": "tokenize a corpus once into a store that training streams from",
    "sweep": "train the variants of a sweep file and compare them",
    "bench": "benchmark training tokens/s, time to a quality threshold, decoding, peak memory",
    "plots": "plots: the encoder's hidden state, an attention heatmap, BLEU by length of several models",
    "results": "score a finished run (valid and test, greedy and beam) into a results JSON",
}


def command_main(name: str) -> Main:
    """The ``main`` of command ``name``, its module imported now."""
    if name == "train":
        from .cli import train_main

        return train_main
    if name == "translate":
        from .cli import translate_main

        return translate_main
    if name == "evaluate":
        from .evaluation import main as evaluate_main

        return evaluate_main
    if name == "download":
        from .download import main as download_main

        return download_main
    if name == "prepare":
        from .prepare import main as prepare_main

        return prepare_main
    if name == "sweep":
        from .sweep import main as sweep_main

        return sweep_main
    if name == "bench":
        from .bench import main as bench_main

        return bench_main
    if name == "results":
        from .results import main as results_main

        return results_main
    if name == "plots":
        from .plots import main as plots_main

        return plots_main
    raise KeyError(name)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m seq2seq <command> [args]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "python -m seq2seq <command> --help gives a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; the commands: {', '.join(COMMANDS)} "
              "(python -m seq2seq --help)", file=sys.stderr)
        return 2
    return command_main(name)(rest)


if __name__ == "__main__":
    sys.exit(main())
