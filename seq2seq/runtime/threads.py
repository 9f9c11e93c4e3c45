"""CPU threads that are fast on an idle machine and do not collapse on a busy one.

An RNN training step on the CPU is thousands of short parallel regions (a matrix product or
an elementwise op each). Between them the OpenMP threads wait, and how they wait decides the
speed (2-core Zen 5, the Multi30k recipe's bf16 step; docs/training.md, "Threads"):

* Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) costs a wake-up per region: on the idle
  machine two threads ran at 3,665 target tokens/s, one at 3,130.
* Spinning a little first (libgomp's ``GOMP_SPINCOUNT``, which :func:`seq2seq.runtime.tune`
  sets where a command starts, when neither it nor ``OMP_WAIT_POLICY`` is in the environment) ran at 4,911.
* But when another process holds a core, two spinning threads ran at 1,605, one thread at
  2,846: each region waits for the thread that is off its core.

So a :class:`ThreadGovernor`, ticked after each training step, watches how much CPU time
*other* processes take on the CPUs this process may run on (``/proc/stat`` for those CPUs,
less this process's own time), and uses fewer threads while they take a core, and all of them
again when it is free. Linux only; elsewhere it leaves the threads alone.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _cpu_ticks(cpus: set[int], stat: Path) -> int | None:
    """Busy clock ticks (all but idle and iowait; steal too: a hypervisor's other guests) summed
    over ``cpus``, from ``stat`` (``/proc/stat``); None where it cannot be read."""
    try:
        lines = stat.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    busy, seen = 0, 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        fields = [int(x) for x in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        busy += sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
        seen += 1
    return busy if seen else None


def _own_seconds() -> float:
    """CPU seconds this process has used (all its threads)."""
    t = os.times()
    return t.user + t.system


class ThreadGovernor:
    """Sets ``torch.set_num_threads`` from what other processes leave free.

    Every ``interval`` seconds (at a :meth:`tick`), other processes' use of this process's CPUs
    is measured over the interval, in cores: ``others``; ``free = cpus - others``. Threads go
    down to ``floor(free + 0.35)`` at once, and up only to ``floor(free + 0.2)`` (a band, so a
    brief job does not make it swing), between 1 and the threads it started with. On 2 CPUs:
    one thread once others take more than 0.35 of a CPU, two again below 0.2. (A busy loop
    beside two of our threads got 0.5 of a CPU in ``docs/bench/threads_cpu``.)
    """

    def __init__(self, interval: float = 2.0, *, say: Callable[[str], None] | None = None,
                 stat: Path = Path("/proc/stat"), clock: Callable[[], float] = time.monotonic,
                 own: Callable[[], float] = _own_seconds) -> None:
        self.max_threads = torch.get_num_threads()
        self.threads = self.max_threads
        self.interval, self.say, self.stat, self.clock, self.own = interval, say, stat, clock, own
        self.cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.enabled = True  # train.adapt_threads: false turns it off for the whole process
        self._last = self._sample()
        self.active = self.max_threads > 1 and self._last is not None

    def _sample(self) -> tuple[float, int, float] | None:
        ticks = _cpu_ticks(self.cpus, self.stat) if self.cpus else None
        return None if ticks is None else (self.clock(), ticks, self.own())

    def tick(self) -> int:
        """After a step: every ``interval`` seconds, measure and set the thread count. -> threads."""
        if torch.get_num_threads() != self.threads:  # set by someone else (a sweep worker): that is the most now
            self.max_threads = self.threads = torch.get_num_threads()
            self.active = self.max_threads > 1 and self._last is not None
        if not (self.enabled and self.active) or self.clock() - self._last[0] < self.interval:  # type: ignore[index]
            return self.threads
        now = self._sample()
        if now is None:
            self.active = False
            return self.threads
        (t0, ticks0, own0), (t1, ticks1, own1) = self._last, now  # type: ignore[misc]
        self._last = now
        others = max(0.0, (ticks1 - ticks0) / self.hz - (own1 - own0)) / max(t1 - t0, 1e-9)
        self.decide(others)
        return self.threads

    def decide(self, others: float) -> None:
        """Set the threads for ``others`` cores taken by other processes."""
        free = len(self.cpus) - others
        want = self.threads
        if self.threads > math.floor(free + 0.35):
            want = math.floor(free + 0.35)
        elif self.threads < math.floor(free + 0.2):
            want = math.floor(free + 0.2)
        want = max(1, min(self.max_threads, want))
        if want != self.threads:
            if self.say is not None:
                why = "other processes are using" if want < self.threads else "other processes now use"
                self.say(f"threads: {self.threads} -> {want} ({why} {others:.1f} of {len(self.cpus)} CPUs)")
            torch.set_num_threads(want)
            self.threads = want


_SHARED: ThreadGovernor | None = None


def shared() -> ThreadGovernor:
    """The process's governor, made at first use, for whatever runs on the CPU in it (training,
    validation, translation, the server); it says what it does on stderr."""
    global _SHARED
    if _SHARED is None:
        _SHARED = ThreadGovernor(say=lambda line: print(line, file=sys.stderr, flush=True))
    return _SHARED


def for_training(adapt: bool) -> ThreadGovernor | None:
    """A training run's governor (``train.adapt_threads``): the shared one, switched on or off
    for the process (validation's translations tick it too), or None when off."""
    governor = shared()
    governor.enabled = adapt
    return governor if adapt else None
