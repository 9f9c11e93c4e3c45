"""On a CUDA device: bf16 training with fused Adam, a resume that follows the same curve, and
greedy decoding equal to the CPU's. Skipped without CUDA. The checks themselves live in
:mod:`seq2seq.gpu_check` (the GPU machine may have no pytest), which runs them too; their
CPU counterparts are in test_training.py, test_run_lock_and_saves.py and test_translate.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.gpu_check import CUDA_CHECKS

pytestmark = [pytest.mark.cuda, pytest.mark.smoke,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("name", list(CUDA_CHECKS))
def test_cuda_check(name: str, tmp_path: Path) -> None:
    CUDA_CHECKS[name](tmp_path, "cuda")

