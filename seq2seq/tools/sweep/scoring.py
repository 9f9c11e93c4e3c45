"""Scoring a sweep's trained variants: test-split scores of each ``best/`` (cached in the run
directory), and a variant's row of the results table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...config.parsing import MAX_CONFIG_BYTES, load_json, read_text
from ...data.corpus import load_split
from ...model import checkpoint
from ...model.seq2seq import count_parameters
from ...runtime.device import select_device
from ...translation.evaluation import evaluate_split
from ...translation.translator import Translator
from ..runs import read_metrics
from .spec import LM_METRICS, METRICS, Sweep, Variant, shown

TEST_FILE = "test.json"  # test-split scores of best/, cached


def evaluate_test(run_dir: Path, sweep: Sweep) -> dict[str, Any]:
    """Greedy test-split scores of ``run_dir/best``, with scores by source length; cached.
    A language model's: the test record its training wrote (:func:`lm_test`)."""
    if sweep.variants[0].config.data.task == "lm":
        return lm_test(run_dir)
    cache = run_dir / TEST_FILE
    if cache.exists():
        try:
            cached = load_json(read_text(cache, MAX_CONFIG_BYTES))
        except (OSError, ValueError):
            cached = None
        if isinstance(cached, dict):
            return cached  # else damaged: scored again below
    try:
        loaded = checkpoint.load(run_dir / "best")
    except checkpoint.CheckpointError:
        return {}  # e.g. diverged in the first epoch: nothing to evaluate
    cfg = loaded.config
    device = select_device(cfg.train.device)
    loaded.model.to(device)
    pairs = load_split(cfg.data, cfg.data.test_split)
    translator = Translator(loaded.model, loaded.src_tok, loaded.tgt_tok, cfg.data, cfg.decode, device)
    ev = evaluate_split(translator, [s for s, _ in pairs], [t for _, t in pairs], beam_size=1,
                        edges=sweep.length_edges, length_unit=sweep.length_unit)
    s = ev.scores
    buckets = [{"label": b.label, "n": b.n, "bleu": b.bleu, "exact_match": exact}
               for b, exact in zip(ev.buckets, ev.bucket_exact_match)]
    result = {"exact_match": s.exact_match, "bleu": s.bleu, "chrf": s.chrf, "n": s.n,
              "params": count_parameters(loaded.model), "buckets": buckets}
    cache.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def lm_test(run_dir: Path) -> dict[str, Any]:
    """A language model's test figures (perplexity as trained and by sentence, bits per
    character: the last ``test/`` record of its ``metrics.jsonl``) and its parameter count."""
    records = [r for r in read_metrics(run_dir) if "test/ppl" in r]
    if not records:
        return {}
    try:
        params = count_parameters(checkpoint.load_lm(run_dir / "best").model)
    except checkpoint.CheckpointError:
        params = 0
    test = records[-1]
    return {"ppl": test["test/ppl"], "ppl_sentence": test.get("test/ppl_sentence", ""), "bpc": test["test/bpc"],
            "params": params}


def summarize(variant: Variant, run_dir: Path, status: str, sweep: Sweep) -> dict[str, Any]:
    """One table row: axis values, parameters, best validation scores, test scores, time."""
    records = read_metrics(run_dir)
    lm = variant.config.data.task == "lm"
    valid = [r for r in records if ("valid/ppl" if lm else "valid/bleu") in r]
    test = evaluate_test(run_dir, sweep)
    try:
        seconds = float(checkpoint.trainer_state(run_dir / "last")["progress"]["elapsed"])
    except (checkpoint.CheckpointError, ValueError, KeyError, TypeError):
        seconds = max((r.get("time/seconds", 0.0) for r in valid), default=0.0)
    row: dict[str, Any] = {"variant": variant.name}
    for key in dict.fromkeys(k for v in sweep.variants for k in v.overrides):  # the axes, as configured
        section, _, name = key.partition(".")
        row[name] = shown(getattr(getattr(variant.config, section), name))
    row["params"] = test.get("params", "")
    if lm:
        for m in LM_METRICS:
            row[f"valid_{m}"] = min((r[f"valid/{m}"] for r in valid), default="")
        row.update({"test_ppl": test.get("ppl", ""), "test_ppl_sentence": test.get("ppl_sentence", ""),
                    "test_bpc": test.get("bpc", "")})
    else:
        for m in METRICS[:3]:
            row[f"valid_{m}"] = max((r[f"valid/{m}"] for r in valid), default="")
        row["test_exact_match"] = test.get("exact_match", "")
        row["test_bleu"] = test.get("bleu", "")
    if sweep.reference:
        row[f"reference_{sweep.metric}"] = sweep.reference.get(variant.name, "")
    row.update({"epochs": len(valid), "seconds": round(seconds), "status": status})
    return row
