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


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (links followed) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def run_copy(kept_run: Path, tmp_path: Path) -> Path:
    """A copy of the kept run, with a user's note beside the checkpoints: tests here may try to damage it."""
    run = tmp_path / "run"
    shutil.copytree(kept_run, run)
    (run / "notes.txt").write_text("what I changed and why\n")
    return run


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ") and says in err[0], err


def test_average_never_writes_over_a_run_or_its_inputs(run_copy: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--out may not be, hold or lie inside a checkpoint being averaged (a run directory given as
    one counts with everything in it), nor be a folder of anything but a checkpoint."""
    run = run_copy
    before = _tree(run)
    e3, e4 = run / "epochs" / "epoch-3", run / "epochs" / "epoch-4"
    for argv, says in (
        (["--run", str(run), "--last", "2", "--out", str(run)], "holds the checkpoints being averaged"),
        (["--run", str(run), "--last", "2", "--out", str(run / "epochs")], "holds the checkpoints being averaged"),
        (["--run", str(run), "--last", "2", "--out", str(e4 / "sub")], "lies inside a checkpoint being averaged"),
        (["--checkpoints", str(run), str(e3), "--out", str(run / "best")], "lies inside a checkpoint being averaged"),
        (["--checkpoints", str(run), str(e3), "--out", str(run / "last")], "lies inside a checkpoint being averaged"),
        (["--checkpoints", str(e3), str(e4), "--out", str(run)], "holds the checkpoints being averaged"),
        (["--checkpoints", str(e3), str(e4), "--out", str(e4)], "is one of the checkpoints being averaged"),
        (["--checkpoints", str(e3), str(e4), "--out", f"{run}/epochs/../epochs/epoch-4/"],
         "is one of the checkpoints being averaged"),
    ):
        _refused(capsys, argv, says)
        assert _tree(run) == before, argv
    assert not list(run.rglob("*.old")) and not list(run.rglob("*.tmp"))


def test_average_never_replaces_a_folder_that_is_not_a_checkpoint(run_copy: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    e3, e4 = run_copy / "epochs" / "epoch-3", run_copy / "epochs" / "epoch-4"
    other_run = tmp_path / "other_run"
    shutil.copytree(run_copy, other_run)
    before = _tree(other_run)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me\n")
    afile = tmp_path / "a.txt"
    afile.write_text("keep me too\n")
    for out in (other_run, notes, afile):
        _refused(capsys, ["--checkpoints", str(e3), str(e4), "--out", str(out)], "not a checkpoint")
    assert _tree(other_run) == before and (notes / "todo.txt").read_text() == "keep me\n"
    assert afile.read_text() == "keep me too\n"
    # an empty folder, a new one and an existing checkpoint that is not an input are written (as before)
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new", other_run / "best"):
        assert main(["--checkpoints", str(e3), str(e4), "--out", str(out)]) == 0
        assert checkpoint.load(out).model is not None
    assert not list(tmp_path.rglob("*.old")) and not list(tmp_path.rglob("*.tmp"))


def test_average_through_a_symlinked_out(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --out that is a link: judged by what it names; a checkpoint there is replaced, the link
    kept, nothing left behind. A link to an input is refused."""
    e3, e4 = run_copy / "epochs" / "epoch-3", run_copy / "epochs" / "epoch-4"
    target = tmp_path / "target"
    shutil.copytree(run_copy / "best", target)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    assert main(["--checkpoints", str(e3), str(e4), "--out", str(link)]) == 0, capsys.readouterr().err
    assert link.is_symlink() and link.resolve() == target.resolve()
    got = checkpoint.load(target).model.state_dict()
    want = average([e3, e4]).model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not list(tmp_path.rglob("*.old")) and not list(tmp_path.rglob("*.tmp"))
    before = _tree(run_copy)
    to_input = tmp_path / "to_input"
    to_input.symlink_to(e4, target_is_directory=True)
    _refused(capsys, ["--checkpoints", str(e3), str(e4), "--out", str(to_input)],
             "is one of the checkpoints being averaged")
    to_run = tmp_path / "to_run"
    to_run.symlink_to(run_copy, target_is_directory=True)
    _refused(capsys, ["--run", str(run_copy), "--last", "2", "--out", str(to_run)], "holds the checkpoints")
    _refused(capsys, ["--checkpoints", str(to_run), str(e3), "--out", str(run_copy / "best")], "lies inside")
    assert _tree(run_copy) == before


def test_save_through_a_symlink_replaces_its_target_and_keeps_the_link(run_copy: Path, tmp_path: Path) -> None:
    loaded = checkpoint.load(run_copy / "epochs" / "epoch-3")
    target = tmp_path / "target"
    shutil.copytree(run_copy / "best", target)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    checkpoint.save(link, config=loaded.config, model=loaded.model, src_tok=loaded.src_tok, tgt_tok=loaded.tgt_tok)
    assert link.is_symlink() and (target / checkpoint.MODEL_FILE).read_bytes() == (
        run_copy / "epochs" / "epoch-3" / checkpoint.MODEL_FILE).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "run", "target"]


def test_save_never_replaces_what_is_not_a_checkpoint(run_copy: Path, tmp_path: Path) -> None:
    loaded = checkpoint.load(run_copy / "epochs" / "epoch-3")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me\n")
    for where in (notes, run_copy):
        with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint"):
            checkpoint.save(where, config=loaded.config, model=loaded.model, src_tok=loaded.src_tok,
                            tgt_tok=loaded.tgt_tok)
    assert (notes / "todo.txt").read_text() == "keep me\n" and (run_copy / "notes.txt").exists()
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.old"))
