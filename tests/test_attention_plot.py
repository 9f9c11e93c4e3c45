"""Attention made visible: Translator.alignment and ``python -m seq2seq plots attention``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.tools.plots import main
from seq2seq.training.trainer import train
from seq2seq.translation.translator import Translator

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Any) -> Path:
    out = tmp_path_factory.mktemp("attn") / "run"
    train(tiny_config("model.attention=luong", "data.reverse_source=true", "train.max_steps=3"), out)
    return out


def test_alignment_rows_are_distributions_in_reading_order(attention_run: Path) -> None:
    translator = Translator.from_checkpoint(attention_run / "best")
    a = translator.alignment("Sep 27 1994", beam_size=1)
    assert a.source == translator.src_tok.pieces(translator.src_tok.encode("Sep 27 1994"))  # not reversed
    assert a.target[-1] == "</s>" and len(a.target) == a.weights.shape[0]
    assert a.weights.shape[1] == len(a.source)
    torch.testing.assert_close(a.weights.sum(-1), torch.ones(len(a.target)))
    assert a.text == translator.translate_best(["Sep 27 1994"], beam_size=1)[0]
    # the columns are the model's (reversed) input flipped back: the first step's row, directly
    ids = translator.encode_source(["Sep 27 1994"])[0]
    src = torch.tensor([ids])
    with torch.no_grad():
        direct = translator.model.alignment(src, torch.tensor([len(ids)]), torch.tensor([[1]]))[0]
    torch.testing.assert_close(a.weights[0], direct[0].flip(-1).float())


def test_attention_plot_writes_a_png(attention_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plots" / "attention.png"
    assert main(["attention", "--checkpoint", str(attention_run), "--text", "May 1 2000", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.startswith(f"wrote {out}: ")


def test_attention_plot_refuses_a_model_without_attention(trained_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.png"
    assert main(["attention", "--checkpoint", str(trained_run), "--text", "May 1 2000", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no attention" in err[0] and not out.exists()
    assert main(["attention", "--checkpoint", str(trained_run), "--text", "x", "--beam", "0"]) == 1


def test_validation_logs_alignments_to_wandb(attention_run: Path, tiny_config: Any, tmp_path: Path) -> None:
    """With W&B on, an attention model's epoch end logs heatmaps (the run object is a fake)."""
    from seq2seq.training import tracking

    logged: list[dict[str, Any]] = []

    class FakeRun:
        def log(self, record: dict[str, Any], step: int) -> None:
            logged.append(record)

    cfg = tiny_config("model.attention=luong")
    tracker = tracking.Tracker(cfg, tmp_path)
    tracker.run = FakeRun()
    translator = Translator.from_checkpoint(attention_run / "best")
    tracker.log_alignments([translator.alignment("May 1 2000", beam_size=1)], step=3)
    (images,) = [r["valid/attention"] for r in logged if "valid/attention" in r]
    assert len(images) == 1 and images[0].image.size[0] > 100
    tracker.run = None
    tracker.finish()


@pytest.mark.parametrize("name", ["a7", "fig.v2", "plot.PNG"])
def test_each_plot_writes_the_file_it_names(name: str, attention_run: Path, trained_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--out without a known image suffix is still the file written (a PNG), and the name printed."""
    evaluation = tmp_path / "e.json"
    evaluation.write_text('{"buckets": [{"label": "1-8", "n": 3, "bleu": 30.0}]}')
    for command, argv in (("attention", ["--checkpoint", str(attention_run), "--text", "May 1 2000"]),
                          ("hidden", ["--checkpoint", str(trained_run), "--text", "May 1 2000"]),
                          ("by-length", ["--eval", f"a={evaluation}"])):
        out = tmp_path / command / name
        out.parent.mkdir()
        assert main([command, *argv, "--out", str(out)]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.startswith(f"wrote {out}")
        assert [p.name for p in out.parent.iterdir()] == [name], command
        assert out.read_bytes()[:4] == b"\x89PNG", command
