"""A trained run's published figures: ``python -m seq2seq results --run DIR --name NAME --json FILE``.

Scores the run's ``best/`` checkpoint on its validation and test splits, greedy and with
beam search (sacreBLEU BLEU and chrF, with signatures, and BLEU by source length), reads
the training time and epochs from the run's ``metrics.jsonl``, and writes the entry
``NAME`` into ``FILE`` (a JSON list of entries, one per recipe; an entry of the same name
is replaced, the others are kept; the file is replaced atomically). Prints the entry as a
markdown table row. ``--command`` records how the run was trained.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..cli.errors import check_positive, run_command
from ..cli.usage import examples
from ..config.parsing import ParseError, load_json


def training_record(run: Path) -> dict[str, Any]:
    """Epochs, steps and training seconds (validation included) from ``run/metrics.jsonl``."""
    path = run / "metrics.jsonl"
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise ValueError(f"{path}: not found (is {run} a run directory?)") from None
    epochs = [r for r in records if "valid/bleu" in r]
    if not epochs:
        raise ValueError(f"{path}: no finished epoch")
    last = epochs[-1]
    best = max(epochs, key=lambda r: r["valid/bleu"])
    return {"epochs": int(last["epoch"]), "steps": int(last["step"]), "training_seconds": round(last["time/seconds"]),
            "best_epoch": int(best["epoch"]), "valid_bleu_by_epoch": [round(r["valid/bleu"], 2) for r in epochs]}


def score_run(run: Path, beam: int, device: str = "cpu", checkpoint: str = "best") -> dict[str, Any]:
    """{split: {"greedy": scores, "beam": scores}} for the valid and test splits of ``run/checkpoint``."""
    from ..data.corpus import load_split
    from ..runtime.device import select_device
    from ..translation.evaluation import evaluate_split
    from ..translation.translator import Translator

    translator = Translator.from_checkpoint(run / checkpoint, select_device(device, "--device"))
    beam = translator.beam_size(beam)  # what is recorded is what decodes; under 1: refused before any decoding
    data = translator.data
    out: dict[str, Any] = {}
    for split in (data.test_split, data.valid_split):
        pairs = load_split(data, split)
        sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
        out[split] = {}
        for name, size in (("greedy", 1), ("beam", beam)):
            start = time.perf_counter()
            result = evaluate_split(translator, sources, refs, size, edges=(8, 12, 16, 20, 25))
            seconds = time.perf_counter() - start
            s = result.scores
            out[split][name] = {"beam": size, "bleu": round(s.bleu, 2), "chrf": round(s.chrf, 2),
                                "bleu_signature": s.bleu_signature, "chrf_signature": s.chrf_signature,
                                "sentences": s.n, "decode_seconds": round(seconds, 1),
                                "buckets": [asdict(b) for b in result.buckets]}
            print(f"{split} {name}: BLEU {s.bleu:.2f} chrF {s.chrf:.2f} ({seconds:.0f} s)", file=sys.stderr)
    return out


def write_entry(path: Path, entry: dict[str, Any]) -> None:
    """Replace (or add) the entry of ``entry["name"]`` in the JSON list at ``path``, atomically."""
    entries: list[dict[str, Any]] = []
    if path.exists():
        try:
            entries = load_json(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, ParseError) as e:
            raise ValueError(f"{path}: not valid JSON ({e}); not overwritten") from None
        if not isinstance(entries, list):
            raise ValueError(f"{path}: must hold a JSON list of entries; not overwritten")
    entries = [e for e in entries if e.get("name") != entry["name"]] + [entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def table_row(entry: dict[str, Any], test: str, valid: str) -> str:
    """``| name | command | time, epochs | valid BLEU | test BLEU | test chrF |``, greedy / beam each."""
    t, v = entry[test], entry[valid]

    def pair(split: dict[str, Any], key: str) -> str:
        return f"{split['greedy'][key]:.1f} / {split['beam'][key]:.1f}"

    return (f"| {entry['name']} | `{entry['command']}` | {entry['training_seconds'] / 60:.0f} min, "
            f"{entry['epochs']} epochs | {pair(v, 'bleu')} | {pair(t, 'bleu')} | {pair(t, 'chrf')} |")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq results", description=__doc__.split("\n\n")[0],
        **examples(
            "python -m seq2seq results --run runs/multi30k_de_en_attention --name attention --json results.json",
        ))
    p.add_argument("--run", type=Path, required=True, help="a finished run directory (best/, metrics.jsonl)")
    p.add_argument("--name", required=True, help="the entry's name, e.g. the recipe")
    p.add_argument("--json", type=Path, required=True, help="the results file to update")
    p.add_argument("--config", default=None, help="the recipe's config file, as recorded (default: the run's)")
    p.add_argument("--command", default="", help="the command that trained the run, as recorded")
    p.add_argument("--beam", type=int, default=5, help="beam size of the beam figures (default 5)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--note", default="", help="anything a reader must know (load, cut short, ...)")
    p.add_argument("--checkpoint", default="best",
                   help="the run's checkpoint to score: best (default), or e.g. averaged (python -m seq2seq average)")
    args = p.parse_args(argv)

    def work() -> int:
        import torch

        from ..model.checkpoint import load
        from ..runtime.device import cpu_name, describe, select_device

        check_positive(args, "beam")
        if Path(args.checkpoint).name != args.checkpoint or args.checkpoint in ("", ".", ".."):
            raise ValueError(f"--checkpoint must name a checkpoint folder inside --run, got {args.checkpoint!r}")
        cfg = load(args.run / args.checkpoint).config
        device = select_device(args.device, "--device")
        entry = {"name": args.name, "config": args.config or str(args.run / "config.yaml"), "command": args.command,
                 "device": {"type": device.type, "name": cpu_name() if device.type == "cpu" else
                            torch.cuda.get_device_name(device), "cores": os.cpu_count(),
                            "precision": describe(cfg.train.bf16, device)},
                 "test_split": cfg.data.test_split, "valid_split": cfg.data.valid_split,
                 **training_record(args.run), "checkpoint": args.checkpoint, "note": args.note,
                 "scored": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        entry.update(score_run(args.run, args.beam, args.device, args.checkpoint))
        write_entry(args.json, entry)
        print(table_row(entry, cfg.data.test_split, cfg.data.valid_split))
        return 0

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
