"""Typed, frozen configuration loaded from YAML, with dotted command-line overrides.

A config has five sections, each a frozen dataclass: ``data``, ``model``, ``train``,
``decode`` and ``tracking``. Loading checks every key against the dataclass fields:
an unknown key, a value of the wrong type, or a value out of range raises
:class:`ConfigError` whose message names the file and the dotted key, e.g.::

    configs/x.yaml: model.dropout: must be in [0, 1), got -0.1

Every number must be finite (``inf`` and ``nan`` pass many a range check, e.g. ``lr > 0``),
and the decoding limits have upper bounds that keep the output length limit within range.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .parsing import MAX_CONFIG_BYTES, ParseError, load_yaml, read_text


class ConfigError(ValueError):
    """A configuration problem; the message names the file (if any) and the key."""


def _check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {msg}")


def _excerpt(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters and a count of the rest: a bad value or key may be megabytes."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _check_finite(section: Any, name: str) -> None:
    """Every float field of ``section`` (a dataclass called ``name``) is a finite number."""
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        if isinstance(v, float):
            _check(math.isfinite(v), f"{name}.{f.name}", f"must be a finite number, got {v}")


MAX_BPE_VOCAB = 1_000_000  # data.vocab_size: the tokenizers library allocates for it up front (and aborts
# the process near 2**32); no corpus this toolkit trains on fills more
MAX_LR = 1000.0  # train.lr: far above any useful rate; Adam's step overflows float32 not far above 1e37
MAX_LEN_RATIO = 1000.0  # decode.max_len_ratio: far above any language pair, far below int64 overflow
MAX_LEN_OFFSET = 1_000_000  # decode.max_len_offset
MAX_LENGTH_PENALTY = 10.0  # decode.length_penalty: ((5 + n) / 6) ** alpha overflows float64 for large alpha
TEXTBOOK_ADDITION_MAX = 250_000  # data.size of the textbook addition task (the problems it draws from)
SEED_LIMIT = 2**32  # train.seed: torch.manual_seed takes 64 bits, and the loop derives seeds from it


@dataclass(frozen=True)
class DataConfig:
    """Where the parallel corpus comes from and how it is tokenized and batched.

    ``source`` is one of:
      * ``dates`` / ``addition``: synthetic corpora made in code (``size``, ``seed``);
      * ``files``: ``{path}/{split}.{lang}`` or ``{split}.{lang}.gz``, one sentence a line;
      * ``tsv`` / ``jsonl``: ``{path}/{split}.tsv`` (two columns) or ``{split}.jsonl``
        (objects with ``src_field`` and ``tgt_field``);
      * ``hf``: a Hugging Face ``datasets`` name or local dataset directory in ``path``.

    ``prepared``: a store written by ``python -m seq2seq prepare`` from this same data
    config; training then streams the training split from it with bounded memory instead of
    reading the corpus (see ``seq2seq/data/store.py``). Empty: read the corpus into memory.
    """

    # translate: an encoder-decoder on sentence pairs; lm: an RNN language model on one side's
    # text, data.tgt_lang (the decoder's language): {path}/{split}.{tgt_lang}[.gz] (seq2seq/data/lm_data.py)
    task: Literal["translate", "lm"] = "translate"
    source: Literal["dates", "addition", "files", "tsv", "jsonl", "hf"] = "dates"
    path: str = ""
    src_lang: str = "src"
    tgt_lang: str = "tgt"
    src_field: str = ""  # TSV/JSONL/HF field names; empty means the language code
    tgt_field: str = ""
    hf_config: str = ""  # the dataset's configuration name (e.g. "de-en"), if any
    train_split: str = "train"
    valid_split: str = "val"
    test_split: str = "test"
    size: int = 50_000  # synthetic corpora: total pairs before the split
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 1234
    tokenizer: Literal["char", "bpe"] = "char"
    vocab_size: int = 8000  # BPE only
    joint_vocab: bool = False
    max_len: int = 100  # tokens per side; longer pairs are filtered out of training
    reverse_source: bool = True
    # addition only: "uniform" operands in 0..999, unpadded ("16+75" -> "91"); "textbook": the
    # textbook's dataset (operands of 1 to 3 random digits, each problem once up to order,
    # shuffled, padded with spaces to 7 and 4 characters: "16+75  " -> "91  ")
    addition_style: Literal["uniform", "textbook"] = "uniform"
    invalid_utf8: Literal["error", "skip"] = "error"
    prepared: str = ""  # a prepared store directory to stream training data from; "": in memory

    def __post_init__(self) -> None:
        _check_finite(self, "data")
        _check(self.size >= 3, "data.size", f"must be >= 3, got {self.size}")
        for name in ("valid_fraction", "test_fraction"):
            v = getattr(self, name)
            _check(0.0 <= v < 1.0, f"data.{name}", f"must be in [0, 1), got {v}")
        _check(self.valid_fraction + self.test_fraction < 1.0, "data.valid_fraction",
               "valid_fraction + test_fraction must be < 1")
        _check(300 <= self.vocab_size <= MAX_BPE_VOCAB, "data.vocab_size",
               f"must be in [300, {MAX_BPE_VOCAB}], got {self.vocab_size}")
        _check(self.max_len >= 1, "data.max_len", f"must be >= 1, got {self.max_len}")
        if self.source == "addition" and self.addition_style == "textbook":
            _check(self.size <= TEXTBOOK_ADDITION_MAX, "data.size",
                   f"textbook addition has {TEXTBOOK_ADDITION_MAX:,} problems at most here "
                   f"(each made once up to order); got {self.size}")
        if self.source in ("files", "tsv", "jsonl", "hf"):
            _check(bool(self.path), "data.path", f"is required when data.source is {self.source!r}")

    @property
    def src_key(self) -> str:
        return self.src_field or self.src_lang

    @property
    def tgt_key(self) -> str:
        return self.tgt_field or self.tgt_lang


@dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder RNN: ``embed_dim`` -> ``cell`` x ``num_layers`` of ``hidden_dim``."""

    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    embed_dim: int = 64
    hidden_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    peeky: bool = True
    bidirectional: bool = False  # encoder; its two final states are projected to hidden_dim
    tie_embeddings: bool = False  # target embedding = output projection (needs a projection)
    attention: Literal["none", "luong"] = "none"
    # the decoder's initial LSTM state: "state", the encoder's final hidden and cell states;
    # "hidden", the final hidden state with a zero cell state, as the textbook's decoder does.
    # GRU and tanh RNN have no cell state: both are the same for them.
    decoder_init: Literal["state", "hidden"] = "state"
    # a language model's checkpoint (data.task: lm, python train.py --config configs/lm_*.yaml):
    # its embedding, RNN and output layer start the decoder, and its tokenizer is the target's
    # (seq2seq/model/lm.py: init_decoder). "": a fresh decoder
    init_decoder_from: str = ""

    def __post_init__(self) -> None:
        _check_finite(self, "model")
        _check(self.embed_dim >= 1, "model.embed_dim", f"must be >= 1, got {self.embed_dim}")
        _check(self.hidden_dim >= 1, "model.hidden_dim", f"must be >= 1, got {self.hidden_dim}")
        _check(self.num_layers >= 1, "model.num_layers", f"must be >= 1, got {self.num_layers}")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: batching, optimizer and learning-rate schedule, gradient clipping,
    teacher forcing / scheduled sampling, validation and early stopping, device and precision,
    seeding, and how often metrics and samples are logged."""

    epochs: int = 20
    batch_size: int = 128  # sentences per batch (used when max_tokens is 0)
    max_tokens: int = 0  # token budget per batch (target tokens incl. padding); 0: off
    pad_multiple: int = 0  # round training batches' widths up to a multiple of N (static shapes); 0: off
    # how training batches are made: "source", each batch of one source length (sorted by source,
    # then target length), so the encoder runs unpacked, in one fused RNN call a layer; "target",
    # sorted by (target, source) length, the source packed (seq2seq/data/batching.py batch_cuts)
    batch_by: Literal["source", "target"] = "target"
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"  # sgd: plain SGD, no momentum (e.g. to see gradients explode)
    clip_norm: float = 5.0  # 0 disables clipping
    teacher_forcing: float = 1.0
    teacher_forcing_decay: float = 0.0  # subtracted from the ratio after each epoch
    teacher_forcing_min: float = 0.0
    label_smoothing: float = 0.0
    lr_schedule: Literal["none", "plateau", "cosine"] = "plateau"
    lr_factor: float = 0.5
    lr_patience: int = 1
    warmup_steps: int = 0
    patience: int = 5  # early stopping: epochs without a better validation score (an LM's: perplexity)
    best_metric: Literal["bleu", "chrf", "exact_match"] = "bleu"  # the validation score that picks best/,
    # early stopping and the plateau schedule (exact_match for one-word targets, where BLEU is 0)
    max_steps: int = 0  # stop after this many optimizer steps; 0: no limit
    seed: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: Literal["auto", True, False] = "auto"  # bf16 autocast: auto = on CUDA and on CPUs with native bf16
    max_bad_steps: int = 10  # NaN/inf losses in a row before training stops
    # no host sync in a step: NaN/inf steps skipped on the device (fused Adam), counted and
    # checked against max_bad_steps at each metrics record; auto = on CUDA with Adam
    sync_free: Literal["auto", True, False] = "auto"
    # batches of a few fixed shapes, gathered from the corpus kept on the device, and the padded
    # encoder (seq2seq/data/buckets.py); auto = on CUDA (one process, data in memory, unidirectional)
    static_shapes: Literal["auto", True, False] = "auto"
    # the whole step (forward, backward, clipping, Adam) in a CUDA graph per static shape
    # (seq2seq/training/graphs.py); auto = on CUDA with static shapes, Adam, sync-free steps, teacher forcing 1
    cuda_graphs: Literal["auto", True, False] = "auto"
    # CPU: use fewer threads while other processes take a core, all again when it is free
    # (seq2seq/runtime/threads.py); false: the threads torch starts with throughout
    adapt_threads: bool = True
    log_every: int = 50  # steps between metric records
    save_every: int = 0  # also save last/ every N steps within an epoch (a crash loses at most that); 0: off
    save_every_minutes: float = 10.0  # ... and whenever this much time has passed since the last save; 0: off
    keep_checkpoints: int = 0  # keep the last N epoch-end checkpoints in <out>/epochs/ (python -m seq2seq average)
    valid_max_sentences: int = 0  # validate on the first N sentences; 0: all
    samples: int = 5  # sample translations logged each epoch
    progress: bool = True  # tqdm progress bar
    # data.task lm only: "stream", the corpus as one token stream cut into batch_size parallel
    # streams, bptt steps a batch, the state carried across batches (truncated BPTT);
    # "sentence", each sentence from a zero state in padded batches of batch_size sentences
    lm_batching: Literal["stream", "sentence"] = "stream"
    bptt: int = 35  # lm stream: time steps per batch (the graph is cut there, the state flows on)

    def __post_init__(self) -> None:
        _check_finite(self, "train")
        _check(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.max_tokens >= 0, "train.max_tokens", f"must be >= 0, got {self.max_tokens}")
        _check(0 < self.lr <= MAX_LR, "train.lr", f"must be in (0, {MAX_LR:g}], got {self.lr}")
        _check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(self.clip_norm >= 0, "train.clip_norm", f"must be >= 0, got {self.clip_norm}")
        for name in ("teacher_forcing", "teacher_forcing_decay", "teacher_forcing_min"):
            v = getattr(self, name)
            _check(0.0 <= v <= 1.0, f"train.{name}", f"must be in [0, 1], got {v}")
        _check(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing",
               f"must be in [0, 1), got {self.label_smoothing}")
        _check(0.0 < self.lr_factor < 1.0, "train.lr_factor", f"must be in (0, 1), got {self.lr_factor}")
        for name in ("lr_patience", "warmup_steps", "max_steps", "valid_max_sentences", "samples", "save_every",
                     "pad_multiple", "save_every_minutes", "keep_checkpoints"):
            v = getattr(self, name)
            _check(v >= 0, f"train.{name}", f"must be >= 0, got {v}")
        _check(self.patience >= 1, "train.patience", f"must be >= 1, got {self.patience}")
        _check(self.sync_free is not True or self.optimizer == "adam", "train.sync_free",
               "true needs train.optimizer: adam (its fused kernel skips NaN steps on the device)")
        if self.cuda_graphs is True:
            _check(self.device != "cpu", "train.cuda_graphs", "true needs CUDA (train.device is cpu)")
            _check(self.optimizer == "adam", "train.cuda_graphs",
                   "true needs train.optimizer: adam (fused, capturable)")
            _check(self.static_shapes is not False, "train.cuda_graphs", "true needs train.static_shapes: auto or true")
            _check(self.sync_free is not False, "train.cuda_graphs",
                   "true needs train.sync_free: auto or true (a graph cannot read a step's outcome back)")
            _check(self.teacher_forcing == 1.0 and self.teacher_forcing_decay == 0.0, "train.cuda_graphs",
                   "true needs train.teacher_forcing: 1 and no decay (a graph would keep the first ratio)")
        _check(self.max_bad_steps >= 1, "train.max_bad_steps", f"must be >= 1, got {self.max_bad_steps}")
        _check(self.log_every >= 1, "train.log_every", f"must be >= 1, got {self.log_every}")
        _check(self.bptt >= 1, "train.bptt", f"must be >= 1, got {self.bptt}")
        _check(0 <= self.seed < SEED_LIMIT, "train.seed", f"must be in [0, 2**32), got {self.seed}")


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding for translation and evaluation: beam size (1 is greedy), n-best, length penalty,
    output length limit, sentences per batch. Validation during training decodes greedily with
    the same length limit and batch size."""

    beam_size: int = 5
    nbest: int = 1
    length_penalty: float = 1.0  # alpha in ((5 + len) / 6) ** alpha
    max_len_ratio: float = 2.0  # output length limit: ratio * source length + offset
    max_len_offset: int = 10
    batch_size: int = 128

    def __post_init__(self) -> None:
        _check_finite(self, "decode")
        _check(self.beam_size >= 1, "decode.beam_size", f"must be >= 1, got {self.beam_size}")
        _check(1 <= self.nbest <= self.beam_size, "decode.nbest",
               f"must be in [1, beam_size={self.beam_size}], got {self.nbest}")
        _check(0 <= self.length_penalty <= MAX_LENGTH_PENALTY, "decode.length_penalty",
               f"must be in [0, {MAX_LENGTH_PENALTY:g}], got {self.length_penalty}")
        _check(0 < self.max_len_ratio <= MAX_LEN_RATIO, "decode.max_len_ratio",
               f"must be in (0, {MAX_LEN_RATIO:g}], got {self.max_len_ratio}")
        _check(0 <= self.max_len_offset <= MAX_LEN_OFFSET, "decode.max_len_offset",
               f"must be in [0, {MAX_LEN_OFFSET}], got {self.max_len_offset}")
        _check(self.batch_size >= 1, "decode.batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class TrackingConfig:
    """Weights & Biases: mode, project, entity, run name, group and tags. ``wandb: auto`` is
    online with an API key, offline without."""

    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "seq2seq"
    entity: str = ""
    name: str = ""
    group: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """A whole run: one section each for the corpus (``data``), the network (``model``), the
    training loop (``train``), decoding (``decode``) and W&B (``tracking``). Saved with every
    checkpoint as ``config.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if self.model.init_decoder_from:
            _check(self.data.task == "translate", "model.init_decoder_from",
                   "is for a translator (data.task: translate)")
            _check(not self.data.joint_vocab and not self.data.prepared, "model.init_decoder_from",
                   "needs the language model's own target tokenizer: data.joint_vocab and data.prepared must be off")
        if self.data.task == "lm":  # a language model is a decoder without a context to read
            _check(self.data.source == "files", "data.source",
                   f"data.task lm reads text files; must be 'files', got {self.data.source!r}")
            for key, off in (("peeky", False), ("bidirectional", False), ("attention", "none")):
                _check(getattr(self.model, key) == off, f"model.{key}",
                       f"a language model has no source to read; set model.{key}: {str(off).lower()}")
        for key in ("static_shapes", "cuda_graphs"):  # both need static shapes; checks across sections
            if getattr(self.train, key) is True:
                _check(not self.data.prepared, f"train.{key}",
                       "true needs the training data in memory (data.prepared streams it)")
                _check(not self.model.bidirectional, f"train.{key}",
                       "true needs a unidirectional encoder (model.bidirectional: true)")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for f in dataclasses.fields(self):
            section = dataclasses.asdict(getattr(self, f.name))
            out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "decode": DecodeConfig, "tracking": TrackingConfig}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        names = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
        ok = any(value == c and type(value) is type(c) for c in choices)  # 1 is not True here
        _check(ok, key, f"must be one of {names}; got {_excerpt(repr(value))}")
        return value
    if origin in (tuple, list):
        _check(isinstance(value, (list, tuple)), key, f"must be a list, got {_excerpt(repr(value))}")
        (item_tp, *_) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation for {key}")  # pragma: no cover
    if tp is bool:
        _check(isinstance(value, bool), key, f"must be true or false, got {_excerpt(repr(value))}")
    elif tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key,
               f"must be an integer, got {_excerpt(repr(value))}")
    elif tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key,
               f"must be a number, got {_excerpt(repr(value))}")
        return float(value)
    elif tp is str:
        _check(isinstance(value, str), key, f"must be a string, got {_excerpt(repr(value))}")
    return value


def _build_section(name: str, values: Any) -> Any:
    cls = SECTIONS[name]
    _check(isinstance(values, dict), name, f"must be a mapping, got {_excerpt(repr(values))}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{name}.{_excerpt(str(key))}"
        _check(key in known, dotted, f"unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def from_dict(raw: Any) -> Config:
    """Build a :class:`Config` from nested dicts, checking every key, type and range."""
    if raw is None:
        raw = {}
    _check(isinstance(raw, dict), "config", "must be a mapping of sections")
    for name in raw:
        _check(name in SECTIONS, name, f"unknown section (known: {', '.join(SECTIONS)})")
    return Config(**{name: _build_section(name, raw.get(name) or {}) for name in SECTIONS})


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"train.lr=3e-4"`` -> ``("train", "lr", 3e-4)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"{_excerpt(text)}: override must look like section.key=value")
    dotted, raw = text.split("=", 1)
    where = _excerpt(dotted)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{where}: override key must look like section.key")
    section, key = parts
    if section not in SECTIONS:
        raise ConfigError(f"{where}: unknown section (known: {', '.join(SECTIONS)})")
    known = {f.name for f in dataclasses.fields(SECTIONS[section])}
    if key not in known:
        raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except ParseError as e:
        raise ConfigError(f"{where}: value {e}") from None
    except yaml.YAMLError:
        value = raw
    hint = typing.get_type_hints(SECTIONS[section])[key]
    if hint is str and not isinstance(value, str):
        value = raw  # e.g. data.src_lang=no stays the string "no"
    elif hint is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)  # YAML 1.1 reads "3e-4" as a string
    return section, key, value


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load ``path`` (YAML) and apply ``section.key=value`` overrides.

    Raises :class:`ConfigError` with a message that names the file and the key.
    """
    raw: dict[str, Any] = {}
    where = str(path) if path is not None else "<defaults>"
    if path is not None:
        p = Path(path)
        try:
            text = read_text(p, MAX_CONFIG_BYTES)
        except FileNotFoundError:
            raise ConfigError(f"{where}: config file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{where}: cannot read config file ({e})") from None
        except ParseError as e:
            raise ConfigError(f"{where}: config file {e}") from None
        try:
            loaded = load_yaml(text)
        except ParseError as e:
            raise ConfigError(f"{where}: config file {e}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}:" if mark is not None else ""
            raise ConfigError(f"{where}:{line} invalid YAML ({getattr(e, 'problem', e)})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{where}: must be a mapping of sections, got {type(loaded).__name__}")
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in (loaded or {}).items()}
    try:
        from_dict(raw)  # errors in the file are reported against the file
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    try:
        for text in overrides:
            section, key, value = parse_override(text)
            raw.setdefault(section, {})
            raw[section] = {**(raw[section] or {}), key: value}
        # checked together: one override may need another (data.source=files with data.path=...)
        return from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"command line: {e}") from None
