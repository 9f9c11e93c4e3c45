"""Checkpoints: self-describing, loaded without unpickling anything, saved atomically.

Every bad checkpoint must be refused with a one-line :class:`CheckpointError` that names the
file, and ``translate.py --checkpoint BAD`` must say so in one ``error:`` line, exit status 1.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from seq2seq.cli.translate import main as translate_main
from seq2seq.config import load_config
from seq2seq.data.tokenization import train_tokenizer
from seq2seq.model import checkpoint
from seq2seq.model.checkpoint import CheckpointError
from seq2seq.training.trainer import train
from seq2seq.translation.translator import Translator

SENTENCES = ["March 3, 2021", "tuesday, 19 october 2049", "1/2/03"]
INFERENCE_FILES = {"model.safetensors", "config.yaml", "src_tokenizer.json", "tgt_tokenizer.json"}


@pytest.fixture
def best(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the trained run's best/ checkpoint, to spoil."""
    return Path(shutil.copytree(trained_run / "best", tmp_path / "best"))


@pytest.fixture
def last(trained_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_run / "last", tmp_path / "last"))


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the whole trained run directory."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def refused(path: Path, *fragments: str) -> str:
    """Loading ``path`` fails with a one-line CheckpointError holding every fragment."""
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path)
    msg = str(e.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


# --- what a checkpoint holds --------------------------------------------------------------
def test_contents(trained_run: Path, tiny_config: Any) -> None:
    assert {p.name for p in (trained_run / "best").iterdir()} == INFERENCE_FILES
    assert {p.name for p in (trained_run / "last").iterdir()} == \
        INFERENCE_FILES | {"trainer.safetensors", "trainer.json"}
    assert load_config(trained_run / "best" / "config.yaml") == tiny_config()
    loaded = checkpoint.load(trained_run / "last")
    weights = load_file(str(trained_run / "last" / "model.safetensors"))
    assert weights["src_embed.weight"].shape[0] == loaded.src_tok.vocab_size
    assert weights["tgt_embed.weight"].shape[0] == loaded.tgt_tok.vocab_size
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_translator_needs_only_the_directory(trained_run: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    alone = Path(shutil.copytree(trained_run / "best", tmp_path / "elsewhere" / "model"))
    monkeypatch.chdir(tmp_path / "elsewhere")  # no configs/, no run directory, no data
    translator = Translator.from_checkpoint(alone)
    got = translator.translate_best(SENTENCES, beam_size=2)
    assert len(got) == 3 and all(isinstance(t, str) and t for t in got)
    assert Translator.from_checkpoint(trained_run).translate_best(SENTENCES, beam_size=2) == got  # run dir: best/


# --- nothing is unpickled -----------------------------------------------------------------
class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def write_pickle(path: Path, marker: Path, how: str) -> None:
    if how == "pickle":
        path.write_bytes(pickle.dumps({"src_embed.weight": Payload(marker)}))
    else:
        torch.save({"src_embed.weight": Payload(marker)}, path)


def unpickle(path: Path, how: str) -> None:
    if how == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickle_is_refused_and_never_run(how: str, best: Path, last: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # The payload is live: unpickling it really does create the marker.
    write_pickle(tmp_path / "probe", marker, how)
    unpickle(tmp_path / "probe", how)
    assert marker.exists()
    marker.unlink()

    write_pickle(best / "model.safetensors", marker, how)
    refused(best, f"{best / 'model.safetensors'}: not a valid safetensors file")
    write_pickle(last / "trainer.safetensors", marker, how)
    with pytest.raises(CheckpointError, match="trainer.safetensors: not a valid safetensors file"):
        checkpoint.load_trainer(last)
    assert not marker.exists()


def test_yaml_tags_are_refused_and_never_run(best: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (best / "config.yaml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    refused(best, f"{best / 'config.yaml'}:", "invalid YAML")
    assert not marker.exists()


# --- damaged or mismatched files ------------------------------------------------------------
@pytest.mark.parametrize("keep", [0, 7, 100, -1000], ids=["empty", "7-bytes", "header-cut", "data-cut"])
def test_truncated_weights(keep: int, best: Path) -> None:
    path = best / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    refused(best, f"{path}: not a valid safetensors file")


def test_wrong_shape_missing_and_unexpected_tensors(best: Path) -> None:
    path = best / "model.safetensors"
    weights = load_file(str(path))
    good = dict(weights)
    weights["decoder.rnn.weight_hh_l0"] = torch.zeros(3, 5)
    save_file(weights, str(path))
    refused(best, str(path), "tensor decoder.rnn.weight_hh_l0 has shape (3, 5)", "expects (128, 32)")

    save_file({k: v for k, v in good.items() if k != "decoder.output.bias"}, str(path))
    refused(best, "missing tensors decoder.output.bias")
    save_file({**good, "extra.weight": torch.zeros(2)}, str(path))
    refused(best, "unexpected tensors extra.weight")
    save_file({**good, "decoder.output.bias": good["decoder.output.bias"].double()}, str(path))
    refused(best, "tensor decoder.output.bias has dtype torch.float64")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused(value: float, best: Path) -> None:
    """NaN or inf weights translated every line to an empty string, exit 0."""
    path = best / "model.safetensors"
    weights = load_file(str(path))
    weights["decoder.rnn.weight_hh_l0"][3, 5] = value
    save_file(weights, str(path))
    refused(best, str(path), "tensor decoder.rnn.weight_hh_l0 holds NaN or inf")


@pytest.mark.smoke
def test_translate_cli_refuses_non_finite_weights(best: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = best / "model.safetensors"
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(str(path)).items()}, str(path))
    assert translate_main(["--checkpoint", str(best), "--input", os.devnull]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {path}: tensor ") and "holds NaN or inf" in err and err.count("\n") == 1, err


def test_config_with_unknown_key(best: Path) -> None:
    path = best / "config.yaml"
    path.write_text(path.read_text().replace("model:\n", "model:\n  hiden_dim: 64\n"))
    refused(best, f"{path}: model.hiden_dim: unknown key")


def test_config_with_wrong_type(best: Path) -> None:
    path = best / "config.yaml"
    path.write_text(path.read_text().replace("hidden_dim: 32", "hidden_dim: big"))
    refused(best, f"{path}: model.hidden_dim: must be an integer")


def test_tokenizer_that_does_not_match_the_model(best: Path) -> None:
    saved = load_file(str(best / "model.safetensors"))["tgt_embed.weight"].shape
    other = train_tokenizer(["only a few letters"], "char")
    assert other.vocab_size != saved[0]
    other.save(best / "tgt_tokenizer.json")
    refused(best, f"tensor tgt_embed.weight has shape {tuple(saved)}", f"expects ({other.vocab_size}, 8)",
            "does the tokenizer match the model?")


def test_corrupt_tokenizer(best: Path) -> None:
    path = best / "src_tokenizer.json"
    path.write_text(path.read_text()[:50])
    refused(best, f"{path}: not a tokenizer file")


@pytest.mark.smoke
@pytest.mark.parametrize("text", ['{"progress": {"epoch": 1, "st', "[1, 2]", "",
                                  '{"progress": {"epoch": 1}}', '{"progress": {"epch": 1}, "optimizer": {}}'],
                         ids=["truncated", "not-object", "empty", "incomplete", "unknown-field"])
def test_corrupt_trainer_state(text: str, run: Path, tiny_config: Any) -> None:
    """``trainer.json`` is refused in one line, whether by itself or by ``--resume``."""
    (run / "last" / "trainer.json").write_text(text)
    with pytest.raises(CheckpointError) as e:
        train(tiny_config("train.epochs=3"), run, resume=True)
    assert str(e.value).startswith(f"{run / 'last' / 'trainer.json'}: ") and "\n" not in str(e.value)


# --- the command line ---------------------------------------------------------------------
@pytest.mark.smoke
def test_translate_cli_refuses_a_pickle(best: Path, tmp_path: Path, run_script: Any) -> None:
    marker = tmp_path / "pwned"
    write_pickle(best / "model.safetensors", marker, "torch.save")
    done = run_script("translate.py", "--checkpoint", str(best), stdin="March 3, 2021\n")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: {best / 'model.safetensors'}: not a valid safetensors file")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not marker.exists()


@pytest.mark.smoke
@pytest.mark.parametrize("spoil", ["missing", "truncated", "unknown-key", "tokenizer", "file-not-dir"])
def test_translate_cli_one_line_errors(spoil: str, best: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = best
    if spoil == "missing":
        target = best / "nowhere"
    elif spoil == "truncated":
        (best / "model.safetensors").write_bytes((best / "model.safetensors").read_bytes()[:-10])
    elif spoil == "unknown-key":
        (best / "config.yaml").write_text("train:\n  epoch: 3\n")
    elif spoil == "tokenizer":
        train_tokenizer(["abc"], "char").save(best / "src_tokenizer.json")
    else:
        target = best / "config.yaml"
    assert translate_main(["--checkpoint", str(target), "--input", os.devnull]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(best) in err


# --- atomic saves ---------------------------------------------------------------------------
def save_model_of(source: Path, target: Path) -> None:
    loaded = checkpoint.load(source)
    checkpoint.save(target, config=loaded.config, model=loaded.model, src_tok=loaded.src_tok,
                    tgt_tok=loaded.tgt_tok)


def test_leftover_tmp_from_a_crash(run: Path) -> None:
    tmp = run / "best.tmp"  # a save that died half way: a partial weights file, a stray file
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"\x00" * 10)
    (tmp / "junk").write_text("x")
    save_model_of(run / "last", run / "best")
    assert not tmp.exists()
    assert {p.name for p in (run / "best").iterdir()} == INFERENCE_FILES
    assert load_file(str(run / "best" / "model.safetensors")).keys() == \
        load_file(str(run / "last" / "model.safetensors")).keys()
    checkpoint.load(run / "best")


@pytest.mark.smoke
def test_crash_mid_swap_is_found(run: Path, tiny_config: Any) -> None:
    """A crash between the two renames leaves ``last.old`` and no ``last``: loading and resuming find it."""
    expected = (run / "last" / "model.safetensors").read_bytes()
    (run / "last").rename(run / "last.old")
    (run / "best").rename(run / "best.old")
    assert checkpoint.resolve(run / "last") == run / "last.old"
    assert checkpoint.resolve(run) == run / "best.old"
    Translator.from_checkpoint(run)
    assert checkpoint.load_trainer(run / "last")[1]["progress"]["epoch"] == 2

    summary = train(tiny_config("train.epochs=3"), run, resume=True)
    assert (summary["epoch"], summary["step"]) == (3, 9)
    assert (run / "last").is_dir() and not (run / "last.old").exists()
    assert (run / "last" / "model.safetensors").read_bytes() != expected


def test_crash_during_the_next_save_keeps_the_old_checkpoint(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a crash mid-swap, a second crash in the next save must not lose ``last.old`` too."""
    (run / "last").rename(run / "last.old")
    before = (run / "last.old" / "model.safetensors").read_bytes()
    real_rename = Path.rename

    def crash_on_swap(self: Path, target: Any) -> Any:
        if self.name.endswith(".tmp"):
            raise OSError("simulated crash")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", crash_on_swap)
    with pytest.raises(OSError, match="simulated crash"):
        save_model_of(run / "best", run / "last")
    monkeypatch.undo()
    assert (checkpoint.resolve(run / "last") / "model.safetensors").read_bytes() == before
    checkpoint.load_trainer(run / "last")


def test_non_finite_weights_are_never_saved(run: Path) -> None:
    """``save`` refuses NaN/inf weights and leaves the checkpoint already there untouched."""
    loaded = checkpoint.load(run / "best")
    before = (run / "last" / "model.safetensors").read_bytes()
    with torch.no_grad():
        loaded.model.decoder.output.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match=f"{run / 'last'}: not saved: tensor decoder.output.bias holds NaN"):
        checkpoint.save(run / "last", config=loaded.config, model=loaded.model, src_tok=loaded.src_tok,
                        tgt_tok=loaded.tgt_tok)
    assert (run / "last" / "model.safetensors").read_bytes() == before
    assert not (run / "last.tmp").exists()
