"""The run directory: what a training run writes there, and what ``--resume`` restores.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one record
per logging interval and epoch), ``best/`` (the checkpoint with the best validation score)
and ``last/`` (the latest checkpoint, with the trainer state: :class:`Progress`, the
optimizer, and every rank's random number generators, so that a resumed run takes exactly
the steps the uninterrupted one would have).

Nothing of a run is lost to a start that fails. ``--overwrite`` leaves the old run in place
until the new one has its data, tokenizers and model (:func:`replace_run`); ``config.yaml``
is written whole (temp file + rename) and only once a start or resume has succeeded; and a
run killed before its first checkpoint is resumed from its beginning.

One training process at a time owns a run directory (:func:`lock_run_dir`, an ``flock`` on
``.lock`` that the kernel releases when the process dies, ``kill -9`` included).
"""

from __future__ import annotations

import dataclasses
import fcntl
import math
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import SECTIONS, Config, load_config
from ..config.parsing import MAX_CONFIG_BYTES, load_yaml, read_text
from ..data.tokenization import Tokenizer
from ..model import checkpoint
from ..runtime import distributed
from ..runtime.distributed import World

RUN_CONFIG = "config.yaml"
RUN_FILES = (RUN_CONFIG, "metrics.jsonl", "metrics.jsonl.tmp", "last", "best", "last.old", "best.old", "last.tmp",
             "best.tmp", "wandb", "epochs")  # what a run writes; --overwrite replaces these, and nothing else
REPLACED = ".replaced"  # the old run's files while --overwrite swaps in the new run
LOCK = ".lock"  # held (flock) by the training process that owns the run directory; holds its pid


class RunDirError(RuntimeError):
    """A run directory that cannot be used as asked; the message says why in one line."""


# --- the directory ---------------------------------------------------------------------
@contextmanager
def lock_run_dir(out: Path) -> Iterator[None]:
    """Own ``out`` (made if missing) while the block runs: a second training, resume or
    ``--overwrite`` of the same directory is refused in one line naming this process's pid.

    The lock is an exclusive ``flock`` on ``out/.lock``; the kernel drops it when the process
    ends however it ends, so the file a ``kill -9`` leaves behind blocks nobody. The file is
    removed on release; a process that locked a file since removed tries again on the new one.
    """
    path = out / LOCK
    for _ in range(100):  # a race with releases that unlink the file: bounded, normally one pass
        try:
            out.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"{out}: output directory is not writable ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"{out}: in use by another training process (pid {holder}); wait for it to "
                              "end, or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its holder removed on release: lock the current one
    else:
        raise RunDirError(f"{out}: could not lock {LOCK} (it keeps being replaced)")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        with suppress(OSError):
            path.unlink(missing_ok=True)  # while still locked: nobody can have locked this file meanwhile
        os.close(fd)


def check_run_dir(out: Path, cfg: Config, *, resume: bool, overwrite: bool) -> None:
    """Refuse a directory that is not writable or holds another run (unless asked). Changes
    nothing of a run in it: :func:`replace_run` does, once the new run is ready to start (a
    replacement cut short by a crash is undone first, :func:`undo_replace`)."""
    undo_replace(out)
    holds_run = any((out / n).exists() for n in (RUN_CONFIG, "last", "best", "metrics.jsonl"))
    if resume:
        if not holds_run:
            raise RunDirError(f"{out}: nothing to resume (no run in this directory)")
        saved = load_run_config(out / RUN_CONFIG)
        for section in ("data", "model"):
            if getattr(saved, section) != getattr(cfg, section):
                raise RunDirError(f"{out}: holds a run with a different {section} config; "
                                 "resume it with its own config, or use another --out")
    elif holds_run and not overwrite:
        raise RunDirError(f"{out}: already holds a run; add --resume to continue it, "
                         "--overwrite to replace it, or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"{out}: output directory is not writable ({e.strerror})") from None


def load_run_config(path: Path) -> Config:
    """A run's own ``config.yaml``. It is written whole, every section, so an empty or cut one is
    damaged, not a config of defaults: refused in one line naming the file."""
    checkpoint.check_regular_files(path.parent, (path.name,))  # a FIFO would block the read
    try:
        saved = load_config(path)
        raw = load_yaml(read_text(path, MAX_CONFIG_BYTES))  # load_config has read it within bounds
    except Exception as e:  # noqa: BLE001 - reported in one line
        raise RunDirError(f"{path}: cannot read the run's config ({e})") from None
    missing = [name for name in SECTIONS if not isinstance(raw, dict) or not isinstance(raw.get(name), dict)]
    if missing:
        what = "empty" if not raw else f"damaged (no {', '.join(missing)} section)"
        copy = path.parent / "last" / checkpoint.CONFIG_FILE
        restore = f"copy {copy} over it" if copy.exists() else "restore it"
        raise RunDirError(f"{path}: the run's config is {what}; {restore} to resume this run, "
                          "or start again with --overwrite")
    return saved


def has_checkpoint(out: Path) -> bool:
    """Whether the run in ``out`` has saved a resumable ``last/`` (or its ``.old`` twin, mid-swap)."""
    return (out / "last").is_dir() or (out / "last.old").is_dir()


def replace_run(out: Path) -> None:
    """``--overwrite``, once the new run is ready to start: move the old run's files aside into
    ``out/.replaced/`` (each rename atomic). The new ``config.yaml`` (:func:`write_run_config`)
    commits the replacement and deletes them; a crash before it is undone by the next start."""
    aside = out / REPLACED
    if aside.exists():
        shutil.rmtree(aside)
    aside.mkdir()
    for name in RUN_FILES:
        if (out / name).exists():
            (out / name).rename(aside / name)


def undo_replace(out: Path) -> None:
    """Put back an old run that :func:`replace_run` moved aside when the new run never wrote its
    ``config.yaml`` (a crash in between): until then, the old run is the run in ``out``."""
    aside = out / REPLACED
    if not aside.is_dir() or (out / RUN_CONFIG).exists():
        return  # none, or the new run took over: its start deletes the old files
    for path in aside.iterdir():
        if not (out / path.name).exists():
            path.rename(out / path.name)
    if not any(aside.iterdir()):
        aside.rmdir()


def run_config_path(out: Path) -> Path:
    """The run's ``config.yaml``; after a replacement cut short (:func:`undo_replace` will put it
    back), the old run's, set aside."""
    aside = out / REPLACED / RUN_CONFIG
    return aside if not (out / RUN_CONFIG).exists() and aside.exists() else out / RUN_CONFIG


def write_run_config(out: Path, cfg: Config) -> None:
    """Write ``config.yaml`` atomically (temp file + rename), then delete a replaced run's files."""
    checkpoint.write_atomic(out / RUN_CONFIG, cfg.to_yaml().encode("utf-8"))
    if (out / REPLACED).exists():
        shutil.rmtree(out / REPLACED)


def open_run(out: Path, cfg: Config, *, resume: bool, overwrite: bool, world: World = distributed.SINGLE
             ) -> tuple[bool, bool]:
    """A start's first look at ``out`` (:func:`check_run_dir`, on rank 0); -> ``(resume,
    overwrite)`` as the start goes on: a run killed before its first checkpoint has nothing to
    restore, so its resume starts it from the beginning."""
    world.main_only(lambda: check_run_dir(out, cfg, resume=resume, overwrite=overwrite))
    if resume and not has_checkpoint(out):
        world.print(f"{out}: no checkpoint saved yet; starting the run from the beginning", flush=True)
        return False, False
    return resume, overwrite


def commit_run(out: Path, cfg: Config, *, resume: bool, overwrite: bool, world: World = distributed.SINGLE
               ) -> None:
    """The new run is ready (data, tokenizers, model, optimizer): only now is an old run
    replaced (``overwrite``), and ``config.yaml`` written, on a resume too (``train.*`` may
    change). On rank 0, the other ranks waiting."""

    def commit() -> None:
        if overwrite and not resume:
            replace_run(out)
        write_run_config(out, cfg)

    world.main_only(commit)


# --- where the run stands -------------------------------------------------------------
@dataclass
class Progress:
    """Everything about where training stands that ``--resume`` restores."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch_in_epoch: int = 0  # batches of that epoch already done
    step: int = 0  # optimizer steps taken, over the whole run
    best: float = -1.0  # the best validation score of train.best_metric (BLEU by default)
    bad_epochs: int = 0  # epochs without a better validation score (early stopping)
    plateau_epochs: int = 0  # the same, for the learning-rate schedule
    lr_scale: float = 1.0  # reduce-on-plateau factor
    skipped_steps: int = 0  # NaN/inf losses skipped
    elapsed: float = 0.0  # training seconds before this process
    wandb_id: str | None = None
    done: bool = False  # stopped early (patience or max_steps); a finished epoch count is not "done"
    window: dict[str, float] | None = None  # the metrics record in progress, when saved mid-epoch

    @classmethod
    def from_dict(cls, saved: Any) -> Progress:
        """From a trainer state's ``progress``, every field checked for its type and range
        (ValueError naming the field); older checkpoints call ``best`` ``best_bleu`` and may
        lack fields added since, which take their defaults."""
        if not isinstance(saved, dict):
            raise ValueError(f"progress must be a JSON object, got {type(saved).__name__}")
        saved = dict(saved)
        if "best_bleu" in saved:
            saved["best"] = saved.pop("best_bleu")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in saved if k not in names)
        if unknown:
            raise ValueError(f"progress has an unknown field {unknown[0][:40]!r}")
        missing = [name for name in ("epoch", "batch_in_epoch", "step", "best") if name not in saved]
        if missing:  # every checkpoint ever written has these
            raise ValueError(f"progress.{missing[0]} is missing")
        for name, value in saved.items():
            _check_progress_field(name, value)
        return cls(**saved)


_COUNTS = ("epoch", "batch_in_epoch", "step", "bad_epochs", "plateau_epochs", "skipped_steps")
_WINDOW = ("loss", "norm", "clipped", "tokens", "steps", "seconds")


def _check_progress_field(name: str, value: Any) -> None:
    """ValueError unless a saved :class:`Progress` field has its type and a sane range."""
    def number(v: Any) -> bool:
        return type(v) in (int, float) and math.isfinite(v)

    if name in _COUNTS:
        ok = type(value) is int and 0 <= value < 2**62
    elif name in ("best", "lr_scale", "elapsed"):
        ok = number(value) and (value > 0 if name == "lr_scale" else value >= -1.0)
    elif name == "wandb_id":
        ok = value is None or (isinstance(value, str) and len(value) <= 128)
    elif name == "done":
        ok = type(value) is bool
    else:  # window
        ok = value is None or (isinstance(value, dict) and sorted(value) == sorted(_WINDOW)
                               and all(number(v) and v >= 0 for v in value.values()))
    if not ok:
        raise ValueError(f"progress.{name} has a wrong type or value: {str(value)[:60]}")


def save_last(out: Path, cfg: Config, model: nn.Module, tokenizers: tuple[Tokenizer, Tokenizer],
              optimizer: torch.optim.Optimizer, progress: Progress, world: World = distributed.SINGLE,
              extra: dict[str, Tensor] | None = None) -> None:
    """Write ``last/`` from rank 0, with every rank's random number generator state (every
    rank calls this; the others wait until it is written); ``extra`` tensors are saved beside
    them (a language model's carried state)."""
    rng = world.gather(_rng_state())

    def write() -> None:
        tensors, optim_meta = checkpoint.optimizer_to_tensors(optimizer.state_dict())
        for rank, states in enumerate(rng):
            tensors.update({_rng_key(name, rank): state for name, state in states.items()})
        tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
        state = {"progress": vars(progress), "optimizer": optim_meta, "python_rng": random.getstate()}
        checkpoint.save(out / "last", config=cfg, model=model, src_tok=tokenizers[0], tgt_tok=tokenizers[1],
                        trainer_tensors=tensors, trainer_state=state)

    world.main_only(write)


def _rng_state() -> dict[str, Tensor]:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _rng_key(name: str, rank: int) -> str:
    return f"rng.{name}" if rank == 0 else f"rng.{name}.{rank}"  # rank 0's as a one-process run saves it


def restore(out: Path, optimizer: torch.optim.Optimizer, reset_optimizer: bool, rank: int = 0) -> Progress:
    tensors, state = checkpoint.load_trainer(out / "last")
    try:
        progress = Progress.from_dict(state["progress"])
        if not reset_optimizer:
            _load_optimizer(optimizer, tensors, state["optimizer"])
        random.setstate(_as_tuple(state["python_rng"]))
        own = _rng_key("torch", rank)
        torch.set_rng_state(tensors.get(own, tensors["rng.torch"]))
        if own not in tensors:  # a rank the saved run did not have: a generator of its own
            torch.manual_seed(int(torch.randint(2**62, ())) + rank)
        cuda = _rng_key("cuda", rank) if _rng_key("cuda", rank) in tensors else "rng.cuda"
        if cuda in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[cuda])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:  # damaged or foreign
        where = checkpoint.resolve(out / "last") / checkpoint.TRAINER_JSON
        reason = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        hint = ("; if train.optimizer changed, resume with the run's own, or add --reset-optimizer to start "
                "the optimizer afresh" if isinstance(e, OptimizerStateError) else "")
        raise checkpoint.CheckpointError(f"{where}: cannot resume from this training state ({reason}){hint}") from None
    return progress


class OptimizerStateError(ValueError):
    """The saved optimizer state does not load into this config's optimizer (another
    ``train.optimizer``, or a damaged state): ``--reset-optimizer`` starts a fresh one."""


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: Any) -> None:
    """Load the optimizer state saved in ``last/`` into ``optimizer``, its hyperparameters
    checked (:func:`_check_param_groups`); an :class:`OptimizerStateError` if it does not fit."""
    fresh = [dict(g) for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(checkpoint.optimizer_from_tensors(tensors, meta))
        _check_param_groups(optimizer, fresh)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        reason = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise OptimizerStateError(f"the optimizer state does not fit train.optimizer: {reason}") from None


def _check_param_groups(optimizer: torch.optim.Optimizer, fresh: list[dict[str, Any]]) -> None:
    """ValueError unless each restored hyperparameter (betas, eps, ...) has the kind of value
    this config builds (a number, a pair of numbers, a flag), finite: a damaged value would
    otherwise fail steps later, mid-training."""
    def kind(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return ("seq", len(v), *(kind(x) for x in v))
        return "number" if type(v) in (int, float) else type(v)

    for i, (group, want) in enumerate(zip(optimizer.param_groups, fresh)):
        for key, default in want.items():
            if key == "params" or default is None:
                continue
            got = group.get(key)
            if isinstance(default, bool):  # a flag; older checkpoints hold None for some (fused, foreach)
                ok = got in (None, True, False)
            else:
                values = got if isinstance(got, (list, tuple)) else [got]
                ok = kind(got) == kind(default) and all(type(v) is not float or math.isfinite(v) for v in values)
            if not ok:
                raise ValueError(f"optimizer param_groups[{i}].{key} has a wrong type or value: {str(got)[:60]}")


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list) else x
