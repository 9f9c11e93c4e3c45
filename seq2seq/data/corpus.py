"""Parallel corpora: (source, target) sentence pairs from files, TSV/JSONL, HF datasets or code.

:func:`load_corpus` turns a :class:`~seq2seq.config.DataConfig` into a :class:`Corpus` of
train / valid / test pairs plus a short human-readable report. Sources:

* ``files``: ``{path}/{split}.{lang}`` (or ``.gz``), one sentence a line, two aligned files;
* ``tsv``: ``{path}/{split}.tsv``, ``source<TAB>target`` a line, quotes taken literally;
* ``jsonl``: ``{path}/{split}.jsonl``, ``{"de": ..., "en": ...}`` or
  ``{"translation": {"de": ..., "en": ...}}`` a line (keys are ``cfg.src_key``/``cfg.tgt_key``);
* ``hf``: a Hugging Face ``datasets`` hub name or local directory (read by :mod:`seq2seq.data.hub`);
* ``dates`` / ``addition``: synthetic tasks made in code, deterministic for ``(size, seed)``
  (made by :mod:`seq2seq.data.synthetic`).

This module reads the local text files (``files``, ``tsv``, ``jsonl``) itself.

Text is kept exactly as written: only the line ending (``\\n`` or ``\\r\\n``) is removed.
Pairs with an empty (or whitespace-only) side are dropped and counted. Every problem the
user can cause is a :class:`CorpusError` whose one-line message names the file, the line
and the key, e.g. ``data/x/train.jsonl: line 7: missing key 'en' (keys: de, fr)``.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..config import DataConfig
from ..config.parsing import ParseError, bounded_lines, load_json
from . import synthetic
from .datasets import download_command
from .pairs import CorpusError, Pair, Read
from .synthetic import SYNTHETIC_SOURCES


@dataclass(frozen=True)
class Corpus:
    """The three splits and what happened while reading them (one line per split)."""

    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    report: list[str]


# ---------------------------------------------------------------------------- entry points


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read (or make) the train / valid / test splits named by ``cfg``.

    Empty pairs are dropped; a split left with no pairs is an error, except a synthetic
    split whose fraction is 0.
    """
    names = (cfg.train_split, cfg.valid_split, cfg.test_split)
    if cfg.source in SYNTHETIC_SOURCES:
        parts = synthetic_splits(cfg)
        style = " (textbook style)" if is_textbook(cfg) else ""
        report = [f"source: synthetic {cfg.source}{style}, {cfg.size} pairs, seed {cfg.seed}"]
        report += [f"{name}: {len(part)} pairs made" for name, part in zip(names, parts)]
        return Corpus(train=parts[0], valid=parts[1], test=parts[2], report=report)
    read = _reader(cfg)
    report = [f"source: {cfg.source} {cfg.path} ({cfg.src_key} -> {cfg.tgt_key})"]
    splits: list[list[Pair]] = []
    for name in names:
        result = read(name)
        pairs = _keep_nonempty(result)
        line = f"{name}: {len(result.pairs)} pairs read, {len(result.pairs) - len(pairs)} empty pairs dropped"
        if cfg.invalid_utf8 == "skip" and cfg.source != "hf":
            line += f", {result.skipped} pairs with invalid UTF-8 skipped"
        report.append(line)
        splits.append(pairs)
    return Corpus(train=splits[0], valid=splits[1], test=splits[2], report=report)


def load_split(cfg: DataConfig, split: str) -> list[Pair]:
    """One named split (e.g. ``"test_2016_flickr"``), empty pairs dropped as in :func:`load_corpus`.

    For synthetic sources ``split`` is ``train``/``val``/``test`` or the split names in ``cfg``.
    """
    if cfg.source in SYNTHETIC_SOURCES:
        index = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2,
                 cfg.train_split: 0, cfg.valid_split: 1, cfg.test_split: 2}
        if split not in index:
            raise CorpusError(f"synthetic {cfg.source}: no split {split!r} (splits: {', '.join(index)})")
        return synthetic_splits(cfg)[index[split]]
    return _keep_nonempty(_reader(cfg)(split))


def drop_empty(pairs: Iterable[Pair]) -> tuple[list[Pair], int]:
    """Drop pairs whose source or target is empty or whitespace only; return (kept, dropped)."""
    pairs = list(pairs)
    kept = [(s, t) for s, t in pairs if s.strip() and t.strip()]
    return kept, len(pairs) - len(kept)


def iter_split(cfg: DataConfig, split: str) -> Iterator[Pair]:
    """The pairs of one split read one line at a time, empty pairs dropped (as in
    :func:`load_split`), for corpora larger than memory: ``files``, ``tsv`` and ``jsonl``
    stream; ``hf`` reads the split as :func:`load_split` does; synthetic sources are made with
    :func:`seq2seq.data.synthetic.iter_synthetic` (the whole corpus in order: take the splits from one stream)."""
    root = Path(cfg.path).expanduser()
    mode = cfg.invalid_utf8
    if cfg.source == "files":
        rows = _iter_parallel(resolve_file(root / f"{split}.{cfg.src_lang}"),
                              resolve_file(root / f"{split}.{cfg.tgt_lang}"), mode)
    elif cfg.source == "tsv":
        rows = _iter_tsv(resolve_file(root / f"{split}.tsv"), mode)
    elif cfg.source == "jsonl":
        rows = _iter_jsonl(resolve_file(root / f"{split}.jsonl"), cfg.src_key, cfg.tgt_key, mode)
    elif cfg.source == "hf":
        rows = iter(load_split(cfg, split))
    else:
        raise CorpusError(f"data.source: {cfg.source!r} has no splits on disk; use iter_synthetic")
    return (row for row in rows if row is not None and row[0].strip() and row[1].strip())


def _keep_nonempty(result: Read) -> list[Pair]:
    if not result.pairs:
        skipped = f" ({result.skipped} skipped for invalid UTF-8)" if result.skipped else ""
        raise CorpusError(f"{result.where}: no pairs{skipped}")
    kept, dropped = drop_empty(result.pairs)
    if not kept:
        raise CorpusError(f"{result.where}: all {dropped} pairs have an empty side")
    return kept


def _reader(cfg: DataConfig) -> Callable[[str], Read]:
    """A function from split name to what was read, for the file and HF sources."""
    root = Path(cfg.path).expanduser()
    mode = cfg.invalid_utf8
    if cfg.source == "files":
        return lambda split: _read_parallel(root / f"{split}.{cfg.src_lang}",
                                            root / f"{split}.{cfg.tgt_lang}", mode)
    if cfg.source == "tsv":
        return lambda split: _read_tsv(root / f"{split}.tsv", mode)
    if cfg.source == "jsonl":
        return lambda split: _read_jsonl(root / f"{split}.jsonl", cfg.src_key, cfg.tgt_key, mode)
    if cfg.source == "hf":
        from .hub import open_hf, read_hf  # not at import time: hub imports this module's types

        loaded = open_hf(cfg)
        return lambda split: read_hf(loaded, cfg.path, split, cfg.src_key, cfg.tgt_key)
    raise CorpusError(f"data.source: unknown source {cfg.source!r}")


# ---------------------------------------------------------------------------- text files


def read_parallel_files(src_path: str | Path, tgt_path: str | Path,
                        invalid_utf8: str = "error") -> list[Pair]:
    """Pairs from two line-aligned files (plain or gzip; ``x`` also finds ``x.gz``)."""
    return _read_parallel(Path(src_path), Path(tgt_path), invalid_utf8).pairs


def read_tsv(path: str | Path, invalid_utf8: str = "error") -> list[Pair]:
    """Pairs from ``source<TAB>target`` lines; quotes are text, blank lines are skipped."""
    return _read_tsv(Path(path), invalid_utf8).pairs


def read_jsonl(path: str | Path, src_key: str, tgt_key: str, invalid_utf8: str = "error") -> list[Pair]:
    """Pairs from JSON objects, one a line: ``{src_key: .., tgt_key: ..}`` or the same under
    ``"translation"`` (the Hugging Face form). Blank lines are skipped."""
    return _read_jsonl(Path(path), src_key, tgt_key, invalid_utf8).pairs


def _read_parallel(src_path: Path, tgt_path: Path, invalid_utf8: str) -> Read:
    src_path, tgt_path = resolve_file(src_path), resolve_file(tgt_path)
    src_lines, tgt_lines = _lines(src_path, invalid_utf8), _lines(tgt_path, invalid_utf8)
    if len(src_lines) != len(tgt_lines):
        raise CorpusError(f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}: "
                          "parallel files must have the same number of lines")
    pairs = [(s, t) for s, t in zip(src_lines, tgt_lines) if s is not None and t is not None]
    return Read(pairs, len(src_lines) - len(pairs), f"{src_path} + {tgt_path}")


def _read_tsv(path: Path, invalid_utf8: str) -> Read:
    path = resolve_file(path)
    return _collect(_iter_tsv(path, invalid_utf8), str(path))


def _read_jsonl(path: Path, src_key: str, tgt_key: str, invalid_utf8: str) -> Read:
    path = resolve_file(path)
    return _collect(_iter_jsonl(path, src_key, tgt_key, invalid_utf8), str(path))


def _collect(rows: Iterable[Pair | None], where: str) -> Read:
    """The pairs of ``rows``, counting the ``None``s (lines skipped for invalid UTF-8)."""
    pairs: list[Pair] = []
    skipped = 0
    for row in rows:
        if row is None:
            skipped += 1
        else:
            pairs.append(row)
    return Read(pairs, skipped, where)


def _iter_tsv(path: Path, invalid_utf8: str) -> Iterator[Pair | None]:
    """Pairs of a TSV file, one line at a time; ``None`` for a line skipped for invalid UTF-8."""
    for lineno, line in enumerate(iter_lines(path, invalid_utf8), start=1):
        if line is None:
            yield None
        elif line:
            cols = line.split("\t")
            if len(cols) != 2:
                raise CorpusError(f"{path}: line {lineno}: expected 2 tab-separated columns, got {len(cols)}")
            yield cols[0], cols[1]


def _iter_jsonl(path: Path, src_key: str, tgt_key: str, invalid_utf8: str) -> Iterator[Pair | None]:
    """Pairs of a JSONL file, one line at a time; ``None`` for a line skipped for invalid UTF-8."""
    for lineno, line in enumerate(iter_lines(path, invalid_utf8), start=1):
        if line is None:
            yield None
            continue
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            obj = load_json(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        except ParseError as e:
            raise CorpusError(f"{where}: JSON {e}") from None
        if not isinstance(obj, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if isinstance(obj.get("translation"), dict):
            obj, where = obj["translation"], f"{where}: translation"
        yield _string(obj, src_key, where), _string(obj, tgt_key, where)


def _iter_parallel(src_path: Path, tgt_path: Path, invalid_utf8: str) -> Iterator[Pair | None]:
    """Pairs of two line-aligned files, one line at a time; ``None`` where a side was skipped."""
    missing = object()
    lines = itertools.zip_longest(iter_lines(src_path, invalid_utf8), iter_lines(tgt_path, invalid_utf8),
                                  fillvalue=missing)
    for lineno, (s, t) in enumerate(lines, start=1):
        if s is missing or t is missing:
            shorter = src_path if s is missing else tgt_path
            raise CorpusError(f"{src_path} and {tgt_path} differ in length ({shorter} ends after line "
                              f"{lineno - 1}): parallel files must have the same number of lines")
        yield None if s is None or t is None else (s, t)  # type: ignore[misc]


def _string(obj: Mapping[str, Any], key: str, where: str) -> str:
    if key not in obj:
        raise CorpusError(f"{where}: missing key {key!r} (keys: {', '.join(map(str, obj)) or 'none'})")
    value = obj[key]
    if not isinstance(value, str):
        raise CorpusError(f"{where}: key {key!r}: expected a string, got {type(value).__name__}")
    return value


def resolve_file(path: Path) -> Path:
    """``path`` if it exists, else ``path.gz``; a CorpusError naming both if neither does, or
    naming the folder (and the command that fills it) if that is missing."""
    if not path.parent.is_dir():
        fill = download_command(path.parent)
        raise CorpusError(f"data.path: folder {path.parent} is missing" + (f"; fill it with: {fill}" if fill else ""))
    if path.exists() or path.name.endswith(".gz"):
        if not path.exists():
            raise CorpusError(f"{path}: file not found")
        return path
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return gz
    raise CorpusError(f"{path}: file not found (tried {path} and {gz})")


def _lines(path: Path, invalid_utf8: str) -> list[str | None]:
    """The file's lines without their ``\\n`` / ``\\r\\n``; gzip is detected by its magic bytes.

    A line that is not valid UTF-8 is a CorpusError, or ``None`` when ``invalid_utf8="skip"``.
    """
    return list(iter_lines(path, invalid_utf8))


def iter_lines(path: Path, invalid_utf8: str) -> Iterator[str | None]:
    """:func:`_lines`, one line at a time (for corpora larger than memory)."""
    if invalid_utf8 not in ("error", "skip"):
        raise CorpusError(f"data.invalid_utf8: must be 'error' or 'skip', got {invalid_utf8!r}")
    try:
        f = path.open("rb")
    except OSError as e:
        raise CorpusError(f"{path}: cannot read file ({e.strerror or type(e).__name__})") from None
    with f:
        yield from iter_stream_lines(f, path, invalid_utf8)


SKIP_HINT = "set data.invalid_utf8=skip to drop such lines"  # what a config's reader can do about a bad line


def iter_stream_lines(stream: BinaryIO | io.BufferedIOBase, name: str | Path, invalid_utf8: str,
                      utf8_hint: str = SKIP_HINT) -> Iterator[str | None]:
    """The lines of an open binary stream, as :func:`iter_lines` reads a file's (gzip detected
    by its magic bytes, without seeking: a pipe or standard input reads as a file does). An
    invalid UTF-8 line is a CorpusError naming ``name``, its line and ``utf8_hint`` (or None
    when ``invalid_utf8="skip"``)."""
    try:
        buffered: Any = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)
        is_gzip = buffered.peek(2)[:2] == b"\x1f\x8b"
        source: io.BufferedIOBase = gzip.GzipFile(fileobj=buffered) if is_gzip else buffered
        for lineno, raw in enumerate(bounded_lines(source), start=1):  # splits on b"\n" only
            yield _decode_line(raw, name, lineno, invalid_utf8, utf8_hint)
    except ParseError as e:
        raise CorpusError(f"{name}: {e}") from None
    except (OSError, EOFError, zlib.error) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise CorpusError(f"{name}: cannot read file ({reason})") from None


def _decode_line(raw: bytes, path: str | Path, lineno: int, invalid_utf8: str, hint: str = SKIP_HINT) -> str | None:
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if invalid_utf8 == "error":
            raise CorpusError(f"{path}: line {lineno}: invalid UTF-8 (byte 0x{raw[e.start]:02x} "
                              f"at byte {e.start + 1}; {hint})") from None
        return None


# ---------------------------------------------------------------------------- synthetic tasks
def iter_synthetic(cfg: DataConfig) -> Iterator[Pair]:
    """The synthetic corpus of ``cfg`` one pair at a time: its first ``cfg.size`` pairs are
    :func:`~seq2seq.data.synthetic.make_dates` / :func:`~seq2seq.data.synthetic.make_addition`'s, so the
    splits are, in order, the next :func:`synthetic_split_sizes` pairs."""
    if cfg.source not in SYNTHETIC_SOURCES:
        raise CorpusError(f"data.source: {cfg.source!r} is not synthetic")
    if is_textbook(cfg):  # shuffled after it is made: finite, ``cfg.size`` pairs
        return iter(synthetic.make_addition_textbook(cfg.size, cfg.seed))
    return synthetic.stream(cfg.source, cfg.seed)


def is_textbook(cfg: DataConfig) -> bool:
    """Whether ``cfg`` asks for :func:`~seq2seq.data.synthetic.make_addition_textbook`'s pairs."""
    return cfg.source == "addition" and cfg.addition_style == "textbook"


def synthetic_split_sizes(cfg: DataConfig) -> tuple[int, int, int]:
    """Pairs in the synthetic train, valid and test splits; a split with a fraction above 0
    gets at least one pair."""
    n_valid = max(1, round(cfg.size * cfg.valid_fraction)) if cfg.valid_fraction > 0 else 0
    n_test = max(1, round(cfg.size * cfg.test_fraction)) if cfg.test_fraction > 0 else 0
    n_train = cfg.size - n_valid - n_test
    if n_train < 1:
        raise CorpusError(f"data.size: {cfg.size} pairs leave none for training after "
                          f"{n_valid} valid and {n_test} test pairs")
    return n_train, n_valid, n_test


def synthetic_splits(cfg: DataConfig) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Make ``cfg.size`` pairs; the first go to train, then valid, then test.

    A split with a fraction above 0 gets at least one pair.
    """
    n_train, n_valid, _ = synthetic_split_sizes(cfg)
    make = synthetic.make_addition_textbook if is_textbook(cfg) else SYNTHETIC_SOURCES[cfg.source]
    pairs = make(cfg.size, cfg.seed)
    return pairs[:n_train], pairs[n_train:n_train + n_valid], pairs[n_train + n_valid:]
