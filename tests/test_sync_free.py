"""Sync-free steps (``train.sync_free``): on CUDA a host sync per step stalls the
launch queue, so NaN/inf steps are skipped on the device by the fused Adam kernel and counted
at each metrics record. The same code runs on the CPU (fused Adam takes ``found_inf`` there
too), so every property is tested here against the synchronous path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_reliability import poison_training_loss

from seq2seq.config import ConfigError
from seq2seq.model import checkpoint
from seq2seq.training.loop import DivergedError
from seq2seq.training.trainer import train

pytestmark = pytest.mark.smoke


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(ckpt).model.state_dict()


def records(metrics: Any, run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["train/loss"]) for r in metrics(run) if "train/loss" in r]


def test_without_nan_the_two_paths_train_alike(tmp_path: Path, tiny_config: Any, metrics: Any) -> None:
    train(tiny_config("train.sync_free=false", "model.dropout=0.1"), tmp_path / "sync")
    train(tiny_config("train.sync_free=true", "model.dropout=0.1"), tmp_path / "free")
    assert records(metrics, tmp_path / "free") == records(metrics, tmp_path / "sync")  # exact, fp32 CPU
    a, b = weights(tmp_path / "sync" / "last"), weights(tmp_path / "free" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_steps_are_skipped_on_the_device_and_counted_at_the_records(
        tmp_path: Path, tiny_config: Any, metrics: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Batches 2 and 4 of 6 poisoned: the weights end as the synchronous run's (which never
    launched those steps); the skipped count is exact; a skipped step still counts as a step
    (the host does not know at once), so records fall on batches, not on taken steps."""
    poison_training_loss(monkeypatch, {2, 4})
    sync = train(tiny_config("train.max_bad_steps=2", "train.log_every=2", "train.sync_free=false"),
                 tmp_path / "sync")
    poison_training_loss(monkeypatch, {2, 4})
    free = train(tiny_config("train.max_bad_steps=2", "train.log_every=2", "train.sync_free=true"),
                 tmp_path / "free")
    assert (sync["step"], sync["skipped_steps"]) == (4, 2)
    assert (free["step"], free["skipped_steps"]) == (6, 2)
    a, b = weights(tmp_path / "sync" / "last"), weights(tmp_path / "free" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)  # Adam's skipped steps left no trace
    got = metrics(tmp_path / "free")
    assert [r["train/skipped_steps"] for r in got if "valid/loss" in r] == [1, 2]
    assert all(torch.isfinite(torch.tensor(x)) for _, x in records(metrics, tmp_path / "free"))
    assert "warning: 1 steps with a non-finite loss or gradient up to step 2; skipped" in capsys.readouterr().err


def test_max_bad_steps_in_a_row_stop_the_run_at_the_record(tmp_path: Path, tiny_config: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    poison_training_loss(monkeypatch, {2, 3})  # two in a row, within one record of 4 steps
    with pytest.raises(DivergedError, match="NaN/inf for 2 steps in a row"):
        train(tiny_config("train.max_bad_steps=2", "train.log_every=4", "train.sync_free=true"), tmp_path / "a")
    poison_training_loss(monkeypatch, {2, 4})  # two, not in a row: no stop
    summary = train(tiny_config("train.max_bad_steps=2", "train.log_every=4", "train.sync_free=true"),
                    tmp_path / "b")
    assert summary["skipped_steps"] == 2
    poison_training_loss(monkeypatch, {3, 4})  # in a row across two records (log_every=3)
    with pytest.raises(DivergedError, match="NaN/inf for 2 steps in a row"):
        train(tiny_config("train.max_bad_steps=2", "train.log_every=3", "train.sync_free=true"), tmp_path / "c")


def test_sync_free_needs_adam(tiny_config: Any) -> None:
    """Refused with the config, before any data is read."""
    with pytest.raises(ConfigError, match="train.sync_free: true needs train.optimizer: adam"):
        tiny_config("train.sync_free=true", "train.optimizer=sgd")


def test_sigterm_and_resume_give_the_same_records(tmp_path: Path, tiny_config: Any, metrics: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A stop between records settles the pending counts into last/; the resumed run's records
    equal an uninterrupted run's, as on the synchronous path (test_run_lock_and_saves.py)."""
    from test_run_lock_and_saves import LONG, STEPS_PER_EPOCH
    from test_training import sigterm_at

    cfg = tiny_config(*LONG, "train.sync_free=true")
    train(cfg, tmp_path / "whole")
    sigterm_at(STEPS_PER_EPOCH + 8, cfg, tmp_path / "split", monkeypatch)
    train(cfg, tmp_path / "split", resume=True)
    assert records(metrics, tmp_path / "split") == records(metrics, tmp_path / "whole")
