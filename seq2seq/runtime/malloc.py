"""glibc's allocator, tuned for training: large blocks are reused, not handed back.

A training step allocates and frees the same large tensors every step (activations, their
gradients, the logits). glibc's ``malloc`` serves blocks over a threshold (128 KiB, raised as
they are freed, to at most 32 MiB) with fresh ``mmap`` pages, and returns free memory at the
heap's top to the system past another threshold. Either way the next step's blocks are new
pages, and the first write to each page is a page fault: on a 2-core Zen 5 (AMD EPYC),
zero-fills took 21% of the peeky Multi30k step in the profiler (20 ms for 21 MB), and 200
training steps spent 15.7 s in the kernel (6.7 s tuned). :func:`tune`, called by
:func:`seq2seq.runtime.tune` where a command starts, keeps blocks of up to 32 MiB in the
heap and lets up to 2 GiB of free memory stay there for reuse: the process keeps what it
took at its peak (as PyTorch's CUDA allocator does) instead of faulting it in again each step.

Left alone with ``SEQ2SEQ_MALLOC=0`` in the environment (any value but 0 or 1 is said on stderr
and also leaves it alone), where the environment already tunes
``malloc`` (any ``MALLOC_*_`` variable below, or ``glibc.malloc`` in ``GLIBC_TUNABLES``), and
where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h>
SETTINGS = {  # mallopt parameter -> value; its environment variable
    M_MMAP_THRESHOLD: (32 * 2**20, "MALLOC_MMAP_THRESHOLD_"),  # glibc's largest: blocks up to 32 MiB from the heap
    M_TRIM_THRESHOLD: (2**31 - 1, "MALLOC_TRIM_THRESHOLD_"),  # mallopt takes an int: keep up to 2 GiB free
    M_TOP_PAD: (64 * 2**20, "MALLOC_TOP_PAD_"),  # grow the heap 64 MiB at a time
}
ENV_VARS = (*(name for _, name in SETTINGS.values()), "MALLOC_MMAP_MAX_")


def environment_tunes_malloc(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment says how glibc's malloc behaves (``SEQ2SEQ_MALLOC`` other than 1: as glibc would)."""
    return (environ.get("SEQ2SEQ_MALLOC", "1") != "1" or any(name in environ for name in ENV_VARS)
            or "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""))


applied: dict[str, int] | None = None  # what :func:`tune` set, by environment variable name


def glibc() -> bool:
    """Whether the C library is glibc."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr, or no such name: not glibc
        return False


def tune() -> dict[str, int] | None:
    """Apply :data:`SETTINGS` with ``mallopt`` -> what was set (also kept in :data:`applied`),
    or None where left alone."""
    global applied
    choice = os.environ.get("SEQ2SEQ_MALLOC", "1")
    if choice not in ("0", "1"):
        print(f"seq2seq: SEQ2SEQ_MALLOC must be 0 or 1, got {choice[:40]!r}: glibc's malloc left as it is",
              file=sys.stderr)
    if not glibc() or environment_tunes_malloc():
        return None
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = {name: value for param, (value, name) in SETTINGS.items() if mallopt(param, value) == 1}  # 1: set
    return applied
