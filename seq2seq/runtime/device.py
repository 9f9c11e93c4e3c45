"""Where the model runs: the device, bf16 autocast, and CPU threads.

``train.bf16`` is ``auto`` (bf16 autocast on CUDA, and on a CPU that has native bf16
arithmetic: AVX512-BF16 or AMX-BF16), ``true`` (always, emulated where the CPU has no bf16
units, which is slow) or ``false`` (fp32). Under autocast the matrix products and the RNN
run in bf16; the loss, softmax and the optimizer's master weights stay fp32.

Threads: how OpenMP threads wait between the step's many short parallel regions, and how
many to use when another process holds a core, are :mod:`seq2seq.runtime.threads`'s concern.
"""

from __future__ import annotations

import functools
import platform
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch


class DeviceError(RuntimeError):
    """A device was asked for that this machine does not have (one line)."""


def select_device(name: str, what: str = "train.device") -> torch.device:
    """``auto`` -> CUDA when there is one, else the CPU; ``cuda`` without CUDA is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        asked = f"{what} cuda was asked for" if what.startswith("--") else f"{what} is 'cuda'"
        raise DeviceError(f"{asked} but CUDA is not available on this machine")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line's value in ``/proc/cpuinfo`` (None where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return next((line.split(":", 1)[-1].strip() for line in text.splitlines() if line.startswith(field)), None)


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The bf16 instruction sets this CPU has, from ``/proc/cpuinfo`` (empty where unknown)."""
    flags = set((_cpuinfo("flags") or "").split())
    return tuple(f for f in ("amx_bf16", "avx512_bf16") if f in flags)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (oneDNN's own check where it has one)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        native = bool(check()) if check is not None else False
    except RuntimeError:  # pragma: no cover - a build without oneDNN
        native = False
    return native and bool(cpu_bf16_flags())


def use_bf16(setting: Any, device: torch.device) -> bool:
    """Resolve ``train.bf16`` (``"auto"``, True or False) for ``device``."""
    if setting == "auto":
        if device.type == "cuda":
            return torch.cuda.is_bf16_supported()
        return device.type == "cpu" and cpu_has_bf16()
    return bool(setting) and device.type in ("cuda", "cpu")


def autocast(setting: Any, device: torch.device, cache: bool = True) -> AbstractContextManager[Any]:
    """The autocast context that ``train.bf16`` asks for on ``device`` (a no-op for fp32).
    ``cache=False``: no cache of weights cast to bf16, as a CUDA graph capture needs."""
    if use_bf16(setting, device):
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


def describe(setting: Any, device: torch.device) -> str:
    """``"bf16 autocast (avx512_bf16)"`` or ``"fp32"``: for the training log."""
    if not use_bf16(setting, device):
        return "fp32"
    if device.type == "cpu":
        flags = cpu_bf16_flags()
        return f"bf16 autocast ({', '.join(flags) if flags else 'emulated: no bf16 units'})"
    return "bf16 autocast"
