"""Packed (today's batches) against padded static-shape training steps on the CPU.

The Multi30k recipe (bf16 per train.bf16: auto), alternating rounds in one process; prints tokens/s.
Usage: OMP_NUM_THREADS=T python docs/bench/static_vs_packed_cpu/run.py T STEPS ROUNDS [section.key=value ...]
"""

import json
import sys

import torch

from seq2seq.config import load_config
from seq2seq.runtime.device import select_device
from seq2seq.tools.bench.steps import bench_batches, time_static_steps, time_train_steps
from seq2seq.training.batches import prepare_data

threads, steps, rounds = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
cfg = load_config("configs/multi30k_de_en.yaml", ["train.device=cpu", "tracking.wandb=disabled", *sys.argv[4:]])
device = select_device("cpu")
data = prepare_data(cfg)
out: dict[str, list[int]] = {"packed": [], "static": []}
for r in range(rounds):
    packed, _ = time_train_steps(cfg, data, bench_batches(cfg, data, steps + 3), 3, 1.0, device)
    static, _, _ = time_static_steps(cfg, data, steps, device, graphs=False)
    out["packed"].append(round(packed))
    out["static"].append(round(static))
    print(r, out, flush=True)
print(json.dumps(out))
