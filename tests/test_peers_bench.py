"""The peers benchmark's pieces that run without the other toolkits: this toolkit's timed and
profiled translation (docs/bench/peers/ours_translate.py) and the result file's tables."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "docs" / "bench" / "peers"


def load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peers_run", PEERS / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ours_translate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, str(PEERS / "ours_translate.py"), *args], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=300)


@pytest.mark.smoke
def test_ours_translate_times_and_profiles_the_translation(tmp_path: Path, tiny_checkpoint: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("tuesday, march 3, 2015\n1 april 1999\nsat 5 may 2001\n")
    times, table, out = tmp_path / "times.json", tmp_path / "table.txt", tmp_path / "out.txt"
    done = ours_translate("--profile", str(table), str(times), "--checkpoint", str(tiny_checkpoint),
                          "--input", str(source), "--output", str(out), "--beam", "2")
    assert done.returncode == 0, done.stderr
    result = json.loads(times.read_text())
    assert result["status"] == 0 and result["calls"] >= 1 and result["translate_s"] > 0
    assert result["threads"] == 1
    assert len(out.read_text().splitlines()) == 3
    text = table.read_text()
    assert "Self CPU" in text and "aten::" in text
    assert "aten::topk" in text  # the search ran under the profiler, not only the model's loading


@pytest.mark.smoke
def test_ours_translate_without_its_arguments_says_how_to_call_it() -> None:
    for args in ((), ("--profile",), ("--profile", "table.txt")):
        done = ours_translate(*args)
        assert done.returncode == 2
        assert done.stderr.startswith("usage: ours_translate.py")


@pytest.mark.smoke
def test_ours_translate_refuses_a_result_file_in_a_missing_folder(tmp_path: Path, tiny_checkpoint: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("1 april 1999\n")
    missing = tmp_path / "no" / "such"
    table, times = missing / "table.txt", missing / "times.json"
    for args, named in (((str(times),), times), (("--profile", str(table), str(tmp_path / "t.json")), table)):
        done = ours_translate(*args, "--checkpoint", str(tiny_checkpoint), "--input", str(source),
                              "--output", str(tmp_path / "out.txt"))
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [f"ours_translate.py: {named}: its folder does not exist"]
        assert not (tmp_path / "out.txt").exists()  # refused before anything ran


def test_markdown_tables_hold_every_variant_and_ratio() -> None:
    run = load_run()
    result = {"train_speed": {"median_tokens_per_s": {"ours_default": 3000.0, "ours_fp32": 1500.0, "onmt": 1000.0}},
              "decode": {"rows": [{"tool": "ours", "beam": 5, "sentences_per_s": 200.0, "process_wall_s": 6.0,
                                   "mean_output_pieces": 11.25, "bleu": 25.5}]}}
    lines = run.markdown(result).splitlines()
    assert lines[0] == "| training | target tokens/s (median) | ours_default / this | ours_fp32 / this |"
    assert "| onmt | 1,000 | 3.00 | 1.50 |" in lines
    assert "| ours_fp32 | 1,500 | 2.00 | 1.00 |" in lines
    assert lines[-1] == "| ours | 5 | 200.0 | 6.0 | 11.2 | 25.50 |"


def test_an_extra_decoding_is_a_name_and_its_arguments() -> None:
    run = load_run()
    assert run.parse_decode("int8:--quantize int8") == ("ours_int8", ["--quantize", "int8"])
    assert run.parse_decode("fp32:--bf16 false") == ("ours_fp32", ["--bf16", "false"])
    for bad in ("int8", ":--quantize int8", "int8:"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME:ARGS"):
            run.parse_decode(bad)
