"""The GPU check's parts: the environment, the CUDA checks, training throughput against the
graph ceiling, the recipe trained to its end, and decoding with its model. Each returns the
figures the report records."""

from __future__ import annotations

import math
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runs import first_crossing, output_to, read_metrics
from .checks import CUDA_CHECKS, ROOT
from .report import say

RECIPE = "configs/multi30k_de_en.yaml"
REFERENCE_BLEU = 22.6  # REFERENCE.md: a naive GPU loop reached it in ~100 s
# The graph ceiling: target tokens/s of a plain script of this model (2 x 512 LSTM, embedding
# 256, BPE 8k, peeky, bf16) with the whole step in one CUDA graph, on an H100, by batch size.
GRAPH_CEILING = {128: 705_000, 256: 1_100_000, 512: 1_550_000, 4096: 2_410_000}


def environment(device_name: str) -> dict[str, Any]:
    import torch

    from ...runtime.device import select_device
    from ..measuring import device_info

    device = select_device(device_name)
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device_info(device)}
    if device.type == "cuda":
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info


def cuda_checks(out: Path, device_name: str) -> dict[str, Any]:
    """Each CUDA check on the device (skipped when it is the CPU); raises if any failed."""
    from ...runtime.device import select_device

    device = select_device(device_name)
    if device.type != "cuda":
        return {"skipped": f"device is {device.type}: the CUDA checks need CUDA", "checks": {}}
    results: dict[str, str] = {}
    for name, check in CUDA_CHECKS.items():
        tmp = out / "cuda_checks" / name
        with output_to(out / "cuda_checks.log"):
            try:
                check(tmp, "cuda")
                results[name] = "passed"
            except Exception as e:  # noqa: BLE001 - each check's outcome is recorded
                results[name] = f"FAILED: {type(e).__name__}: {e}"[:1000]
    failed = [n for n, r in results.items() if r != "passed"]
    if failed:
        raise RuntimeError(f"CUDA checks failed: {', '.join(failed)}: {results}")
    return {"checks": results}


def graph_ceiling(batch_size: int) -> float | None:
    """:data:`GRAPH_CEILING` at ``batch_size``: measured, or interpolated between the two
    measured sizes around it (linear in log batch size); None outside them."""
    sizes = sorted(GRAPH_CEILING)
    if batch_size in GRAPH_CEILING:
        return float(GRAPH_CEILING[batch_size])
    for lo, hi in zip(sizes, sizes[1:]):
        if lo < batch_size < hi:
            w = math.log(batch_size / lo) / math.log(hi / lo)
            return GRAPH_CEILING[lo] + w * (GRAPH_CEILING[hi] - GRAPH_CEILING[lo])
    return None


def train_throughput(overrides: Sequence[str], batch_sizes: Sequence[int], steps: int,
                     device_name: str) -> dict[str, Any]:
    """Target tokens/s of the training step at each batch size, three ways: ``eager`` (today's
    batches and packed encoder, the bench's loop), ``static`` (static shapes, eager steps) and
    ``graphed`` (static shapes, each shape's step in a CUDA graph; on the CPU the capture fails
    and the steps run eagerly: ``graph_failure`` says why). ``vs_ceiling``: graphed over
    :func:`graph_ceiling`."""
    from ...config import load_config
    from ...runtime.device import select_device
    from ...training.batches import prepare_data
    from ..bench.steps import bench_batches, time_static_steps, time_train_steps

    cfg = load_config(ROOT / RECIPE, [*overrides, f"train.device={device_name}"])
    device = select_device(cfg.train.device)
    data = prepare_data(cfg)
    rows: list[dict[str, Any]] = []
    best = 0
    for size in batch_sizes:
        sized = load_config(ROOT / RECIPE, [*overrides, f"train.device={device_name}", f"train.batch_size={size}"])
        batches = bench_batches(sized, data, steps + 3)
        eager, peak = time_train_steps(sized, data, batches, 3, 1.0, device)
        static, _, _ = time_static_steps(sized, data, steps, device, graphs=False)
        graphed, graphed_peak, failure = time_static_steps(sized, data, steps, device, graphs=True)
        ceiling = graph_ceiling(size)
        best = max(best, round(eager), round(static), round(graphed))
        rows.append({"batch_size": size, "tokens_per_s": round(eager), "static_tokens_per_s": round(static),
                     "graphed_tokens_per_s": round(graphed), "graph_failure": failure,
                     "ceiling_tokens_per_s": round(ceiling) if ceiling else None,
                     "vs_ceiling": round(graphed / ceiling, 3) if ceiling else None,
                     "peak_mib": round(peak), "graphed_peak_mib": round(graphed_peak)})
        say(f"batch {size}: {eager:,.0f} target tokens/s eager, {static:,.0f} static, "
            f"{graphed:,.0f} graphed" + (f" (capture failed: {failure})" if failure else ""))
    ratios = [r["vs_ceiling"] for r in rows if r["vs_ceiling"] is not None]
    return {"rows": rows, "best_tokens_per_s": best,
            "worst_vs_ceiling": min(ratios) if ratios else None}


def recipe(out: Path, overrides: Sequence[str], timeout: float) -> dict[str, Any]:
    """The recipe trained to its end in a subprocess, stopped by SIGTERM at ``timeout`` s.
    Its run folder is new (one an earlier check left is removed first), so every figure is this
    run's. SIGTERM or Ctrl-C to the check is passed on to train.py, which saves ``last/``; the
    check waits for it (at most :data:`STOP_WAIT` s, then kills it) and re-raises with the
    figures so far as the exception's ``figures``: no train.py outlives the check."""
    run, log = out / "recipe", out / "recipe.log"
    if run.is_dir():
        shutil.rmtree(run)
    cmd = [sys.executable, "train.py", "--config", RECIPE, "--out", str(run), "--overwrite",
           "train.progress=false", "tracking.wandb=disabled", "train.keep_checkpoints=0", *overrides]
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        try:
            try:
                status = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)  # saves last/; best/ is what was reached
                status = proc.wait(timeout=STOP_WAIT)
        except BaseException as e:  # a signal to the check (or a stop that hung): the child goes too
            _stop(proc, signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM)
            e.figures = _recipe_figures(cmd, run, log, proc.returncode, time.perf_counter() - start)  # type: ignore[attr-defined]
            raise
    figures = _recipe_figures(cmd, run, log, status, time.perf_counter() - start)
    if not (run / "best").is_dir():
        raise RuntimeError(f"training wrote no checkpoint (exit status {status}); see {log}")
    return figures


STOP_WAIT = 120.0  # seconds train.py has to save last/ after SIGTERM, before it is killed


def _stop(proc: subprocess.Popen[bytes], signum: int) -> None:
    """End ``proc``: ``signum`` (if it still runs), :data:`STOP_WAIT` s to exit, then SIGKILL."""
    try:
        if proc.poll() is None:
            proc.send_signal(signum)
            proc.wait(timeout=STOP_WAIT)
    finally:  # a second signal, or the wait ran out
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _recipe_figures(cmd: Sequence[str], run: Path, log: Path, status: int | None, wall: float) -> dict[str, Any]:
    records = read_metrics(run)
    epochs = [r for r in records if "valid/bleu" in r]
    hit = first_crossing(epochs, "valid/bleu", REFERENCE_BLEU)
    tokens = [r["train/tokens_per_s"] for r in records if "train/tokens_per_s" in r]
    return {"command": " ".join(cmd[1:]), "exit_status": status, "wall_seconds": round(wall, 1),
            "training_seconds": round(epochs[-1]["time/seconds"], 1) if epochs else None,
            "epochs": len(epochs), "finished": status == 0,
            "valid_bleu_by_epoch": [round(r["valid/bleu"], 2) for r in epochs],
            "seconds_to_reference_bleu": round(hit["time/seconds"], 1) if hit else None,
            "median_train_tokens_per_s": round(sorted(tokens)[len(tokens) // 2]) if tokens else None,
            "run": str(run), "log": str(log)}


def decode(run: Path, device_name: str, beam: int) -> dict[str, Any]:
    """Test BLEU and sentences/s, greedy and beam, with the recipe's best/ checkpoint."""
    from ...config import load_config
    from ...data.corpus import load_split
    from ...runtime.device import select_device
    from ...translation.evaluation import score
    from ...translation.translator import Translator
    from ..bench.steps import time_decoding

    device = select_device(device_name)
    translator = Translator.from_checkpoint(run / "best", device)
    pairs = load_split(translator.data, translator.data.test_split)
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    cfg = load_config(run / "best" / "config.yaml")
    result: dict[str, Any] = {"split": translator.data.test_split, "sentences": len(pairs)}
    for name, size in (("greedy", 1), (f"beam{beam}", beam)):
        per_s, peak = time_decoding(translator, sources, size, cfg, device)
        s = score(translator.translate_best(sources, beam_size=size), refs)
        result[name] = {"sentences_per_s": round(per_s, 1), "peak_mib": round(peak), "bleu": round(s.bleu, 2),
                        "chrf": round(s.chrf, 2), "bleu_signature": s.bleu_signature}
    return result
