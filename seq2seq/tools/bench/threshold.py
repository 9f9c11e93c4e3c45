"""Time to a quality threshold: train until the first epoch whose validation metric reaches it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ...config import Config
from ...training.trainer import train
from ..runs import first_crossing, output_to, read_metrics


def default_threshold(cfg: Config, quick: bool) -> tuple[str, float]:
    """(metric in metrics.jsonl, threshold): exact match for synthetic tasks, BLEU otherwise."""
    if cfg.data.source == "dates":
        return "valid/exact_match", 20.0 if quick else 90.0
    if cfg.data.source == "addition":
        return "valid/exact_match", 50.0
    return "valid/bleu", 15.0


@dataclass
class ThresholdRun:
    seconds: float | None  # time/seconds at the first crossing; None: not reached
    epoch: int | None
    step: int | None
    best: float  # the best value of the metric seen
    epochs_run: int
    checkpoint: Path


@contextlib.contextmanager
def quiet_training(log: Path) -> Iterator[None]:
    """The trainer's printing goes to ``log``; W&B stays off whatever the environment says."""
    old = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "disabled"
    try:
        with output_to(log):
            yield
    finally:
        if old is None:
            del os.environ["WANDB_MODE"]
        else:
            os.environ["WANDB_MODE"] = old


def run_to_threshold(cfg: Config, out: Path, metric: str, threshold: float, max_epochs: int) -> ThresholdRun:
    """Train into ``out`` until an epoch's ``metric`` reaches ``threshold`` (or ``max_epochs``).

    The run is extended one epoch at a time with ``train(..., resume=True)``, which continues
    exactly where the previous call stopped (weights, optimizer, schedule, random state), so it
    stops at the first crossing instead of training every epoch. A cosine schedule depends on
    the epoch count, so such a run is made in one call of ``max_epochs`` instead.
    """
    cfg = replace(cfg, train=replace(cfg.train, progress=False), tracking=replace(cfg.tracking, wandb="disabled"))
    one_call = cfg.train.lr_schedule == "cosine"
    records: list[dict[str, Any]] = []
    hit = None
    epochs_run = 0
    with quiet_training(out.parent / f"{out.name}.log"):
        for epochs in ([max_epochs] if one_call else range(1, max_epochs + 1)):
            summary = train(replace(cfg, train=replace(cfg.train, epochs=epochs)), out, resume=epochs_run > 0)
            records = [r for r in read_metrics(out) if metric in r]
            hit = first_crossing(records, metric, threshold)
            if hit is not None or summary["epoch"] <= epochs_run:  # reached, or stopped early
                break
            epochs_run = summary["epoch"]
    epochs_run = max((int(r["epoch"]) for r in records), default=0)
    best = max((float(r[metric]) for r in records), default=float("nan"))
    if hit is None:
        return ThresholdRun(None, None, None, best, epochs_run, out / "best")
    return ThresholdRun(float(hit["time/seconds"]), int(hit["epoch"]), int(hit["step"]), best, epochs_run,
                        out / "best")
