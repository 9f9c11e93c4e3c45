"""Data-parallel training for real: two CPU processes (gloo) started by torchrun.

The design (see seq2seq/runtime/distributed.py and batching.epoch_batches) makes a two-rank run with
``batch_size`` B take *the same steps* as one process with 2B: both cut the same global
batches, each rank trains on a fixed half of each, and the loss is normalised by the global
token count. So the per-step training loss, the gradient norm and the validation loss must
agree -- not bit for bit: each rank sums its half's token losses and the ranks' sums are then
added (and DDP averages the ranks' gradients), a different order of float32 additions than
one process's, which shows as ~1e-7 relative differences that compound over steps. We allow
1e-5; a wrong batch split changes the loss by ~1e-2, and a gradient missing the world-size
factor halves the gradient norm.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from seq2seq.model import checkpoint
from seq2seq.runtime import distributed

pytestmark = pytest.mark.smoke  # every test here trains or runs a command

ROOT = Path(__file__).resolve().parent.parent
STEPS = 12  # 360 training pairs in global batches of 64: 6 steps an epoch, 2 epochs
DDP = ("train.batch_size=32", "train.log_every=1")  # per rank; one process takes 64


def torchrun(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --nproc_per_node=2 --standalone ARGS``; on a timeout
    (a deadlock) the whole process group is killed, not just torchrun."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", *args]
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"torchrun did not finish in {timeout} s (deadlock?)\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def curve(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if key in r]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory, tiny_overrides: tuple[str, ...]) -> Path:
    """A finished two-rank run of the tiny dates config."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun("train.py", "--config", "configs/dates.yaml", "--out", str(out), *tiny_overrides, *DDP)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes of batch_size 32" in done.stdout
    return out


def test_two_ranks_take_the_steps_of_one_process_with_twice_the_batch(
        two_ranks: Path, tmp_path: Path, tiny_config: Any, metrics: Any) -> None:
    from seq2seq.training.trainer import train

    train(tiny_config("train.batch_size=64", "train.log_every=1"), tmp_path / "one")
    one, two = metrics(tmp_path / "one"), metrics(two_ranks)
    for key in ("train/loss", "train/grad_norm", "valid/loss"):
        a, b = curve(two, key), curve(one, key)
        assert [s for s, _ in a] == [s for s, _ in b], key
        for (step, x), (_, y) in zip(a, b):
            assert x == pytest.approx(y, rel=1e-5), f"{key} at step {step}: {x} (2 ranks) vs {y} (1 process)"
    assert [s for s, _ in curve(two, "train/loss")] == list(range(1, STEPS + 1))  # rank 0 alone logs: once a step
    assert [r["epoch"] for r in two if "valid/loss" in r] == [1, 2]
    tensors, _ = checkpoint.load_trainer(two_ranks / "last")
    assert "rng.torch" in tensors and "rng.torch.1" in tensors  # both ranks' generators, for resume
    checkpoint.load(two_ranks / "best")


def test_gradient_of_unequal_shards_and_a_signal_to_one_rank(
        two_ranks: Path, tmp_path: Path, metrics: Any, tiny_overrides: tuple[str, ...]) -> None:
    """(1) the loss normalisation: a step on unequal shards (2 and 21 target tokens) has one
    process's gradient (per-rank means averaged by DDP would weigh the 2 tokens like the 21);
    (2) a SIGTERM to rank 1 alone stops both ranks after the same step, rank 0 saves last/,
    nothing hangs; resuming on two ranks ends with the uninterrupted run's history."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ddp_worker import step_gradients

    out, grads, stop_at = tmp_path / "run", tmp_path / "grads.safetensors", 8  # epoch 2, its 2nd batch
    done = torchrun("tests/ddp_worker.py", str(grads), str(stop_at), "--config", "configs/dates.yaml",
                    "--out", str(out), *tiny_overrides, *DDP)
    want = step_gradients(distributed.SINGLE)
    got = load_file(str(grads))
    assert set(got) == set(want)
    for name, g in want.items():
        assert got[name].allclose(g, rtol=1e-5, atol=1e-7), name

    assert done.returncode != 0  # a rank ended by a signal is a failed run for torchrun
    assert f"SIGTERM: saved {out / 'last'} at step {stop_at}; continue with --resume" in done.stderr
    progress = json.loads((out / "last" / checkpoint.TRAINER_JSON).read_text())["progress"]
    assert (progress["step"], progress["epoch"], progress["batch_in_epoch"]) == (stop_at, 1, 2)

    resumed = torchrun("train.py", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records, reference = metrics(out), metrics(two_ranks)
    assert [s for s, _ in curve(records, "train/loss")] == list(range(1, STEPS + 1))  # nothing lost or twice
    for key in ("train/loss", "valid/loss"):
        for (step, x), (_, y) in zip(curve(records, key), curve(reference, key), strict=True):
            assert x == pytest.approx(y, rel=1e-6), f"{key} at step {step}"
