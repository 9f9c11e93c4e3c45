"""How a YAML file and dotted command-line overrides become a :class:`~seq2seq.config.sections.Config`.

Loading checks every key against the dataclass fields: an unknown key, a value of the wrong
type, or a value out of range raises :class:`~seq2seq.config.sections.ConfigError` whose
message names the file and the dotted key, e.g.::

    configs/x.yaml: model.dropout: must be in [0, 1), got -0.1
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .parsing import MAX_CONFIG_BYTES, ParseError, load_yaml, read_text
from .sections import SECTIONS, Config, ConfigError, check, excerpt
from .shipped import resolve, top_level_names


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        names = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
        ok = any(value == c and type(value) is type(c) for c in choices)  # 1 is not True here
        check(ok, key, f"must be one of {names}; got {excerpt(repr(value))}")
        return value
    if origin in (tuple, list):
        check(isinstance(value, (list, tuple)), key, f"must be a list, got {excerpt(repr(value))}")
        (item_tp, *_) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation for {key}")  # pragma: no cover
    if tp is bool:
        check(isinstance(value, bool), key, f"must be true or false, got {excerpt(repr(value))}")
    elif tp is int:
        check(isinstance(value, int) and not isinstance(value, bool), key,
               f"must be an integer, got {excerpt(repr(value))}")
    elif tp is float:
        check(isinstance(value, (int, float)) and not isinstance(value, bool), key,
               f"must be a number, got {excerpt(repr(value))}")
        return float(value)
    elif tp is str:
        check(isinstance(value, str), key, f"must be a string, got {excerpt(repr(value))}")
    return value


def _build_section(name: str, values: Any) -> Any:
    cls = SECTIONS[name]
    check(isinstance(values, dict), name, f"must be a mapping, got {excerpt(repr(values))}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{name}.{excerpt(str(key))}"
        check(key in known, dotted, f"unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def from_dict(raw: Any) -> Config:
    """Build a :class:`Config` from nested dicts, checking every key, type and range."""
    if raw is None:
        raw = {}
    check(isinstance(raw, dict), "config", "must be a mapping of sections")
    for name in raw:
        check(name in SECTIONS, name, f"unknown section (known: {', '.join(SECTIONS)})")
    return Config(**{name: _build_section(name, raw.get(name) or {}) for name in SECTIONS})


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"train.lr=3e-4"`` -> ``("train", "lr", 3e-4)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"{excerpt(text)}: override must look like section.key=value")
    dotted, raw = text.split("=", 1)
    where = excerpt(dotted)
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
    """Load ``path`` (YAML: a file, or the name of a shipped config such as ``dates``) and apply
    ``section.key=value`` overrides.

    Raises :class:`ConfigError` with a message that names the file and the key.
    """
    raw: dict[str, Any] = {}
    where = "<defaults>"
    if path is not None:
        p = resolve(path)  # a file, or the name of a shipped config
        where = str(p)
        try:
            text = read_text(p, MAX_CONFIG_BYTES)
        except FileNotFoundError:
            names = ", ".join(top_level_names())
            raise ConfigError(f"{where}: config file not found, nor a shipped config of that name ({names})") from None
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
