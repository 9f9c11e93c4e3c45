"""Parallel corpora: (source, target) sentence pairs from files, TSV/JSONL, HF datasets or code.

:func:`load_corpus` turns a :class:`~seq2seq.config.DataConfig` into a :class:`Corpus` of
train / valid / test pairs plus a short human-readable report. Sources:

* ``files``: ``{path}/{split}.{lang}`` (or ``.gz``), one sentence a line, two aligned files;
* ``tsv``: ``{path}/{split}.tsv``, ``source<TAB>target`` a line, quotes taken literally;
* ``jsonl``: ``{path}/{split}.jsonl``, ``{"de": ..., "en": ...}`` or
  ``{"translation": {"de": ..., "en": ...}}`` a line (keys are ``cfg.src_key``/``cfg.tgt_key``);
* ``hf``: a Hugging Face ``datasets`` hub name or local directory;
* ``dates`` / ``addition``: synthetic tasks made in code, deterministic for ``(size, seed)``.

Text is kept exactly as written: only the line ending (``\\n`` or ``\\r\\n``) is removed.
Pairs with an empty (or whitespace-only) side are dropped and counted. Every problem the
user can cause is a :class:`CorpusError` whose one-line message names the file, the line
and the key, e.g. ``data/x/train.jsonl: line 7: missing key 'en' (keys: de, fr)``.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import io
import itertools
import json
import os
import random
import socket
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

from seq2seq.config import TEXTBOOK_ADDITION_MAX, DataConfig

Pair = tuple[str, str]


class CorpusError(ValueError):
    """A problem with the corpus; the one-line message names the file, line and key."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))  # one line, whatever was embedded


@dataclass(frozen=True)
class Corpus:
    """The three splits and what happened while reading them (one line per split)."""

    train: list[Pair]
    valid: list[Pair]
    test: list[Pair]
    report: list[str]


class _Read(NamedTuple):
    """What a reader found: the pairs, how many were skipped for invalid UTF-8, and where."""

    pairs: list[Pair]
    skipped: int
    where: str


# ---------------------------------------------------------------------------- entry points


def load_corpus(cfg: DataConfig) -> Corpus:
    """Read (or make) the train / valid / test splits named by ``cfg``.

    Empty pairs are dropped; a split left with no pairs is an error, except a synthetic
    split whose fraction is 0.
    """
    names = (cfg.train_split, cfg.valid_split, cfg.test_split)
    if cfg.source in _SYNTHETIC:
        parts = _synthetic_splits(cfg)
        style = " (textbook style)" if _textbook(cfg) else ""
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
    if cfg.source in _SYNTHETIC:
        index = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2,
                 cfg.train_split: 0, cfg.valid_split: 1, cfg.test_split: 2}
        if split not in index:
            raise CorpusError(f"synthetic {cfg.source}: no split {split!r} (splits: {', '.join(index)})")
        return _synthetic_splits(cfg)[index[split]]
    return _keep_nonempty(_reader(cfg)(split))


def drop_empty(pairs: Iterable[Pair]) -> tuple[list[Pair], int]:
    """Drop pairs whose source or target is empty or whitespace only; return (kept, dropped)."""
    pairs = list(pairs)
    kept = [(s, t) for s, t in pairs if s.strip() and t.strip()]
    return kept, len(pairs) - len(kept)


def _keep_nonempty(result: _Read) -> list[Pair]:
    if not result.pairs:
        skipped = f" ({result.skipped} skipped for invalid UTF-8)" if result.skipped else ""
        raise CorpusError(f"{result.where}: no pairs{skipped}")
    kept, dropped = drop_empty(result.pairs)
    if not kept:
        raise CorpusError(f"{result.where}: all {dropped} pairs have an empty side")
    return kept


def _reader(cfg: DataConfig) -> Callable[[str], _Read]:
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
        loaded = _open_hf(cfg)
        return lambda split: _read_hf(loaded, cfg.path, split, cfg.src_key, cfg.tgt_key)
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


def _read_parallel(src_path: Path, tgt_path: Path, invalid_utf8: str) -> _Read:
    src_path, tgt_path = _resolve(src_path), _resolve(tgt_path)
    src_lines, tgt_lines = _lines(src_path, invalid_utf8), _lines(tgt_path, invalid_utf8)
    if len(src_lines) != len(tgt_lines):
        raise CorpusError(f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}: "
                          "parallel files must have the same number of lines")
    pairs = [(s, t) for s, t in zip(src_lines, tgt_lines) if s is not None and t is not None]
    return _Read(pairs, len(src_lines) - len(pairs), f"{src_path} + {tgt_path}")


def _read_tsv(path: Path, invalid_utf8: str) -> _Read:
    path = _resolve(path)
    return _collect(_iter_tsv(path, invalid_utf8), str(path))


def _read_jsonl(path: Path, src_key: str, tgt_key: str, invalid_utf8: str) -> _Read:
    path = _resolve(path)
    return _collect(_iter_jsonl(path, src_key, tgt_key, invalid_utf8), str(path))


def _collect(rows: Iterable[Pair | None], where: str) -> _Read:
    """The pairs of ``rows``, counting the ``None``s (lines skipped for invalid UTF-8)."""
    pairs: list[Pair] = []
    skipped = 0
    for row in rows:
        if row is None:
            skipped += 1
        else:
            pairs.append(row)
    return _Read(pairs, skipped, where)


def _iter_tsv(path: Path, invalid_utf8: str) -> Iterator[Pair | None]:
    """Pairs of a TSV file, one line at a time; ``None`` for a line skipped for invalid UTF-8."""
    for lineno, line in enumerate(_iter_lines(path, invalid_utf8), start=1):
        if line is None:
            yield None
        elif line:
            cols = line.split("\t")
            if len(cols) != 2:
                raise CorpusError(f"{path}: line {lineno}: expected 2 tab-separated columns, got {len(cols)}")
            yield cols[0], cols[1]


def _iter_jsonl(path: Path, src_key: str, tgt_key: str, invalid_utf8: str) -> Iterator[Pair | None]:
    """Pairs of a JSONL file, one line at a time; ``None`` for a line skipped for invalid UTF-8."""
    for lineno, line in enumerate(_iter_lines(path, invalid_utf8), start=1):
        if line is None:
            yield None
            continue
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if isinstance(obj.get("translation"), dict):
            obj, where = obj["translation"], f"{where}: translation"
        yield _string(obj, src_key, where), _string(obj, tgt_key, where)


def _iter_parallel(src_path: Path, tgt_path: Path, invalid_utf8: str) -> Iterator[Pair | None]:
    """Pairs of two line-aligned files, one line at a time; ``None`` where a side was skipped."""
    missing = object()
    lines = itertools.zip_longest(_iter_lines(src_path, invalid_utf8), _iter_lines(tgt_path, invalid_utf8),
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


def _resolve(path: Path) -> Path:
    """``path`` if it exists, else ``path.gz``; a CorpusError naming both if neither does."""
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
    return list(_iter_lines(path, invalid_utf8))


def _iter_lines(path: Path, invalid_utf8: str) -> Iterator[str | None]:
    """:func:`_lines`, one line at a time (for corpora larger than memory)."""
    if invalid_utf8 not in ("error", "skip"):
        raise CorpusError(f"data.invalid_utf8: must be 'error' or 'skip', got {invalid_utf8!r}")
    try:
        with path.open("rb") as f:
            is_gzip = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=f) if is_gzip else f
            for lineno, raw in enumerate(stream, start=1):  # splits on b"\n" only, unlike text mode
                yield _decode_line(raw, path, lineno, invalid_utf8)
    except (OSError, EOFError, zlib.error) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise CorpusError(f"{path}: cannot read file ({reason})") from None


def _decode_line(raw: bytes, path: Path, lineno: int, invalid_utf8: str) -> str | None:
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if invalid_utf8 == "error":
            raise CorpusError(f"{path}: line {lineno}: invalid UTF-8 (byte 0x{raw[e.start]:02x} "
                              f"at byte {e.start + 1}; set data.invalid_utf8=skip to drop such lines)") from None
        return None


# ---------------------------------------------------------------------------- Hugging Face datasets

_SPLIT_ALIASES = ("validation", "valid", "val", "dev")
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _open_hf(cfg: DataConfig) -> Mapping[str, Any]:
    """Load ``cfg.path`` (a local directory or a hub name) as a mapping from split to Dataset.

    Without a network the hub is not tried (it would retry for ~20 s): the dataset must then
    be in the local cache.
    """
    try:
        import datasets
    except ImportError:
        raise CorpusError(f"{cfg.path}: data.source 'hf' needs the 'datasets' package") from None
    path = Path(cfg.path).expanduser()
    name = cfg.hf_config or None
    if path.is_dir():
        try:
            with _hf_offline():
                if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                    loaded = datasets.load_from_disk(str(path))  # saved with save_to_disk
                else:
                    loaded = datasets.load_dataset(str(path), name)  # a directory of data files
        except Exception as e:  # datasets raises many types; all mean "cannot load this directory"
            raise CorpusError(f"{path}: cannot load dataset directory ({_describe(e)})") from e
        if not isinstance(loaded, Mapping):
            raise CorpusError(f"{path}: a single saved Dataset has no splits; save a DatasetDict "
                              f"(columns: {', '.join(loaded.column_names)})")
        return loaded
    if path.exists():
        raise CorpusError(f"{path}: not a directory (data.source 'hf' needs a dataset directory or hub name)")
    if cfg.path.startswith(("/", ".", "~")) or cfg.path.count("/") > 1:
        raise CorpusError(f"{cfg.path}: dataset directory not found")
    offline = _hub_offline()
    try:
        with _hf_offline() if offline else contextlib.nullcontext():
            loaded = datasets.load_dataset(cfg.path, name)
    except Exception as e:  # as above: any failure to load is reported on one line
        if offline:
            raise CorpusError(f"{cfg.path}: not a local directory, the Hugging Face hub is unreachable, "
                              f"and the dataset is not in the local cache ({_describe(e)})") from e
        raise CorpusError(f"{cfg.path}: cannot load dataset from the hub ({_describe(e)})") from e
    return loaded


def _read_hf(loaded: Mapping[str, Any], path: str, split: str, src_key: str, tgt_key: str) -> _Read:
    """Pairs from one split: a ``translation`` column of dicts, or columns ``src_key``/``tgt_key``."""
    found = split if split in loaded else None
    if found is None and split in _SPLIT_ALIASES:
        found = next((a for a in _SPLIT_ALIASES if a in loaded), None)
    if found is None:
        raise CorpusError(f"{path}: no split {split!r} (splits: {', '.join(loaded)})")
    ds = loaded[found]
    where = f"{path} [{found}]"
    columns = ds.column_names
    if "translation" in columns:
        languages = list(getattr(ds.features["translation"], "languages", None) or ds.features["translation"])
        for key in (src_key, tgt_key):
            if key not in languages:
                raise CorpusError(f"{where}: column 'translation' has no key {key!r} "
                                  f"(keys: {', '.join(languages)})")
        rows = list(ds["translation"])
        src = [row.get(src_key) for row in rows]
        tgt = [row.get(tgt_key) for row in rows]
    elif src_key in columns and tgt_key in columns:
        src, tgt = list(ds[src_key]), list(ds[tgt_key])
    else:
        raise CorpusError(f"{where}: no column 'translation' and no columns {src_key!r} and {tgt_key!r} "
                          f"(columns: {', '.join(columns)})")
    for key, values in ((src_key, src), (tgt_key, tgt)):
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise CorpusError(f"{where}: row {i}: key {key!r}: expected a string, "
                                  f"got {type(value).__name__}")
    return _Read(list(zip(src, tgt)), 0, where)


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def _hub_offline(timeout: float = 2.0) -> bool:
    """True if offline mode is set in the environment or the hub host cannot be reached."""
    if any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in _OFFLINE_ENV):
        return True
    return not _hub_reachable(timeout)


def _hub_reachable(timeout: float) -> bool:
    """A TCP connect to the hub within ``timeout`` seconds (DNS included, hence the thread)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    ok: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


@contextlib.contextmanager
def _hf_offline() -> Iterator[None]:
    """Offline mode for ``datasets`` and ``huggingface_hub``, even if they were imported already
    (both read the environment once, at import)."""
    import datasets.config
    import huggingface_hub.constants

    candidates = ((datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"),
                  (huggingface_hub.constants, "HF_HUB_OFFLINE"))
    flags = [(m, a) for m, a in candidates if hasattr(m, a)]
    saved_flags = [getattr(m, a) for m, a in flags]
    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    try:
        for m, a in flags:
            setattr(m, a, True)
        os.environ.update({k: "1" for k in _OFFLINE_ENV})
        yield
    finally:
        for (m, a), value in zip(flags, saved_flags):
            setattr(m, a, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------------------- synthetic tasks

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fixed, not calendar.month_name (locale-dependent)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FIRST_DAY = datetime.date(1900, 1, 1).toordinal()
_LAST_DAY = datetime.date(2099, 12, 31).toordinal()


def _month(d: datetime.date) -> str:
    return _MONTHS[d.month - 1]


def _weekday(d: datetime.date) -> str:
    return _WEEKDAYS[d.weekday()]


# Each format writes one date; the example is 1994-09-27, a Tuesday. There are no two-digit
# years (ambiguous across 1900-2099) and no day/month/year with slashes (it would clash with 9/27/1994).
DATE_FORMATS: dict[str, Callable[[datetime.date], str]] = {
    "september 27, 1994": lambda d: f"{_month(d).lower()} {d.day}, {d.year}",
    "September 27, 1994": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "SEPTEMBER 27, 1994": lambda d: f"{_month(d).upper()} {d.day}, {d.year}",
    "27 September 1994": lambda d: f"{d.day} {_month(d)} {d.year}",
    "Sep 27 1994": lambda d: f"{_month(d)[:3]} {d.day} {d.year}",
    "sep 27, 1994": lambda d: f"{_month(d)[:3].lower()} {d.day}, {d.year}",
    "27 sep 1994": lambda d: f"{d.day} {_month(d)[:3].lower()} {d.year}",
    "tuesday, september 27, 1994": lambda d: f"{_weekday(d).lower()}, {_month(d).lower()} {d.day}, {d.year}",
    "TUESDAY, SEPTEMBER 27, 1994": lambda d: f"{_weekday(d).upper()}, {_month(d).upper()} {d.day}, {d.year}",
    "Tue, Sep 27, 1994": lambda d: f"{_weekday(d)[:3]}, {_month(d)[:3]} {d.day}, {d.year}",
    "Tuesday, 27 September 1994": lambda d: f"{_weekday(d)}, {d.day} {_month(d)} {d.year}",
    "9/27/1994": lambda d: f"{d.month}/{d.day}/{d.year}",
    "27.09.1994": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "1994/09/27": lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
}
_FORMATS = tuple(DATE_FORMATS.values())


def make_dates(n: int, seed: int) -> list[Pair]:
    """``n`` pairs (human-written date, ISO ``YYYY-MM-DD``), e.g. ``("Sep 27 1994", "1994-09-27")``.

    Dates are uniform over 1900-01-01..2099-12-31, formats uniform over :data:`DATE_FORMATS`.
    See :func:`_unique` for duplicates; ``make_dates(k, s)`` is a prefix of ``make_dates(n, s)``.
    """

    return _unique(n, seed, _date_pair)


def make_addition(n: int, seed: int) -> list[Pair]:
    """``n`` pairs like ``("16+75", "91")``: operands uniform in 0..999, no spaces."""

    return _unique(n, seed, _addition_pair)


ADDITION_WIDTHS = (7, 4)  # "999+999", "1998": the textbook pads both sides to these with spaces


def make_addition_textbook(n: int, seed: int) -> list[Pair]:
    """``n`` pairs like ``("16+75  ", "91  ")``, made as the textbook's ``addition.txt`` was.

    Each operand has 1 to 3 digits (uniform), each digit uniform in 0..9, so a third of the
    operands are below 10 (``"8+4    "`` is common, unlike in :func:`make_addition`). Each
    problem appears once up to order (``3+5`` excludes ``5+3``): a draw seen before is
    redrawn. Problems drawn late are mostly long ones (the short ones are used up), so the
    pairs are shuffled before the caller splits them, as the textbook's ``load_data`` does;
    so ``make_addition_textbook(k, s)`` is *not* a prefix of ``(n, s)``. The question is
    padded with spaces to 7 characters and the answer to 4; the encoder reads the padding
    (at the end, or at the start when the source is reversed) and the decoder writes it.
    """
    if not 0 <= n <= TEXTBOOK_ADDITION_MAX:
        raise ValueError(f"n must be in 0..{TEXTBOOK_ADDITION_MAX}, got {n}")
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    pairs: list[Pair] = []
    while len(pairs) < n:
        a, b = _textbook_operand(rng), _textbook_operand(rng)
        if (key := (min(a, b), max(a, b))) in seen:
            continue
        seen.add(key)
        pairs.append((f"{a}+{b}".ljust(ADDITION_WIDTHS[0]), str(a + b).ljust(ADDITION_WIDTHS[1])))
    rng.shuffle(pairs)
    return pairs


def _textbook_operand(rng: random.Random) -> int:
    return int("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 3))))


def _unique(n: int, seed: int, sample: Callable[[random.Random], Pair], tries: int = 10) -> list[Pair]:
    """``n`` samples from ``random.Random(seed)``, redrawing a repeated source up to ``tries`` times.

    So sources are (nearly) unique while ``n`` is well below the number of possible sources
    (1M for addition, about 1M for dates), which keeps test pairs out of train; beyond that
    duplicates appear, as they must.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return list(itertools.islice(_iter_unique(seed, sample, tries), n))


def _iter_unique(seed: int, sample: Callable[[random.Random], Pair], tries: int = 10) -> Iterator[Pair]:
    """The endless sequence whose first ``n`` are ``_unique(n, ...)``. Its memory is the set of
    sources seen, bounded by the number of possible sources (about 1M), not by ``n``."""
    rng = random.Random(seed)
    seen: set[str] = set()
    while True:
        for _ in range(tries):
            pair = sample(rng)
            if pair[0] not in seen:
                break
        seen.add(pair[0])
        yield pair


_SYNTHETIC: dict[str, Callable[[int, int], list[Pair]]] = {"dates": make_dates, "addition": make_addition}


def iter_synthetic(cfg: DataConfig) -> Iterator[Pair]:
    """The synthetic corpus of ``cfg`` one pair at a time: its first ``cfg.size`` pairs are
    :func:`make_dates` / :func:`make_addition`'s, so the splits are, in order, the next
    :func:`synthetic_split_sizes` pairs."""
    if cfg.source not in _SYNTHETIC:
        raise CorpusError(f"data.source: {cfg.source!r} is not synthetic")
    if _textbook(cfg):  # shuffled after it is made: finite, ``cfg.size`` pairs
        return iter(make_addition_textbook(cfg.size, cfg.seed))
    sample = _date_pair if cfg.source == "dates" else _addition_pair
    return _iter_unique(cfg.seed, sample)


def _textbook(cfg: DataConfig) -> bool:
    return cfg.source == "addition" and cfg.addition_style == "textbook"


def _date_pair(rng: random.Random) -> Pair:
    d = datetime.date.fromordinal(rng.randint(_FIRST_DAY, _LAST_DAY))
    return rng.choice(_FORMATS)(d), d.isoformat()


def _addition_pair(rng: random.Random) -> Pair:
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return f"{a}+{b}", str(a + b)


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


def iter_split(cfg: DataConfig, split: str) -> Iterator[Pair]:
    """The pairs of one split read one line at a time, empty pairs dropped (as in
    :func:`load_split`), for corpora larger than memory: ``files``, ``tsv`` and ``jsonl``
    stream; ``hf`` reads the split as :func:`load_split` does; synthetic sources are made with
    :func:`iter_synthetic` (the whole corpus in order: take the splits from one stream)."""
    root = Path(cfg.path).expanduser()
    mode = cfg.invalid_utf8
    if cfg.source == "files":
        rows = _iter_parallel(_resolve(root / f"{split}.{cfg.src_lang}"), _resolve(root / f"{split}.{cfg.tgt_lang}"),
                              mode)
    elif cfg.source == "tsv":
        rows = _iter_tsv(_resolve(root / f"{split}.tsv"), mode)
    elif cfg.source == "jsonl":
        rows = _iter_jsonl(_resolve(root / f"{split}.jsonl"), cfg.src_key, cfg.tgt_key, mode)
    elif cfg.source == "hf":
        rows = iter(load_split(cfg, split))
    else:
        raise CorpusError(f"data.source: {cfg.source!r} has no splits on disk; use iter_synthetic")
    return (row for row in rows if row is not None and row[0].strip() and row[1].strip())


def _synthetic_splits(cfg: DataConfig) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Make ``cfg.size`` pairs; the first go to train, then valid, then test.

    A split with a fraction above 0 gets at least one pair.
    """
    n_train, n_valid, _ = synthetic_split_sizes(cfg)
    make = make_addition_textbook if _textbook(cfg) else _SYNTHETIC[cfg.source]
    pairs = make(cfg.size, cfg.seed)
    return pairs[:n_train], pairs[n_train:n_train + n_valid], pairs[n_train + n_valid:]
