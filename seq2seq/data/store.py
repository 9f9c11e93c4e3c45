"""Prepared stores: a training corpus tokenized once into flat token files, streamed in chunks.

For corpora larger than memory. :func:`prepare` (``python -m seq2seq prepare``) reads the
training split once, one pair at a time: it trains the tokenizers on the first
:data:`TOKENIZER_SAMPLE` pairs, then encodes and filters :data:`PREPARE_CHUNK` pairs at a
time (:func:`~seq2seq.data.batching.encode_pairs`) and appends them to a directory::

    store.json              format, counts, token dtype, the data config it was made from, report
    src_tokenizer.json      the tokenizers (as in a checkpoint)
    tgt_tokenizer.json
    train.src.bin           every example's source ids, concatenated (uint16, or uint32 for big vocabularies)
    train.tgt.bin           the same for the targets
    train.src_offsets.bin   int64 (N + 1,): example i's source ids are src[off[i]:off[i + 1]]
    train.tgt_offsets.bin
    valid.jsonl, test.jsonl the small splits, as ["source", "target"] lines

The ``.bin`` files are raw arrays (``np.memmap(path, dtype)`` maps one for a look).
Training with ``data.prepared: DIR`` reads them through :class:`Store`, whose memory is one
chunk: an epoch shuffles the store's blocks of :data:`BLOCK` consecutive examples, and
reads :data:`CHUNK_BLOCKS` blocks at a time (65,536 examples) with ``pread``, copying just
those bytes. (Memory maps would do, but the kernel maps pages around each one touched --
for 256 scattered blocks, hundreds of MiB of page cache counted in the process's resident
set.) ``batching.epoch_batches`` sorts and cuts each chunk as it would the whole corpus in
memory (same batch sizes, same token budgets). Every example is in exactly one chunk per
epoch; the order is a function of the seed.

Compared with shuffling the whole corpus (the in-memory path), examples of one block always
share a chunk; with 256 random blocks per chunk, batches still mix the whole corpus.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..config import DataConfig
from ..config.parsing import MAX_CONFIG_BYTES, load_json, read_text
from . import corpus
from .batching import Chunk, Example, encode_pairs
from .corpus import Pair
from .tokenization import Tokenizer, TokenizerError, train_tokenizers

FORMAT = "seq2seq-store/1"
STORE_JSON = "store.json"
SRC_TOK_FILE = "src_tokenizer.json"
TGT_TOK_FILE = "tgt_tokenizer.json"
SIDES = ("src", "tgt")
_FILES = ("src", "src_offsets", "tgt", "tgt_offsets")  # train.{name}.bin

TOKENIZER_SAMPLE = 200_000  # pairs the tokenizers are trained on: the first of the training split
PREPARE_CHUNK = 50_000  # pairs encoded and written at a time
BLOCK = 256  # consecutive examples read together
CHUNK_BLOCKS = 256  # blocks per chunk: 65,536 examples sorted into batches together

# The data settings a store depends on: all but where it is (prepared) and what batching does (reverse_source).
_NOT_STORED = ("prepared", "reverse_source")


class StoreError(ValueError):
    """A store that is missing, damaged, or made from another data config; the message names it."""


def stored_config(cfg: DataConfig) -> dict[str, Any]:
    """The part of a data config that decides a store's contents."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_STORED}


# --- writing ---------------------------------------------------------------------------
class _Writer:
    """Appends encoded examples to the four flat files of the training split."""

    def __init__(self, directory: Path, dtype: type[np.unsignedinteger]) -> None:
        self.dtype = dtype
        self.files: dict[str, IO[bytes]] = {}
        for side in SIDES:
            self.files[side] = open(directory / f"train.{side}.bin", "wb")  # noqa: SIM115 - closed in close()
            self.files[f"{side}_offsets"] = open(directory / f"train.{side}_offsets.bin", "wb")  # noqa: SIM115
            self.files[f"{side}_offsets"].write(np.zeros(1, np.int64).tobytes())
        self.examples = 0
        self.tokens = dict.fromkeys(SIDES, 0)
        self.widths = 0  # sum over examples of max(source length, target length + 1): padded-free batch tokens

    def add(self, examples: list[Example]) -> None:
        lengths = {}
        for i, side in enumerate(SIDES):
            lens = np.fromiter((len(e[i]) for e in examples), np.int64, len(examples))  # (n,)
            ids = np.fromiter(itertools.chain.from_iterable(e[i] for e in examples), self.dtype, int(lens.sum()))
            self.files[side].write(ids.tobytes())
            self.files[f"{side}_offsets"].write((self.tokens[side] + np.cumsum(lens)).tobytes())
            self.tokens[side] += int(lens.sum())
            lengths[side] = lens
        self.widths += int(np.maximum(lengths["src"], lengths["tgt"] + 1).sum())
        self.examples += len(examples)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _splits(cfg: DataConfig) -> tuple[Iterator[Pair], Callable[[], tuple[list[Pair], list[Pair]]]]:
    """The training split as a stream, and a function giving the valid and test splits once
    it is exhausted (a synthetic corpus makes them after the training pairs)."""
    if cfg.source in ("dates", "addition"):
        n_train, n_valid, n_test = corpus.synthetic_split_sizes(cfg)
        stream = corpus.iter_synthetic(cfg)
        return (itertools.islice(stream, n_train),
                lambda: (list(itertools.islice(stream, n_valid)), list(itertools.islice(stream, n_test))))
    valid, test = corpus.load_split(cfg, cfg.valid_split), corpus.load_split(cfg, cfg.test_split)  # small: fail early
    return corpus.iter_split(cfg, cfg.train_split), lambda: (valid, test)


def _batched(pairs: Iterable[Pair], n: int) -> Iterator[list[Pair]]:
    it = iter(pairs)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def _write_pairs(path: Path, pairs: list[Pair]) -> None:
    path.write_text("".join(json.dumps(list(p), ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")


def prepare(cfg: DataConfig, out: str | Path, *, overwrite: bool = False,
            say: Callable[[str], None] = print) -> dict[str, Any]:
    """Stream the corpus of ``cfg`` into a store at ``out`` (written to ``out.tmp``, then
    renamed); returns a summary (pairs, seconds, bytes on disk)."""
    out = Path(out)
    tmp = _fresh_tmp(out, overwrite)
    start = time.perf_counter()
    synthetic = cfg.source in ("dates", "addition")
    where = f"synthetic {cfg.source}, {cfg.size} pairs, seed {cfg.seed}" if synthetic else f"{cfg.source} {cfg.path}"
    train, rest = _splits(cfg)
    sample = list(itertools.islice(train, TOKENIZER_SAMPLE))
    if not sample:
        raise StoreError(f"{where}: the training split has no pairs")
    src_tok, tgt_tok = train_tokenizers(sample, cfg.tokenizer, cfg.vocab_size, cfg.joint_vocab)
    say(f"tokenizers trained on the first {len(sample):,} pairs: source {src_tok.vocab_size}, "
        f"target {tgt_tok.vocab_size} ({cfg.tokenizer})")
    dtype = np.uint16 if max(src_tok.vocab_size, tgt_tok.vocab_size) <= 2**16 else np.uint32
    writer, read, too_long, empty = _write_train(tmp, dtype, itertools.chain(sample, train), src_tok, tgt_tok,
                                                 cfg.max_len, say, start)
    del sample
    if writer.examples == 0:
        raise StoreError(f"no training pairs left after filtering (max_len={cfg.max_len})")
    valid, test = rest()
    _write_pairs(tmp / "valid.jsonl", valid)
    _write_pairs(tmp / "test.jsonl", test)
    src_tok.save(tmp / SRC_TOK_FILE)
    tgt_tok.save(tmp / TGT_TOK_FILE)
    report = [f"source: {where}, prepared in {out}",
              f"train: {writer.examples} pairs kept of {read} read, {too_long} longer than max_len={cfg.max_len} "
              f"and {empty} empty after tokenization dropped",
              f"valid: {len(valid)} pairs, test: {len(test)} pairs",
              f"vocabulary: source {src_tok.vocab_size}, target {tgt_tok.vocab_size} ({cfg.tokenizer}, "
              f"trained on the first {min(read, TOKENIZER_SAMPLE)} training pairs)"]
    meta = {"format": FORMAT, "examples": writer.examples, "tokens": writer.tokens, "widths": writer.widths,
            "dtype": np.dtype(dtype).name, "data": stored_config(cfg), "report": report}
    (tmp / STORE_JSON).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    _replace(tmp, out)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in out.iterdir())
    say(f"prepared {out}: {writer.examples:,} training pairs, {size / 2**20:,.0f} MiB, {seconds:.0f} s")
    return {"pairs": read, "examples": writer.examples, "seconds": round(seconds, 1), "bytes": size}


def _fresh_tmp(out: Path, overwrite: bool) -> Path:
    """An empty ``out.tmp`` to write the store into; StoreError if ``out`` exists and not ``overwrite``."""
    if out.exists() and not overwrite:
        raise StoreError(f"{out}: already exists; add --overwrite to replace it, or choose another --out")
    tmp = out.parent / f"{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _write_train(directory: Path, dtype: type[np.unsignedinteger], pairs: Iterable[Pair], src_tok: Tokenizer,
                 tgt_tok: Tokenizer, max_len: int, say: Callable[[str], None], start: float
                 ) -> tuple[_Writer, int, int, int]:
    """Encode and filter the training ``pairs`` :data:`PREPARE_CHUNK` at a time into the flat
    files in ``directory``, saying how far it is every million pairs (seconds since ``start``).
    -> the closed writer (its counts), and the pairs read, dropped too long, dropped empty."""
    read = too_long = empty = 0
    writer = _Writer(directory, dtype)
    try:
        for chunk in _batched(pairs, PREPARE_CHUNK):
            examples, n_long, n_empty = encode_pairs(chunk, src_tok, tgt_tok, max_len)
            writer.add(examples)
            read, too_long, empty = read + len(chunk), too_long + n_long, empty + n_empty
            if read % 1_000_000 < PREPARE_CHUNK:
                say(f"  {read:,} pairs, {time.perf_counter() - start:.0f} s")
    finally:
        writer.close()
    return writer, read, too_long, empty


def _replace(tmp: Path, out: Path) -> None:
    """The finished store ``tmp`` becomes ``out`` (a store already there is removed)."""
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


# --- reading ---------------------------------------------------------------------------
class Store:
    """A prepared store, opened: its tokenizers, small splits, and the training split in chunks."""

    def __init__(self, path: str | Path, *, block: int = BLOCK, chunk_blocks: int = CHUNK_BLOCKS) -> None:
        self.path = Path(path)
        meta_file = self.path / STORE_JSON
        try:
            meta = load_json(read_text(meta_file, MAX_CONFIG_BYTES))
        except FileNotFoundError:
            raise StoreError(f"{self.path}: no prepared store here (make one with "
                             f"python -m seq2seq prepare --config CONFIG --out {self.path})") from None
        except (OSError, ValueError) as e:
            raise StoreError(f"{meta_file}: unreadable ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreError(f"{meta_file}: not a store of format {FORMAT!r}")
        self.size: int = meta["examples"]
        self.tokens: dict[str, int] = meta["tokens"]
        self.widths: int = meta["widths"]
        self.dtype = np.dtype(meta["dtype"])
        self.data: dict[str, Any] = meta["data"]
        self.report: list[str] = meta["report"]
        try:
            self.src_tok = Tokenizer.load(self.path / SRC_TOK_FILE)
            self.tgt_tok = Tokenizer.load(self.path / TGT_TOK_FILE)
        except TokenizerError as e:
            raise StoreError(str(e)) from None
        self.block, self.chunk_blocks = block, chunk_blocks
        for side in SIDES:  # a truncated file is an error now, not in the middle of an epoch
            for name, count, itemsize in ((side, self.tokens[side], self.dtype.itemsize),
                                          (f"{side}_offsets", self.size + 1, 8)):
                file = self.path / f"train.{name}.bin"
                if not file.is_file() or file.stat().st_size != count * itemsize:
                    raise StoreError(f"{file}: missing or not {count * itemsize} bytes long (a damaged store)")

    def check(self, cfg: DataConfig) -> None:
        """Refuse a store made from another data config (another corpus, size, tokenizer...)."""
        want = json.loads(json.dumps(stored_config(cfg)))  # tuples as lists, as stored
        diff = [k for k in sorted(set(want) | set(self.data)) if want.get(k) != self.data.get(k)]
        if diff:
            shown = ", ".join(f"data.{k}: {self.data.get(k)!r} in the store, {want.get(k)!r} here" for k in diff[:3])
            raise StoreError(f"{self.path}: prepared from another data config ({shown}); "
                             "prepare it again with this config, or use the config it was made with")

    def examples(self, start: int, stop: int) -> list[Example]:
        """Examples ``start`` to ``stop`` (as token id lists, like ``encode_pairs`` gives)."""
        with self._files() as files:
            return self._read(files, start, stop)

    def chunks(self, seed: int) -> Iterator[Chunk]:
        """One epoch: ``(examples, ids, seed)`` for ``batching.epoch_batches``, a chunk of
        :attr:`chunk_blocks` shuffled blocks at a time; a function of ``seed``."""
        rng = random.Random(seed)
        blocks = list(range(-(-self.size // self.block)))
        rng.shuffle(blocks)
        for k in range(0, len(blocks), self.chunk_blocks):
            examples: list[Example] = []
            ids: list[int] = []
            with self._files() as files:
                for b in sorted(blocks[k:k + self.chunk_blocks]):  # in file order
                    start, stop = b * self.block, min((b + 1) * self.block, self.size)
                    examples += self._read(files, start, stop)
                    ids += range(start, stop)
            yield examples, ids, rng.getrandbits(32)

    @contextmanager
    def _files(self) -> Iterator[dict[str, int]]:
        fds = {name: os.open(self.path / f"train.{name}.bin", os.O_RDONLY) for name in _FILES}
        try:
            yield fds
        finally:
            for fd in fds.values():
                os.close(fd)

    def _read(self, files: dict[str, int], start: int, stop: int) -> list[Example]:
        sides = []
        for side in SIDES:
            offsets = _pread(files[f"{side}_offsets"], np.dtype(np.int64), start, stop + 1 - start)  # (n + 1,)
            flat = _pread(files[side], self.dtype, int(offsets[0]), int(offsets[-1] - offsets[0])).tolist()
            bounds = (offsets - offsets[0]).tolist()
            sides.append([flat[i:j] for i, j in zip(bounds, bounds[1:])])
        return list(zip(*sides))

    def estimated_batches(self, batch_size: int, max_tokens: int = 0) -> int:
        """Batches in an epoch, near enough for a schedule and a progress bar (the exact number
        depends on the chunks: with a token budget, on how the lengths fall)."""
        if max_tokens:
            return max(1, -(-self.widths // max_tokens))  # no padding: a lower bound
        chunk = self.block * self.chunk_blocks
        full, last = divmod(self.size, chunk)
        return full * -(-chunk // batch_size) + -(-last // batch_size)

    def valid_pairs(self) -> list[Pair]:
        return self._pairs("valid.jsonl")

    def test_pairs(self) -> list[Pair]:
        return self._pairs("test.jsonl")

    def _pairs(self, name: str) -> list[Pair]:
        try:
            lines = (self.path / name).read_text(encoding="utf-8").splitlines()
            return [(s, t) for s, t in map(load_json, lines)]
        except (OSError, ValueError, TypeError) as e:  # TypeError: a line that is not a pair
            raise StoreError(f"{self.path / name}: unreadable ({e})") from None


def _pread(fd: int, dtype: np.dtype[Any], first: int, count: int) -> np.ndarray:
    """Items ``first`` to ``first + count`` of a flat array file, read (not mapped)."""
    nbytes = count * dtype.itemsize
    data = os.pread(fd, nbytes, first * dtype.itemsize)
    if len(data) != nbytes:
        raise StoreError(f"a store file ends early (item {first + len(data) // dtype.itemsize}); prepare it again")
    return np.frombuffer(data, dtype)
