"""Plots: a sweep's curves and scores, and the encoder's hidden state over a sentence.

The sweep plots take plain data (``metrics.jsonl`` records or scores per variant name), so
they know nothing about runs or files; :mod:`seq2seq.tools.sweep` calls them. Figures use
matplotlib's object API (no pyplot state, no display needed) and are written as PNG.

``python -m seq2seq plots hidden --checkpoint DIR --text "Sep 27 1994" --out hidden.png``
runs the encoder over a sentence one token at a time and plots one unit's activation
(the one that varies most, or ``--unit``) and a heatmap of the ``--top-k`` most varying units.

``python -m seq2seq plots attention --checkpoint DIR --text "..." [--out attention.png]``
translates a sentence with an attention model and draws its alignment: output tokens down,
source tokens across, each cell the weight that output step gave that source token.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import statistics
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib import colormaps, ticker
from matplotlib.figure import Figure

from ..cli.errors import check_positive, run_command
from ..cli.usage import examples
from ..config.parsing import MiB, ParseError, file_kind, load_json, read_text
from ..model.seq2seq import Seq2Seq
from ..training.figures import DPI, alignment_figure
from ..translation.evaluation import METRIC_NAMES

Records = Sequence[Mapping[str, Any]]
NAMES = {**METRIC_NAMES, "exact_match": METRIC_NAMES["exact_match"] + " (%)",  # axis labels
         "ppl": "perplexity", "bpc": "bits per character"}


def _color(i: int) -> Any:
    return colormaps["tab10"](i % 10)


def save_figure(fig: Figure, out: Path, dpi: float | None = DPI) -> None:
    """Write ``fig`` to exactly ``out``: in the format its suffix names (``.pdf``, ``.svg``, ...),
    else PNG (matplotlib alone would write ``a7`` to ``a7.png``, and refuse ``fig.v2``)."""
    suffix = out.suffix[1:].lower()
    fmt = suffix if suffix in fig.canvas.get_supported_filetypes() else "png"
    out.parent.mkdir(parents=True, exist_ok=True)
    if dpi is None:
        fig.savefig(out, format=fmt)
    else:
        fig.savefig(out, format=fmt, dpi=dpi)


def _save(fig: Figure, out: Path, title: str) -> None:
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    save_figure(fig, out)


def _log_y(ax: Any) -> None:
    """A log y axis with plain numbers (0.5, 2, 30) instead of 5x10^-1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _series(records: Records, x: str, y: str) -> tuple[list[float], list[float]]:
    points = [(r[x], r[y]) for r in records if y in r and x in r]
    return [p[0] for p in points], [p[1] for p in points]


# --- sweep plots -------------------------------------------------------------------------
def learning_curves(runs: Mapping[str, Records], out: Path, metric: str, title: str) -> None:
    """Validation ``metric`` per epoch (left) and training loss per step (right), one line a variant."""
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    for i, (name, records) in enumerate(runs.items()):
        left.plot(*_series(records, "epoch", f"valid/{metric}"), marker="o", ms=3, color=_color(i), label=name)
        right.plot(*_series(records, "step", "train/loss"), color=_color(i), lw=1, label=name)
    left.set(title=f"Validation {NAMES[metric]}", xlabel="epoch", ylabel=NAMES[metric])
    right.set(title="Training loss", xlabel="optimizer step", ylabel="cross-entropy per target token (log)")
    _log_y(right)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, out, f"{title}: learning curves")


def final_scores(valid: Mapping[str, float], test: Mapping[str, float], out: Path, metric: str, title: str,
                 reference: Mapping[str, float] | None = None) -> None:
    """Bars per variant: best validation score, test score of the best checkpoint, reference values."""
    lm = metric in ("ppl", "bpc")  # a language model's: no decoding
    groups = [("best validation", valid), ("test (best checkpoint)" if lm else "test (best checkpoint, greedy)", test)]
    if reference:
        groups.append(("reference", reference))
    names = list(test)
    width = 0.8 / len(groups)
    fig = Figure(figsize=(max(6.0, 1.6 * len(names) + 2), 4.2))
    ax = fig.subplots()
    for g, (label, values) in enumerate(groups):
        xs = [i + (g - (len(groups) - 1) / 2) * width for i, n in enumerate(names) if n in values]
        bars = ax.bar(xs, [values[n] for n in names if n in values], width, label=label, color=_color(g))
        ax.bar_label(bars, fmt="%.3f" if lm else "%.1f", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=15 if len(names) > 4 else 0)
    ax.set(ylabel=NAMES[metric], xlabel="variant")
    ax.set_ylim(0, max([*valid.values(), *test.values(), *(reference or {}).values(), 1.0]) * 1.15)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out, f"{title}: final {NAMES[metric]}")


def seed_spread(values: Mapping[str, Sequence[float]], out: Path, metric: str, title: str,
                reference: Mapping[str, float] | None = None, which: str = "test") -> None:
    """A score over seeds per variant: a bar at the median, a dot per seed, a diamond at the
    reference value."""
    names = list(values)
    fig = Figure(figsize=(max(6.0, 1.3 * len(names) + 2), 4.2))
    ax = fig.subplots()
    n = max((len(v) for v in values.values()), default=0)
    medians = [statistics.median(values[k]) if values[k] else 0.0 for k in names]
    bars = ax.bar(range(len(names)), medians, 0.6, color=_color(0), alpha=0.55, label=f"median of {n} seeds")
    ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center")  # inside: the dots sit at the top
    for i, k in enumerate(names):
        ax.plot([i] * len(values[k]), values[k], "o", color="black", ms=4, ls="none",
                label="one seed" if i == 0 else None)
    refs = [(i, reference[k]) for i, k in enumerate(names) if reference and k in reference]
    if refs:
        ax.plot([i for i, _ in refs], [r for _, r in refs], "D", color=_color(3), ms=7, ls="none",
                label="reference")
    ax.set_xticks(range(len(names)), names, rotation=15 if len(names) > 4 else 0)
    ax.set(ylabel=f"{which} {NAMES[metric]}", xlabel="variant")
    top = max([*(x for v in values.values() for x in v), *(r for _, r in refs), 1.0])
    ax.set_ylim(0, top * 1.15)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out, f"{title}: {which} {NAMES[metric]} over seeds")


def by_length(buckets: Mapping[str, Sequence[Mapping[str, Any]]], out: Path, metric: str, unit: str,
              title: str) -> None:
    """Test ``metric`` per source-length bucket, one line a variant (buckets: label, n, scores)."""
    fig = Figure(figsize=(9.5, 4.2))
    ax = fig.subplots()
    labels: list[str] = []
    counts: dict[str, int] = {}
    for rows in buckets.values():
        for b in rows:
            labels += [] if b["label"] in labels else [b["label"]]
            counts[b["label"]] = b["n"]
    for i, (name, rows) in enumerate(buckets.items()):
        pos = {b["label"]: b[metric] for b in rows}
        xs = [j for j, label in enumerate(labels) if label in pos]
        ax.plot(xs, [pos[labels[j]] for j in xs], marker="o", color=_color(i), label=name)
    shown = [label.split("-")[0] if label.split("-")[0] == label.split("-")[-1] else label for label in labels]
    ax.set_xticks(range(len(labels)), [f"{text}\n(n={counts[label]})" for text, label in zip(shown, labels)])
    ax.set(xlabel=f"source length ({unit})", ylabel=NAMES[metric])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: lines cross the middle
    _save(fig, out, f"{title}: test {NAMES[metric]} by source length")


def grad_norms(runs: Mapping[str, Records], out: Path, title: str, clip: Mapping[str, float],
               diverged: Collection[str] = ()) -> None:
    """Gradient norm before clipping (left, log scale; dashed: the clipping thresholds) and training
    loss (right) per step. A run in ``diverged`` gets an X where its record stops."""
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    for i, (name, records) in enumerate(runs.items()):
        for ax, key in ((left, "train/grad_norm"), (right, "train/loss")):
            xs, ys = _series(records, "step", key)
            ax.plot(xs, ys, color=_color(i), lw=1, label=name)
            if xs and name in diverged:
                ax.plot(xs[-1:], ys[-1:], marker="X", ms=10, color=_color(i), ls="none",
                        label=f"{name}: last step before NaN/inf")
    shared = len(set(clip.values())) == 1  # one threshold for all: one black line
    for i, name in enumerate(runs):
        if clip.get(name, 0) > 0 and (not shared or i == 0):
            left.axhline(clip[name], color="black" if shared else _color(i), ls="--", lw=1.2,
                         label=f"clipping threshold {clip[name]:g}" + ("" if shared else f" ({name})"))
    left.set(title="Gradient norm before clipping", xlabel="optimizer step",
             ylabel="L2 norm, mean over logged steps (log)")
    right.set(title="Training loss", xlabel="optimizer step", ylabel="cross-entropy per target token (log)")
    for ax in (left, right):
        _log_y(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, out, f"{title}: gradients")


# --- hidden-state dynamics --------------------------------------------------------------
@torch.no_grad()
def encoder_states(model: Seq2Seq, ids: Sequence[int], state: str = "hidden") -> torch.Tensor:
    """Run the encoder one token at a time over ``ids`` (in reading order); -> (S, H): the top
    layer's hidden state (or LSTM cell state, ``state="cell"``) after each token."""
    if model.cfg.bidirectional:
        raise ValueError("the hidden-state plot needs a unidirectional encoder")
    if state == "cell" and model.cfg.cell != "lstm":
        raise ValueError(f"only an LSTM has a cell state; this encoder is a {model.cfg.cell.upper()}")
    device = next(model.parameters()).device
    x = model.src_embed(torch.tensor([list(ids)], device=device))  # (1, S, E)
    carry: Any = None
    rows = []
    for t in range(x.shape[1]):
        _, carry = model.encoder.rnn(x[:, t:t + 1], carry)  # h: (L, 1, H)
        h, c = carry if isinstance(carry, tuple) else (carry, None)
        rows.append((c if state == "cell" else h)[-1, 0])  # (H,)
    return torch.stack(rows).float().cpu()  # (S, H)


def hidden_states(checkpoint_dir: Path, text: str, out: Path, *, unit: int | None = None, top_k: int = 16,
                  state: str = "hidden") -> int:
    """Plot the encoder's state over ``text``; -> the unit plotted on its own."""
    from ..model import checkpoint

    loaded = checkpoint.load(checkpoint_dir)
    cfg = loaded.config
    ids = loaded.src_tok.encode(text)[: cfg.data.max_len]
    if not ids:
        raise ValueError("--text: nothing to encode (empty after tokenization)")
    if cfg.data.reverse_source:
        ids = ids[::-1]  # as the encoder reads it
    tokens = [loaded.src_tok.decode([i]).replace(" ", "\u2423") or "?" for i in ids]
    states = encoder_states(loaded.model, ids, state)  # (S, H)
    variance = states.var(0) if len(ids) > 1 else states.abs()[0]  # (H,)
    H = states.shape[1]
    if unit is None:
        unit = int(variance.argmax())
    elif not 0 <= unit < H:
        raise ValueError(f"--unit {unit}: the encoder has units 0..{H - 1}")
    top = variance.argsort(descending=True)[: max(1, min(top_k, H))].tolist()

    S = len(ids)
    fig = Figure(figsize=(max(7.0, 0.32 * S + 2), 7), layout="constrained")
    line, heat = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 2]}, sharex=True)
    line.plot(range(S), states[:, unit], marker="o", color=_color(0), label=f"unit {unit}")
    line.axhline(0, color="grey", lw=0.5)
    why = "given" if unit not in top[:1] else "largest variance over the sentence"
    line.set(title=f"One unit over time: unit {unit} ({why})", ylabel=f"{state} state")
    line.grid(alpha=0.3)
    line.legend(fontsize=8)
    limit = float(states[:, top].abs().max()) or 1.0
    image = heat.imshow(states[:, top].T.numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                        interpolation="nearest")
    heat.set_yticks(range(len(top)), [str(u) for u in top], fontsize=7)
    heat.set_xticks(range(S), tokens, fontsize=8)
    order = "reversed source, as the encoder reads it" if cfg.data.reverse_source else "source order"
    heat.set(title=f"Top {len(top)} units by variance", ylabel="unit", xlabel=f"token read at each step ({order})")
    line.tick_params(labelbottom=True)  # tokens under both panels
    fig.colorbar(image, ax=[line, heat], label=f"{state} state (heatmap)", fraction=0.03, pad=0.01)
    fig.suptitle(f"{cfg.model.cell.upper()} encoder {state} state over {text!r}", fontsize=12)
    save_figure(fig, out)
    return unit


def attention(checkpoint_dir: Path, text: str, out: Path, *, beam_size: int | None = None) -> str:
    """Translate ``text`` with an attention model and plot where each output token looked;
    -> the translation."""
    from ..translation.translator import Translator

    translator = Translator.from_checkpoint(checkpoint_dir)
    if translator.model.cfg.attention == "none":
        raise ValueError(f"{checkpoint_dir}: this model has no attention (model.attention: none)")
    a = translator.alignment(text, beam_size=beam_size)
    fig = alignment_figure(a.source, a.target, a.weights, f"{text}\n→ {a.text}")
    save_figure(fig, out, dpi=None)
    return a.text


MAX_EVAL_BYTES = 64 * MiB  # an evaluation or results JSON: kilobytes in practice


def read_evaluations(specs: Sequence[str], metric: str = "bleu") -> dict[str, list[dict[str, Any]]]:
    """``["peeky=a.json", ...]`` -> each name's buckets, as ``evaluation --json`` wrote them.

    A FILE that ``python -m seq2seq results`` wrote (a list of entries) gives the test split's
    greedy buckets of the entry called NAME. Each file is read at a bounded cost (a regular
    file, of bounded size and nesting) and checked: a list of buckets, each with a string
    ``label``, a whole number ``n`` and a number ``metric``; ValueError naming the file and
    what is wrong otherwise.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--eval {spec!r}: must look like NAME=FILE")
        out[name] = _buckets(_read_json(Path(path)), Path(path), name, metric)
    return out


def _read_json(path: Path) -> Any:
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a regular file ({file_kind(mode)})")
    try:
        return load_json(read_text(path, MAX_EVAL_BYTES))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    except ParseError as e:
        raise ValueError(f"{path}: {e}") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None


def _buckets(found: Any, path: Path, name: str, metric: str) -> list[dict[str, Any]]:
    """The checked buckets of one file's JSON (an evaluation, or a results list holding ``name``)."""
    def bad(what: str) -> ValueError:
        return ValueError(f"{path}: not an evaluation JSON with buckets ({what})")

    if isinstance(found, list):  # a results file: the entry called NAME
        entry = next((e for e in found if isinstance(e, dict) and e.get("name") == name), None)
        if entry is None:
            raise ValueError(f"{path}: no entry named {name!r}")
        split = entry.get("test_split")
        if not isinstance(split, str):
            raise bad(f"entry {name!r}: no test_split naming its test split")
        if not isinstance(entry.get(split), dict) or "greedy" not in entry[split]:
            raise bad(f"entry {name!r}: no {split}.greedy scores")
        found = entry[split]["greedy"]
    if not isinstance(found, dict) or "buckets" not in found:
        raise bad("no buckets")
    buckets = found["buckets"]
    if not isinstance(buckets, list):
        raise bad(f"buckets must be a list, got {type(buckets).__name__}")
    for i, b in enumerate(buckets):
        if not isinstance(b, dict):
            raise bad(f"buckets[{i}]: must be an object, got {type(b).__name__}")
        for key in ("label", "n", metric):
            if key not in b:
                raise bad(f"buckets[{i}]: no {key}")
        if not isinstance(b["label"], str):
            raise bad(f"buckets[{i}]: label must be a string")
        if isinstance(b["n"], bool) or not isinstance(b["n"], int) or b["n"] < 0:
            raise bad(f"buckets[{i}]: n must be a whole number")
        if isinstance(b[metric], bool) or not isinstance(b[metric], int | float):
            raise bad(f"buckets[{i}]: {metric} must be a number")
    return buckets


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq plots", description="Plots that need a checkpoint.",
        **examples(
            'python -m seq2seq plots attention --checkpoint runs/attention --text "Ein Hund rennt." --out a.png',
            'python -m seq2seq plots hidden --checkpoint runs/dates --text "5 March 2021" --out hidden.png',
        ))
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hidden", help="the encoder's hidden state over a sentence, step by step")
    h.add_argument("--checkpoint", type=Path, required=True, help="checkpoint or run directory")
    h.add_argument("--text", required=True, help="the source sentence")
    h.add_argument("--out", type=Path, required=True, help="PNG to write")
    h.add_argument("--unit", type=int, default=None, help="the unit to plot alone (default: largest variance)")
    h.add_argument("--top-k", type=int, default=16, help="units in the heatmap (default 16)")
    h.add_argument("--state", choices=("hidden", "cell"), default="hidden", help="LSTM: hidden or cell state")
    a = sub.add_parser("attention", help="an attention model's alignment of a translated sentence (heatmap)")
    a.add_argument("--checkpoint", type=Path, required=True, help="checkpoint or run directory")
    a.add_argument("--text", required=True, help="the source sentence")
    a.add_argument("--out", type=Path, default=Path("attention.png"), help="PNG to write (default attention.png)")
    a.add_argument("--beam", type=int, default=None, help="beam size (default: the checkpoint's decode.beam_size)")
    b = sub.add_parser("by-length", help="BLEU by source length of several models (from evaluate --json files)")
    b.add_argument("--eval", nargs="+", required=True, metavar="NAME=FILE",
                   help="a model's name and the JSON that python -m seq2seq evaluate --json wrote, "
                        "or a results file (python -m seq2seq results) holding an entry of that name")
    b.add_argument("--out", type=Path, required=True, help="PNG to write")
    b.add_argument("--title", default="BLEU by source length", help="the plot's title")
    args = p.parse_args(argv)

    def run() -> int:
        if args.command == "by-length":
            by_length(read_evaluations(args.eval, "bleu"), args.out, "bleu", "words", args.title)
            print(f"wrote {args.out}")
            return 0
        if args.command == "attention":
            check_positive(args, "beam")
            translation = attention(args.checkpoint, args.text, args.out, beam_size=args.beam)
            print(f"wrote {args.out}: {translation}")
            return 0
        unit = hidden_states(args.checkpoint, args.text, args.out, unit=args.unit, top_k=args.top_k,
                             state=args.state)
        print(f"wrote {args.out} (unit {unit})")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
