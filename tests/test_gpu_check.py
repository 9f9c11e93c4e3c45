"""The prepared GPU check, as a dry run on the CPU: every part runs on a tiny model and writes
its report, so the command is known to work before it runs on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.tools.gpu_check.checks import CUDA_CHECKS
from seq2seq.tools.gpu_check.parts import GRAPH_CEILING, graph_ceiling
from seq2seq.tools.gpu_check.report import GOALS, goals

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parent.parent


def test_the_dry_run_writes_every_part(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "seq2seq", "gpu_check", "--out", str(out), "--device", "cpu",
                           "--tiny"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    parts = report["parts"]
    assert list(parts) == ["environment", "cuda_checks", "train_throughput", "recipe", "decode"]
    assert all(p["status"] == "ok" for p in parts.values()), parts
    assert parts["environment"]["device"]["type"] == "cpu"
    assert parts["cuda_checks"]["skipped"].startswith("device is cpu")
    rows = parts["train_throughput"]["rows"]
    assert [r["batch_size"] for r in rows] == [16, 32]
    assert all(r[k] > 0 for r in rows for k in ("tokens_per_s", "static_tokens_per_s", "graphed_tokens_per_s"))
    assert all("CUDAGraph" in r["graph_failure"] for r in rows)  # the CPU cannot capture: eager steps
    assert all(r["vs_ceiling"] is None for r in rows)  # no ceiling measured at these sizes
    assert parts["recipe"]["finished"] and parts["recipe"]["epochs"] == 2
    assert (out / "recipe" / "best").is_dir()
    assert parts["decode"]["greedy"]["sentences_per_s"] > 0 and 0 <= parts["decode"]["beam5"]["bleu"] <= 100
    assert set(report["goals"]) == set(GOALS)
    md = (out / "report.md").read_text()
    assert "| train_throughput | ok |" in md and "| beam5_sentences_per_s | 5,000 |" in md


def test_goals_are_judged_in_their_direction() -> None:
    parts = {"train_throughput": {"best_tokens_per_s": 2_000_000},
             "recipe": {"seconds_to_reference_bleu": 30.0, "training_seconds": 50.0, "finished": True},
             "decode": {"greedy": {"sentences_per_s": 100.0}}}
    g = goals(parts)
    assert g["train_tokens_per_s"]["met"] is True
    assert g["seconds_to_reference_bleu"]["met"] is False  # 30 s > 20 s
    assert g["recipe_seconds"]["met"] is True
    assert g["greedy_sentences_per_s"]["met"] is False
    assert g["beam5_sentences_per_s"]["met"] is None  # not measured


def test_the_graph_ceiling_is_measured_or_interpolated_between_measured_sizes() -> None:
    sizes = sorted(GRAPH_CEILING)
    assert all(graph_ceiling(b) == GRAPH_CEILING[b] for b in sizes)
    assert graph_ceiling(sizes[0] // 2) is None and graph_ceiling(sizes[-1] * 2) is None
    for lo, hi in zip(sizes, sizes[1:]):
        between = [graph_ceiling(b) for b in range(lo, hi + 1, max(1, (hi - lo) // 16))]
        assert all(x is not None for x in between)
        assert between == sorted(between) and GRAPH_CEILING[lo] <= min(between) <= max(between) <= GRAPH_CEILING[hi]
    goal = GOALS["graphed_vs_ceiling"]
    for ratio, met in ((goal * 0.9, False), (goal, True), (goal * 1.1, True)):
        assert goals({"train_throughput": {"worst_vs_ceiling": ratio}})["graphed_vs_ceiling"]["met"] is met


def test_a_folder_that_is_not_a_report_is_refused(tmp_path: Path) -> None:
    from seq2seq.tools.gpu_check.command import main

    (tmp_path / "thesis.tex").write_text("keep me")
    assert main(["--out", str(tmp_path), "--tiny", "--device", "cpu"]) == 1
    assert (tmp_path / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize("name", list(CUDA_CHECKS))
def test_each_cuda_check_passes_on_the_cpu(name: str, tmp_path: Path) -> None:
    """The checks' own logic, run on the CPU (bf16 where this CPU has it), so they stay
    tested where there is no GPU; on a GPU, tests/test_cuda.py and the check run them on CUDA."""
    CUDA_CHECKS[name](tmp_path, "cpu")
