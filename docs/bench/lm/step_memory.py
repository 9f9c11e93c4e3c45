"""Peak memory of one LM training step against the length of the graph (docs/language-model.md).

Truncated BPTT bounds the graph at ``bptt`` steps; backpropagating through the whole stream
(or a long sentence) keeps every step's activations. Each setting runs in a fresh process:
the char model of configs/lm_multi30k_en_char.yaml (LSTM, 256 units, 340 tokens), batch 64,
bf16 autocast as trained; the figure is the growth of the peak RSS over three steps,
above the RSS before the first (the model, optimizer and libraries).

    python docs/bench/lm/step_memory.py 16 64 256 1024 4096
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def one(bptt: int) -> dict[str, float]:
    import torch

    sys.path.insert(0, str(ROOT))
    from seq2seq.config import load_config
    from seq2seq.model.lm import build_lm, detach_state
    from seq2seq.model.loss import sequence_loss
    from seq2seq.runtime.device import autocast

    cfg = load_config(ROOT / "configs" / "lm_multi30k_en_char.yaml")
    torch.manual_seed(0)
    model = build_lm(cfg.model, 340)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x = torch.randint(4, 340, (cfg.train.batch_size, bptt))
    state = model.initial_state(x.shape[0])
    ctx = autocast(cfg.train.bf16, torch.device("cpu"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in range(3):
        with ctx:
            logits, new = model(x, state)
            loss = sequence_loss(logits, x) / x.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        state = detach_state(new)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"bptt": bptt, "rss_before_mb": round(before), "step_peak_growth_mb": round(peak - before)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(int(sys.argv[2]))))
    else:
        for arg in sys.argv[1:] or ["64"]:
            out = subprocess.run([sys.executable, __file__, "--one", arg], capture_output=True, text=True, check=True)
            print(out.stdout.strip(), flush=True)
