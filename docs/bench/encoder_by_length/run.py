"""Training steps of a recipe with the encoder as the CPU trains it in fp32 (each group of rows of
one source length in one fused call a layer, ``Encoder._by_length``) against the packed encoder,
fp32 and bf16 autocast, in one process, alternating, on the same shuffled batches.

    python docs/bench/encoder_by_length/run.py --data data/multi30k [--steps 22] [--warmup 2] [--rounds 3]

Prints target tokens/s per run and the medians. Under bf16 autocast the model itself packs (the
by-length runs were slower there; ``encoder.runs_by_length`` chooses); the bf16 "by length" figure
shows why.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from seq2seq.runtime import tune  # imports no torch

tune()  # as the commands do, before torch loads: GOMP_SPINCOUNT and glibc's malloc tunables

import torch  # noqa: E402

from seq2seq.config import load_config  # noqa: E402
from seq2seq.model import encoder  # noqa: E402
from seq2seq.tools.bench.steps import bench_batches, time_train_steps  # noqa: E402
from seq2seq.training.batches import prepare_data  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/multi30k_de_en_attention.yaml")
    p.add_argument("--data", default="data/multi30k")
    p.add_argument("--steps", type=int, default=22, help="steps a run, the first --warmup untimed")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [f"data.path={args.data}", "train.device=cpu", "tracking.wandb=disabled"])
    data = prepare_data(cfg)
    batches = bench_batches(cfg, data, args.steps)
    lengths = [len(set(b.src_len.tolist())) for b in batches]
    print(f"source lengths a batch: {min(lengths)} to {max(lengths)} (median {statistics.median(lengths)})")
    chosen = encoder.runs_by_length
    results: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for bf16 in (False, True):
            run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bf16=bf16))
            for name, grouped in (("packed", False), ("by length", True)):
                def choose(training: bool, emb: torch.Tensor, grouped: bool = grouped) -> bool:
                    return training and grouped

                encoder.runs_by_length = choose
                try:
                    tps, _ = time_train_steps(run_cfg, data, batches, args.warmup, 1.0, torch.device("cpu"))
                finally:
                    encoder.runs_by_length = chosen
                precision = "bf16" if bf16 else "fp32"
                results.setdefault((precision, name), []).append(tps)
                print(f"round {r + 1}: {precision} {name}: {tps:,.0f} target tokens/s", flush=True)
    for (precision, name), values in results.items():
        print(f"{precision} {name}: median {statistics.median(values):,.0f} ({', '.join(f'{v:,.0f}' for v in values)})")


if __name__ == "__main__":
    main()
