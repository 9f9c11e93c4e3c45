"""What the bench and the GPU check measure with: device clocks, peak memory, the machine.

A timed block syncs CUDA at both ends (:func:`timed`), so that it counts the kernels it
queued. Peak memory (:func:`peak_memory_mib`) is ``torch.cuda.max_memory_allocated`` on CUDA;
on the CPU, the process's peak RSS (``resource.getrusage``), whose high-water mark
:func:`reset_peak_memory` resets (Linux ``/proc/self/clear_refs``); it includes the
interpreter and libraries (about 0.4 GB).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..runtime import malloc
from ..runtime.device import cpu_name


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Clock:
    seconds: float = 0.0  # set when the timed block ends


@contextlib.contextmanager
def timed(device: torch.device) -> Iterator[Clock]:
    """``with timed(device) as clock:`` -> ``clock.seconds``, the block's wall time, the device
    synced before it starts and before it stops."""
    clock = Clock()
    sync(device)
    start = time.perf_counter()
    yield clock
    sync(device)
    clock.seconds = time.perf_counter() - start


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak-memory window; ``False`` where the CPU's high-water mark cannot be reset.

    On the CPU, memory that the previous phase freed but the C allocator kept would count
    towards this phase's peak, so it is first handed back to the system (glibc ``malloc_trim``).
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    try:  # Linux: "5" resets the peak RSS to the current RSS (proc(5), clear_refs)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                "cuda": torch.version.cuda, "cpu_threads": torch.get_num_threads()}
    return {"type": "cpu", "name": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "omp_wait": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},  # how threads wait
            "malloc": malloc.applied}  # glibc's allocator, as seq2seq/runtime/malloc.py set it (None: left alone)
