"""How OpenMP threads wait, on a quiet machine and beside a busy process: the Multi30k peeky
recipe's bf16 training step (the step loop of ``seq2seq.tools.bench.steps``: the same batches and seeded model),
in target tokens/s, each setting in a fresh process (the wait policy is read when torch loads).
Then the thread governor in a real training: ``train.py`` for 150 steps with a busy process
from 20 s to 50 s after the start, ``train.adapt_threads`` true and false.

    python docs/bench/threads_cpu/run.py [--data data/multi30k]

From the repository root, on an otherwise idle machine with 2 CPUs. Writes results.json here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CONFIG = ROOT / "configs" / "multi30k_de_en.yaml"
SETTINGS = {  # name: environment (unset OMP_WAIT_POLICY and GOMP_SPINCOUNT first)
    "default (GOMP_SPINCOUNT=20000), 2 threads": {},
    "OMP_WAIT_POLICY=PASSIVE, 2 threads": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_WAIT_POLICY=ACTIVE, 2 threads": {"OMP_WAIT_POLICY": "ACTIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}
STEP = """
import json, statistics, sys, torch
from seq2seq.tools.bench.steps import bench_batches, time_train_steps
from seq2seq.config import load_config
from seq2seq.training.batches import prepare_data
cfg = load_config(sys.argv[1], [f"data.path={sys.argv[2]}", "train.bf16=true"])
data = prepare_data(cfg)
batches = bench_batches(cfg, data, 18)
runs = [time_train_steps(cfg, data, batches, 3, 1.0, torch.device("cpu"))[0] for _ in range(3)]
print(json.dumps({"tokens_per_s": statistics.median(runs), "runs": runs, "threads": torch.get_num_threads()}))
"""


def env_with(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    return {**env, **extra}


def busy() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def step_table(data: Path) -> dict[str, dict[str, dict[str, Any]]]:
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for load in ("quiet", "busy"):
        for name, extra in SETTINGS.items():
            loop = busy() if load == "busy" else None
            try:
                out = subprocess.run([sys.executable, "-c", STEP, str(CONFIG), str(data)], env=env_with(extra),
                                     cwd=ROOT, check=True, capture_output=True, text=True).stdout
            finally:
                if loop is not None:
                    loop.kill()
                    loop.wait()
            table.setdefault(name, {})[load] = json.loads(out.splitlines()[-1])
            print(load, name, table[name][load], flush=True)
    return table


def governed_training(data: Path, adapt: bool, tmp: Path) -> dict[str, object]:
    out = tmp / f"adapt_{adapt}"
    cmd = [sys.executable, "train.py", "--config", str(CONFIG), "--out", str(out), f"data.path={data}",
           "train.max_steps=150", "train.log_every=10", "train.progress=false", "train.valid_max_sentences=100",
           f"train.adapt_threads={str(adapt).lower()}", "tracking.wandb=disabled"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env_with({}), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(20)
    loop = busy()
    time.sleep(30)
    loop.kill()
    loop.wait()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/tokens_per_s" in r]
    return {"wall_s": wall, "steps": [r["step"] for r in train],
            "tokens_per_s": [round(r["train/tokens_per_s"]) for r in train],
            "threads": [r.get("train/threads") for r in train],
            "governor_lines": [line for line in err.splitlines() if line.startswith("threads:")]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data" / "multi30k",
                   help="the raw Multi30k files (python -m seq2seq download multi30k)")
    args = p.parse_args()
    data = args.data.resolve()
    steps = step_table(data)
    results: dict[str, object] = {"cpu_count": os.cpu_count(), "step_bf16": steps}
    with tempfile.TemporaryDirectory() as tmp:
        results["training_busy_20s_to_50s"] = {
            f"adapt_threads={adapt}": governed_training(data, adapt, Path(tmp)) for adapt in (True, False)}
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["training_busy_20s_to_50s"], indent=1))
    for name, row in steps.items():
        print(f"{name:45s} quiet {row['quiet']['tokens_per_s']:7,.0f}  busy {row['busy']['tokens_per_s']:7,.0f}")


if __name__ == "__main__":
    main()
