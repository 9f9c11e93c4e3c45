"""Training a sweep's variants, one after another or ``--jobs`` at a time, in its output folder.

Each variant trains through :func:`seq2seq.training.trainer.train` into ``<out>/<name>/``. A
re-run skips finished variants (and those that diverged), resumes unfinished ones (also to a
larger ``train.epochs``: point the full sweep's ``--out`` at a copy of the ``--quick`` one to
go on from there), and refuses a run directory that holds a different config.
A folder the sweep makes (or finds empty) gets a mark, ``.seq2seq-sweep``; ``--clean`` deletes
only a marked (or empty) folder and refuses any other, so a mistyped ``--out`` loses nothing.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...config import Config, ConfigError
from ...config.parsing import MAX_CONFIG_BYTES, load_json, read_text
from ...model import checkpoint
from ...training.loop import DivergedError, TrainError
from ...training.rundir import RUN_CONFIG, Progress, load_run_config
from ...training.trainer import train
from ..runs import output_to
from .scoring import TEST_FILE
from .spec import Variant

STATUS_FILE = "sweep.json"  # a variant's outcome: finished, or diverged with the error
LOG_FILE = "sweep.log"  # a variant's output when variants run in parallel (--jobs)
SWEEP_MARK = ".seq2seq-sweep"  # in a folder the sweep made: --clean may delete it


def mark_sweep_folder(out: Path) -> None:
    """Make ``out`` and mark it as the sweep's, if it is new or empty; a folder that already
    holds anything unmarked stays unmarked (``--clean`` will not delete it)."""
    if out.is_dir() and any(out.iterdir()):
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / SWEEP_MARK).write_text("made by python -m seq2seq sweep; --clean may delete this folder\n",
                                  encoding="utf-8")


def clean(out: Path) -> None:
    """``--clean``: delete ``out`` if a sweep made it (marked) or it is empty; refuse anything else."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise ConfigError(f"{out}: not a folder a sweep made; --clean deletes only those, so delete it yourself "
                          "or choose another --out")
    if any(out.iterdir()) and not (out / SWEEP_MARK).is_file():
        raise ConfigError(f"{out}: not a folder a sweep made (no {SWEEP_MARK} in it); --clean deletes only those, "
                          "so delete it yourself or choose another --out")
    shutil.rmtree(out)


def finished(run_dir: Path, cfg: Config) -> bool:
    """True when ``run_dir/last`` is a completed run (stopped early, or all epochs done)."""
    try:
        progress = Progress.from_dict(checkpoint.trainer_state(run_dir / "last")["progress"])
    except (checkpoint.CheckpointError, ValueError, KeyError):
        return False  # no state, or a damaged one: training (resuming) will say what is wrong
    return progress.done or progress.epoch >= cfg.train.epochs


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        status = load_json(read_text(run_dir / STATUS_FILE, MAX_CONFIG_BYTES))
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}  # damaged: as if none


def _same_run(run_dir: Path, cfg: Config) -> None:
    """Refuse a run directory whose saved config differs from ``cfg`` (but for ``train.epochs``)."""
    saved = load_run_config(run_dir / RUN_CONFIG)  # an empty or damaged one is refused, not the defaults
    for section in ("data", "model", "train"):
        old, new = dataclasses.asdict(getattr(saved, section)), dataclasses.asdict(getattr(cfg, section))
        # more (or fewer) epochs is the same run, continued (or already done): a --quick
        # sweep's runs go on to the full count when the full sweep is pointed at them
        diff = next((k for k in new if old.get(k) != new[k] and (section, k) != ("train", "epochs")), None)
        if diff is not None:
            raise TrainError(f"{run_dir}: holds a run with {section}.{diff}={old.get(diff)!r}, this sweep "
                             f"has {new[diff]!r}; use another --out or delete that directory")


def run_variant(variant: Variant, run_dir: Path) -> str:
    """Train one variant unless it is already done; -> its status: finished or diverged."""
    cfg = variant.config
    status = read_status(run_dir)
    if (run_dir / RUN_CONFIG).exists():
        _same_run(run_dir, cfg)
        if status.get("status") == "diverged" or finished(run_dir, cfg):
            print(f"== {variant.name}: already {status.get('status', 'finished')}, skipped", flush=True)
            return str(status.get("status", "finished"))
    resume = (run_dir / "last").is_dir()
    print(f"== {variant.name}: {'resuming' if resume else 'training'} into {run_dir}", flush=True)
    (run_dir / TEST_FILE).unlink(missing_ok=True)
    outcome: dict[str, Any] = {"status": "finished"}
    try:
        train(cfg, run_dir, resume=resume, overwrite=not resume)
    except DivergedError as e:  # the loss went NaN for train.max_bad_steps steps: a result, not a crash
        print(f"== {variant.name}: {e}", file=sys.stderr, flush=True)
        outcome = {"status": "diverged", "message": str(e)}
    (run_dir / STATUS_FILE).write_text(json.dumps(outcome), encoding="utf-8")
    return str(outcome["status"])


def _run_logged(variant: Variant, run_dir: Path, threads: int) -> str:
    """:func:`run_variant` in a worker process, its output appended to ``run_dir/sweep.log``."""
    import torch

    torch.set_num_threads(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    with output_to(run_dir / LOG_FILE, stderr=True):
        return run_variant(variant, run_dir)


def run_variants(variants: Sequence[Variant], out: Path, jobs: int) -> dict[str, str]:
    """Train every variant into ``out/<name>``; -> status by variant name."""
    if jobs <= 1:
        return {v.name: run_variant(v, out / v.name) for v in variants}
    return _run_parallel(variants, out, jobs)


def _run_parallel(variants: Sequence[Variant], out: Path, jobs: int) -> dict[str, str]:
    """Train ``jobs`` variants at a time, each in its own process with an equal share of the
    CPU threads (``os.cpu_count() // jobs``, at least 1); -> status by variant name. A worker's
    error stops the sweep with that variant's name once the running ones are done."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    statuses: dict[str, str] = {}
    ctx = multiprocessing.get_context("spawn")  # no forked torch or W&B state
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_run_logged, v, out / v.name, threads): v for v in variants}
        for v in variants:
            print(f"== {v.name}: queued, log in {out / v.name / LOG_FILE}", flush=True)
        for fut in concurrent.futures.as_completed(futures):
            v = futures[fut]
            try:
                statuses[v.name] = fut.result()
            except Exception as e:
                for f in futures:
                    f.cancel()
                raise TrainError(f"variant {v.name}: {e} (see {out / v.name / LOG_FILE})") from e
            print(f"== {v.name}: {statuses[v.name]}", flush=True)
    return {v.name: statuses[v.name] for v in variants}
