"""Device selection, bf16 detection and autocast (train.bf16: auto | true | false)."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import ConfigError, load_config
from seq2seq.runtime import device as dev


def test_bf16_setting_parses_auto_true_false_only() -> None:
    assert load_config(None, []).train.bf16 == "auto"
    assert load_config(None, ["train.bf16=true"]).train.bf16 is True
    assert load_config(None, ["train.bf16=false"]).train.bf16 is False
    for bad in ("maybe", "1", "bf16"):
        with pytest.raises(ConfigError, match=r"train\.bf16: must be one of auto, true, false"):
            load_config(None, [f"train.bf16={bad}"])


def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: True)
    assert dev.use_bf16("auto", cpu)
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: False)
    assert not dev.use_bf16("auto", cpu)
    assert dev.describe("auto", cpu) == "fp32"
    assert dev.use_bf16(True, cpu) and not dev.use_bf16(False, cpu)  # forced either way


def test_autocast_runs_matmuls_in_bf16_on_the_cpu() -> None:
    x = torch.randn(4, 8)
    lin = torch.nn.Linear(8, 3)
    with dev.autocast(True, torch.device("cpu")):
        assert lin(x).dtype == torch.bfloat16
    with dev.autocast(False, torch.device("cpu")):
        assert lin(x).dtype == torch.float32


def test_cpu_flags_come_from_proc_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    real = dev.Path
    monkeypatch.setattr(dev, "Path", lambda p: info if p == "/proc/cpuinfo" else real(p))
    dev.cpu_bf16_flags.cache_clear()
    try:
        assert dev.cpu_bf16_flags() == ("amx_bf16", "avx512_bf16")
        info.write_text("flags\t\t: fpu avx2\n")
        dev.cpu_bf16_flags.cache_clear()
        assert dev.cpu_bf16_flags() == ()
        monkeypatch.setattr(dev, "Path", real)
    finally:
        dev.cpu_bf16_flags.cache_clear()


def test_cuda_asked_for_without_cuda_is_one_line() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(dev.DeviceError, match="^train.device is 'cuda' but CUDA is not available"):
        dev.select_device("cuda")
    with pytest.raises(dev.DeviceError, match="^--device cuda was asked for but CUDA is not available"):
        dev.select_device("cuda", "--device")
    assert dev.select_device("auto") == torch.device("cpu")


@pytest.mark.smoke
def test_openmp_threads_spin_briefly_unless_the_environment_says_how_they_wait() -> None:
    import os
    import subprocess
    import sys

    code = ("import os, seq2seq.runtime; seq2seq.runtime.tune(); "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def seen(**extra: str) -> str:
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True,
                              text=True).stdout.strip()

    assert seen() == "None 20000"
    assert seen(OMP_WAIT_POLICY="PASSIVE") == "PASSIVE None"
    assert seen(GOMP_SPINCOUNT="0") == "None 0"


@pytest.mark.smoke
def test_a_bf16_run_on_the_cpu_trains_and_saves_fp32_weights(tmp_path, tiny_config, metrics,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file

    from seq2seq.training.trainer import train

    train(tiny_config("train.bf16=true", "train.max_steps=4", "train.log_every=1"), tmp_path / "run")
    out = capsys.readouterr().out
    assert "bf16 autocast" in out
    losses = [r["train/loss"] for r in metrics(tmp_path / "run") if "train/loss" in r]
    assert len(losses) == 4 and all(0 < x < 10 for x in losses)
    weights = load_file(str(tmp_path / "run" / "best" / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}  # autocast keeps the master weights fp32
