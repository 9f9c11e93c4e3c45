"""One rank of the two-process gloo runs in test_distributed.py, started by torchrun::

    python -m torch.distributed.run --nproc_per_node=2 --standalone tests/ddp_worker.py \\
        GRAD_FILE STOP_AT [train.py arguments ...]

1. One ``train_step`` on deliberately unequal shards of a fixed batch (rank 0: one short
   pair, rank 1: three long ones); rank 0 writes the synchronised gradient to GRAD_FILE,
   for the test to compare with one process's gradient on the whole batch.
2. Trains like ``train.py`` with the remaining arguments, where rank 1 alone -- not rank 0
   -- gets a SIGTERM right after its STOP_AT-th training step (0: never).
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from seq2seq.cli.train import main as train_main
from seq2seq.config import load_config
from seq2seq.data.batching import Example, collate
from seq2seq.model.seq2seq import build_model
from seq2seq.runtime import distributed
from seq2seq.runtime.distributed import World
from seq2seq.training import stepping
from seq2seq.training.steps import TrainingForward, train_step

ROOT = Path(__file__).resolve().parent.parent
# Target lengths 1, 6, 5 and 7 (+ EOS): rank 0 has 2 target tokens, rank 1 has 21.
BATCH: list[Example] = [([4, 5], [6]), ([7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17]),
                        ([5, 6, 7, 8], [9, 10, 11, 12, 13]), ([4, 4, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5, 5])]


def step_gradients(world: World) -> dict[str, torch.Tensor]:
    """The gradient of one ``train_step`` on this rank's share of BATCH (all of it in one process)."""
    torch.manual_seed(0)
    cfg = load_config(ROOT / "configs" / "dates.yaml", ["model.hidden_dim=16", "model.embed_dim=8",
                                                        "train.clip_norm=0"])
    model = build_model(cfg.model, 20, 20)
    mine = BATCH if world.size == 1 else (BATCH[:1] if world.rank == 0 else BATCH[1:])
    net = distributed.replicate(TrainingForward(model), world)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the step leaves the weights as they are
    train_step(net, collate(mine, range(len(mine)), reverse=True), optimizer, cfg, 1.0, nullcontext(), world)
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def main(grad_file: str, stop_at: int, argv: list[str]) -> int:
    world = distributed.setup(torch.device("cpu"))  # train() below finds the process group joined
    grads = step_gradients(world)
    if world.is_main:
        save_file(grads, grad_file)

    real, calls = stepping.train_step, []

    def step_then_signal(*args: Any) -> Any:
        result = real(*args)
        calls.append(1)
        if world.rank == 1 and len(calls) == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    stepping.train_step = step_then_signal  # type: ignore[assignment]
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
