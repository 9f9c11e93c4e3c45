"""A run directory's owner and its mid-epoch saves: one training process at a time per
``--out`` (a lock that a ``kill -9`` cannot leave stuck), ``train.save_every`` checkpoints
inside an epoch that resume exactly, and metric curves that a stop and ``--resume`` leave
equal to an uninterrupted run's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_training import curve, sigterm_at, trainer_state

from seq2seq.cli.train import main as train_main
from seq2seq.training import stepping
from seq2seq.training import trainer as training
from seq2seq.training.rundir import LOCK, RunDirError, lock_run_dir
from seq2seq.training.trainer import train

pytestmark = pytest.mark.smoke  # every test here trains or runs a command

ROOT = Path(__file__).resolve().parent.parent
# 1080 training pairs in 34 batches an epoch; records every 5 steps, so most stops fall inside a
# record's window; dropout, so that a resume must restore the random generators too.
LONG = ("data.size=1200", "train.batch_size=32", "train.epochs=2", "train.log_every=5",
        "train.valid_max_sentences=40", "model.dropout=0.1", "train.save_every_minutes=0")
STEPS_PER_EPOCH = 34


class Crash(Exception):
    """A process dying mid-step (``kill -9``, power loss): nothing after it runs."""


def crash_at(step: int, cfg: Any, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train until training step ``step`` raises: no signal handler, no save, no last record."""
    real, calls = stepping.train_step, []

    def step_then_crash(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == step:
            raise Crash
        return real(*args)

    monkeypatch.setattr(stepping, "train_step", step_then_crash)
    with pytest.raises(Crash):
        train(cfg, out)
    monkeypatch.setattr(stepping, "train_step", real)


def assert_same_records(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """The same records at the same steps, with the same training and validation numbers."""
    for key in ("train/loss", "train/grad_norm", "train/clipped_fraction", "valid/loss", "valid/bleu"):
        a, b = curve(got, key), curve(want, key)
        assert [s for s, _ in a] == [s for s, _ in b], key
        assert [x for _, x in a] == pytest.approx([y for _, y in b], rel=1e-6), key
    assert [r["step"] for r in got] == [r["step"] for r in want]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_config: Any, metrics: Any) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(tiny_config(*LONG), out)
    return metrics(out)


# --- item 10: a stop between records ----------------------------------------------------
def test_sigterm_between_records_then_resume_gives_the_same_records(
        tmp_path: Path, tiny_config: Any, metrics: Any, uninterrupted: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped at step 42 (records at 40 and 45): no partial record is written; last/ keeps
    the two steps of the record in progress, and the resumed run's record at 45 covers all five."""
    out = tmp_path / "run"
    sigterm_at(STEPS_PER_EPOCH + 8, tiny_config(*LONG), out, monkeypatch)
    assert max(s for s, _ in curve(metrics(out))) == 40
    window = trainer_state(out / "last")["progress"]["window"]
    assert window["steps"] == 2 and window["tokens"] > 0
    train(tiny_config(*LONG), out, resume=True)
    assert_same_records(metrics(out), uninterrupted)


def test_sigterm_on_a_record_step(tmp_path: Path, tiny_config: Any, metrics: Any,
                                  uninterrupted: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    sigterm_at(STEPS_PER_EPOCH + 11, tiny_config(*LONG), out, monkeypatch)  # step 45: a record was just made
    assert trainer_state(out / "last")["progress"]["window"]["steps"] == 0
    train(tiny_config(*LONG), out, resume=True)
    assert_same_records(metrics(out), uninterrupted)


# --- item 9: train.save_every --------------------------------------------------------------
def test_crash_loses_at_most_save_every_steps_and_resumes_exactly(
        tmp_path: Path, tiny_config: Any, metrics: Any, uninterrupted: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """save_every=7: a crash at step 47 (epoch 2, batch 13) finds last/ at step 42 (saved mid-epoch,
    mid-record); the resumed run's records, weights' effect included, equal the uninterrupted run's."""
    out, cfg = tmp_path / "run", tiny_config(*LONG, "train.save_every=7")
    crash_at(STEPS_PER_EPOCH + 13, cfg, out, monkeypatch)
    progress = trainer_state(out / "last")["progress"]
    assert (progress["epoch"], progress["batch_in_epoch"], progress["step"]) == (1, 8, 42)
    assert progress["window"]["steps"] == 2
    assert max(s for s, _ in curve(metrics(out))) == 45  # written before the crash; dropped on resume
    train(cfg, out, resume=True)
    assert_same_records(metrics(out), uninterrupted)


def test_without_save_every_a_crash_loses_the_epoch(tmp_path: Path, tiny_config: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The contrast that makes the test above mean something: off, last/ is the epoch's start."""
    out = tmp_path / "run"
    crash_at(STEPS_PER_EPOCH + 13, tiny_config(*LONG), out, monkeypatch)
    progress = trainer_state(out / "last")["progress"]
    assert (progress["batch_in_epoch"], progress["step"]) == (0, STEPS_PER_EPOCH)


@pytest.mark.parametrize(("overrides", "saves"), [
    (("train.save_every_minutes=0",), 2),  # the two epoch ends only
    (("train.save_every_minutes=1e-9",), 4),  # + each record (log_every=2) inside an epoch: steps 2 and 4
    (("train.save_every_minutes=0", "train.save_every=2"), 4),  # steps 2 and 4 (step 3 and 6 end an epoch)
])
def test_save_every_minutes_and_steps(overrides: tuple[str, ...], saves: int, tmp_path: Path,
                                      tiny_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """TINY has 3 batches an epoch, 2 epochs and a record every 2 steps; count the writes of last/."""
    real, steps = training.save_last, []

    def counting(*args: Any, **kwargs: Any) -> None:
        steps.append(args[5].step)  # progress
        real(*args, **kwargs)

    monkeypatch.setattr(training, "save_last", counting)
    train(tiny_config(*overrides), tmp_path / "run")
    assert len(steps) == saves, steps


def test_save_every_is_checked(tiny_config: Any) -> None:
    from seq2seq.config import ConfigError

    for bad in ("train.save_every=-1", "train.save_every_minutes=-1", "train.save_every_minutes=nan"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            tiny_config(bad)


# --- item 4: one process per run directory --------------------------------------------------
HOLD = ("import sys, time; from pathlib import Path; from seq2seq.training.rundir import lock_run_dir\n"
        "with lock_run_dir(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(120)\n")


def test_a_second_training_is_refused_naming_the_holder(tmp_path: Path, tiny_overrides: tuple[str, ...],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Another process holds the run directory: train.py (plain, --resume, --overwrite) gets one
    line with its pid and changes nothing; once it is killed with -9, the next run starts."""
    out = tmp_path / "run"
    args = ["--config", "configs/dates.yaml", "--out", str(out), *tiny_overrides]
    assert train_main(args) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert LOCK not in before  # released and removed at the end of the run

    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        for extra in ([], ["--resume", "train.epochs=3"], ["--overwrite"]):
            assert train_main([*args, *extra]) == 1
            err = capsys.readouterr().err.strip()
            assert err == (f"error: {out}: in use by another training process (pid {holder.pid}); "
                           "wait for it to end, or choose another --out"), err
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != LOCK} == before
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert (out / LOCK).read_text().strip() == str(holder.pid)  # the stale file a kill -9 leaves
    assert train_main([*args, "--resume", "train.epochs=3"]) == 0  # blocks nothing
    assert not (out / LOCK).exists()


def test_the_lock_in_one_process(tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"
    with lock_run_dir(out):  # makes the directory
        assert (out / LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"), lock_run_dir(out):
            pass
    with lock_run_dir(out):  # released: free again
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="not writable"), lock_run_dir(tmp_path / "file"):
        pass


def test_two_real_trainings_into_one_directory(tmp_path: Path, tiny_overrides: tuple[str, ...]) -> None:
    """Two train.py processes started together: one trains, the other exits 1 with one line."""
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "train.py", "--config", "configs/dates.yaml", "--out", str(out), *tiny_overrides,
           "--overwrite"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    if codes == [0, 0]:  # the first finished before the second looked: no overlap to test this time
        pytest.skip("the two runs did not overlap")
    assert codes == [0, 1], results
    err = next(e for code, e in results if code == 1).strip()
    assert err.startswith("error: ") and "in use by another training process (pid " in err and "\n" not in err
