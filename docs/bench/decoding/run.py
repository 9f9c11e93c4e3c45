"""Decoding speed and quality of a trained translator on a test set: sentences/s, mean
output length and BLEU, greedy and beam, for several precisions, and optionally the same at
an earlier commit, in fresh processes, alternating, over several rounds.

    python docs/bench/decoding/run.py --checkpoint runs/multi30k_de_en_attention \\
        --data data/multi30k [--before REV] [--rounds 3] [--beams 1 5]

From the repository root, on a quiet machine, in the project's venv. Each measurement is one
process: it loads the checkpoint, translates the first 64 test sentences once (warm-up), then
times ``Translator.translate`` on all of them (model loaded, tokenization included), and
writes its translations. Variants: this code in fp32, in bf16 (``decode.bf16=true``) where
the CPU has native bf16, and int8 (``decode.quantize=int8``); with ``--before REV``, that
commit's code (checked out into a temporary git worktree) with its own defaults. Writes
``decoding.json`` (or ``--json``) and prints a Markdown table: median sentences/s of the
rounds, the speed-up against the first variant, BLEU (sacrebleu, default 13a tokenization)
and the share of translations equal to the first variant's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]

# One measurement, run in a fresh process with the code under test first on sys.path.
HARNESS = r"""
import dataclasses, json, sys, time
import torch
from seq2seq.translation.translator import Translator
from seq2seq.model import checkpoint
args = json.loads(sys.argv[1])
loaded = checkpoint.load(args["checkpoint"], "cpu")
fields = {f.name for f in dataclasses.fields(loaded.config.decode)}
if args["decode"].get("bf16") is False and "bf16" not in fields:
    del args["decode"]["bf16"]  # code without bf16 decoding decodes in fp32
unknown = set(args["decode"]) - fields
if unknown:
    sys.exit(f"this code's decode section has no {sorted(unknown)}")
decode = dataclasses.replace(loaded.config.decode, **args["decode"])
translator = Translator.from_checkpoint(args["checkpoint"], "cpu", decode=decode)
lines = [l.rstrip("\n") for l in open(args["source"], encoding="utf-8")]
translator.translate_best(lines[:64], beam_size=args["beam"])
start = time.perf_counter()
out = translator.translate_best(lines, beam_size=args["beam"])
seconds = time.perf_counter() - start
pieces = [len(translator.tgt_tok.encode(t)) for t in out]
json.dump({"seconds": seconds, "sentences": len(lines), "threads": torch.get_num_threads(),
           "mean_output_pieces": sum(pieces) / len(pieces), "translations": out}, open(args["out"], "w"))
"""


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return [line.rstrip("\n") for line in f]


def find_split(data: Path, split: str, lang: str) -> Path:
    for name in (f"{split}.{lang}", f"{split}.{lang}.gz"):
        if (data / name).is_file():
            return data / name
    sys.exit(f"error: no {split}.{lang}[.gz] in {data}")


def measure(code: Path, checkpoint: Path, source: Path, beam: int, decode: dict[str, Any], out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code), "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    args = {"checkpoint": str(checkpoint), "source": str(source), "beam": beam, "decode": decode, "out": str(out)}
    tune = "import seq2seq.runtime as r; r.tune(); "  # what `python -m seq2seq` does before torch loads
    subprocess.run([sys.executable, "-c", tune + HARNESS, json.dumps(args)], cwd=code, env=env, check=True)
    return json.loads(out.read_text())


def bleu(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu
    return round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)


def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": model, "cores": os.cpu_count(), "bf16": [f for f in ("amx_bf16", "avx512_bf16") if f in flags],
            "python": platform.python_version(), "load_average": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "multi30k")
    ap.add_argument("--split", default="test_2016_flickr")
    ap.add_argument("--src", default="de")
    ap.add_argument("--tgt", default="en")
    ap.add_argument("--before", help="an earlier commit to compare with (its own defaults)")
    ap.add_argument("--variants", nargs="+", default=["fp32", "bf16", "int8"], choices=["fp32", "bf16", "int8"])
    ap.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "decoding.json")
    a = ap.parse_args()
    if not a.checkpoint.exists():
        sys.exit(f"error: no checkpoint at {a.checkpoint}")
    source, refs = find_split(a.data, a.split, a.src), read_lines(find_split(a.data, a.split, a.tgt))
    settings = {"fp32": {"bf16": False}, "bf16": {"bf16": True}, "int8": {"quantize": "int8"}}
    variants: list[tuple[str, Path, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "source.txt"
        plain.write_text("\n".join(read_lines(source)) + "\n", encoding="utf-8")
        if a.before:
            before = Path(tmp) / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(before), a.before], cwd=ROOT, check=True,
                           capture_output=True)
            variants.append((f"{a.before} (its defaults)", before, {}))
        variants += [(name, ROOT, settings[name]) for name in a.variants]
        runs: dict[str, list[dict[str, Any]]] = {}
        try:
            for r in range(a.rounds):
                for beam in a.beams:
                    for name, code, decode in variants:
                        got = measure(code, a.checkpoint.resolve(), plain, beam, decode, Path(tmp) / "out.json")
                        runs.setdefault(f"{name}|{beam}", []).append(got)
                        print(f"round {r + 1} beam {beam} {name}: {got['sentences'] / got['seconds']:.1f} sentences/s",
                              file=sys.stderr)
        finally:
            if a.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)
    rows = []
    for beam in a.beams:
        base = runs[f"{variants[0][0]}|{beam}"]
        base_speed = statistics.median(x["sentences"] / x["seconds"] for x in base)
        for name, _, decode in variants:
            rs = runs[f"{name}|{beam}"]
            speed = statistics.median(x["sentences"] / x["seconds"] for x in rs)
            same = sum(h == g for h, g in zip(rs[0]["translations"], base[0]["translations"])) / len(refs)
            rows.append({"variant": name, "decode": decode, "beam": beam, "sentences_per_s": round(speed, 2),
                         "per_round": [round(x["sentences"] / x["seconds"], 2) for x in rs],
                         "speedup": round(speed / base_speed, 2), "bleu": bleu(rs[0]["translations"], refs),
                         "mean_output_pieces": round(rs[0]["mean_output_pieces"], 2), "same_as_first": round(same, 3),
                         "threads": rs[0]["threads"]})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit, "dirty": dirty,
              "command": " ".join(["python", *sys.argv]), "machine": machine(), "checkpoint": str(a.checkpoint),
              "test_set": f"{a.split} ({len(refs)} sentences)", "rows": rows}
    a.json.write_text(json.dumps(result, indent=2) + "\n")
    print("| variant | beam | sentences/s | speed-up | BLEU | mean output pieces | same output as first |")
    print("|---|---|---|---|---|---|---|")
    for x in rows:
        print(f"| {x['variant']} | {x['beam']} | {x['sentences_per_s']} | {x['speedup']}x | {x['bleu']} | "
              f"{x['mean_output_pieces']} | {100 * x['same_as_first']:.1f}% |")


if __name__ == "__main__":
    main()
