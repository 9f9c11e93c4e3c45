"""Checkpoint averaging: ``train.keep_checkpoints`` keeps the newest epoch checkpoints, and
``python -m seq2seq average`` writes their element-wise mean as a checkpoint that translates."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.model import checkpoint
from seq2seq.tools.average import main
from seq2seq.training.averaging import average, epoch_checkpoints
from seq2seq.training.trainer import train

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Any) -> Path:
    out = tmp_path_factory.mktemp("kept") / "run"
    train(tiny_config("train.epochs=4", "train.keep_checkpoints=3"), out)
    return out


def test_keep_checkpoints_keeps_the_newest_epochs(kept_run: Path) -> None:
    assert [p.name for p in epoch_checkpoints(kept_run)] == ["epoch-2", "epoch-3", "epoch-4"]
    last = checkpoint.load(kept_run / "last").model.state_dict()
    newest = checkpoint.load(kept_run / "epochs" / "epoch-4").model.state_dict()
    assert all(torch.equal(last[k], newest[k]) for k in last)  # epoch 4's end is last/


def test_the_average_is_the_elementwise_mean(kept_run: Path, tmp_path: Path) -> None:
    assert main(["--run", str(kept_run), "--last", "2", "--out", str(tmp_path / "avg")]) == 0
    states = [checkpoint.load(kept_run / "epochs" / f"epoch-{k}").model.state_dict() for k in (3, 4)]
    got = checkpoint.load(tmp_path / "avg").model.state_dict()
    for k in got:
        assert torch.allclose(got[k], (states[0][k].double() + states[1][k].double()).div(2).float()), k
    assert not torch.equal(states[0]["encoder.rnn.weight_hh_l0"], states[1]["encoder.rnn.weight_hh_l0"])
    from seq2seq.cli.translate import main as translate_main

    src = tmp_path / "in.txt"
    src.write_text("1999/01/02\n")
    assert translate_main(["--checkpoint", str(tmp_path / "avg"), "--input", str(src)]) == 0


def test_average_refuses_what_it_cannot_do(kept_run: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--run", str(kept_run), "--last", "5", "--out", str(tmp_path / "a")]) == 1
    assert "3 epoch checkpoints, --last asks for 5" in capsys.readouterr().err
    one = kept_run / "epochs" / "epoch-4"
    assert main(["--checkpoints", str(one), str(kept_run / "epochs" / "epoch-3"), "--out", str(one)]) == 1
    assert "is one of the checkpoints being averaged" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(kept_run / "epochs" / "epoch-3", other)
    config = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(config.replace("cell: lstm", "cell: gru"))  # another model
    with pytest.raises(checkpoint.CheckpointError):  # refused at load (gru weights != lstm) or by the check
        average([one, other])
    (other / "config.yaml").write_text(config.replace("reverse_source: true", "reverse_source: false"))
    with pytest.raises(checkpoint.CheckpointError, match="its data config differs"):
        average([one, other])
    assert not (tmp_path / "a").exists()
