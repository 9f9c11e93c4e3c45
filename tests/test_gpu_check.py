"""The prepared GPU check, as a dry run on the CPU: every part runs on a tiny model and writes
its report, so the command is known to work before it runs on a GPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
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
    assert {n: p["status"] for n, p in parts.items()} == {  # on the CPU the CUDA checks read as skipped
        "environment": "ok", "cuda_checks": "skipped", "train_throughput": "ok", "recipe": "ok", "decode": "ok"}, parts
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
    assert all(g["met"] is None for g in report["goals"].values())  # a dry run meets no goal
    md = (out / "report.md").read_text()
    assert "| train_throughput | ok |" in md and "| beam5_sentences_per_s | 5,000 |" in md
    assert "| cuda_checks | skipped |" in md and "| yes |" not in md


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


# --- a run reports only what it measured -----------------------------------------------------
QUICK = ("--tiny", "--device", "cpu", "--skip", "cuda_checks", "--skip", "train_throughput")


def _gpu_check(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "seq2seq", "gpu_check", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _old_report(out: Path) -> None:
    """A folder as an earlier run left it: a report, a recipe run with its best/ and metrics."""
    (out / "recipe" / "best").mkdir(parents=True)
    (out / "recipe" / "best" / "config.yaml").write_text("not: a real checkpoint\n")
    (out / "recipe" / "metrics.jsonl").write_text(
        "".join(json.dumps({"valid/bleu": 30.0 + i, "time/seconds": 10.0 * i, "train/tokens_per_s": 5e5}) + "\n"
                for i in range(1, 4)))
    (out / "recipe.log").write_text("the old run's log\n")
    (out / "report.json").write_text(json.dumps({"settings": {}, "parts": {"recipe": {"status": "ok"}}}))
    (out / "report.md").write_text("# GPU check\n\nthe old report\n")


def test_an_earlier_reports_recipe_is_not_read_as_this_runs(tmp_path: Path) -> None:
    """The recipe stopped before it wrote anything: the earlier run's best/ and metrics in
    --out are not this run's figures."""
    out = tmp_path / "report"
    _old_report(out)
    done = _gpu_check("--out", str(out), *QUICK, "--skip", "decode", "--recipe-timeout", "0.01")
    assert done.returncode == 1, done.stderr[-3000:]
    recipe = json.loads((out / "report.json").read_text())["parts"]["recipe"]
    assert recipe["status"] == "failed", recipe
    assert "valid_bleu_by_epoch" not in recipe
    assert "the old run's log" not in (out / "recipe.log").read_text()


def test_decode_without_this_runs_recipe_is_skipped(tmp_path: Path) -> None:
    """--skip recipe in an earlier report's folder: decode has no checkpoint of this run."""
    out = tmp_path / "report"
    _old_report(out)
    done = _gpu_check("--out", str(out), *QUICK, "--skip", "recipe")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    parts = report["parts"]
    assert list(parts) == ["environment", "cuda_checks", "train_throughput", "recipe", "decode"]
    assert {n: p["status"] for n, p in parts.items()} == {
        "environment": "ok", "cuda_checks": "skipped", "train_throughput": "skipped", "recipe": "skipped",
        "decode": "skipped"}
    assert not (out / "recipe").exists() and not (out / "recipe.log").exists()
    md = (out / "report.md").read_text()
    assert "the old report" not in md and "| decode | skipped |" in md


def test_a_relative_out_is_taken_from_the_callers_folder(tmp_path: Path) -> None:
    name = f"gpu_check_relative_{tmp_path.name}"
    try:
        done = _gpu_check("--out", name, *QUICK, "--skip", "decode", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        recipe = json.loads((tmp_path / name / "report.json").read_text())["parts"]["recipe"]
        assert recipe["status"] == "ok" and recipe["finished"], recipe
        assert (tmp_path / name / "recipe" / "best").is_dir()
        assert recipe["run"] == str(tmp_path / name / "recipe")
        assert not (ROOT / name).exists()
    finally:
        shutil.rmtree(ROOT / name, ignore_errors=True)


def test_paths_are_made_absolute_before_a_part_runs_in_another_folder(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.tools.gpu_check.command import parse_args

    monkeypatch.chdir(tmp_path)
    args = parse_args(["--out", "rel", "--data", "corpus"])
    assert args.out == tmp_path / "rel" and args.data == str(tmp_path / "corpus")


def test_tiny_refuses_data_it_would_not_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.tools.gpu_check.command import main

    assert main(["--out", str(tmp_path / "r"), "--tiny", "--device", "cpu", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--tiny" in err
    assert not (tmp_path / "r").exists()


def test_goals_of_a_dry_run_are_not_judged(tmp_path: Path) -> None:
    """Figures of a --tiny run, or of any run off CUDA, are shown but never read as met."""
    from seq2seq.tools.gpu_check.report import Report

    parts = {"environment": {"status": "ok", "device": {"type": "cpu"}, "torch": "x", "python": "y", "seconds": 1},
             "recipe": {"status": "ok", "seconds_to_reference_bleu": 1.0, "training_seconds": 2.0, "finished": True,
                        "seconds": 3, "command": "c", "epochs": 2, "valid_bleu_by_epoch": [1.0]}}
    for settings in ({"tiny": True}, {"tiny": False}):
        report = Report(tmp_path, settings)
        report.data["parts"] = parts
        report.save()
        g = json.loads((tmp_path / "report.json").read_text())["goals"]
        assert g["recipe_seconds"]["measured"] == 2.0 and g["recipe_seconds"]["met"] is None, g
        assert all(v["met"] is None for v in g.values())
        md = (tmp_path / "report.md").read_text()
        assert "| recipe_seconds | 60.0 | 2.0 | not judged" in md and "| yes |" not in md


def test_sigterm_stops_the_recipe_and_records_it(tmp_path: Path) -> None:
    """SIGTERM to the check reaches the recipe's train.py (no orphan), and the report says the
    recipe was stopped."""
    out = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-m", "seq2seq", "gpu_check", "--out", str(out), *QUICK],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    child = None
    try:
        deadline = time.monotonic() + 120
        while child is None and time.monotonic() < deadline and proc.poll() is None:
            child = next(iter(_children(proc.pid)), None)
            time.sleep(0.05)
        assert child is not None, "the recipe's train.py never started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert not _running(child), "train.py outlived the check"
        recipe = json.loads((out / "report.json").read_text())["parts"]["recipe"]
        assert recipe["status"] == "stopped", recipe
        assert "| recipe | stopped |" in (out / "report.md").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child is not None and _running(child):
            os.kill(child, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line names train.py."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"train.py" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_an_out_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.tools.gpu_check.command import main

    paper = tmp_path / "paper.txt"
    paper.write_text("keep me")
    for out in (paper, paper / "report"):  # a file; a folder that cannot be made (under a file)
        assert main(["--out", str(out), "--tiny", "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and str(paper) in err, err
    assert paper.read_text() == "keep me"


@pytest.mark.parametrize("option", [("--recipe-timeout", "nan"), ("--recipe-timeout", "-5"),
                                    ("--recipe-timeout", "0"), ("--recipe-timeout", "inf"), ("--steps", "0"),
                                    ("--batch-sizes", "16", "0")])
def test_bad_numbers_are_refused_in_one_line(option: tuple[str, ...], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.tools.gpu_check.command import main

    assert main(["--out", str(tmp_path / "r"), "--tiny", "--device", "cpu", *option]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option[0]}") and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()
