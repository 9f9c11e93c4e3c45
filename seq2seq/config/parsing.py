"""YAML and JSON from files a user (or anyone) hands the toolkit, read at a bounded cost.

Three things make a small file expensive to read:
  * size: a config of gigabytes is read whole before anything can be said about it;
  * nesting: ``[[[[...]]]]`` 100,000 deep exhausts Python's stack in the parser
    (``RecursionError``, not a parse error);
  * YAML aliases: ten lines of ``&a [*b, *b, ...]`` name 9**10 values ("billion laughs").
    The parser shares them, but anything that walks the result (a type check, an error
    message, ``yaml.dump``) visits every one.

:func:`read_text` caps the size, :func:`load_yaml` and :func:`load_json` turn deep nesting
into a :class:`ParseError`, and :func:`check_size` counts the values as a walk would see
them, stopping at the limit. Each caller adds the file's name to the message.
"""

from __future__ import annotations

import itertools
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

MiB = 1 << 20
MAX_CONFIG_BYTES = 1 * MiB  # a config or sweep file: a few kilobytes in practice
MAX_CONFIG_VALUES = 100_000  # values a walk of a config visits (aliases counted each time used)
MAX_DEPTH = 64  # nesting of lists and mappings; a config needs 3


class ParseError(ValueError):
    """The text is too large, too deep, or not valid; the message says which (no file name)."""


MAX_LINE_BYTES = 1 * MiB  # one sentence of a corpus or of translate.py's input: a few hundred bytes in practice


def bounded_lines(stream: Any, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a binary stream (split on b"\\n" only, each with its newline), refusing
    one longer than ``limit`` bytes (:class:`ParseError` "line N: ..."): a binary file or
    ``/dev/zero`` would otherwise be read whole as one line."""
    for lineno in itertools.count(1):
        raw = stream.readline(limit + 1)
        if not raw:
            return
        if len(raw) > limit and not raw.endswith(b"\n"):  # limit bytes and its newline is the longest allowed
            raise ParseError(f"line {lineno}: longer than {limit:,} bytes (not a text file of sentences?)")
        yield raw


def file_kind(mode: int) -> str:
    """What an ``os.stat`` mode that is not a regular file names: ``a directory``, ``a FIFO``, ..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file"


def read_text(path: str | Path, limit: int) -> str:
    """The UTF-8 text of ``path``, refused if it holds more than ``limit`` bytes (read no further).
    OSError and UnicodeDecodeError pass through for the caller to report."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ParseError(f"too large (over {limit:,} bytes)")
    return data.decode("utf-8")


def load_yaml(text: str, max_values: int = MAX_CONFIG_VALUES) -> Any:
    """``yaml.safe_load(text)``, with nesting and expanded size checked (:func:`check_size`).
    ``yaml.YAMLError`` passes through (its mark names the line)."""
    try:
        value = yaml.safe_load(text)
    except RecursionError:
        raise ParseError("nested too deeply") from None
    check_size(value, max_values)
    return value


def load_json(text: str | bytes) -> Any:
    """``json.loads(text)``, with deep nesting a :class:`ParseError`; JSON has no aliases, so
    its size is the text's. ``json.JSONDecodeError`` passes through."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ParseError("nested too deeply") from None
    check_size(value, max_values=None)
    return value


def check_size(value: Any, max_values: int | None, max_depth: int = MAX_DEPTH) -> None:
    """Walk ``value`` as a program would (a value reached twice through aliases counts twice);
    :class:`ParseError` past ``max_values`` values (None: no limit) or ``max_depth`` levels.
    Iterative, and it stops at the first limit crossed, so its own cost is bounded."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if max_values is not None and seen > max_values:
            raise ParseError(f"too large (more than {max_values:,} values, counting YAML aliases each time used)")
        if isinstance(item, dict):
            children: Any = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= max_depth:
            raise ParseError(f"nested too deeply (more than {max_depth} levels)")
        stack.extend((child, depth + 1) for child in children)
