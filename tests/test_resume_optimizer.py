"""Resuming a translator with another optimizer than its last/ holds: one line that names the
way on (--reset-optimizer); the language model's resume: tests/test_lm.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seq2seq.cli.train import main as train_main

pytestmark = pytest.mark.smoke


def test_translator_resume_with_another_optimizer_suggests_reset_optimizer(
        trained_run: Path, tmp_path: Path, tiny_overrides: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    args = ["--out", str(run), "--resume", *tiny_overrides, "train.epochs=3", "train.optimizer=sgd"]
    assert train_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--reset-optimizer" in err[0], err
    assert train_main([*args, "--reset-optimizer"]) == 0
