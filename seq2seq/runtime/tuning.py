"""Process-wide settings for a run, applied by :func:`tune` where a command starts.

Two settings make this toolkit's CPU steps fast, and both act on the whole process, so a
library import makes neither: a notebook or another program that imports :mod:`seq2seq` keeps
its own environment and allocator. The commands call :func:`tune` before torch loads.

* OpenMP threads that wait spin briefly, then sleep (``GOMP_SPINCOUNT=20000``), unless the
  environment already says how they wait (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``). libgomp
  reads it when torch loads, so it must be set first. Fast on an idle machine; on a busy one
  the training loops use fewer threads (:mod:`seq2seq.runtime.threads`).
* glibc's allocator keeps large blocks for reuse (:mod:`seq2seq.runtime.malloc`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from . import malloc

SPINCOUNT = "20000"
_tuned: dict[str, Any] | None = None


def tune() -> dict[str, Any]:
    """Apply the run's process-wide settings (once; later calls return the first result) -> what was set:
    ``GOMP_SPINCOUNT`` (None where left alone, or where torch had already loaded) and ``malloc``
    (:func:`seq2seq.runtime.malloc.tune`'s result)."""
    global _tuned
    if _tuned is None:
        spin = None
        if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ and "torch" not in sys.modules:
            os.environ["GOMP_SPINCOUNT"] = spin = SPINCOUNT
        _tuned = {"GOMP_SPINCOUNT": spin, "malloc": malloc.tune()}
    return _tuned
