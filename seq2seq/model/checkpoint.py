"""Checkpoint directories: everything needed to translate, loadable without unpickling.

A checkpoint is a directory (a language model's, ``data.task: lm``, is the same, its one
tokenizer saved as both; :func:`load` and :func:`load_lm` each refuse the other's)::

    model.safetensors     the weights (safetensors: tensors only, no code)
    config.yaml           the resolved config (yaml.safe_load only)
    src_tokenizer.json    tokenizers (JSON)
    tgt_tokenizer.json
    trainer.safetensors   optimizer state tensors and RNG states (for --resume)
    trainer.json          epoch, step, best score, scheduler state, optimizer hyper-parameters

It is written to ``<name>.tmp`` with every file fsynced, then swapped in by rename, so a
crash at any moment leaves either the old checkpoint or the new one, never half of one.
Between the two renames of a swap the old one is briefly called ``<name>.old``;
:func:`resolve` finds it there.

Weights holding NaN or inf are never saved and never loaded (such a model translates every
line to an empty string): both refuse them with an error naming the tensor.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import Config, ConfigError, load_config
from ..config.parsing import MiB, file_kind, load_json, read_text
from ..data.tokenization import Tokenizer, TokenizerError
from .lm import LanguageModel, build_lm
from .seq2seq import Seq2Seq, build_model, upgrade_state_dict

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
SRC_TOK_FILE = "src_tokenizer.json"
TGT_TOK_FILE = "tgt_tokenizer.json"
TRAINER_TENSORS = "trainer.safetensors"
TRAINER_JSON = "trainer.json"
MAX_TRAINER_JSON_BYTES = 64 * MiB  # progress, optimizer layout and RNG states: tens of kilobytes


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or crafted; the message names the file."""


@dataclass
class Loaded:
    config: Config
    model: Seq2Seq
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    path: Path


@dataclass
class LoadedLM:
    """A language model's checkpoint: its one tokenizer is saved as both src and tgt."""

    config: Config
    model: LanguageModel
    tok: Tokenizer
    path: Path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Write one file as checkpoints are written: ``<name>.tmp``, fsynced, renamed over ``path``
    (a crash leaves the old file or the new one, never part of one)."""
    tmp = path.parent / f"{path.name}.tmp"
    _write_bytes(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def resolve(path: str | Path) -> Path:
    """The checkpoint directory at ``path``, or its ``.old`` twin left by a crash mid-swap.

    A run directory (holding ``best/`` and ``last/``) resolves to its ``best/``.
    """
    p = Path(path)
    if not p.exists() and (p.parent / f"{p.name}.old").is_dir():
        p = p.parent / f"{p.name}.old"
    if p.is_dir() and not (p / MODEL_FILE).exists():
        for sub in ("best", "last"):
            if (p / sub / MODEL_FILE).exists() or (p / f"{sub}.old" / MODEL_FILE).exists():
                return resolve(p / sub)
    if not p.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    return p


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is itself a checkpoint directory (a run directory holding ``best/`` is not)."""
    return Path(path).is_dir() and (Path(path) / MODEL_FILE).is_file()


def first_non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or ``None`` when all are
    finite. One host synchronisation; the tensors must be on one device."""
    named = [(k, v) for k, v in tensors.items() if v.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(v.detach()).all() for _, v in named])  # (N,) bool
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0, 0])][0]


def optimizer_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into safetensors-storable tensors and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save(directory: str | Path, *, config: Config, model: nn.Module, src_tok: Tokenizer,
         tgt_tok: Tokenizer, trainer_tensors: dict[str, torch.Tensor] | None = None,
         trainer_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically: ``directory.tmp`` -> fsync -> rename over ``directory``.

    ``directory`` may be new, empty or a checkpoint; anything else there (a run directory, a
    folder of other files, a file) is refused and left as it is. A symbolic link is followed:
    the checkpoint it names is replaced, the link kept."""
    final = Path(directory)
    if final.is_symlink():
        final = final.resolve()
    if final.exists() and not is_checkpoint(final) and not (final.is_dir() and not any(final.iterdir())):
        raise CheckpointError(f"{final}: not saved: it exists and is not a checkpoint (nothing replaced)")
    tmp = final.parent / f"{final.name}.tmp"
    old = final.parent / f"{final.name}.old"
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = first_non_finite(weights)
    if bad is not None:  # the checkpoint already at ``final`` is left as it is
        raise CheckpointError(f"{final}: not saved: tensor {bad} holds NaN or inf")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if getattr(model, "cfg", None) is not None and model.cfg.tie_embeddings:  # type: ignore[union-attr]
        weights.pop("decoder.output.weight", None)  # shared with tgt_embed.weight; stored once
    save_file(weights, str(tmp / MODEL_FILE))
    _fsync_file(tmp / MODEL_FILE)
    _write_bytes(tmp / CONFIG_FILE, config.to_yaml().encode())
    src_tok.save(tmp / SRC_TOK_FILE)
    tgt_tok.save(tmp / TGT_TOK_FILE)
    for name in (SRC_TOK_FILE, TGT_TOK_FILE):
        _fsync_file(tmp / name)
    if trainer_state is not None:
        save_file(trainer_tensors or {}, str(tmp / TRAINER_TENSORS))
        _fsync_file(tmp / TRAINER_TENSORS)
        _write_bytes(tmp / TRAINER_JSON, json.dumps(trainer_state).encode())
    _fsync_dir(tmp)
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    # else an ``old`` left by a crash mid-swap is the only checkpoint: keep it until ``final`` exists
    tmp.rename(final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)
    return final


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file; anything else (a pickle, a truncated file) is refused."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a valid safetensors file ({first})") from None


def check_regular_files(ckpt: Path, names: tuple[str, ...]) -> None:
    """Refuse a checkpoint file that is not a regular file (a link to one is fine): a FIFO
    would block the read forever, a device (``/dev/zero``) would never end, a directory fails
    obscurely. A missing file is left for its reader to report."""
    for name in names:
        path = ckpt / name
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
        if not stat.S_ISREG(mode):
            raise CheckpointError(f"{path}: not a regular file ({file_kind(mode)})")


def load(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """Load a translator: config, tokenizers and weights from a checkpoint directory, checking
    each. A language model's checkpoint is refused in one line (see :func:`load_lm`)."""
    ckpt, config, src_tok, tgt_tok = _read(path, "translate")
    model = build_model(config.model, src_tok.vocab_size, tgt_tok.vocab_size)
    _load_weights(model, ckpt, config, device)
    return Loaded(config=config, model=model, src_tok=src_tok, tgt_tok=tgt_tok, path=ckpt)


def load_lm(path: str | Path, device: str | torch.device = "cpu") -> LoadedLM:
    """Load a language model (``data.task: lm``); a translator's checkpoint is refused in one line."""
    ckpt, config, _, tok = _read(path, "lm")
    model = build_lm(config.model, tok.vocab_size)
    _load_weights(model, ckpt, config, device)
    return LoadedLM(config=config, model=model, tok=tok, path=ckpt)


_USE = {"translate": "a translator; translate with translate.py",
        "lm": "a language model; sample or score with python -m seq2seq generate"}


def _read(path: str | Path, task: str) -> tuple[Path, Config, Tokenizer, Tokenizer]:
    """The checkpoint directory, its config and its two tokenizers; refused unless its
    ``data.task`` is ``task``."""
    ckpt = resolve(path)
    check_regular_files(ckpt, (CONFIG_FILE, SRC_TOK_FILE, TGT_TOK_FILE, MODEL_FILE))
    try:
        config = load_config(ckpt / CONFIG_FILE)
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    if config.data.task != task:
        raise CheckpointError(f"{ckpt}: this checkpoint is {_USE[config.data.task]} (data.task: {config.data.task})")
    try:
        src_tok = Tokenizer.load(ckpt / SRC_TOK_FILE)
        tgt_tok = Tokenizer.load(ckpt / TGT_TOK_FILE)
    except TokenizerError as e:
        raise CheckpointError(str(e)) from None
    return ckpt, config, src_tok, tgt_tok


def _load_weights(model: nn.Module, ckpt: Path, config: Config, device: str | torch.device) -> None:
    """Fill ``model`` from ``ckpt``'s weights, each tensor checked (names, shapes, dtypes, finite);
    -> on ``device``, in eval mode."""
    weights = upgrade_state_dict(load_weights(ckpt / MODEL_FILE))  # also checkpoints of the flat layout
    expected = model.state_dict()
    if config.model.tie_embeddings and "decoder.output.weight" not in weights and "tgt_embed.weight" in weights:
        weights["decoder.output.weight"] = weights["tgt_embed.weight"]
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    where = ckpt / MODEL_FILE
    if missing:
        raise CheckpointError(f"{where}: missing tensors {', '.join(missing[:5])}")
    if unexpected:
        raise CheckpointError(f"{where}: unexpected tensors {', '.join(unexpected[:5])}")
    for key, tensor in expected.items():
        if weights[key].shape != tensor.shape:
            hint = ""
            if key in ("src_embed.weight", "tgt_embed.weight", "decoder.output.weight", "decoder.output.bias"):
                hint = " (does the tokenizer match the model?)"
            raise CheckpointError(f"{where}: tensor {key} has shape {tuple(weights[key].shape)}, "
                                  f"the config expects {tuple(tensor.shape)}{hint}")
        if weights[key].dtype != tensor.dtype:
            raise CheckpointError(f"{where}: tensor {key} has dtype {weights[key].dtype}, expected {tensor.dtype}")
    bad = first_non_finite(weights)
    if bad is not None:
        raise CheckpointError(f"{where}: tensor {bad} holds NaN or inf")
    model.load_state_dict(weights)
    model.to(device)
    model.eval()


def load_trainer(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The resumable training state saved with a ``last/`` checkpoint."""
    ckpt = resolve(path)
    check_regular_files(ckpt, (TRAINER_TENSORS,))
    tensors = load_weights(ckpt / TRAINER_TENSORS)
    return tensors, trainer_state(ckpt)


def trainer_state(path: str | Path) -> dict[str, Any]:
    """The JSON half of a ``last/`` checkpoint's training state (progress, optimizer layout,
    RNG), read at a bounded cost; :class:`CheckpointError` naming the file if it is missing,
    special, too large, too deep or not a JSON object."""
    ckpt = resolve(path)
    check_regular_files(ckpt, (TRAINER_JSON,))
    try:
        state = load_json(read_text(ckpt / TRAINER_JSON, MAX_TRAINER_JSON_BYTES))
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt / TRAINER_JSON}: file not found (not a resumable checkpoint)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{ckpt / TRAINER_JSON}: unreadable ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt / TRAINER_JSON}: must hold a JSON object")
    return state
