"""Training: smoke runs of every model variant, a "learns" threshold, seeding, resume, signals, W&B.

Runs are tiny (a few hundred synthetic date pairs, hidden size 32) and in-process where the
point is the loop's logic; the kill/signal/W&B tests run the real ``train.py`` in a subprocess.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from seq2seq.cli.train import main as train_main
from seq2seq.config import load_config
from seq2seq.data.batching import make_batches
from seq2seq.model import checkpoint
from seq2seq.training import stepping, validation
from seq2seq.training import steps as training_steps
from seq2seq.training.batches import prepare_data
from seq2seq.training.trainer import train

ROOT = Path(__file__).resolve().parent.parent

# Long enough to interrupt: 1080 training pairs in 34 batches an epoch, 102 steps, one record each;
# dropout, so that resuming must also restore the random number generator.
RESUME = ("data.size=1200", "train.batch_size=32", "train.epochs=3", "train.log_every=1",
          "train.valid_max_sentences=40", "model.dropout=0.1")
STEPS_PER_EPOCH = 34


def trainer_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / checkpoint.TRAINER_JSON).read_text())


def adam_steps(ckpt: Path) -> float:
    """Adam's own step count for the first parameter, from a saved ``last/``."""
    return float(load_file(str(ckpt / checkpoint.TRAINER_TENSORS))["optim.0.step"])


def curve(records: list[dict[str, Any]], key: str = "train/loss") -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if key in r]


def assert_same_curves(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Train loss step by step and validation loss epoch by epoch agree to 1e-6 (relative)."""
    for key in ("train/loss", "valid/loss"):
        a, b = curve(got, key), curve(want, key)
        assert [s for s, _ in a] == [s for s, _ in b], key
        for (step, x), (_, y) in zip(a, b):
            assert x == pytest.approx(y, rel=1e-6), f"{key} differs at step {step}"


def check_finished_run(out: Path, records: list[dict[str, Any]], steps: int) -> None:
    for sub in ("best", "last"):
        assert (out / sub / checkpoint.MODEL_FILE).is_file(), sub
    losses = [x for _, x in curve(records)]
    assert losses and all(math.isfinite(x) for x in losses)
    assert curve(records)[-1][0] == steps
    valid = [r for r in records if "valid/loss" in r]
    assert valid and all(math.isfinite(r["valid/loss"]) for r in valid)
    assert not (out / "wandb").exists()  # WANDB_MODE=disabled (conftest) writes no W&B run


# --- smoke: two optimizer steps of every variant -------------------------------------------
@pytest.mark.smoke
@pytest.mark.parametrize(("cell", "peeky", "reverse"), list(itertools.product(["lstm", "gru", "rnn"],
                                                                           [True, False], [True, False])))
def test_two_steps_every_cell(cell: str, peeky: bool, reverse: bool, tmp_path: Path, tiny_config: Any,
                              metrics: Any) -> None:
    cfg = tiny_config(f"model.cell={cell}", f"model.peeky={str(peeky).lower()}",
                      f"data.reverse_source={str(reverse).lower()}", "train.max_steps=2", "train.log_every=1")
    summary = train(cfg, tmp_path / "run")
    assert summary["step"] == 2
    records = metrics(tmp_path / "run")
    check_finished_run(tmp_path / "run", records, steps=2)
    assert [s for s, _ in curve(records)] == [1, 2]
    loaded = checkpoint.load(tmp_path / "run" / "best")
    assert (loaded.config.model.cell, loaded.config.model.peeky, loaded.config.data.reverse_source) == \
        (cell, peeky, reverse)
    # The peeky decoder reads [embedding; context] at every step; the plain one the embedding only.
    ih = loaded.model.decoder.rnn.weight_ih_l0
    assert ih.shape[1] == cfg.model.embed_dim + (cfg.model.hidden_dim if peeky else 0)
    assert trainer_state(tmp_path / "run" / "last")["progress"]["step"] == 2


@pytest.mark.smoke
def test_scheduled_sampling_path(tmp_path: Path, tiny_config: Any, metrics: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = training_steps.scheduled_sampling_logits

    def spy(model: Any, batch: Any, ratio: float) -> Any:
        calls.append(ratio)
        return real(model, batch, ratio)

    monkeypatch.setattr(training_steps, "scheduled_sampling_logits", spy)
    train(tiny_config("train.teacher_forcing=0.5", "train.max_steps=2", "train.log_every=1"), tmp_path / "run")
    assert calls == [0.5, 0.5]
    records = metrics(tmp_path / "run")
    check_finished_run(tmp_path / "run", records, steps=2)
    assert [r["train/teacher_forcing"] for r in records if "train/loss" in r] == [0.5, 0.5]


@pytest.mark.smoke
def test_label_smoothing_reaches_the_training_loss_only(tmp_path: Path, tiny_config: Any, metrics: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, float]] = []
    real = training_steps.sequence_loss

    def spy(logits: Any, tgt_out: Any, label_smoothing: float = 0.0) -> Any:
        seen.append((logits.requires_grad, label_smoothing))
        return real(logits, tgt_out, label_smoothing)

    monkeypatch.setattr(training_steps, "sequence_loss", spy)  # the training steps' loss
    monkeypatch.setattr(validation, "sequence_loss", spy)  # and validation's
    train(tiny_config("train.label_smoothing=0.1", "train.max_steps=2"), tmp_path / "run")
    check_finished_run(tmp_path / "run", metrics(tmp_path / "run"), steps=2)
    assert [s for grad, s in seen if grad] == [0.1, 0.1]  # the two training steps
    assert {s for grad, s in seen if not grad} == {0.0}  # validation loss is plain cross-entropy


@pytest.mark.smoke
def test_cosine_schedule(tmp_path: Path, tiny_config: Any, metrics: Any) -> None:
    cfg = tiny_config("train.lr_schedule=cosine", "train.max_steps=3", "train.log_every=1")
    train(cfg, tmp_path / "run")
    lrs = [r["train/lr"] for r in metrics(tmp_path / "run") if "train/lr" in r]
    lr = cfg.train.lr  # cosine over 3 steps: factors 1, (1 + cos(pi/3)) / 2, (1 + cos(2 pi/3)) / 2
    assert lrs == pytest.approx([lr, 0.75 * lr, 0.25 * lr], rel=1e-9)


@pytest.mark.smoke
def test_max_tokens_batching(tmp_path: Path, tiny_config: Any, metrics: Any) -> None:
    cfg = tiny_config("train.max_tokens=600", "train.epochs=1", "train.log_every=1")
    expected = len(make_batches(prepare_data(cfg).train, batch_size=cfg.train.batch_size,
                                max_tokens=600, reverse=False, shuffle=False))
    assert expected > 3  # more batches than the 3 that batch_size=128 gives
    summary = train(cfg, tmp_path / "run")
    assert summary["step"] == expected
    check_finished_run(tmp_path / "run", metrics(tmp_path / "run"), steps=expected)


@pytest.mark.smoke
@pytest.mark.parametrize(("overrides", "tensor"), [
    (["model.attention=luong"], "decoder.attention.score.weight"),
    (["model.bidirectional=true"], "encoder.bridge.weight"),
    (["model.bidirectional=true", "model.attention=luong", "model.cell=gru", "model.num_layers=2",
      "model.dropout=0.2", "model.tie_embeddings=true"], "decoder.pre_output.weight"),
], ids=["luong", "bidirectional", "everything"])
def test_two_steps_model_options(overrides: list[str], tensor: str, tmp_path: Path, tiny_config: Any,
                                 metrics: Any) -> None:
    train(tiny_config(*overrides, "train.max_steps=2"), tmp_path / "run")
    check_finished_run(tmp_path / "run", metrics(tmp_path / "run"), steps=2)
    weights = load_file(str(tmp_path / "run" / "best" / checkpoint.MODEL_FILE))
    assert tensor in weights
    checkpoint.load(tmp_path / "run" / "best")  # and it loads back into the model it describes


# --- learns ---------------------------------------------------------------------------
@pytest.mark.learns
def test_learns_dates(tmp_path: Path, tiny_config: Any, metrics: Any) -> None:
    """A few seconds of training take validation BLEU from ~0.5 (untrained) past 20."""
    cfg = tiny_config("data.size=3000", "data.reverse_source=false", "model.attention=luong",
                      "model.hidden_dim=64", "model.embed_dim=16", "train.batch_size=32", "train.lr=0.01",
                      "train.epochs=4", "train.log_every=1000", "train.valid_max_sentences=100",
                      "decode.batch_size=256")
    summary = train(cfg, tmp_path / "run")
    valid = [r for r in metrics(tmp_path / "run") if "valid/bleu" in r]
    assert [r["epoch"] for r in valid] == [1, 2, 3, 4]
    assert valid[-1]["valid/bleu"] > 20.0, valid[-1]
    assert valid[-1]["valid/loss"] < 0.6  # per token; an untrained model has about log(271) = 5.6
    assert summary["best"] == max(r["valid/bleu"] for r in valid)


# --- reproducibility --------------------------------------------------------------------
@pytest.mark.smoke
def test_same_seed_same_run(tmp_path: Path, tiny_config: Any, metrics: Any) -> None:
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(tiny_config(f"train.seed={seed}", "train.log_every=1", "model.dropout=0.1"), tmp_path / name)
        runs[name] = metrics(tmp_path / name)
    assert len(curve(runs["a"])) == 6
    assert curve(runs["a"]) == curve(runs["b"])  # exactly equal, not approximately
    assert curve(runs["a"], "valid/loss") == curve(runs["b"], "valid/loss")
    model = f"last/{checkpoint.MODEL_FILE}"
    assert (tmp_path / "a" / model).read_bytes() == (tmp_path / "b" / model).read_bytes()
    assert curve(runs["a"]) != curve(runs["c"])  # and the seed does matter


# --- resume -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_config: Any, metrics: Any) -> list[dict[str, Any]]:
    """The metrics of an uninterrupted RESUME run, to compare interrupted ones against."""
    out = tmp_path_factory.mktemp("reference") / "run"
    summary = train(tiny_config(*RESUME), out)
    assert (summary["epoch"], summary["step"]) == (3, 3 * STEPS_PER_EPOCH)
    assert adam_steps(out / "last") == 3 * STEPS_PER_EPOCH
    return metrics(out)


def check_history(records: list[dict[str, Any]]) -> None:
    """Each epoch validated exactly once, in order; every step's train record exactly once."""
    assert [r["epoch"] for r in records if "valid/loss" in r] == [1, 2, 3]
    assert [s for s, _ in curve(records)] == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)


@pytest.mark.smoke
def test_resume_at_epoch_boundary(tmp_path: Path, tiny_config: Any, metrics: Any,
                                  reference: list[dict[str, Any]]) -> None:
    out = tmp_path / "run"
    train(tiny_config(*RESUME, "train.epochs=1"), out)
    progress = trainer_state(out / "last")["progress"]
    assert (progress["epoch"], progress["batch_in_epoch"], progress["step"]) == (1, 0, STEPS_PER_EPOCH)
    summary = train(tiny_config(*RESUME), out, resume=True)  # the same run, asked for 3 epochs now
    assert (summary["epoch"], summary["step"]) == (3, 3 * STEPS_PER_EPOCH)  # counts continue
    assert load_config(out / "config.yaml").train.epochs == 3  # a plain --resume later goes on to 3 too
    assert adam_steps(out / "last") == 3 * STEPS_PER_EPOCH  # the optimizer state was restored
    check_history(metrics(out))
    assert_same_curves(metrics(out), reference)


def sigterm_at(stop_at: int, cfg: Any, out: Path, monkeypatch: pytest.MonkeyPatch, step: str = "train_step") -> None:
    """Train until a real SIGTERM, sent to this process by training step ``stop_at``, stops it.
    ``step``: the step function the run calls (``static_step`` with ``train.static_shapes``)."""
    real, calls = getattr(stepping, step), []

    def step_then_signal(*args: Any) -> Any:
        result = real(*args)
        calls.append(1)
        if len(calls) == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    def missed(signum: int, frame: Any) -> None:  # if training does not catch it, this process must not die
        raise AssertionError("SIGTERM reached the handler that was in place before training started")

    monkeypatch.setattr(stepping, step, step_then_signal)
    previous = signal.signal(signal.SIGTERM, missed)
    try:
        with pytest.raises(SystemExit) as stopped:
            train(cfg, out)
        assert signal.getsignal(signal.SIGTERM) is missed  # training put the handler back
    finally:
        signal.signal(signal.SIGTERM, previous)
        monkeypatch.setattr(stepping, step, real)
    assert stopped.value.code == 128 + signal.SIGTERM


@pytest.mark.smoke
def test_resume_mid_epoch_after_sigterm(tmp_path: Path, tiny_config: Any, metrics: Any,
                                        reference: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Stopped by SIGTERM 15 batches into epoch 2, resumed from there."""
    out, stop_at = tmp_path / "run", STEPS_PER_EPOCH + 15
    sigterm_at(stop_at, tiny_config(*RESUME), out, monkeypatch)
    assert f"SIGTERM: saved {out / 'last'} at step {stop_at}" in capsys.readouterr().err
    progress = trainer_state(out / "last")["progress"]
    assert (progress["epoch"], progress["batch_in_epoch"], progress["step"]) == (1, 15, stop_at)

    summary = train(tiny_config(*RESUME), out, resume=True)
    assert (summary["epoch"], summary["step"]) == (3, 3 * STEPS_PER_EPOCH)
    check_history(metrics(out))
    assert_same_curves(metrics(out), reference)


@pytest.mark.smoke
def test_no_training_loss_is_lost_when_stopping(tmp_path: Path, tiny_config: Any, metrics: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The steps since the last train/loss record are logged when training ends between records
    (max_steps); a stop by a signal keeps them in last/ instead, and the resumed run's next
    record covers them, so the curve equals an uninterrupted run's (no extra partial record)."""
    train(tiny_config("train.max_steps=3", "train.log_every=2"), tmp_path / "max_steps")
    assert [s for s, _ in curve(metrics(tmp_path / "max_steps"))] == [2, 3]

    cfg = tiny_config("train.log_every=4")  # 3 batches an epoch: records at steps 3, 4 and 6
    train(cfg, tmp_path / "uninterrupted")
    sigterm_at(5, cfg, tmp_path / "run", monkeypatch)
    assert [s for s, _ in curve(metrics(tmp_path / "run"))] == [3, 4]
    train(cfg, tmp_path / "run", resume=True)
    assert curve(metrics(tmp_path / "run")) == curve(metrics(tmp_path / "uninterrupted"))  # exact, fp32 CPU


@pytest.mark.smoke
def test_reset_optimizer(tmp_path: Path, tiny_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    sigterm_at(STEPS_PER_EPOCH + 15, tiny_config(*RESUME), out, monkeypatch)
    assert adam_steps(out / "last") == STEPS_PER_EPOCH + 15
    summary = train(tiny_config(*RESUME, "train.epochs=2"), out, resume=True, reset_optimizer=True)
    assert (summary["epoch"], summary["step"]) == (2, 2 * STEPS_PER_EPOCH)  # the run goes on where it was
    assert adam_steps(out / "last") == STEPS_PER_EPOCH - 15  # but Adam started over at the resume


def start_training(out: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "train.py", "--out", str(out), *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=f)


def wait_for(ready: Any, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"training ended (status {proc.returncode}) before it could be interrupted"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.smoke
def test_kill9_then_sigint_then_resume(tmp_path: Path, tiny_overrides: tuple[str, ...], metrics: Any,
                                       reference: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    """The real script, killed -9 in epoch 2, resumed, stopped by Ctrl-C (SIGINT) in epoch 2 and
    resumed again, ends with the same history and losses as a run never interrupted."""
    out, log = tmp_path / "run", tmp_path / "stderr"
    proc = start_training(out, "--config", "configs/dates.yaml", *tiny_overrides, *RESUME, log=log)
    wait_for(lambda: (out / "last").is_dir(), proc)  # epoch 1 is saved; epoch 2 is running
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    killed = trainer_state(checkpoint.resolve(out / "last"))["progress"]
    assert not killed["done"] and killed["step"] < 3 * STEPS_PER_EPOCH and killed["batch_in_epoch"] == 0
    stale = (out / "metrics.jsonl").stat().st_ino

    def trained_past_the_checkpoint() -> bool:  # in the resumed run's own metrics, not the killed run's
        if (out / "metrics.jsonl").stat().st_ino == stale:
            return False
        try:
            return any(r["step"] > killed["step"] for r in metrics(out))
        except ValueError:  # a line being written
            return False

    proc = start_training(out, "--resume", log=log)  # with the run's own config.yaml
    wait_for(trained_past_the_checkpoint, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 128 + signal.SIGINT
    err = log.read_text().strip().splitlines()
    assert err[-1].startswith(f"SIGINT: saved {out / 'last'} at step "), err[-3:]
    assert "Traceback" not in "\n".join(err)
    step = int(err[-1].split(" at step ")[1].split(";")[0])
    stopped = trainer_state(out / "last")["progress"]
    assert stopped["step"] == step > killed["step"]  # saved when the signal came, not at an epoch's end
    assert step == STEPS_PER_EPOCH * stopped["epoch"] + stopped["batch_in_epoch"]

    assert train_main(["--out", str(out), "--resume"]) == 0
    assert "done: best valid BLEU" in capsys.readouterr().out
    records = metrics(out)
    check_history(records)  # nothing lost, nothing twice
    assert_same_curves(records, reference)
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.old"))


# --- tracking ---------------------------------------------------------------------------
@pytest.mark.smoke
def test_wandb_offline_and_disabled(tmp_path: Path, tiny_overrides: tuple[str, ...], tiny_config: Any,
                                    metrics: Any) -> None:
    """tracking.wandb=offline writes an offline run under the run directory, quickly and without a
    network; WANDB_MODE=disabled (this process, see conftest) wins over the config and writes none."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    env.update(WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
               WANDB_DATA_DIR=str(tmp_path / "wandb-data"))
    out = tmp_path / "offline"
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "train.py", "--config", "configs/dates.yaml", "--out", str(out),
                           *tiny_overrides, "train.epochs=1", "tracking.wandb=offline"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert seconds < 60, f"an offline W&B run took {seconds:.0f} s"
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb")), list((out / "wandb").iterdir())
    assert [r["epoch"] for r in metrics(out) if "valid/loss" in r] == [1]

    train(tiny_config("train.epochs=1", "tracking.wandb=offline"), tmp_path / "disabled")
    assert not (tmp_path / "disabled" / "wandb").exists()
    assert [r["epoch"] for r in metrics(tmp_path / "disabled") if "valid/loss" in r] == [1]
