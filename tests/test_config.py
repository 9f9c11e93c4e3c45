"""Config: YAML into frozen dataclasses; unknown keys, wrong types, ranges; overrides."""

import dataclasses
from pathlib import Path

import pytest

from seq2seq.config import Config, ConfigError, DecodeConfig, TrainConfig, load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert load_config(None, []).model.cell == "lstm"


def test_defaults_and_frozen() -> None:
    cfg = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.cell = "gru"  # type: ignore[misc]


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    p = write(tmp_path, "model:\n  hiden_dim: 12\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and "model.hiden_dim" in str(e.value) and "unknown key" in str(e.value)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="modle: unknown section"):
        load_config(write(tmp_path, "modle: {}\n"))


@pytest.mark.parametrize("text,key,what", [
    ("model:\n  num_layers: two\n", "model.num_layers", "integer"),
    ("model:\n  num_layers: 1.5\n", "model.num_layers", "integer"),
    ("model:\n  peeky: 1\n", "model.peeky", "true or false"),
    ("train:\n  lr: fast\n", "train.lr", "number"),
    ("model:\n  cell: lstmm\n", "model.cell", "one of"),
    ("tracking:\n  tags: dates\n", "tracking.tags", "list"),
])
def test_wrong_types(tmp_path: Path, text: str, key: str, what: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert key in str(e.value) and what in str(e.value)


@pytest.mark.parametrize("text,key", [
    ("model:\n  dropout: -0.1\n", "model.dropout"),
    ("model:\n  num_layers: 0\n", "model.num_layers"),
    ("model:\n  encoder_dim: -1\n", "model.encoder_dim"),
    ("train:\n  lr: 0\n", "train.lr"),
    ("train:\n  teacher_forcing: 1.5\n", "train.teacher_forcing"),
    ("decode:\n  beam_size: 0\n", "decode.beam_size"),
    ("data:\n  source: files\n", "data.path"),
])
def test_out_of_range(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert key in str(e.value) and str(tmp_path) in str(e.value)


def test_int_widens_to_float(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "train:\n  lr: 1\n")).train.lr == 1.0


def test_overrides_typed() -> None:
    cfg = load_config(None, ["train.lr=3e-4", "model.cell=gru", "model.peeky=false",
                             "tracking.tags=[a, b]", "data.src_lang=no"])
    assert cfg.train.lr == 3e-4 and cfg.model.cell == "gru" and cfg.model.peeky is False
    assert cfg.tracking.tags == ("a", "b") and cfg.data.src_lang == "no"


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "train.lrr: unknown key"),
    ("trian.lr=1", "trian.lr: unknown section"),
    ("model.num_layers=abc", "model.num_layers: must be an integer"),
    ("model.dropout=2", "model.dropout: must be in [0, 1)"),
    ("lr=1", "section.key"),
    ("train.lr", "section.key=value"),
])
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert message in str(e.value) and "command line" in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml: line \d+: invalid YAML"):
        load_config(write(tmp_path, "model:\n  cell: [lstm\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.cell=gru", "tracking.tags=[x]", "train.lr=0.01"])
    p = write(tmp_path, cfg.to_yaml())
    assert load_config(p) == cfg


# --- non-finite and absurd numbers -----------------------------------------
@pytest.mark.parametrize("override,key", [
    ("train.lr=inf", "train.lr"),
    ("train.lr=.inf", "train.lr"),
    ("train.lr=nan", "train.lr"),
    ("train.weight_decay=inf", "train.weight_decay"),
    ("train.clip_norm=.inf", "train.clip_norm"),
    ("decode.length_penalty=inf", "decode.length_penalty"),
    ("decode.max_len_ratio=inf", "decode.max_len_ratio"),
    ("decode.max_len_ratio=.nan", "decode.max_len_ratio"),
])
def test_non_finite_numbers_are_refused(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"{key}: must be a finite number" in str(e.value) and "command line" in str(e.value)


def test_non_finite_number_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  lr: .inf\n")
    with pytest.raises(ConfigError, match=r"c.yaml: train.lr: must be a finite number, got inf"):
        load_config(path)


@pytest.mark.parametrize("override,key", [
    ("decode.max_len_ratio=1e18", "decode.max_len_ratio"),  # overflowed the length limit: empty outputs
    ("decode.max_len_offset=10000000000000000000", "decode.max_len_offset"),
    ("decode.length_penalty=1000", "decode.length_penalty"),  # ((5 + n) / 6) ** alpha overflows float64
    ("train.seed=1180591620717411303424", "train.seed"),  # 2**70: torch.manual_seed overflows
    ("train.lr=1e39", "train.lr"),  # Adam's step overflowed float32: a RuntimeError traceback
    ("data.vocab_size=4294967296", "data.vocab_size"),  # aborted the process inside the tokenizers library
])
def test_absurd_numbers_are_refused(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"{key}: must be" in str(e.value)


def test_sections_built_in_code_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="decode.max_len_ratio: must be a finite number"):
        DecodeConfig(max_len_ratio=float("inf"))
    with pytest.raises(ConfigError, match="train.lr: must be a finite number"):
        TrainConfig(lr=float("inf"))


@pytest.mark.parametrize("override", ["train.lr=" + "x" * 1_000_000, "model.cell=" + "y" * 1_000_000,
                                      "model.num_layers=[" + "1, " * 300_000 + "]", "train." + "z" * 1_000_000 + "=1"])
def test_a_huge_bad_value_is_named_by_an_excerpt(override: str) -> None:
    """Messages echoed the whole offending value: megabytes on one line."""
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert len(msg) < 1000, msg[:2000]  # an excerpt, plus at most the list of known keys
    assert "characters" in msg or "value too large (more than 100,000 values" in msg, msg  # the list: refused by size
