"""The GPU check's report: each part's figures as they come, the goals and whether each was
met, written whole after each part as ``report.json`` and ``report.md``.

A part's status is ``ok``, ``failed``, ``skipped`` (it measured nothing: ``skipped`` says why)
or ``stopped`` (SIGTERM or Ctrl-C ended it; the check then ends). Goals are judged only where
they are meant to be, on CUDA and not in a ``--tiny`` run."""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...cli.errors import Terminated
from ..markdown import markdown_table

GOALS = {  # on one H100/H200
    "train_tokens_per_s": 1_000_000,
    "graphed_vs_ceiling": 0.6,  # graphed tokens/s over GRAPH_CEILING, at the worst batch size measured
    "seconds_to_reference_bleu": 20.0,
    "recipe_seconds": 60.0,
    "greedy_sentences_per_s": 20_000,
    "beam5_sentences_per_s": 5_000,
}


def say(msg: str) -> None:
    print(f"gpu_check: {msg}", file=sys.stderr, flush=True)


class Report:
    """The parts' results as they come; written whole after each part (a crash keeps the rest)."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.out = out
        self.data: dict[str, Any] = {"settings": settings, "parts": {}, "goals": {}}

    def part(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run one part; record its figures and seconds, or its error, and save the report."""
        say(f"{name} ...")
        start = time.perf_counter()
        result: dict[str, Any] | None = None
        entry: dict[str, Any]
        try:
            figures = fn()
            result = entry = {"status": "skipped" if "skipped" in figures else "ok", **figures}
        except (KeyboardInterrupt, Terminated) as e:  # recorded, then the check ends
            entry = {"status": "stopped", "stopped_by": "SIGTERM" if isinstance(e, Terminated) else "SIGINT",
                     **getattr(e, "figures", {})}
            self._record(name, entry, start)
            raise
        except Exception as e:  # noqa: BLE001 - recorded; the other parts still run
            entry = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:2000],
                     "traceback": traceback.format_exc()[-4000:]}
        self._record(name, entry, start)
        return result

    def skipped(self, name: str, why: str) -> None:
        """Record part ``name`` as not run, and why."""
        self._record(name, {"status": "skipped", "skipped": why}, time.perf_counter())

    def _record(self, name: str, entry: dict[str, Any], start: float) -> None:
        entry["seconds"] = round(time.perf_counter() - start, 1)
        self.data["parts"][name] = entry
        say(f"{name}: {entry['status']} ({entry['seconds']} s)" + (f": {entry['skipped']}" if "skipped" in entry
                                                                    else ""))
        self.save()

    def save(self) -> None:
        from ...model.checkpoint import write_atomic

        self.data["goals"] = goals(self.data["parts"], not_judged(self.data["settings"], self.data["parts"]))
        write_atomic(self.out / "report.json", (json.dumps(self.data, indent=2) + "\n").encode("utf-8"))
        write_atomic(self.out / "report.md", markdown(self.data).encode("utf-8"))


def not_judged(settings: dict[str, Any], parts: dict[str, Any]) -> str | None:
    """Why this run's figures cannot be held against :data:`GOALS` (set for one H100/H200, the
    recipe at full size), or None: they can."""
    if settings.get("tiny"):
        return "a --tiny dry run"
    env = parts.get("environment", {})
    if env.get("status") != "ok":
        return "the device is unknown (environment did not run)"
    if env.get("device", {}).get("type") != "cuda":
        return f"device is {env.get('device', {}).get('type')}, the goals are for a GPU"
    return None


def goals(parts: dict[str, Any], not_judged: str | None = None) -> dict[str, Any]:
    """Each goal (:data:`GOALS`) with the measured figure and whether it was met (None: not
    measured, or ``not_judged`` gives why it is not held against the goal)."""
    def get(part: str, *keys: str) -> Any:
        value: Any = parts.get(part, {})
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    measured = {
        "train_tokens_per_s": get("train_throughput", "best_tokens_per_s"),
        "graphed_vs_ceiling": get("train_throughput", "worst_vs_ceiling"),
        "seconds_to_reference_bleu": get("recipe", "seconds_to_reference_bleu"),
        "recipe_seconds": get("recipe", "training_seconds") if get("recipe", "finished") else None,
        "greedy_sentences_per_s": get("decode", "greedy", "sentences_per_s"),
        "beam5_sentences_per_s": get("decode", "beam5", "sentences_per_s"),
    }
    lower = {"seconds_to_reference_bleu", "recipe_seconds"}
    return {k: {"goal": g, "measured": measured[k],
                "met": None if measured[k] is None or not_judged else (
                    measured[k] <= g if k in lower else measured[k] >= g),
                **({"not_judged": not_judged} if not_judged and measured[k] is not None else {})}
            for k, g in GOALS.items()}


def markdown(data: dict[str, Any]) -> str:
    """``report.md``: the settings, the device, each part's status, the goals, the throughput
    table, the recipe and decoding figures, and each failure."""
    parts, env = data["parts"], data["parts"].get("environment", {})
    lines = ["# GPU check", "", f"Settings: `{json.dumps(data['settings'])}`", ""]
    if env.get("status") == "ok":
        lines += [f"Device: {json.dumps(env['device'])}; torch {env['torch']}, Python {env['python']}", ""]
    lines += markdown_table(("part", "status", "seconds"), [(name, p["status"], str(p["seconds"]))
                                                            for name, p in parts.items()])
    lines += ["", *markdown_table(("goal", "target", "measured", "met"), _goal_rows(data["goals"]))]
    lines += _throughput_lines(parts.get("train_throughput", {}).get("rows", []))
    rec = parts.get("recipe", {})
    if rec.get("status") == "ok":
        lines += ["", f"Recipe: `{rec['command']}`: {rec['epochs']} epochs, {rec['training_seconds']} s "
                      f"(finished: {rec['finished']}); valid BLEU by epoch {rec['valid_bleu_by_epoch']}"]
    dec = parts.get("decode", {})
    for name in ("greedy", "beam5"):
        if name in dec:
            d = dec[name]
            lines.append(f"- {dec['split']} {name}: BLEU {d['bleu']} chrF {d['chrf']}, {d['sentences_per_s']:,} "
                         f"sentences/s ({d['bleu_signature']})")
    for name, p in parts.items():
        if p["status"] == "failed":
            lines += ["", f"**{name} failed:** `{p['error'][:500]}`"]
        elif p["status"] == "skipped":
            lines += ["", f"{name} skipped: {p['skipped']}"]
        elif p["status"] == "stopped":
            lines += ["", f"**{name} stopped** by {p['stopped_by']}; the check ended there"]
    return "\n".join(lines) + "\n"


def _goal_rows(goal_data: dict[str, Any]) -> list[tuple[str, ...]]:
    met = {True: "yes", False: "no", None: "not measured"}
    return [(name, f"{g['goal']:,}", str(g["measured"]) if g["measured"] is not None else "-",
             f"not judged ({g['not_judged']})" if g.get("not_judged") else met[g["met"]])
            for name, g in goal_data.items()]


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:,}"


def _throughput_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The training throughput table by batch size, and why graphs gave up where they did."""
    if not rows:
        return []
    lines = ["", "Target tokens/s: eager (packed encoder), static shapes (eager), graphed (static shapes, "
                 "CUDA graphs); the ceiling is a plain script's, whole step graphed, on an H100.", ""]
    lines += markdown_table(
        ("batch size", "eager", "static", "graphed", "ceiling", "graphed / ceiling", "peak MiB (eager, graphed)"),
        [(str(r["batch_size"]), _num(r["tokens_per_s"]), _num(r.get("static_tokens_per_s")),
          _num(r.get("graphed_tokens_per_s")), _num(r.get("ceiling_tokens_per_s")), _num(r.get("vs_ceiling")),
          f"{r['peak_mib']}, {r.get('graphed_peak_mib', '-')}") for r in rows])
    failures = {r["graph_failure"] for r in rows if r.get("graph_failure")}
    return lines + [f"- graphs gave up: {f}" for f in sorted(failures)]
