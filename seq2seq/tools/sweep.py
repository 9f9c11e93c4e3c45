"""Sweeps: train variants of one config, then compare them in a table and plots.

``python -m seq2seq sweep configs/sweeps/addition.yaml [--out DIR] [--quick] [--jobs N] [--seeds S ...]
[section.key=value ...]``

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
Each variant trains through :func:`seq2seq.training.trainer.train` into ``<out>/<name>/``, tagged in
W&B with its axis values. A re-run skips finished variants (and those that diverged),
resumes unfinished ones (also to a larger ``train.epochs``: point the full sweep's ``--out``
at a copy of the ``--quick`` one to go on from there), and refuses a run directory that
holds a different config.
Then ``results.md``, ``results.csv`` and the PNG plots are (re)written in ``<out>``.
A folder the sweep makes (or finds empty) gets a mark, ``.seq2seq-sweep``; ``--clean`` deletes
only a marked (or empty) folder and refuses any other, so a mistyped ``--out`` loses nothing.
With ``--seeds 1 2 3`` the whole sweep runs once per ``train.seed`` into ``<out>/seed-<s>/``
and ``<out>/results.md`` gives each variant's median, min and max over the seeds (single runs
of small models on these tasks can differ by tens of points).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import itertools
import json
import multiprocessing
import os
import re
import shutil
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..cli.errors import run_command
from ..config import SECTIONS, Config, ConfigError, from_dict, load_config, parse_override
from ..config.parsing import MAX_CONFIG_BYTES, ParseError, load_json, load_yaml, read_text
from ..data.corpus import load_split
from ..model import checkpoint
from ..model.seq2seq import count_parameters
from ..runtime.device import select_device
from ..training.loop import DivergedError, TrainError
from ..training.rundir import RUN_CONFIG, Progress, load_run_config
from ..training.trainer import train
from ..translation.evaluation import DEFAULT_BUCKETS, LENGTH_UNITS, evaluate_split
from ..translation.translator import Translator

SWEEP_KEYS = ("name", "base", "overrides", "axes", "variants", "quick", "metric", "length_unit",
              "length_edges", "reference")
METRICS = ("exact_match", "bleu", "chrf", "ppl", "bpc")
LM_METRICS = ("ppl", "bpc")  # a language model's (data.task: lm), lower is better; from its metrics.jsonl
STATUS_FILE = "sweep.json"  # a variant's outcome: finished, or diverged with the error
TEST_FILE = "test.json"  # test-split scores of best/, cached
LOG_FILE = "sweep.log"  # a variant's output when variants run in parallel (--jobs)
SWEEP_MARK = ".seq2seq-sweep"  # in a folder the sweep made: --clean may delete it


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


# --- reading a sweep file --------------------------------------------------------------
def axis_values(key: str, spec: Any) -> list[tuple[str, Any]]:
    """``[false, true]`` or ``{plain: false, reversed: true}`` -> [(label, value), ...]."""
    if isinstance(spec, dict):
        pairs = [(str(label), value) for label, value in spec.items()]
    elif isinstance(spec, list):
        short = key.split(".")[-1]
        pairs = [(f"{short}={_text(v)}", v) for v in spec]
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
    name = str(spec.get("name") or path.stem)
    base = load_config(path.parent / str(spec["base"]))
    base = apply_overrides(base, _mapping(spec, "overrides", where), f"{where}: overrides")
    if extra:
        parsed = [parse_override(text) for text in extra]
        base = apply_overrides(base, {f"{s}.{k}": v for s, k, v in parsed}, "command line")
    quick_overrides = _mapping(spec, "quick", where) if quick else {}

    runs = expand_grid(_mapping(spec, "axes", where))
    for i, item in enumerate(spec.get("variants") or []):
        if not isinstance(item, dict) or set(item) - {"name", "overrides"} or "name" not in item:
            raise ConfigError(f"{where}: variants[{i}]: must be a mapping with name and overrides")
        runs.append((str(item["name"]), _mapping(item, "overrides", f"{where}: variants[{i}]")))
    if not runs:
        raise ConfigError(f"{where}: no variants (give axes, variants or both)")
    variants = []
    for vname, overrides in runs:
        if not re.fullmatch(r"[A-Za-z0-9_.+=-]+", vname):
            raise ConfigError(f"{where}: variant name {vname!r}: use letters, digits and _ . + = -")
        cfg = apply_overrides(base, {**overrides, **quick_overrides}, f"{where}: {vname}")
        tags = tuple(f"{k.split('.')[-1]}={_text(v)}" for k, v in overrides.items())
        cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, group=name, name=vname, tags=tags))
        variants.append(Variant(vname, dict(overrides), cfg))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{where}: variant {dup!r} appears twice")

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
    for vname in reference:
        if vname not in names:
            raise ConfigError(f"{where}: reference: {vname}: no such variant (variants: {', '.join(names)})")
    return Sweep(name, variants, metric, unit, tuple(edges), {k: float(v) for k, v in reference.items()})


def _mapping(spec: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = spec.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key}: must be a mapping, got {value!r}")
    return dict(value)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- the output folder -----------------------------------------------------------------
def mark_sweep_folder(out: Path) -> None:
    """Make ``out`` and mark it as the sweep's, if it is new or empty; a folder that already
    holds anything unmarked stays unmarked (``--clean`` will not delete it)."""
    if out.is_dir() and any(out.iterdir()):
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / SWEEP_MARK).write_text("made by python -m seq2seq sweep; --clean may delete this folder\n",
                                  encoding="utf-8")


def clean(out: Path) -> None:
    """``--clean``: delete ``out`` if a sweep made it (marked) or it is empty; refuse anything else."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise ConfigError(f"{out}: not a folder a sweep made; --clean deletes only those, so delete it yourself "
                          "or choose another --out")
    if any(out.iterdir()) and not (out / SWEEP_MARK).is_file():
        raise ConfigError(f"{out}: not a folder a sweep made (no {SWEEP_MARK} in it); --clean deletes only those, "
                          "so delete it yourself or choose another --out")
    shutil.rmtree(out)


# --- running the variants --------------------------------------------------------------
def finished(run_dir: Path, cfg: Config) -> bool:
    """True when ``run_dir/last`` is a completed run (stopped early, or all epochs done)."""
    try:
        progress = Progress.from_dict(checkpoint.trainer_state(run_dir / "last")["progress"])
    except (checkpoint.CheckpointError, ValueError, KeyError):
        return False  # no state, or a damaged one: training (resuming) will say what is wrong
    return progress.done or progress.epoch >= cfg.train.epochs


def run_variant(variant: Variant, run_dir: Path) -> str:
    """Train one variant unless it is already done; -> its status: finished or diverged."""
    cfg = variant.config
    status = read_status(run_dir)
    if (run_dir / RUN_CONFIG).exists():
        saved = load_run_config(run_dir / RUN_CONFIG)  # an empty or damaged one is refused, not the defaults
        for section in ("data", "model", "train"):
            old, new = dataclasses.asdict(getattr(saved, section)), dataclasses.asdict(getattr(cfg, section))
            # more (or fewer) epochs is the same run, continued (or already done): a --quick
            # sweep's runs go on to the full count when the full sweep is pointed at them
            diff = next((k for k in new if old.get(k) != new[k] and (section, k) != ("train", "epochs")), None)
            if diff is not None:
                raise TrainError(f"{run_dir}: holds a run with {section}.{diff}={old.get(diff)!r}, this sweep "
                                 f"has {new[diff]!r}; use another --out or delete that directory")
        if status.get("status") == "diverged" or finished(run_dir, cfg):
            print(f"== {variant.name}: already {status.get('status', 'finished')}, skipped", flush=True)
            return str(status.get("status", "finished"))
    resume = (run_dir / "last").is_dir()
    print(f"== {variant.name}: {'resuming' if resume else 'training'} into {run_dir}", flush=True)
    (run_dir / TEST_FILE).unlink(missing_ok=True)
    outcome: dict[str, Any] = {"status": "finished"}
    try:
        train(cfg, run_dir, resume=resume, overwrite=not resume)
    except DivergedError as e:  # the loss went NaN for train.max_bad_steps steps: a result, not a crash
        print(f"== {variant.name}: {e}", file=sys.stderr, flush=True)
        outcome = {"status": "diverged", "message": str(e)}
    (run_dir / STATUS_FILE).write_text(json.dumps(outcome), encoding="utf-8")
    return str(outcome["status"])


def _run_logged(variant: Variant, run_dir: Path, threads: int) -> str:
    """:func:`run_variant` in a worker process, its output appended to ``run_dir/sweep.log``."""
    import torch

    torch.set_num_threads(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOG_FILE, "a", encoding="utf-8") as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return run_variant(variant, run_dir)


def _run_parallel(variants: Sequence[Variant], out: Path, jobs: int) -> dict[str, str]:
    """Train ``jobs`` variants at a time, each in its own process with an equal share of the
    CPU threads (``os.cpu_count() // jobs``, at least 1); -> status by variant name. A worker's
    error stops the sweep with that variant's name once the running ones are done."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    statuses: dict[str, str] = {}
    ctx = multiprocessing.get_context("spawn")  # no forked torch or W&B state
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_run_logged, v, out / v.name, threads): v for v in variants}
        for v in variants:
            print(f"== {v.name}: queued, log in {out / v.name / LOG_FILE}", flush=True)
        for fut in concurrent.futures.as_completed(futures):
            v = futures[fut]
            try:
                statuses[v.name] = fut.result()
            except Exception as e:
                for f in futures:
                    f.cancel()
                raise TrainError(f"variant {v.name}: {e} (see {out / v.name / LOG_FILE})") from e
            print(f"== {v.name}: {statuses[v.name]}", flush=True)
    return {v.name: statuses[v.name] for v in variants}


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        status = load_json(read_text(run_dir / STATUS_FILE, MAX_CONFIG_BYTES))
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}  # damaged: as if none


# --- scoring ---------------------------------------------------------------------------
def evaluate_test(run_dir: Path, sweep: Sweep) -> dict[str, Any]:
    """Greedy test-split scores of ``run_dir/best``, with scores by source length; cached.
    A language model's: the test record its training wrote (:func:`lm_test`)."""
    if sweep.variants[0].config.data.task == "lm":
        return lm_test(run_dir)
    cache = run_dir / TEST_FILE
    if cache.exists():
        try:
            cached = load_json(read_text(cache, MAX_CONFIG_BYTES))
        except (OSError, ValueError):
            cached = None
        if isinstance(cached, dict):
            return cached  # else damaged: scored again below
    try:
        loaded = checkpoint.load(run_dir / "best")
    except checkpoint.CheckpointError:
        return {}  # e.g. diverged in the first epoch: nothing to evaluate
    cfg = loaded.config
    device = select_device(cfg.train.device)
    loaded.model.to(device)
    pairs = load_split(cfg.data, cfg.data.test_split)
    translator = Translator(loaded.model, loaded.src_tok, loaded.tgt_tok, cfg.data, cfg.decode, device)
    ev = evaluate_split(translator, [s for s, _ in pairs], [t for _, t in pairs], beam_size=1,
                        edges=sweep.length_edges, length_unit=sweep.length_unit)
    s = ev.scores
    buckets = [{"label": b.label, "n": b.n, "bleu": b.bleu, "exact_match": exact}
               for b, exact in zip(ev.buckets, ev.bucket_exact_match)]
    result = {"exact_match": s.exact_match, "bleu": s.bleu, "chrf": s.chrf, "n": s.n,
              "params": count_parameters(loaded.model), "buckets": buckets}
    cache.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def lm_test(run_dir: Path) -> dict[str, Any]:
    """A language model's test figures (perplexity as trained and by sentence, bits per
    character: the last ``test/`` record of its ``metrics.jsonl``) and its parameter count."""
    records = [r for r in read_metrics(run_dir) if "test/ppl" in r]
    if not records:
        return {}
    try:
        params = count_parameters(checkpoint.load_lm(run_dir / "best").model)
    except checkpoint.CheckpointError:
        params = 0
    test = records[-1]
    return {"ppl": test["test/ppl"], "ppl_sentence": test.get("test/ppl_sentence", ""), "bpc": test["test/bpc"],
            "params": params}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (a line torn by a kill is skipped)."""
    records = []
    path = run_dir / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def summarize(variant: Variant, run_dir: Path, status: str, sweep: Sweep) -> dict[str, Any]:
    """One table row: axis values, parameters, best validation scores, test scores, time."""
    records = read_metrics(run_dir)
    lm = variant.config.data.task == "lm"
    valid = [r for r in records if ("valid/ppl" if lm else "valid/bleu") in r]
    test = evaluate_test(run_dir, sweep)
    try:
        seconds = float(checkpoint.trainer_state(run_dir / "last")["progress"]["elapsed"])
    except (checkpoint.CheckpointError, ValueError, KeyError, TypeError):
        seconds = max((r.get("time/seconds", 0.0) for r in valid), default=0.0)
    row: dict[str, Any] = {"variant": variant.name}
    for key in dict.fromkeys(k for v in sweep.variants for k in v.overrides):  # the axes, as configured
        section, _, name = key.partition(".")
        row[name] = _text(getattr(getattr(variant.config, section), name))
    row["params"] = test.get("params", "")
    if lm:
        for m in LM_METRICS:
            row[f"valid_{m}"] = min((r[f"valid/{m}"] for r in valid), default="")
        row.update({"test_ppl": test.get("ppl", ""), "test_ppl_sentence": test.get("ppl_sentence", ""),
                    "test_bpc": test.get("bpc", "")})
    else:
        for m in METRICS[:3]:
            row[f"valid_{m}"] = max((r[f"valid/{m}"] for r in valid), default="")
        row["test_exact_match"] = test.get("exact_match", "")
        row["test_bleu"] = test.get("bleu", "")
    if sweep.reference:
        row[f"reference_{sweep.metric}"] = sweep.reference.get(variant.name, "")
    row.update({"epochs": len(valid), "seconds": round(seconds), "status": status})
    return row


# --- the table and plots ---------------------------------------------------------------
def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    """``results.csv`` (every column) and ``results.md`` (numbers to 2 decimals)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_plots(sweep: Sweep, out: Path, statuses: dict[str, str]) -> list[Path]:
    """curves.png, final.png, by_length.png and grad_norm.png in ``out`` (none without matplotlib)."""
    try:
        from . import plots
    except ImportError as e:
        print(f"warning: no plots ({e}); pip install 'seq2seq[plots]'", file=sys.stderr)
        return []
    label = {v.name: v.name + (" (diverged)" if statuses[v.name] == "diverged" else "") for v in sweep.variants}
    runs = {label[v.name]: read_metrics(out / v.name) for v in sweep.variants}
    tests = {label[v.name]: evaluate_test(out / v.name, sweep) for v in sweep.variants}
    clips = {label[v.name]: v.config.train.clip_norm for v in sweep.variants}
    pick = min if sweep.metric in LM_METRICS else max  # the best validation score: perplexity is lower
    best = {name: pick((r[f"valid/{sweep.metric}"] for r in recs if f"valid/{sweep.metric}" in r), default=0.0)
            for name, recs in runs.items()}
    reference = {label[k]: v for k, v in sweep.reference.items()}
    title = f"sweep {sweep.name}"
    paths = [out / "curves.png", out / "final.png", out / "by_length.png", out / "grad_norm.png"]
    plots.learning_curves(runs, paths[0], sweep.metric, title)
    plots.final_scores(best, {n: t.get(sweep.metric, 0.0) for n, t in tests.items()}, paths[1], sweep.metric,
                       title, reference)
    if sweep.metric in LM_METRICS:  # a language model has no source lengths to bucket by
        paths.remove(out / "by_length.png")
    else:
        plots.by_length({n: t.get("buckets", []) for n, t in tests.items()}, paths[2], sweep.metric,
                        sweep.length_unit, title)
    diverged = [label[n] for n, s in statuses.items() if s == "diverged"]
    plots.grad_norms(runs, out / "grad_norm.png", title, clips, diverged)
    return paths


def run_sweep(sweep: Sweep, out: Path, jobs: int = 1) -> list[dict[str, Any]]:
    """Train every variant (skipping finished ones), ``jobs`` at a time, then write the table
    and the plots."""
    mark_sweep_folder(out)
    if jobs <= 1:
        statuses = {v.name: run_variant(v, out / v.name) for v in sweep.variants}
    else:
        statuses = _run_parallel(sweep.variants, out, jobs)
    rows = [summarize(v, out / v.name, statuses[v.name], sweep) for v in sweep.variants]
    write_table(rows, out)
    make_plots(sweep, out, statuses)
    print((out / "results.md").read_text(encoding="utf-8"), flush=True)
    print(f"wrote {out / 'results.md'}, results.csv and plots", flush=True)
    return rows


def run_seeds(path: Path, seeds: Sequence[int], out: Path, *, quick: bool = False, extra: Sequence[str] = (),
              jobs: int = 1) -> list[dict[str, Any]]:
    """The sweep once per seed (``train.seed``) in ``<out>/seed-<s>/``, each a complete sweep
    output; then ``<out>/results.md``/``.csv`` with the median, minimum and maximum over seeds of
    each variant's validation and test score, and ``<out>/seeds.png``."""
    mark_sweep_folder(out)
    rows_by_seed: dict[int, list[dict[str, Any]]] = {}
    sweep: Sweep | None = None
    for seed in seeds:
        print(f"=== seed {seed}", flush=True)
        sweep = load_sweep(path, quick=quick, extra=[*extra, f"train.seed={seed}"])
        rows_by_seed[seed] = run_sweep(sweep, out / f"seed-{seed}", jobs=jobs)
    assert sweep is not None
    rows = seed_rows(rows_by_seed, sweep)
    write_table(rows, out)
    try:
        from . import plots
    except ImportError:
        pass  # run_sweep has warned
    else:
        col = f"test_{sweep.metric}" if sweep.metric != "chrf" else f"valid_{sweep.metric}"
        values = {v.name: [r[col] for r in _rows_of(rows_by_seed, v.name) if isinstance(r[col], float)]
                  for v in sweep.variants}
        plots.seed_spread(values, out / "seeds.png", sweep.metric, f"sweep {sweep.name}", sweep.reference,
                          "test" if col.startswith("test") else "best validation")
    print((out / "results.md").read_text(encoding="utf-8"), flush=True)
    print(f"wrote {out / 'results.md'}, results.csv and seeds.png (median over seeds {list(seeds)})", flush=True)
    return rows


def _rows_of(rows_by_seed: Mapping[int, list[dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [r for rows in rows_by_seed.values() for r in rows if r["variant"] == name]


def seed_rows(rows_by_seed: Mapping[int, list[dict[str, Any]]], sweep: Sweep) -> list[dict[str, Any]]:
    """One row per variant: its axis values and parameters, then for the validation and test
    score of ``sweep.metric`` the median, min and max over seeds (runs without a score, e.g.
    diverged, are left out and counted in ``status``), the test scores seed by seed, the
    reference, and the median training seconds."""
    metric = sweep.metric
    out_rows = []
    for v in sweep.variants:
        runs = _rows_of(rows_by_seed, v.name)
        first = runs[0]
        row: dict[str, Any] = {k: first[k] for k in first
                               if k not in ("status", "epochs", "seconds") and not k.startswith(("valid_", "test_",
                                                                                                 "reference_"))}
        for col in (f"valid_{metric}", f"test_{metric}"):
            vals = [r[col] for r in runs if isinstance(r.get(col), float)]
            if col in first:
                row.update({f"{col}_median": statistics.median(vals) if vals else "",
                            f"{col}_min": min(vals, default=""), f"{col}_max": max(vals, default="")})
        if f"test_{metric}" in first:
            row[f"test_{metric}_by_seed"] = " / ".join(
                f"{r[f'test_{metric}']:.1f}" if isinstance(r[f"test_{metric}"], float) else "-" for r in runs)
        if sweep.reference:
            row[f"reference_{metric}"] = sweep.reference.get(v.name, "")
        row["seconds_median"] = round(statistics.median(r["seconds"] for r in runs))
        row["status"] = ", ".join(f"{n} {st}" for st, n in collections.Counter(r["status"] for r in runs).items())
        out_rows.append(row)
    return out_rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq sweep",
                                description="Train the variants of a sweep file and compare them.")
    p.add_argument("sweep", type=Path, help="sweep YAML, e.g. configs/sweeps/addition.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/sweeps/<name>)")
    p.add_argument("--quick", action="store_true", help="apply the sweep's quick: overrides (fewer epochs)")
    p.add_argument("--clean", action="store_true",
                   help="delete --out first instead of resuming it (only a folder a sweep made)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="run the sweep once per train.seed into <out>/seed-<SEED>/ and write the median, min "
                        "and max over seeds to <out>/results.md")
    p.add_argument("--jobs", type=int, default=1,
                   help="variants trained at once, each in its own process with cpu_count/jobs threads "
                        "(output in <out>/<variant>/sweep.log); default 1")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every variant")
    args = p.parse_intermixed_args(argv)

    def run() -> int:
        sweep = load_sweep(args.sweep, quick=args.quick, extra=args.overrides)
        out = args.out or Path("runs") / "sweeps" / (sweep.name + ("-quick" if args.quick else ""))
        if args.jobs < 1:
            raise ConfigError(f"--jobs: must be >= 1, got {args.jobs}")
        if args.seeds and len(set(args.seeds)) != len(args.seeds):
            raise ConfigError(f"--seeds: a seed is repeated: {args.seeds}")
        if args.clean:  # only once the arguments are known to be good; only a folder a sweep made
            clean(out)
        if args.seeds:
            run_seeds(args.sweep, args.seeds, out, quick=args.quick, extra=args.overrides, jobs=args.jobs)
        else:
            run_sweep(sweep, out, jobs=args.jobs)
        return 0

    return run_command(run, (TrainError,))


if __name__ == "__main__":
    sys.exit(main())
