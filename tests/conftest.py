"""Test settings: no network, no W&B, small thread counts; the three test tiers."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models on shared cores: one thread is several times faster

# --- shared by the training, checkpoint and reliability tests ---------------------------

ROOT = Path(__file__).resolve().parent.parent
# A model that trains in well under a second on the CPU: 360 training pairs, 3 batches an epoch.
# fp32 (train.bf16=false, decode.bf16=false): tests that compare runs step for step, or a sentence
# alone and in a batch, need exact arithmetic; the bf16 paths have tests of their own
# (test_device.py, test_precision.py).
TINY = ("data.size=400", "model.hidden_dim=32", "model.embed_dim=8", "train.epochs=2",
        "train.progress=false", "train.log_every=2", "decode.batch_size=64", "train.bf16=false", "decode.bf16=false")


@pytest.fixture(scope="session")
def tiny_overrides() -> tuple[str, ...]:
    """The command-line form of :func:`tiny_config` (for ``train.py --config configs/dates.yaml``)."""
    return TINY


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., Any]:
    """``tiny_config("train.lr=0.01", ...)``: configs/dates.yaml made tiny, plus overrides."""
    from seq2seq.config import load_config

    return lambda *overrides: load_config(ROOT / "configs" / "dates.yaml", [*TINY, *overrides])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-epoch tiny run: best/, last/, config.yaml, metrics.jsonl. Read only:
    copy it (shutil.copytree) before changing anything in it."""
    from seq2seq.config import load_config
    from seq2seq.training.trainer import train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(load_config(ROOT / "configs" / "dates.yaml", TINY), out)
    return out


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def metrics() -> Callable[[Path], list[dict[str, Any]]]:
    """``metrics(run_dir)``: the records of its metrics.jsonl, in order."""
    return read_metrics


@pytest.fixture(scope="session")
def run_script() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_script("train.py", *args, env={...})``: the real entry point in a fresh interpreter,
    from the repository root, W&B disabled unless ``env`` says otherwise."""

    def run(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
            stdin: str = "") -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
        return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=full_env, input=stdin,
                              capture_output=True, text=True, timeout=timeout)

    return run


# --- shared by the translation and evaluation tests -------------------------------------


@pytest.fixture(scope="session")
def tiny_checkpoint(trained_run: Path) -> Path:
    """The tiny run's best/ checkpoint: it translates dates badly (garbage of varied lengths,
    different for different inputs), which is all the translation plumbing tests need. Read only."""
    return trained_run / "best"


@pytest.fixture(scope="session")
def tiny_attention_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_config: Callable[..., Any]) -> Path:
    """A tiny run with Luong attention (3 steps), its best/ checkpoint: for what shows
    alignments (the server's API and demo page). Read only."""
    from seq2seq.training.trainer import train

    out = tmp_path_factory.mktemp("tiny_attention") / "run"
    train(tiny_config("model.attention=luong", "train.max_steps=3"), out)
    return out / "best"


DATES_MODEL = ("data.size=6000", "model.hidden_dim=128", "train.batch_size=32", "train.epochs=7",
               "train.valid_max_sentences=100", "train.samples=0", "train.progress=false")


@pytest.fixture(scope="session")
def dates_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dates model that works: configs/dates.yaml, smaller (about 30 s on one CPU core), for the
    ``learns`` tier (test_translate.py, test_precision.py). Read only."""
    from seq2seq.config import load_config
    from seq2seq.training.trainer import train

    out = tmp_path_factory.mktemp("dates") / "run"
    train(load_config(ROOT / "configs" / "dates.yaml", DATES_MODEL), out)
    return out / "best"


# --- test tiers ---------------------------------------------------------------------------
# Every test is in exactly one tier (docs/getting-started.md, "Tests"):
#   unit    in-process and quick: no training run of its own (reading the session's tiny
#           trained_run is fine), no command's main([...]), no subprocess.
#           The default: a test with no tier marker is marked unit here.
#   smoke   end to end: a short training run, a command's main([...]) (train, translate,
#           evaluate, sweep, bench, prepare, plots), or a subprocess (a script, torchrun,
#           a fresh interpreter). Mark it ``@pytest.mark.smoke`` (or the module's
#           ``pytestmark = pytest.mark.smoke`` when every test in it is smoke).
#   learns  trains a model for tens of seconds and checks that it learned: ``@pytest.mark.learns``.
# ``python -m pytest -m "not learns"`` runs unit + smoke; ``-m unit`` the fastest loop.
# tests/test_tiers.py fails if a test has two tier markers, or the retired ``slow`` marker.

TIERS = ("unit", "smoke", "learns")
RENAMED = {"slow": "learns"}  # old marker -> its tier now
TIER_PROBLEMS = pytest.StashKey[list[str]]()


def tiers_of(item: pytest.Item) -> list[str]:
    """The tier markers on ``item`` (its own, its class's, its module's), each name once."""
    return sorted({m.name for m in item.iter_markers() if m.name in TIERS})


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker, so that ``-m unit`` sees the default
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        tiers = tiers_of(item)
        if len(tiers) > 1:
            problems.append(f"{item.nodeid}: {len(tiers)} tier markers ({', '.join(tiers)}); a test has one")
        for old, new in RENAMED.items():
            if item.get_closest_marker(old) is not None:
                problems.append(f"{item.nodeid}: marked {old!r}, which is now the {new!r} tier")
        if not tiers:
            item.add_marker(pytest.mark.unit)
    config.stash[TIER_PROBLEMS] = problems


@pytest.fixture(scope="session")
def tier_problems(pytestconfig: pytest.Config) -> list[str]:
    """Collected tests (all of them, before ``-m`` or ``-k`` deselects any) without exactly one tier."""
    return pytestconfig.stash.get(TIER_PROBLEMS, [])
