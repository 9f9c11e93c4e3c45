"""This toolkit's ``translate`` command (what ``translate.py ARGS`` runs), in this process, with
its calls of ``Translator.translate`` timed: the translation time with the model loaded
(tokenization, batching, search and detokenization; not the start-up or the checkpoint's loading).

    python docs/bench/peers/ours_translate.py [--profile TABLE.txt] TIMES.json [translate.py's arguments ...]

Writes ``{"translate_s", "calls", "threads", "status"}`` to TIMES.json. ``--profile`` runs the
translation (from the first ``Translator.translate`` call on) under ``torch.profiler`` and writes
its operators by self CPU time to TABLE.txt (the profiler's own cost is in ``translate_s`` then).
The process-wide settings are applied before torch loads, as ``python -m seq2seq`` does; the thread
governor is off, so the threads stay those of OMP_NUM_THREADS, as in the other toolkits' processes.
Any option the command has (another precision, a quantized model) is passed through unchanged.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

USAGE = "usage: ours_translate.py [--profile TABLE.txt] TIMES.json [translate.py's arguments ...]"


def main(argv: list[str]) -> int:
    table, rest = (Path(argv[1]), argv[2:]) if argv[:1] == ["--profile"] and len(argv) > 1 else (None, argv)
    if not rest or rest[0] == "--profile":
        print(USAGE, file=sys.stderr)
        return 2
    times, args = Path(rest[0]), rest[1:]
    for path in (times, table):
        if path is not None and not path.parent.is_dir():
            print(f"ours_translate.py: {path}: its folder does not exist", file=sys.stderr)
            return 2
    from seq2seq.runtime import tune

    tune()  # before torch loads, as the command line does (a second call inside is a no-op)
    import torch

    from seq2seq.__main__ import main as seq2seq_main
    from seq2seq.runtime import threads
    from seq2seq.translation.translator import Translator

    threads.shared().enabled = False
    seconds: list[float] = []
    translate = Translator.translate
    prof = None
    if table is not None:
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU])

    def timed(self: Translator, *a: Any, **k: Any) -> Any:
        if prof is not None and not seconds:
            prof.start()  # at the first call: the model's loading stays out of the table
        start = time.perf_counter()
        try:
            return translate(self, *a, **k)
        finally:
            seconds.append(time.perf_counter() - start)

    with mock.patch.object(Translator, "translate", timed):
        status = seq2seq_main(["translate", *args])
    if prof is not None and table is not None and seconds:
        prof.stop()
        table.write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25) + "\n")
    times.write_text(json.dumps({"translate_s": sum(seconds), "calls": len(seconds),
                                 "threads": torch.get_num_threads(), "status": status}))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
