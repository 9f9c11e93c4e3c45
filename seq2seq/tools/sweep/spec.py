"""A sweep file and the variants it expands to.

A sweep file (YAML)::

    name: addition                  # W&B group and default --out (runs/sweeps/<name>); default: file name
    base: ../addition.yaml          # the base config, relative to this file
    overrides: {train.progress: false}   # dotted keys, applied to every variant
    axes:                           # a grid: every combination of the values
      data.reverse_source: {plain: false, reversed: true}   # label: value ...
      model.peeky: [false, true]                             # ... or a list (labels key=value)
    variants:                       # and/or named variants, after the grid
      - {name: gru, overrides: {model.cell: gru}}
    quick: {train.epochs: 3}        # applied last with --quick (default --out: runs/sweeps/<name>-quick)
    metric: exact_match             # curves and bars: exact_match, bleu or chrf (default bleu)
    length_unit: chars              # test score by source length in chars or words (default words)
    length_edges: [4, 5, 6]         # bucket upper bounds (default 10, 20, 30, 40)
    reference: {plain: 9.98}        # published values of ``metric`` per variant, shown beside ours

A grid variant's name joins the labels of its values that are not the axis's first value
with ``+`` (``reversed+peeky``); the all-first variant joins the first labels (``plain``).
Each variant's config is built when the file is read, so that a bad value fails before any
training; it is tagged in W&B with its axis values.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...config import SECTIONS, Config, ConfigError, from_dict, load_config, parse_override
from ...config.parsing import MAX_CONFIG_BYTES, ParseError, load_yaml, read_text
from ...translation.evaluation import DEFAULT_BUCKETS, LENGTH_UNITS

SWEEP_KEYS = ("name", "base", "overrides", "axes", "variants", "quick", "metric", "length_unit",
              "length_edges", "reference")
METRICS = ("exact_match", "bleu", "chrf", "ppl", "bpc")
LM_METRICS = ("ppl", "bpc")  # a language model's (data.task: lm), lower is better; from its metrics.jsonl


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, Any]  # dotted key -> value: what sets this variant apart
    config: Config


@dataclass(frozen=True)
class Sweep:
    name: str
    variants: list[Variant]
    metric: str = "bleu"
    length_unit: str = "words"
    length_edges: tuple[int, ...] = DEFAULT_BUCKETS
    reference: dict[str, float] = dataclasses.field(default_factory=dict)


def axis_values(key: str, spec: Any) -> list[tuple[str, Any]]:
    """``[false, true]`` or ``{plain: false, reversed: true}`` -> [(label, value), ...]."""
    if isinstance(spec, dict):
        pairs = [(str(label), value) for label, value in spec.items()]
    elif isinstance(spec, list):
        short = key.split(".")[-1]
        pairs = [(f"{short}={shown(v)}", v) for v in spec]
    else:
        raise ConfigError(f"axes: {key}: must be a list of values or a mapping label: value")
    if not pairs:
        raise ConfigError(f"axes: {key}: has no values")
    return pairs


def expand_grid(axes: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of the axes' values -> [(name, {dotted key: value}), ...], first axis slowest."""
    if not axes:
        return []
    keys = list(axes)
    values = [axis_values(k, axes[k]) for k in keys]
    out = []
    for combo in itertools.product(*values):
        labels = [label for (label, _), axis in zip(combo, values) if label != axis[0][0]]
        if not labels:  # every axis at its first value
            labels = list(dict.fromkeys(axis[0][0] for axis in values))
        out.append(("+".join(labels), {k: v for k, (_, v) in zip(keys, combo)}))
    return out


def apply_overrides(cfg: Config, overrides: Mapping[str, Any], where: str) -> Config:
    """``cfg`` with ``{"model.peeky": True, ...}`` applied; ConfigError names ``where`` and the key."""
    raw = cfg.to_dict()
    for dotted, value in overrides.items():
        section, _, key = str(dotted).partition(".")
        known = {f.name for f in dataclasses.fields(SECTIONS[section])} if section in SECTIONS else set()
        if key not in known:
            hint = f"known: {', '.join(sorted(known))}" if known else f"sections: {', '.join(SECTIONS)}"
            raise ConfigError(f"{where}: {dotted}: unknown key ({hint})")
        raw[section][key] = value
    try:
        return from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_sweep(path: str | Path, *, quick: bool = False, extra: Sequence[str] = ()) -> Sweep:
    """Read a sweep file and build every variant's config (so a bad value fails before training).

    ``extra`` are command-line ``section.key=value`` overrides, applied to every variant.
    """
    path = Path(path)
    where = str(path)
    spec = read_sweep_file(path)
    name = str(spec.get("name") or path.stem)
    base = load_config(path.parent / str(spec["base"]))
    base = apply_overrides(base, _mapping(spec, "overrides", where), f"{where}: overrides")
    if extra:
        parsed = [parse_override(text) for text in extra]
        base = apply_overrides(base, {f"{s}.{k}": v for s, k, v in parsed}, "command line")
    quick_overrides = _mapping(spec, "quick", where) if quick else {}
    variants = [variant(name, vname, overrides, base, quick_overrides, where)
                for vname, overrides in _runs(spec, where)]
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{where}: variant {dup!r} appears twice")
    return Sweep(name, variants, *_scoring(spec, variants, where))


def read_sweep_file(path: Path) -> dict[str, Any]:
    """The sweep file's mapping, its keys checked (``base`` is required)."""
    where = str(path)
    try:
        spec = load_yaml(read_text(path, MAX_CONFIG_BYTES))
    except FileNotFoundError:
        raise ConfigError(f"{where}: sweep file not found") from None
    except ParseError as e:
        raise ConfigError(f"{where}: sweep file {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read sweep file ({e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a mapping (name, base, overrides, axes, variants, ...)")
    for key in spec:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"{where}: {key}: unknown key (known: {', '.join(SWEEP_KEYS)})")
    if "base" not in spec:
        raise ConfigError(f"{where}: base: required (the base config, relative to the sweep file)")
    return spec


def _runs(spec: Mapping[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, overrides) of every variant: the grid's, then the named ones."""
    runs = expand_grid(_mapping(spec, "axes", where))
    for i, item in enumerate(spec.get("variants") or []):
        if not isinstance(item, dict) or set(item) - {"name", "overrides"} or "name" not in item:
            raise ConfigError(f"{where}: variants[{i}]: must be a mapping with name and overrides")
        runs.append((str(item["name"]), _mapping(item, "overrides", f"{where}: variants[{i}]")))
    if not runs:
        raise ConfigError(f"{where}: no variants (give axes, variants or both)")
    return runs


def variant(sweep_name: str, name: str, overrides: dict[str, Any], base: Config, quick_overrides: Mapping[str, Any],
            where: str) -> Variant:
    """One variant: ``base`` with its overrides (then the quick ones), tagged for W&B."""
    if not re.fullmatch(r"[A-Za-z0-9_.+=-]+", name):
        raise ConfigError(f"{where}: variant name {name!r}: use letters, digits and _ . + = -")
    cfg = apply_overrides(base, {**overrides, **quick_overrides}, f"{where}: {name}")
    tags = tuple(f"{k.split('.')[-1]}={shown(v)}" for k, v in overrides.items())
    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, group=sweep_name, name=name, tags=tags))
    return Variant(name, dict(overrides), cfg)


def _scoring(spec: Mapping[str, Any], variants: Sequence[Variant], where: str
             ) -> tuple[str, str, tuple[int, ...], dict[str, float]]:
    """The sweep's metric, length unit, length edges and reference values, checked."""
    metric = str(spec.get("metric", "bleu"))
    if metric not in METRICS:
        raise ConfigError(f"{where}: metric: must be one of {', '.join(METRICS)}; got {metric!r}")
    if (metric in LM_METRICS) != (variants[0].config.data.task == "lm"):
        raise ConfigError(f"{where}: metric: {metric} does not fit data.task {variants[0].config.data.task} "
                          f"(a language model's metric is one of {', '.join(LM_METRICS)})")
    unit = str(spec.get("length_unit", "words"))
    if unit not in LENGTH_UNITS:
        raise ConfigError(f"{where}: length_unit: must be words or chars; got {unit!r}")
    edges = spec.get("length_edges", list(DEFAULT_BUCKETS))
    if not isinstance(edges, list) or not all(isinstance(e, int) for e in edges) or edges != sorted(set(edges)):
        raise ConfigError(f"{where}: length_edges: must be increasing integers; got {edges!r}")
    reference = _mapping(spec, "reference", where)
    names = [v.name for v in variants]
    for vname in reference:
        if vname not in names:
            raise ConfigError(f"{where}: reference: {vname}: no such variant (variants: {', '.join(names)})")
    return metric, unit, tuple(edges), {k: float(v) for k, v in reference.items()}


def _mapping(spec: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = spec.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key}: must be a mapping, got {value!r}")
    return dict(value)


def shown(value: Any) -> str:
    """A value as a label shows it: ``true``/``false`` as YAML spells them."""
    return str(value).lower() if isinstance(value, bool) else str(value)
