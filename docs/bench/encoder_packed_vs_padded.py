"""A 2 x 512 LSTM encoder (batch 128, 17 steps, embedding 256), forward and backward: packed
(as the model runs it) against padded (oneDNN's fused LSTM), fp32 and bf16 autocast.
Prints ms per step, each the mean of 5 after a warm-up; the script does it twice.

    python docs/bench/encoder_packed_vs_padded.py
"""

import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence

torch.manual_seed(0)
B, T, E, H = 128, 17, 256, 512
lstm = torch.nn.LSTM(E, H, num_layers=2, batch_first=True)
x = torch.randn(B, T, E, requires_grad=True)
lens = torch.randint(8, T + 1, (B,))
lens[0] = T


def packed() -> None:
    _, (h, c) = lstm(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
    (h.sum() + c.sum()).backward()


def padded() -> None:
    _, (h, c) = lstm(x)
    (h.sum() + c.sum()).backward()


for name, f in [("packed", packed), ("padded", padded)] * 2:
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            f()
            start = time.perf_counter()
            for _ in range(5):
                f()
        print(name, "bf16" if bf16 else "fp32", round((time.perf_counter() - start) / 5 * 1000, 1), "ms")
