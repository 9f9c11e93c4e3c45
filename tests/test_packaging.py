"""The wheel's contents: every package folder is listed in pyproject.toml, the shipped configs
and the demo page travel inside the package, and ``--config NAME`` finds a shipped config.

The wheel itself is built and installed into a fresh venv outside the checkout by ``.ci/run``
(``.ci/wheel_check``), which trains and translates with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from seq2seq.config import ConfigError
from seq2seq.config.shipped import default_config, find_config, shipped_folder, shipped_names

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_folder_is_in_the_wheel() -> None:
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "seq2seq").rglob("__init__.py")}
    data = {"seq2seq.serve.static", "seq2seq.configs", "seq2seq.configs.sweeps"}  # folders of files, no code
    assert set(PYPROJECT["packages"]) == folders | data
    assert PYPROJECT["package-dir"] == {"seq2seq.configs": "configs"}
    assert (ROOT / "seq2seq" / "serve" / "static" / "index.html").is_file()
    config_folders = {p.parent.relative_to(ROOT / "configs").parts for p in (ROOT / "configs").rglob("*.yaml")}
    assert config_folders <= {(), ("sweeps",)}  # the folders package-data lists


def test_a_shipped_config_is_found_by_name_or_file_name() -> None:
    assert shipped_folder() == ROOT / "configs"  # a checkout: the repository's folder
    assert find_config("multi30k_de_en_attention") == ROOT / "configs" / "multi30k_de_en_attention.yaml"
    assert find_config("dates.yaml") == ROOT / "configs" / "dates.yaml"
    assert find_config("sweeps/dates") == ROOT / "configs" / "sweeps" / "dates.yaml"
    assert default_config() == ROOT / "configs" / "dates.yaml"
    assert {"dates", "addition", "multi30k_de_en", "multi30k_de_en_attention", "sweeps/dates"} <= set(shipped_names())


def test_an_existing_file_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dates").write_text("train: {epochs: 1}\n")
    assert find_config("dates") == Path("dates")


def test_an_unknown_config_names_the_shipped_ones(tmp_path: Path) -> None:
    for name in ("nope", str(tmp_path / "missing.yaml"), "../configs/dates"):
        with pytest.raises(ConfigError) as info:
            find_config(name)
        message = str(info.value)
        assert message.startswith(f"--config {name}: no such file, and no shipped config of that name (shipped: ")
        assert "dates, " in message and "\n" not in message


def test_load_config_takes_a_shipped_name() -> None:
    from seq2seq.config import load_config

    assert load_config("multi30k_de_en_attention") == load_config(ROOT / "configs" / "multi30k_de_en_attention.yaml")
    with pytest.raises(ConfigError) as info:
        load_config("nope")
    assert str(info.value).startswith("nope: config file not found, nor a shipped config of that name (")


@pytest.mark.smoke  # a short training run
def test_a_run_first_names_its_config_its_folder_and_how_to_watch_it(
        tmp_path: Path, tiny_overrides: tuple[str, ...], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.cli.train import main as train_main

    run = tmp_path / "run"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert train_main(["--out", str(run), *tiny_overrides, "train.epochs=1"]) == 0
    first = capsys.readouterr().out.splitlines()[:4]
    assert first[:3] == [f"config: {ROOT / 'configs' / 'dates.yaml'}", f"run folder: {run}",
                         f"watch it: tail -f {run / 'metrics.jsonl'}"]
    assert first[3].startswith("# resolved config")
    from seq2seq.cli.train import announce
    from seq2seq.config import load_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    assert announce(Path("c.yaml"), run, load_config("dates"))[3] == (
        f"W&B logs offline into {run / 'wandb'}; `wandb sync {run / 'wandb'}/offline-run-*` uploads them")
