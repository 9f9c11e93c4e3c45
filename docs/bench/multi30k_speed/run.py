"""The Multi30k peeky recipe's training step at an earlier commit and now, alternating, each
code in its own default thread and allocator settings. The default earlier commit, 7b491be,
predates the CPU work (bf16 autocast, the allocator settings, the CPU dropout) and set none:
libgomp's and glibc's defaults; now ``python -m seq2seq`` sets GOMP_SPINCOUNT=20000 and
tunes glibc's malloc before torch loads (seq2seq/runtime/tuning.py). Each run is one
``python -m seq2seq bench`` that times the bf16 and the fp32 step itself, on the same batches.

    python docs/bench/multi30k_speed/run.py [--rounds 3] [--data data/multi30k]
    python docs/bench/multi30k_speed/run.py --before REV --tag NAME [--rounds 3]

From the repository root, on a quiet machine, in the project's venv. Writes old.N.json,
new.N.json and summary.json next to this file (``NAME_old.N.json`` ... with ``--tag``, so
earlier results stay), and prints the medians and ratios. With ``--before REV`` other than
7b491be, the earlier code trains with its own copy of the recipe's config.

    python docs/bench/multi30k_speed/run.py --train-steps 150 [--rounds 3]

instead times real training: ``train.py`` with the recipe for that many steps (a metrics
record every 25), before in fp32 (``train.bf16=false``; 7b491be trained in fp32 on the CPU;
another ``--before`` commit trains with its own defaults) and now with its defaults (bf16
here), alternating. A run's figure is the median of its
records' tokens/s, the first record (the warm-up: new shapes, a growing heap) left out.
Writes train_summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BEFORE = "7b491be"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CONFIG = ROOT / "configs" / "multi30k_de_en.yaml"
UNKNOWN_BEFORE = ("keep_checkpoints", "batch_by")  # keys the config has that 7b491be does not know


def clean_env() -> dict[str, str]:
    """The environment without thread or allocator settings: each code runs with its own defaults."""
    tuning = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SEQ2SEQ_MALLOC", "GLIBC_TUNABLES")
    return {k: v for k, v in os.environ.items() if k not in tuning and not k.startswith("MALLOC_")}


def bench(code: Path, config: Path, data: Path, out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "seq2seq", "bench", "--config", str(config), "--skip", "train", "--skip", "threshold",
           "--skip", "decode", "--steps", "20", "--warmup", "3", "--repeats", "1", "--json", str(out),
           f"data.path={data}"]
    subprocess.run(cmd, cwd=code, env=clean_env(), check=True, stdout=subprocess.DEVNULL)
    figures = json.loads(out.read_text())["figures"]
    return {k: figures[f"train_tokens_per_s_{k}"]["value"] for k in ("bf16", "fp32")}


def train(code: Path, config: Path, data: Path, out: Path, steps: int, fp32: bool) -> dict[str, Any]:
    cmd = [sys.executable, "train.py", "--config", str(config), "--out", str(out), f"data.path={data}",
           f"train.max_steps={steps}", "train.log_every=25", "train.valid_max_sentences=100",
           "tracking.wandb=disabled", *(["train.bf16=false"] if fp32 else [])]
    subprocess.run(cmd, cwd=code, env=clean_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["train/tokens_per_s"] for r in records if "train/tokens_per_s" in r][1:]  # the first: warm-up
    return {"tokens_per_s": statistics.median(rates), "records_tokens_per_s": rates}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", type=Path, default=ROOT / "data" / "multi30k",
                   help="the raw Multi30k files (python -m seq2seq download multi30k)")
    p.add_argument("--train-steps", type=int, default=0, help="time train.py for this many steps instead")
    p.add_argument("--before", default=BEFORE, help=f"the earlier commit (default {BEFORE})")
    p.add_argument("--tag", default="", help="prefix of the files written (default none)")
    args = p.parse_args()
    prefix = f"{args.tag}_" if args.tag else ""
    data = args.data.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), args.before], cwd=ROOT, check=True)
        try:
            old_config = old / "configs" / "multi30k_de_en.yaml"
            if args.before == BEFORE:
                old_config = old / "multi30k_de_en.yaml"
                old_config.write_text("".join(line for line in CONFIG.read_text().splitlines(keepends=True)
                                              if not line.strip().startswith(UNKNOWN_BEFORE)))
            runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
            for r in range(1, args.rounds + 1):
                for name, code, config in (("old", old, old_config), ("new", ROOT, CONFIG)):
                    result: dict[str, Any]
                    if args.train_steps:
                        result = train(code, config, data, Path(tmp) / f"{name}.{r}", args.train_steps,
                                       fp32=name == "old" and args.before == BEFORE)
                    else:
                        result = bench(code, config, data, HERE / f"{prefix}{name}.{r}.json")
                    runs[name].append(result)
                    print(f"round {r} {name}: {result}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=True)
    summary: dict[str, Any]
    if args.train_steps:
        med = {n: statistics.median(x["tokens_per_s"] for x in v) for n, v in runs.items()}
        old_name = "before_fp32" if args.before == BEFORE else "before_default"
        summary = {"command": f"train.py --config configs/multi30k_de_en.yaml train.max_steps={args.train_steps}",
                   "before": args.before, "median_tokens_per_s": {old_name: med["old"], "now_default": med["new"]},
                   "now_vs_before": med["new"] / med["old"],
                   "per_round_now_vs_before": [n["tokens_per_s"] / o["tokens_per_s"]
                                               for o, n in zip(runs["old"], runs["new"])], "runs": runs}
    else:
        med = {f"{n}_{k}": statistics.median(x[k] for x in v) for n, v in runs.items() for k in ("bf16", "fp32")}
        summary = {"before": args.before, "medians_tokens_per_s": med, "runs": runs,
                   "new_bf16_vs_old_fp32": med["new_bf16"] / med["old_fp32"],
                   "new_bf16_vs_new_fp32": med["new_bf16"] / med["new_fp32"],
                   "new_vs_old_bf16": med["new_bf16"] / med["old_bf16"],
                   "new_vs_old_fp32": med["new_fp32"] / med["old_fp32"],
                   "per_round_new_vs_old_bf16": [n["bf16"] / o["bf16"] for o, n in zip(runs["old"], runs["new"])]}
    summary["load_average_end"] = os.getloadavg()
    out_name = prefix + ("train_summary.json" if args.train_steps else "summary.json")
    (HERE / out_name).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
