"""The configuration's sections: one frozen dataclass each for ``data``, ``model``,
``train``, ``decode`` and ``tracking``, joined in :class:`Config`, with their range checks.

A value out of range raises :class:`ConfigError` whose message names the dotted key, e.g.
``model.dropout: must be in [0, 1), got -0.1`` (loading adds the file:
:mod:`seq2seq.config.loading`). Every number must be finite (``inf`` and ``nan`` pass many a
range check, e.g. ``lr > 0``), and the decoding limits have upper bounds that keep the output
length limit within range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names the file (if any) and the key."""


def check(ok: bool, key: str, msg: str) -> None:
    """ConfigError ``"{key}: {msg}"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: {msg}")


def excerpt(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters and a count of the rest: a bad value or key may be megabytes."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def _check_finite(section: Any, name: str) -> None:
    """Every float field of ``section`` (a dataclass called ``name``) is a finite number."""
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        if isinstance(v, float):
            check(math.isfinite(v), f"{name}.{f.name}", f"must be a finite number, got {v}")


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
    # where the pairs come from: dates, addition (synthetic, made in code from size and seed; no files),
    # files, tsv, jsonl (files under data.path) or hf (a Hugging Face dataset); see the section's description
    source: Literal["dates", "addition", "files", "tsv", "jsonl", "hf"] = "dates"
    # files, tsv, jsonl (and data.task lm): the directory of the {split}.* files, "~" expanded; hf: a hub
    # name or a local dataset directory. Required by these sources; dates and addition ignore it
    path: str = ""
    src_lang: str = "src"  # the source language: its files' suffix ({split}.{src_lang}), the default src_field
    tgt_lang: str = "tgt"  # the target language: its files' suffix ({split}.{tgt_lang}), the default tgt_field
    src_field: str = ""  # jsonl/hf: the source's key (or column, or translation dict key); "": data.src_lang
    tgt_field: str = ""  # jsonl/hf: the target's key (or column, or translation dict key); "": data.tgt_lang
    hf_config: str = ""  # the dataset's configuration name (e.g. "de-en"), if any
    train_split: str = "train"  # the training split's name: its files' stem ({path}/train.*) or an hf split
    # the validation split (validation scores, best/, early stopping, the plateau schedule); an hf dataset
    # without a "val" split uses its validation, valid or dev split
    valid_split: str = "val"
    # the test split: read with the others (so it must exist); python -m seq2seq evaluate's default split, and
    # scored after training a language model (data.task lm)
    test_split: str = "test"
    size: int = 50_000  # synthetic corpora: total pairs before the split
    # synthetic corpora: the share of data.size held out as the validation split (the pairs after the
    # training ones; at least one unless 0; with test_fraction below 1); other sources have their own splits
    valid_fraction: float = 0.05
    test_fraction: float = 0.05  # synthetic corpora: the share held out as the test split (the last pairs), likewise
    seed: int = 1234  # synthetic corpora: the generator's seed (the same size and seed make the same pairs)
    # learned from the training split: "char", one token a character seen there plus 256 byte-fallback
    # tokens (small synthetic corpora); "bpe", byte-level BPE of up to data.vocab_size tokens (real text)
    tokenizer: Literal["char", "bpe"] = "char"
    vocab_size: int = 8000  # BPE only
    # one tokenizer trained on both sides' training text, for source and target (the two embeddings stay
    # separate); false: a tokenizer a side. Not with model.init_decoder_from
    joint_vocab: bool = False
    max_len: int = 100  # tokens per side; longer pairs are filtered out of training
    # the encoder reads each source backwards: its tokens are reversed before padding (Sutskever et al.
    # 2014), in training, validation and translation alike; attention weights are shown in reading order
    reverse_source: bool = True
    # addition only: "uniform" operands in 0..999, unpadded ("16+75" -> "91"); "textbook": the
    # textbook's dataset (operands of 1 to 3 random digits, each problem once up to order,
    # shuffled, padded with spaces to 7 and 4 characters: "16+75  " -> "91  ")
    addition_style: Literal["uniform", "textbook"] = "uniform"
    # a corpus line that is not valid UTF-8: "error" stops with the file, line and byte; "skip" drops the
    # pair (counted in the report). Text files only (files, tsv, jsonl, data.task lm), not hf
    invalid_utf8: Literal["error", "skip"] = "error"
    prepared: str = ""  # a prepared store directory to stream training data from; "": in memory

    def __post_init__(self) -> None:
        _check_finite(self, "data")
        check(self.size >= 3, "data.size", f"must be >= 3, got {self.size}")
        for name in ("valid_fraction", "test_fraction"):
            v = getattr(self, name)
            check(0.0 <= v < 1.0, f"data.{name}", f"must be in [0, 1), got {v}")
        check(self.valid_fraction + self.test_fraction < 1.0, "data.valid_fraction",
               "valid_fraction + test_fraction must be < 1")
        check(300 <= self.vocab_size <= MAX_BPE_VOCAB, "data.vocab_size",
               f"must be in [300, {MAX_BPE_VOCAB}], got {self.vocab_size}")
        check(self.max_len >= 1, "data.max_len", f"must be >= 1, got {self.max_len}")
        if self.source == "addition" and self.addition_style == "textbook":
            check(self.size <= TEXTBOOK_ADDITION_MAX, "data.size",
                   f"textbook addition has {TEXTBOOK_ADDITION_MAX:,} problems at most here "
                   f"(each made once up to order); got {self.size}")
        if self.source in ("files", "tsv", "jsonl", "hf"):
            check(bool(self.path), "data.path", f"is required when data.source is {self.source!r}")

    @property
    def src_key(self) -> str:
        return self.src_field or self.src_lang

    @property
    def tgt_key(self) -> str:
        return self.tgt_field or self.tgt_lang


@dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder RNN: ``embed_dim`` -> ``cell`` x ``num_layers`` of ``hidden_dim``."""

    cell: Literal["lstm", "gru", "rnn"] = "lstm"  # the encoder's and decoder's cell; rnn: the plain tanh RNN
    embed_dim: int = 64  # the size of the source and target token embeddings
    hidden_dim: int = 256  # the decoder's RNN state size and the context's (and the encoder's, unless encoder_dim)
    # the encoder's RNN state size, each direction; 0: hidden_dim. Another size (or a bidirectional encoder)
    # joins the encoder's final states to the decoder's hidden_dim through a bridge, and its outputs through a
    # projection. E.g. bidirectional with encoder_dim = hidden_dim / 2 has OpenNMT-py's brnn encoder sizes
    encoder_dim: int = 0
    num_layers: int = 1  # stacked RNN layers in the encoder and in the decoder (which starts from each layer's state)
    # dropout probability on the source and target embeddings, between stacked RNN layers and before the
    # decoder's output layer, in training only; 0: none
    dropout: float = 0.0
    # the context vector (the encoder's top-layer final hidden state) joins every decoder step's input and
    # the output layer's input; false: it reaches the decoder only through its initial state
    peeky: bool = True
    bidirectional: bool = False  # encoder; its two final states a layer are projected to hidden_dim
    tie_embeddings: bool = False  # target embedding = output projection (needs a projection)
    # luong: Luong "general" attention over the encoder outputs (no input feeding); its output replaces each
    # decoder RNN output before the output layer, and translations can show their alignment. none: off
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
        check(self.embed_dim >= 1, "model.embed_dim", f"must be >= 1, got {self.embed_dim}")
        check(self.hidden_dim >= 1, "model.hidden_dim", f"must be >= 1, got {self.hidden_dim}")
        check(self.encoder_dim >= 0, "model.encoder_dim", f"must be >= 0 (0: hidden_dim), got {self.encoder_dim}")
        check(self.num_layers >= 1, "model.num_layers", f"must be >= 1, got {self.num_layers}")
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def encoder_size(self) -> int:
        """The encoder's RNN state size, each direction: ``encoder_dim``, or ``hidden_dim`` for 0."""
        return self.encoder_dim or self.hidden_dim

    @property
    def bridged(self) -> bool:
        """Whether the encoder's states reach the decoder through a bridge (bidirectional, or another
        size than the decoder's)."""
        return self.bidirectional or self.encoder_size != self.hidden_dim


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: batching, optimizer and learning-rate schedule, gradient clipping,
    teacher forcing / scheduled sampling, validation and early stopping, device and precision,
    seeding, and how often metrics and samples are logged."""

    # passes over the training split, at most (early stopping or max_steps may end the run sooner); with
    # lr_schedule cosine, the schedule spans epochs x batches an epoch unless max_steps is set
    epochs: int = 20
    batch_size: int = 128  # sentences per batch (used when max_tokens is 0)
    max_tokens: int = 0  # token budget per batch (target tokens incl. padding); 0: off
    pad_multiple: int = 0  # round training batches' widths up to a multiple of N (static shapes); 0: off
    # how training batches are made: "source", each batch of one source length (sorted by source,
    # then target length), so the encoder runs unpacked, in one fused RNN call a layer; "target",
    # sorted by (target, source) length, the source packed (seq2seq/data/batching.py batch_cuts)
    batch_by: Literal["source", "target"] = "target"
    lr: float = 1e-3  # the optimizer's learning rate, before warm-up and the schedule scale it
    weight_decay: float = 0.0  # L2 penalty added to the gradient by Adam or SGD (not AdamW's decoupled kind); 0: off
    optimizer: Literal["adam", "sgd"] = "adam"  # sgd: plain SGD, no momentum (e.g. to see gradients explode)
    clip_norm: float = 5.0  # 0 disables clipping
    # the probability that a decoder step in training is fed the reference's previous token, else the model's
    # own argmax (scheduled sampling, decoded step by step: slower); 1: the whole target in one RNN call
    teacher_forcing: float = 1.0
    teacher_forcing_decay: float = 0.0  # subtracted from the ratio after each epoch
    # the floor of the decayed ratio: epoch k (from 0) uses max(teacher_forcing_min, teacher_forcing -
    # k x teacher_forcing_decay)
    teacher_forcing_min: float = 0.0
    # epsilon: the loss's target puts 1 - epsilon on the reference token and spreads epsilon evenly over the
    # vocabulary (PyTorch's cross_entropy label_smoothing); 0: plain cross-entropy
    label_smoothing: float = 0.0
    # none: a constant rate; plateau: the rate x lr_factor once more than lr_patience epochs in a row bring
    # no better validation best_metric; cosine: decay to 0 by the last step (max_steps, else epochs). All
    # three start with warmup_steps
    lr_schedule: Literal["none", "plateau", "cosine"] = "plateau"
    lr_factor: float = 0.5  # plateau: what the rate is multiplied by at each drop, in (0, 1)
    # plateau: epochs in a row without a better validation score to wait; the next such epoch drops the
    # rate and the count starts again (as it does at a better epoch). 0: every such epoch drops it
    lr_patience: int = 1
    warmup_steps: int = 0  # optimizer steps N over which the rate rises linearly to lr (step n: lr x n / N); 0: none
    patience: int = 5  # early stopping: epochs without a better validation score (an LM's: perplexity)
    best_metric: Literal["bleu", "chrf", "exact_match"] = "bleu"  # the validation score that picks best/,
    # early stopping and the plateau schedule (exact_match for one-word targets, where BLEU is 0)
    max_steps: int = 0  # stop after this many optimizer steps; 0: no limit
    # seeds Python's and torch's generators (initial weights, dropout, scheduled sampling) and each epoch's
    # shuffle (seed x 1000 + epoch); data-parallel ranks after the first reseed torch with seed + 1,000,003 x
    # rank once the model is built (the same initial weights, other dropout masks)
    seed: int = 1
    # auto: CUDA when there is a GPU, else the CPU; cuda without one is an error. On CUDA, data-parallel
    # (torchrun) processes each take cuda:LOCAL_RANK
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
        check(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.max_tokens >= 0, "train.max_tokens", f"must be >= 0, got {self.max_tokens}")
        check(0 < self.lr <= MAX_LR, "train.lr", f"must be in (0, {MAX_LR:g}], got {self.lr}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.clip_norm >= 0, "train.clip_norm", f"must be >= 0, got {self.clip_norm}")
        for name in ("teacher_forcing", "teacher_forcing_decay", "teacher_forcing_min"):
            v = getattr(self, name)
            check(0.0 <= v <= 1.0, f"train.{name}", f"must be in [0, 1], got {v}")
        check(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing",
               f"must be in [0, 1), got {self.label_smoothing}")
        check(0.0 < self.lr_factor < 1.0, "train.lr_factor", f"must be in (0, 1), got {self.lr_factor}")
        for name in ("lr_patience", "warmup_steps", "max_steps", "valid_max_sentences", "samples", "save_every",
                     "pad_multiple", "save_every_minutes", "keep_checkpoints"):
            v = getattr(self, name)
            check(v >= 0, f"train.{name}", f"must be >= 0, got {v}")
        check(self.patience >= 1, "train.patience", f"must be >= 1, got {self.patience}")
        check(self.sync_free is not True or self.optimizer == "adam", "train.sync_free",
               "true needs train.optimizer: adam (its fused kernel skips NaN steps on the device)")
        if self.cuda_graphs is True:
            check(self.device != "cpu", "train.cuda_graphs", "true needs CUDA (train.device is cpu)")
            check(self.optimizer == "adam", "train.cuda_graphs",
                   "true needs train.optimizer: adam (fused, capturable)")
            check(self.static_shapes is not False, "train.cuda_graphs", "true needs train.static_shapes: auto or true")
            check(self.sync_free is not False, "train.cuda_graphs",
                   "true needs train.sync_free: auto or true (a graph cannot read a step's outcome back)")
            check(self.teacher_forcing == 1.0 and self.teacher_forcing_decay == 0.0, "train.cuda_graphs",
                   "true needs train.teacher_forcing: 1 and no decay (a graph would keep the first ratio)")
        check(self.max_bad_steps >= 1, "train.max_bad_steps", f"must be >= 1, got {self.max_bad_steps}")
        check(self.log_every >= 1, "train.log_every", f"must be >= 1, got {self.log_every}")
        check(self.bptt >= 1, "train.bptt", f"must be >= 1, got {self.bptt}")
        check(0 <= self.seed < SEED_LIMIT, "train.seed", f"must be in [0, 2**32), got {self.seed}")


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding for translation and evaluation: beam size (1 is greedy), n-best, length penalty,
    output length limit, sentences per batch. Validation during training decodes greedily with
    the same length limit and batch size."""

    # the beam width of translation, evaluation and the server (translate.py --beam and a request's beam
    # override it); 1: greedy search. Validation during training is always greedy
    beam_size: int = 5
    # hypotheses a sentence, best first, in [1, beam_size]; checked, but the commands take their own:
    # translate.py --nbest and a server request's nbest (both 1 by default)
    nbest: int = 1
    length_penalty: float = 1.0  # alpha in ((5 + len) / 6) ** alpha
    max_len_ratio: float = 2.0  # output length limit: ratio * source length + offset
    # tokens added to the output length limit, ceil(max_len_ratio x source tokens) + this; a hypothesis that
    # reaches the limit without EOS ends there
    max_len_offset: int = 10
    # sentences a decoding batch (sorted by length): translation, evaluation, validation during training
    # (its loss too), and a language model's scoring by sentence
    batch_size: int = 128
    # decode in bf16: a bf16 copy of the weights (log-probs and beam scores stay fp32) for translate.py, evaluate
    # and the server, not for validation during training; auto: on CUDA and on CPUs with native bf16
    # (AVX512-BF16, AMX), as train.bf16; true: always (emulated, slowly, on other CPUs); false: fp32
    bf16: Literal["auto", True, False] = "auto"
    # int8: dynamic int8 quantization of the LSTM/GRU and linear layers (torch.ao.quantization; a tanh RNN
    # stays fp32) for translate.py, evaluate and the server; CPU only; the rest runs in fp32 (bf16 is then not
    # applied)
    quantize: Literal["none", "int8"] = "none"

    def __post_init__(self) -> None:
        _check_finite(self, "decode")
        check(self.bf16 in ("auto", True, False), "decode.bf16", f"must be auto, true or false, got {self.bf16!r}")
        check(self.quantize in ("none", "int8"), "decode.quantize", f"must be none or int8, got {self.quantize!r}")
        check(self.beam_size >= 1, "decode.beam_size", f"must be >= 1, got {self.beam_size}")
        check(1 <= self.nbest <= self.beam_size, "decode.nbest",
               f"must be in [1, beam_size={self.beam_size}], got {self.nbest}")
        check(0 <= self.length_penalty <= MAX_LENGTH_PENALTY, "decode.length_penalty",
               f"must be in [0, {MAX_LENGTH_PENALTY:g}], got {self.length_penalty}")
        check(0 < self.max_len_ratio <= MAX_LEN_RATIO, "decode.max_len_ratio",
               f"must be in (0, {MAX_LEN_RATIO:g}], got {self.max_len_ratio}")
        check(0 <= self.max_len_offset <= MAX_LEN_OFFSET, "decode.max_len_offset",
               f"must be in [0, {MAX_LEN_OFFSET}], got {self.max_len_offset}")
        check(self.batch_size >= 1, "decode.batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class TrackingConfig:
    """Weights & Biases: mode, project, entity, run name, group and tags. ``wandb: auto`` is
    online with an API key, offline without."""

    # auto: online with an API key (WANDB_API_KEY or ~/.netrc), else offline (wandb sync uploads the run
    # later); disabled: metrics.jsonl only, which is always written. WANDB_MODE in the environment wins
    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "seq2seq"  # the W&B project the run is logged to
    entity: str = ""  # the W&B user or team; "": the account's default entity
    name: str = ""  # the run's display name in W&B; "": one W&B makes up
    group: str = ""  # a W&B group to put the run in (e.g. the runs of one sweep); "": none
    tags: tuple[str, ...] = ()  # W&B tags of the run (a list in a config file)


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
            check(self.data.task == "translate", "model.init_decoder_from",
                   "is for a translator (data.task: translate)")
            check(not self.data.joint_vocab and not self.data.prepared, "model.init_decoder_from",
                   "needs the language model's own target tokenizer: data.joint_vocab and data.prepared must be off")
        if self.data.task == "lm":  # a language model is a decoder without a context to read
            check(self.data.source == "files", "data.source",
                   f"data.task lm reads text files; must be 'files', got {self.data.source!r}")
            for key, off in (("peeky", False), ("bidirectional", False), ("attention", "none"), ("encoder_dim", 0)):
                check(getattr(self.model, key) == off, f"model.{key}",
                       f"a language model has no source to read; set model.{key}: {str(off).lower()}")
        for key in ("static_shapes", "cuda_graphs"):  # both need static shapes; checks across sections
            if getattr(self.train, key) is True:
                check(not self.data.prepared, f"train.{key}",
                       "true needs the training data in memory (data.prepared streams it)")
                check(not self.model.bridged, f"train.{key}",
                       "true needs a unidirectional encoder of the decoder's size (model.bidirectional: false, "
                       "model.encoder_dim: 0)")

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
