"""One entry for every command: ``python -m seq2seq <command> [args]`` (also ``seq2seq``).

``python -m seq2seq --help`` lists the commands; ``python -m seq2seq <command> --help`` gives
a command's options. A command's module is imported only when that command runs, so this
stays light. ``train.py``, ``translate.py`` and the ``seq2seq-*`` console scripts come here too.
Before a command's module loads (and torch with it), :func:`seq2seq.runtime.tune` applies the
run's process-wide settings: the library itself changes nothing when imported.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

Main = Callable[[Sequence[str] | None], int]

COMMANDS = {  # name: one line on what it does
    "train": "train an encoder-decoder RNN translator, or an RNN language model (as train.py)",
    "translate": "translate one sentence per line, stdin to stdout by default (as translate.py)",
    "evaluate": "translate a test set and score it: BLEU, chrF, exact match, BLEU by source length",
    "download": "fetch a public corpus (Multi30k) into data/, each file checked",
    "prepare": "tokenize a corpus once into a store that training streams from",
    "sweep": "train the variants of a sweep file and compare them",
    "bench": "benchmark training tokens/s, time to a quality threshold, decoding, peak memory",
    "plots": "plots: the encoder's hidden state, an attention heatmap, BLEU by length of several models",
    "results": "score a finished run (valid and test, greedy and beam) into a results JSON",
    "average": "average the weights of a run's last epoch checkpoints (or of any checkpoints) into one",
    "serve": "serve a checkpoint over HTTP: a translation API with dynamic batching, and a demo page",
    "gpu_check": "the prepared GPU check: tests, throughput, the Multi30k recipe and decoding, one report",
    "generate": "sample text from an RNN language model (data.task: lm), or score a file with it",
    "ngram": "a Kneser-Ney n-gram baseline on a language model's text: valid and test perplexity",
}


# where each command's main lives ("module:function"), imported only when it runs
ENTRIES = {"train": "cli.train:main", "translate": "cli.translate:main",
           "evaluate": "cli.evaluate:main", "download": "tools.download:main",
           "prepare": "tools.prepare:main", "sweep": "tools.sweep.command:main",
           "bench": "tools.bench.command:main", "plots": "tools.plots:main", "results": "tools.results:main",
           "average": "tools.average:main", "serve": "serve.server:main",
           "gpu_check": "tools.gpu_check.command:main", "generate": "cli.generate:main", "ngram": "tools.ngram:main"}


def command_main(name: str) -> Main:
    """The ``main`` of command ``name``, its module imported now."""
    module, function = ENTRIES[name].split(":")
    main: Main = getattr(importlib.import_module(f".{module}", __package__ or "seq2seq"), function)
    return main


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m seq2seq <command> [args]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "python -m seq2seq <command> --help gives a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return dispatch(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # the reader went away (``--help | head -1``): stop quietly, as run_command does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more reaches the closed pipe
        return 0


def dispatch(args: list[str]) -> int:
    """``--help``, or the command ``args[0]`` with the rest of ``args``."""
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
    from .runtime import tune

    tune()  # before the command's module loads torch
    return command_main(name)(rest)


def script(name: str) -> Callable[[], int]:
    """A console script's entry: command ``name`` with the script's arguments."""
    return lambda: main([name, *sys.argv[1:]])


train, translate, evaluate, generate, prepare, sweep = map(script, ("train", "translate", "evaluate", "generate",
                                                                   "prepare", "sweep"))

if __name__ == "__main__":
    sys.exit(main())
