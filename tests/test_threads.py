"""The thread governor (seq2seq/runtime/threads.py): fewer threads while other processes take a core."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seq2seq.runtime.threads import ThreadGovernor, _cpu_ticks


class Machine:
    """A fake /proc/stat, clock and own CPU time: ``run(seconds, others, own)`` advances them."""

    def __init__(self, tmp_path: Path, cpus: int) -> None:
        self.path, self.cpus = tmp_path / "stat", cpus
        self.now = self.own = 0.0
        self.busy = [0] * cpus  # ticks (100 a second)
        self.write()

    def write(self) -> None:
        total = sum(self.busy)
        lines = [f"cpu  {total} 0 0 999 0 0 0 0 0 0"]
        lines += [f"cpu{i} {b} 0 0 999 5 0 0 0 0 0" for i, b in enumerate(self.busy)]
        self.path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 5"]) + "\n")

    def run(self, seconds: float, others: float, own: float) -> None:
        """``others`` and ``own`` cores busy for ``seconds`` (spread over the CPUs)."""
        ticks = round((others + own) * seconds * 100)
        for i in range(ticks):
            self.busy[i % self.cpus] += 1
        self.now += seconds
        self.own += own * seconds
        self.write()


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def governor(machine: Machine, monkeypatch: pytest.MonkeyPatch, threads: int, lines: list[str]) -> ThreadGovernor:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(machine.cpus)))
    torch.set_num_threads(threads)
    return ThreadGovernor(2.0, say=lines.append, stat=machine.path, clock=lambda: machine.now,
                          own=lambda: machine.own)


def test_cpu_ticks_reads_the_allowed_cpus_busy_time(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9\ncpu0 1 2 3 100 7 4 5 6 0 0\n"
                    "cpu1 10 0 0 100 0 0 0 0\ncpu2 50 0 0 1 0 0 0 0\n")
    assert _cpu_ticks({0, 1}, stat) == 1 + 2 + 3 + 4 + 5 + 6 + 10  # not idle (100), not iowait (7); steal counts
    assert _cpu_ticks({2}, stat) == 50
    assert _cpu_ticks({7}, stat) is None
    assert _cpu_ticks({0}, tmp_path / "missing") is None


def test_fewer_threads_while_another_process_takes_a_core_and_all_again_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: None) -> None:
    machine, lines = Machine(tmp_path, 2), list[str]()
    gov = governor(machine, monkeypatch, 2, lines)
    assert gov.active and gov.threads == 2
    machine.run(1.0, others=1.0, own=1.0)
    assert gov.tick() == 2  # not yet: measured every 2 s
    machine.run(1.5, others=0.9, own=1.1)
    assert gov.tick() == 1 and torch.get_num_threads() == 1
    assert lines == ["threads: 2 -> 1 (other processes are using 0.9 of 2 CPUs)"]
    machine.run(2.5, others=0.3, own=1.0)  # in the band: stays
    assert gov.tick() == 1
    machine.run(2.5, others=0.1, own=1.0)
    assert gov.tick() == 2 and torch.get_num_threads() == 2
    assert lines[-1] == "threads: 1 -> 2 (other processes now use 0.1 of 2 CPUs)"
    machine.run(2.5, others=0.3, own=1.6)  # in the band: stays
    assert gov.tick() == 2
    assert len(lines) == 2  # one line a change


def test_a_busy_machine_with_cpus_to_spare_keeps_the_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: None) -> None:
    machine, lines = Machine(tmp_path, 16), list[str]()
    gov = governor(machine, monkeypatch, 2, lines)
    machine.run(3.0, others=10.0, own=2.0)
    assert gov.tick() == 2
    machine.run(3.0, others=15.2, own=0.8)  # all but 0.8 of a CPU taken
    assert gov.tick() == 1
    assert lines == ["threads: 2 -> 1 (other processes are using 15.2 of 16 CPUs)"]
    machine.run(3.0, others=13.0, own=1.0)
    assert gov.tick() == 2  # up to the threads it started with, no more


def test_one_thread_or_no_proc_stat_leaves_the_threads_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: None) -> None:
    machine, lines = Machine(tmp_path, 2), list[str]()
    assert not governor(machine, monkeypatch, 1, lines).active
    gov = governor(machine, monkeypatch, 2, lines)
    machine.path.unlink()
    gov = ThreadGovernor(2.0, stat=machine.path, clock=lambda: machine.now, own=lambda: machine.own)
    assert not gov.active
    machine.run(3.0, others=2.0, own=0.0)
    assert gov.tick() == 2 and torch.get_num_threads() == 2


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2
                    or not Path("/proc/stat").exists(), reason="needs Linux and 2 CPUs")
def test_a_real_busy_process_is_seen(threads: None) -> None:
    """Against the real /proc/stat: a busy child process on a CPU of ours takes threads away."""
    cpus = sorted(os.sched_getaffinity(0))
    torch.set_num_threads(len(cpus))
    gov = ThreadGovernor(0.5)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the child starts
        gov.tick()
        gov._last = gov._sample()
        time.sleep(0.6)
        assert gov.tick() < len(cpus)
    finally:
        busy.kill()
        busy.wait()


def test_threads_set_by_someone_else_become_the_most_and_the_governor_is_shared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: None) -> None:
    from seq2seq.runtime import threads as threads_module

    machine = Machine(tmp_path, 2)
    gov = governor(machine, monkeypatch, 2, list[str]())
    torch.set_num_threads(1)  # e.g. a sweep worker's share
    machine.run(3.0, others=0.0, own=1.0)
    assert gov.tick() == 1 and gov.max_threads == 1 and not gov.active  # not raised back to 2
    torch.set_num_threads(2)
    assert gov.tick() == 2 and gov.max_threads == 2 and gov.active
    monkeypatch.setattr(threads_module, "_SHARED", None)
    assert threads_module.shared() is threads_module.shared()


def test_adapt_threads_false_stops_the_shared_governor_for_the_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: None) -> None:
    """``train.adapt_threads: false`` also holds for validation's translations, which tick the
    process's shared governor."""
    from seq2seq.runtime import threads as threads_module

    machine, lines = Machine(tmp_path, 2), list[str]()
    gov = governor(machine, monkeypatch, 2, lines)
    monkeypatch.setattr(threads_module, "_SHARED", gov)
    assert threads_module.for_training(False) is None and not gov.enabled
    machine.run(3.0, others=1.0, own=1.0)
    assert threads_module.shared().tick() == 2 and torch.get_num_threads() == 2 and not lines
    assert threads_module.for_training(True) is gov and gov.enabled
    machine.run(3.0, others=1.0, own=1.0)
    assert gov.tick() == 1
