"""The benchmark: the quick path end to end with tiny sizes, its JSON, and its pure helpers.

No timing thresholds: only that every figure was measured, is positive and has its baseline.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from seq2seq.tools.bench.command import main
from seq2seq.tools.bench.figures import Figure, format_table, new_figures, ratio
from seq2seq.tools.runs import first_crossing

TINY_BENCH = ("--quick", "--repeats", "2", "--steps", "2", "--warmup", "1", "--threshold", "0",
              "--threshold-epochs", "1", "--decode-sentences", "6",
              "data.size=400", "model.hidden_dim=32", "model.embed_dim=8", "train.valid_max_sentences=20",
              "decode.batch_size=4")


@pytest.mark.smoke
def test_quick_bench_writes_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main([*TINY_BENCH, "--json", str(out)]) == 0
    result: dict[str, Any] = json.loads(out.read_text())

    figures = result["figures"]
    assert set(figures) == set(new_figures("m", 0.0))
    for name, f in figures.items():
        assert len(f["samples"]) == result["repeats"] == 2, name
        assert all(s > 0 for s in f["samples"]), name
        assert f["value"] > 0, name
        assert f["value"] == statistics.median(f["samples"]), name
        if f["baseline"] is None:
            assert f["ratio"] is None
        else:
            assert f["baseline"] in figures and figures[f["baseline"]]["baseline"] is None
            assert f["ratio"] == pytest.approx(f["value"] / figures[f["baseline"]]["value"])
    assert result["device"]["type"] == "cpu" and result["device"]["name"]
    assert result["torch"] and result["command"].split()[1:4] == ["-m", "seq2seq", "bench"]
    assert result["config"]["data"]["size"] == 400 and result["config"]["train"]["batch_size"] == 64
    assert result["settings"]["steps"] == 2 and result["settings"]["threshold"] == 0.0
    assert result["details"]["decode"]["sentences"] == 6
    assert result["details"]["decode_model"].startswith("trained")
    assert [r["epoch"] for r in result["details"]["threshold"]["runs"]] == [1, 1]

    table = capsys.readouterr().out
    assert "train_tokens_per_s" in table and "x train_tokens_per_s_tutorial" in table


@pytest.mark.smoke
def test_skipped_phases_leave_no_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [*TINY_BENCH, "--repeats", "1", "--skip", "threshold", "--skip", "decode", "--json", str(out)]
    assert main(argv) == 0
    assert set(json.loads(out.read_text())["figures"]) == {
        "train_tokens_per_s", "train_tokens_per_s_tutorial", "peak_memory_train", "peak_memory_train_tutorial",
        "train_tokens_per_s_bf16", "train_tokens_per_s_fp32"}
    assert main([*argv, "--skip", "precision"]) == 0
    assert set(json.loads(out.read_text())["figures"]) == {
        "train_tokens_per_s", "train_tokens_per_s_tutorial", "peak_memory_train", "peak_memory_train_tutorial"}


def test_first_crossing() -> None:
    records = [{"epoch": 1, "m": 5.0}, {"epoch": 2, "train/loss": 1.0}, {"epoch": 3, "m": 20.0},
               {"epoch": 4, "m": 30.0}]
    assert first_crossing(records, "m", 20.0) == {"epoch": 3, "m": 20.0}
    assert first_crossing(records, "m", 0.0) == {"epoch": 1, "m": 5.0}
    assert first_crossing(records, "m", 31.0) is None


def test_a_figure_not_reached_has_no_value_and_no_ratio() -> None:
    figures = new_figures("m", 1.0)
    figures["time_to_threshold"].samples = [3.0, None]
    figures["time_to_threshold_tutorial"].samples = [6.0, 4.0]
    assert figures["time_to_threshold"].value is None
    assert figures["time_to_threshold_tutorial"].value == 5.0
    assert ratio(figures, "time_to_threshold") is None
    figures["time_to_threshold"].samples = [3.0, 2.0]
    assert ratio(figures, "time_to_threshold") == pytest.approx(0.5)
    assert "not reached" in format_table({"time_to_threshold_tutorial": Figure("s", "lower", "x")})


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "100.5"])
def test_bench_threshold_out_of_range_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.tools.bench.command import parse_args

    with pytest.raises(SystemExit) as e:
        parse_args(["--threshold", value])
    assert e.value.code == 2
    assert "--threshold must be in [0, 100]" in capsys.readouterr().err
