"""On a CUDA device: bf16 training with fused Adam, a resume that follows the same curve,
greedy decoding equal to the CPU's, a sync-free step; and the whole step in CUDA graphs
(seq2seq/training/graphs.py): graphs equal eager steps (fp32 and bf16 tolerances) with replays that
make no host sync, a capture that fails falls back to eager steps, dropout draws new masks at
each replay, and train() on static shapes learns. Skipped without CUDA. The checks themselves live in
:mod:`seq2seq.tools.gpu_check.checks` (the GPU machine may have no pytest), which runs them too; their
CPU counterparts are in test_training.py, test_run_lock_and_saves.py and test_translate.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.tools.gpu_check.checks import CUDA_CHECKS

pytestmark = [pytest.mark.cuda, pytest.mark.smoke,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("name", list(CUDA_CHECKS))
def test_cuda_check(name: str, tmp_path: Path) -> None:
    CUDA_CHECKS[name](tmp_path, "cuda")

