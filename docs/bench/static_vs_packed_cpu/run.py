"""Packed dynamic vs padded static training step on the CPU, Multi30k recipe, bf16 (train.bf16: auto):
alternating rounds in one process. Usage: OMP_NUM_THREADS=T python docs/bench/static_vs_packed_cpu/run.py T STEPS ROUNDS [overrides]"""
import json
import sys
import torch
from seq2seq.bench import bench_batches, time_static_steps, time_train_steps
from seq2seq.config import load_config
from seq2seq.device import select_device
from seq2seq.training import prepare_data
threads = int(sys.argv[1]); torch.set_num_threads(threads)
steps = int(sys.argv[2]); rounds = int(sys.argv[3])
ov = ["train.device=cpu", "tracking.wandb=disabled"] + sys.argv[4:]
cfg = load_config("configs/multi30k_de_en.yaml", ov)
device = select_device("cpu")
data = prepare_data(cfg)
out = {"packed": [], "static": []}
for r in range(rounds):
    batches = bench_batches(cfg, data, steps + 3)
    p, _ = time_train_steps(cfg, data, batches, 3, 1.0, device)
    s, _, _ = time_static_steps(cfg, data, steps, device, graphs=False)
    out["packed"].append(round(p)); out["static"].append(round(s))
    print(r, out, flush=True)
print(json.dumps(out))
