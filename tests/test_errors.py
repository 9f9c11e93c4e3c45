"""seq2seq.cli.errors: a user error ends a command with one line and exit status 1."""

from __future__ import annotations

import argparse

import pytest

from seq2seq.cli.errors import check_positive, run_command
from seq2seq.config import ConfigError
from seq2seq.training.loop import TrainError


def _raise(e: BaseException) -> int:
    raise e


def test_a_user_error_is_one_line_and_exit_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(lambda: _raise(ConfigError("a.b: bad\nmore detail"))) == 1
    assert capsys.readouterr().err == "error: a.b: bad\n"
    assert run_command(lambda: _raise(FileNotFoundError(2, "No such file or directory", "x.yaml"))) == 1
    assert capsys.readouterr().err == "error: x.yaml: No such file or directory\n"
    assert run_command(lambda: _raise(ValueError())) == 1
    assert capsys.readouterr().err == "error: ValueError\n"
    assert run_command(lambda: 0) == 0
    assert run_command(lambda: _raise(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert run_command(lambda: _raise(BrokenPipeError())) == 0


def test_extra_errors_eager_or_lazy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TrainError):  # not a user error unless the command says so
        run_command(lambda: _raise(TrainError("diverged")))
    assert run_command(lambda: _raise(TrainError("diverged")), (TrainError,)) == 1
    assert run_command(lambda: _raise(TrainError("diverged")), lambda: (TrainError,)) == 1
    assert capsys.readouterr().err == "error: diverged\n" * 2
    with pytest.raises(RuntimeError):  # a bug stays a traceback
        run_command(lambda: _raise(RuntimeError("bug")), (TrainError,))


def test_check_positive() -> None:
    check_positive(argparse.Namespace(beam=None, batch_size=1), "beam", "batch_size")
    with pytest.raises(ValueError, match="^--batch-size must be >= 1, got 0$"):
        check_positive(argparse.Namespace(beam=2, batch_size=0), "beam", "batch_size")


def test_a_huge_message_is_cut_to_an_excerpt(capsys: pytest.CaptureFixture[str]) -> None:
    """An error echoing a megabyte value prints a short excerpt that keeps where and why."""
    assert run_command(lambda: _raise(ValueError("x.yaml: train.lr: bad " + "x" * 1_000_000 + " the end"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: x.yaml: train.lr: bad xxx") and err.endswith("x the end\n") and len(err) < 1000
    assert "characters cut" in err
