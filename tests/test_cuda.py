"""On a CUDA device: bf16 training with fused Adam, an exact-enough resume, and decoding that
agrees with the CPU's. Skipped without CUDA; ``python -m seq2seq.gpu_check`` runs them
(``pytest -m cuda``) on the GPU machine. Each also has its CPU counterpart elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.training import make_optimizer, train

pytestmark = [pytest.mark.cuda, pytest.mark.smoke,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = ("train.device=cuda", "train.bf16=auto", "data.size=1200", "train.batch_size=32", "train.epochs=2",
        "train.log_every=5", "model.dropout=0.1")


def test_bf16_training_with_fused_adam_learns(tmp_path: Path, tiny_config: Any, metrics: Any) -> None:
    cfg = tiny_config(*CUDA)
    model = torch.nn.Linear(2, 2).cuda()
    assert make_optimizer(model, cfg, torch.device("cuda")).defaults["fused"]
    train(cfg, tmp_path / "run")
    losses = [r["train/loss"] for r in metrics(tmp_path / "run") if "train/loss" in r]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_resume_on_cuda_follows_the_same_curve(tmp_path: Path, tiny_config: Any, metrics: Any) -> None:
    """cuDNN's LSTM is not bit-reproducible, so: the same records, losses within 2%."""
    train(tiny_config(*CUDA), tmp_path / "whole")
    train(tiny_config(*CUDA, "train.epochs=1"), tmp_path / "split")
    train(tiny_config(*CUDA), tmp_path / "split", resume=True)
    a = [(r["step"], r["train/loss"]) for r in metrics(tmp_path / "whole") if "train/loss" in r]
    b = [(r["step"], r["train/loss"]) for r in metrics(tmp_path / "split") if "train/loss" in r]
    assert [s for s, _ in a] == [s for s, _ in b]
    assert [x for _, x in b] == pytest.approx([x for _, x in a], rel=0.02)


def test_cuda_greedy_matches_the_cpu(trained_run: Path) -> None:
    """The session's tiny fp32 model: greedy output on CUDA (fp32) equals the CPU's."""
    from seq2seq.translation import Translator

    lines = ["1999/01/02", "march 3, 2011", "5/17/1953", "24 aug 2040"]
    cpu = Translator.from_checkpoint(trained_run / "best", torch.device("cpu")).translate_best(lines, beam_size=1)
    gpu = Translator.from_checkpoint(trained_run / "best", torch.device("cuda")).translate_best(lines, beam_size=1)
    assert gpu == cpu
