"""Reliability: bad input ends in one ``error:`` line, a run directory is never clobbered, and
NaN/inf losses are skipped, counted, and stop training before they reach a checkpoint.

Most command-line cases call ``train_main`` in this process (the same code as ``train.py``
minus the interpreter start); two run the real script to check the exit status and stderr.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.cli.train import main as train_main
from seq2seq.data.synthetic import make_dates
from seq2seq.model import checkpoint
from seq2seq.training import stepping
from seq2seq.training import steps as training_steps
from seq2seq.training.loop import DivergedError
from seq2seq.training.trainer import train

pytestmark = pytest.mark.smoke  # every test here trains or runs a command

CONFIG = "configs/dates.yaml"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """``{train,val,test}.{src,tgt}``: 60 + 10 + 10 date pairs, for ``data.source=files``."""
    root = tmp_path / "corpus"
    root.mkdir()
    pairs = make_dates(80, seed=3)
    for split, part in (("train", pairs[:60]), ("val", pairs[60:70]), ("test", pairs[70:])):
        (root / f"{split}.src").write_text("".join(s + "\n" for s, _ in part), encoding="utf-8")
        (root / f"{split}.tgt").write_text("".join(t + "\n" for _, t in part), encoding="utf-8")
    return root


def files_corpus(root: Path) -> list[str]:
    return ["data.source=files", f"data.path={root}"]


def one_error_line(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --- bad input on the command line ----------------------------------------------------------
def case_args(case: str, tmp: Path, corpus: Path) -> tuple[list[str], list[str]]:
    """(train.py arguments, fragments the error line must hold) for each kind of bad input."""
    bad_config = tmp / "bad.yaml"
    if case == "missing-config":
        return ["--config", str(tmp / "nope.yaml")], [f"{tmp / 'nope.yaml'}: config file not found"]
    if case == "unknown-key":
        bad_config.write_text("model:\n  hiden_dim: 64\n")
        return ["--config", str(bad_config)], [f"{bad_config}: model.hiden_dim: unknown key", "hidden_dim"]
    if case == "wrong-type":
        bad_config.write_text("train:\n  lr: fast\n")
        return ["--config", str(bad_config)], [f"{bad_config}: train.lr: must be a number, got 'fast'"]
    if case == "out-of-range":
        return ["model.dropout=1.5"], ["model.dropout: must be in [0, 1), got 1.5"]
    if case == "override-without-value":
        return ["train.lr"], ["train.lr: override must look like section.key=value"]
    if case == "override-unknown-key":
        return ["train.lrate=0.1"], ["train.lrate: unknown key"]
    if case == "missing-corpus":
        empty = tmp / "empty"
        empty.mkdir()
        return files_corpus(empty), [f"{empty / 'train.src'}: file not found"]
    if case == "mismatched-corpus":
        (corpus / "train.tgt").write_text("".join(f"{i}\n" for i in range(59)))
        return files_corpus(corpus), [f"{corpus / 'train.src'} has 60 lines but {corpus / 'train.tgt'} has 59"]
    if case == "empty-corpus":
        (corpus / "train.src").write_text("")
        (corpus / "train.tgt").write_text("")
        return files_corpus(corpus), [f"{corpus / 'train.src'}", "no pairs"]
    if case == "invalid-utf8":
        lines = (corpus / "train.src").read_bytes().split(b"\n")
        lines[6] = b"caf\xe9 " + lines[6]  # Latin-1, not UTF-8
        (corpus / "train.src").write_bytes(b"\n".join(lines))
        return files_corpus(corpus), [f"{corpus / 'train.src'}: line 7: invalid UTF-8", "data.invalid_utf8=skip"]
    if case == "out-under-a-file":
        (tmp / "a-file").write_text("not a directory")
        return ["--out", str(tmp / "a-file" / "run")], [f"{tmp / 'a-file' / 'run'}: output directory is not writable"]
    if case == "out-is-a-file":
        (tmp / "a-file").write_text("not a directory")
        return ["--out", str(tmp / "a-file")], [f"{tmp / 'a-file'}: output directory is not writable"]
    if case == "cuda":
        return ["train.device=cuda"], ["train.device is 'cuda' but CUDA is not available"]
    raise AssertionError(case)


CASES = ["missing-config", "unknown-key", "wrong-type", "out-of-range", "override-without-value",
         "override-unknown-key", "missing-corpus", "mismatched-corpus", "empty-corpus", "invalid-utf8",
         "out-under-a-file", "out-is-a-file",
         pytest.param("cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available"))]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: str, tmp_path: Path, corpus: Path, tiny_overrides: tuple[str, ...],
                   capsys: pytest.CaptureFixture[str]) -> None:
    args, fragments = case_args(case, tmp_path, corpus)
    if "--config" not in args:
        args = ["--config", CONFIG, *args]
    if "--out" not in args:
        args = ["--out", str(tmp_path / "run"), *args]
    assert train_main([*args, *tiny_overrides]) == 1
    one_error_line(capsys.readouterr().err, *fragments)
    assert not (tmp_path / "run" / "config.yaml").exists()
    if case == "cuda":
        assert not (tmp_path / "run").exists()  # refused before the run directory is touched


def test_bad_input_real_script(tmp_path: Path, corpus: Path, tiny_overrides: tuple[str, ...],
                               run_script: Any) -> None:
    """One case through ``train.py`` itself: the exit status and stderr of the real interpreter."""
    args, fragments = case_args("invalid-utf8", tmp_path, corpus)
    done = run_script("train.py", "--config", CONFIG, "--out", str(tmp_path / "run"), *args, *tiny_overrides)
    assert done.returncode == 1
    one_error_line(done.stderr, *fragments)


def test_invalid_utf8_skip(corpus: Path, tmp_path: Path, tiny_config: Any, metrics: Any,
                           capsys: pytest.CaptureFixture[str]) -> None:
    lines = (corpus / "train.tgt").read_bytes().split(b"\n")
    lines[2] = b"\xff\xfe" + lines[2]
    lines[40] = lines[40] + b"\xc3"  # a cut multi-byte sequence
    (corpus / "train.tgt").write_bytes(b"\n".join(lines))
    summary = train(tiny_config(*files_corpus(corpus), "data.invalid_utf8=skip", "train.epochs=1",
                                "train.batch_size=16"), tmp_path / "run")
    out = capsys.readouterr().out
    assert "train: 58 pairs read, 0 empty pairs dropped, 2 pairs with invalid UTF-8 skipped" in out
    assert "train: 58 pairs kept" in out
    assert summary["step"] == 4  # 58 pairs in batches of 16
    assert [r["epoch"] for r in metrics(tmp_path / "run") if "valid/loss" in r] == [1]


# --- the run directory ----------------------------------------------------------------------
def test_existing_run_is_refused_and_kept(trained_run: Path, tmp_path: Path, tiny_overrides: tuple[str, ...],
                                          metrics: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = snapshot(run)
    base = ["--config", CONFIG, "--out", str(run), *tiny_overrides]

    assert train_main(base) == 1
    one_error_line(capsys.readouterr().err, f"{run}: already holds a run", "--resume", "--overwrite")
    assert snapshot(run) == before

    assert train_main([*base, "--resume", "model.hidden_dim=16"]) == 1
    one_error_line(capsys.readouterr().err, f"{run}: holds a run with a different model config")
    assert snapshot(run) == before

    assert train_main([*base, "--overwrite", "train.epochs=1"]) == 0
    assert [r["epoch"] for r in metrics(run) if "valid/loss" in r] == [1]  # the old run's two epochs are gone
    assert snapshot(run) != before

    assert train_main(["--config", CONFIG, "--out", str(tmp_path / "new"), "--resume", *tiny_overrides]) == 1
    one_error_line(capsys.readouterr().err, "nothing to resume")


@pytest.mark.parametrize("bad", [["data.source=files", "data.path=/no/such/corpus"], ["data.max_len=1"]],
                         ids=["data-path-typo", "max-len-filters-all"])
def test_overwrite_that_cannot_start_keeps_the_old_run(bad: list[str], trained_run: Path, tmp_path: Path,
                                                       tiny_overrides: tuple[str, ...],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = snapshot(run)
    assert train_main(["--config", CONFIG, "--out", str(run), "--overwrite", *tiny_overrides, *bad]) == 1
    one_error_line(capsys.readouterr().err)
    assert snapshot(run) == before  # best/, last/, config.yaml and metrics.jsonl, byte for byte
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in trained_run.iterdir())  # nothing hidden


def test_overwrite_that_crashes_keeps_the_old_run(trained_run: Path, tmp_path: Path,
                                                  tiny_overrides: tuple[str, ...], run_script: Any) -> None:
    """An absurd BPE vocabulary size kills the process (the tokenizer library aborts) before the
    new run can start: the old run is still all there."""
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = snapshot(run)
    done = run_script("train.py", "--config", CONFIG, "--out", str(run), "--overwrite", *tiny_overrides,
                      "data.tokenizer=bpe", "data.vocab_size=10000000000000")
    assert done.returncode != 0
    assert snapshot(run) == before


def test_overwrite_replaces_the_whole_old_run(trained_run: Path, tmp_path: Path, tiny_overrides: tuple[str, ...],
                                              metrics: Any) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / "best").rename(run / "best.old")  # as a crash mid-swap leaves it
    assert train_main(["--config", CONFIG, "--out", str(run), "--overwrite", *tiny_overrides,
                       "train.epochs=1"]) == 0
    assert [r["epoch"] for r in metrics(run) if "valid/loss" in r] == [1]
    assert sorted(p.name for p in run.iterdir()) == ["best", "config.yaml", "last", "metrics.jsonl"]


def test_overwrite_cut_short_by_a_crash_is_undone(trained_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Killed after the old run was moved aside but before the new run wrote its config.yaml:
    the next start puts the old run back, so the replacement happened entirely or not at all."""
    from seq2seq.training.rundir import replace_run

    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    before = snapshot(run)
    replace_run(run)
    assert not (run / "last").exists()
    assert train_main(["--out", str(run), "--resume"]) == 0
    assert "training already finished" in capsys.readouterr().out
    assert snapshot(run) == before
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in trained_run.iterdir())


@pytest.mark.parametrize("damage", ["empty", "truncated", "not-a-mapping"])
def test_resume_refuses_a_damaged_run_config(damage: str, trained_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text({"empty": "", "truncated": text[: text.index("model:")],
                                      "not-a-mapping": "- data\n"}[damage])
    before = snapshot(run)
    assert train_main(["--out", str(run), "--resume", "train.epochs=3"]) == 1
    one_error_line(capsys.readouterr().err, str(run / "config.yaml"))
    assert snapshot(run) == before  # config.yaml is not rewritten with defaults


def test_a_failed_resume_does_not_rewrite_the_run_config(trained_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / "last" / "trainer.json").write_text("{}")  # a trainer state without progress
    before = snapshot(run)
    assert train_main(["--out", str(run), "--resume", "train.epochs=3"]) == 1
    one_error_line(capsys.readouterr().err, "trainer.json", "cannot resume")
    assert snapshot(run) == before


def test_resume_before_the_first_checkpoint_starts_from_the_beginning(trained_run: Path, tmp_path: Path,
                                                                      metrics: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Killed before its first checkpoint: config.yaml and metrics.jsonl, no last/. The same
    ``--resume`` command trains the run from step 0, as if it had never started."""
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    shutil.rmtree(run / "last")
    shutil.rmtree(run / "best")
    assert train_main(["--out", str(run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"{run}: no checkpoint saved yet; starting the run from the beginning" in out
    assert [r["epoch"] for r in metrics(run) if "valid/loss" in r] == [1, 2]  # the killed run's records dropped
    assert [r["train/loss"] for r in metrics(run) if "train/loss" in r] == \
        pytest.approx([r["train/loss"] for r in metrics(trained_run) if "train/loss" in r])
    assert checkpoint.load_trainer(run / "last")[1]["progress"]["epoch"] == 2


# --- NaN / inf losses -------------------------------------------------------------------------
def poison_training_loss(monkeypatch: pytest.MonkeyPatch, bad_calls: Any, value: float = float("nan")) -> None:
    """Make the training loss ``value`` on the training steps (1-based) in ``bad_calls``."""
    real, calls = training_steps.sequence_loss, []

    def loss(logits: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        result = real(logits, tgt_out, label_smoothing)
        if not logits.requires_grad:  # validation
            return result
        calls.append(1)
        return result * value if len(calls) in bad_calls else result

    monkeypatch.setattr(training_steps, "sequence_loss", loss)


def test_nan_steps_are_skipped_and_counted(tmp_path: Path, tiny_config: Any, metrics: Any,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    poison_training_loss(monkeypatch, {2, 4})  # never two in a row, so max_bad_steps=2 is not reached
    summary = train(tiny_config("train.max_bad_steps=2", "train.log_every=1"), tmp_path / "run")
    assert (summary["step"], summary["skipped_steps"]) == (4, 2)  # 6 batches, 2 skipped
    records = metrics(tmp_path / "run")
    assert [r["train/skipped_steps"] for r in records if "valid/loss" in r] == [1, 2]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4]
    err = capsys.readouterr().err
    assert err.count("non-finite loss or gradient") == 2
    last = checkpoint.load(tmp_path / "run" / "last")
    assert all(torch.isfinite(p).all() for p in last.model.parameters())


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path: Path, tiny_config: Any,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(tiny_config("train.epochs=1"), run)
    before = snapshot(run / "last")
    capsys.readouterr()

    poison_training_loss(monkeypatch, range(1, 1000), value=float("inf"))
    assert train_main(["--out", str(run), "--resume", "train.epochs=3", "train.max_bad_steps=2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[:2] == ["warning: non-finite loss or gradient at step 3; step skipped"] * 2
    assert len(err) == 3 and "Traceback" not in "\n".join(err)
    assert err[2].startswith("error: loss was NaN/inf for 2 steps in a row (step 3); stopped.")
    assert str(run / "last") in err[2]
    assert snapshot(run / "last") == before  # byte for byte


# --- NaN / inf weights -----------------------------------------------------
def poison_weights_after(monkeypatch: pytest.MonkeyPatch, step: int, everything: bool = False) -> None:
    """After training step ``step`` (1-based), set one weight the loss never reads to NaN: the
    source embedding of ``<unk>``, which the char tokenizer never emits, so losses stay finite.
    ``everything``: every weight instead."""
    real, calls = stepping.train_step, []

    def train_step(net: Any, *args: Any, **kwargs: Any) -> Any:
        result = real(net, *args, **kwargs)
        calls.append(1)
        if len(calls) == step:
            with torch.no_grad():
                if everything:
                    for p in net.parameters():
                        p.fill_(float("nan"))
                else:
                    net.model.src_embed.weight[3, 0] = float("nan")
        return result

    monkeypatch.setattr(stepping, "train_step", train_step)


@pytest.mark.parametrize("log_every", [1, 100], ids=["at-the-log", "at-validation"])
def test_non_finite_weights_with_finite_losses_keep_the_last_good_checkpoint(
        log_every: int, tmp_path: Path, tiny_config: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    train(tiny_config("train.epochs=1"), run)
    before = {name: snapshot(run / name) for name in ("best", "last")}
    capsys.readouterr()

    poison_weights_after(monkeypatch, 2)  # the second step of the resumed run: step 5 in all
    assert train_main(["--out", str(run), "--resume", "train.epochs=3", f"train.log_every={log_every}"]) == 1
    line = one_error_line(capsys.readouterr().err, "weights became NaN/inf (tensor src_embed.weight)",
                          f"The last good checkpoint is {run / 'last'}")
    assert ("by step 5" if log_every == 1 else "by step 6") in line  # at the log, or before validating
    assert {name: snapshot(run / name) for name in ("best", "last")} == before  # byte for byte


def test_weights_gone_non_finite_stop_before_any_checkpoint(tmp_path: Path, tiny_overrides: tuple[str, ...],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A finite loss at step 1 whose update makes every weight NaN (as train.lr=inf did): the
    run used to save best/ and last/ of NaN weights and, with one epoch, exit 0."""
    poison_weights_after(monkeypatch, 1, everything=True)
    run = tmp_path / "run"
    assert train_main(["--config", CONFIG, "--out", str(run), *tiny_overrides, "train.epochs=1"]) == 1
    line = one_error_line(capsys.readouterr().err, "weights became NaN/inf", "by step 1")
    assert "No checkpoint was written yet" in line
    assert not (run / "best").exists() and not (run / "last").exists()


# --- standard output that cannot be written ---------------------------------------------------
@pytest.mark.parametrize("command", [["translate.py"], ["-m", "seq2seq", "evaluate"]], ids=["translate", "evaluate"])
def test_a_closed_stdout_is_refused_before_decoding(command: list[str], trained_run: Path, tmp_path: Path) -> None:
    """``>&-``: Python's print would drop every line and exit 0; refused in one line instead."""
    import subprocess
    import sys

    src = tmp_path / "in.txt"
    src.write_text("1999/01/02\n")
    extra = ["--input", str(src)] if command == ["translate.py"] else []
    done = subprocess.run([sys.executable, *command, "--checkpoint", str(trained_run / "best"), *extra],
                          cwd=Path(__file__).resolve().parent.parent, stdout=None, stderr=subprocess.PIPE,
                          text=True, timeout=120, preexec_fn=lambda: os.close(1))
    assert done.returncode == 1
    want = "--output FILE" if command == ["translate.py"] else "--json FILE"
    one_error_line(done.stderr, "standard output is closed", want)


def test_a_full_stdout_is_named(trained_run: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    src = tmp_path / "in.txt"
    src.write_text("1999/01/02\n")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "translate.py", "--checkpoint", str(trained_run / "best"),
                               "--input", str(src)], cwd=Path(__file__).resolve().parent.parent, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    one_error_line(done.stderr, "standard output: No space left on device")


# --- temporary outputs ---------------------------------------------------------------------------
def test_sigterm_during_translate_keeps_the_old_output_and_leaves_no_temporary(trained_run: Path,
                                                                                tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("1999/01/02\n" * 200_000)
    out.write_text("earlier output\n")
    proc = subprocess.Popen([sys.executable, "translate.py", "--checkpoint", str(trained_run / "best"),
                             "--input", str(src), "--output", str(out), "--beam", "1"],
                            cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.txt.*.tmp")):  # decoding has begun: its temporary file exists
        assert proc.poll() is None and time.monotonic() < deadline, "translate ended before it could be stopped"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and err.strip() == "terminated", err
    assert out.read_text() == "earlier output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_a_temporary_output_left_by_kill9_is_removed_by_the_next_write(tmp_path: Path) -> None:
    import subprocess
    import sys

    from seq2seq.cli.outputs import open_output

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.txt.{dead.stdout.strip()}.tmp"  # that process has exited: its pid is free
    alive = tmp_path / f".out.txt.{os.getppid()}.tmp"  # a live process's: maybe still writing, kept
    other = tmp_path / ".other.txt.1.tmp"
    for p in (stale, alive, other):
        p.write_text("half written")
    with open_output(tmp_path / "out.txt") as f:
        f.write("new\n")
    assert (tmp_path / "out.txt").read_text() == "new\n"
    assert not stale.exists() and alive.exists() and other.exists()


def test_overwrite_replaces_the_old_runs_wandb_folder_too(trained_run: Path, tmp_path: Path,
                                                          tiny_overrides: tuple[str, ...]) -> None:
    """The old run's offline W&B files would otherwise sit beside the new run's, to be synced as one."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "wandb" / "offline-run-old").mkdir(parents=True)
    assert train_main(["--config", CONFIG, "--out", str(run), *tiny_overrides, "--overwrite"]) == 0
    assert not (run / "wandb").exists() and (run / "best").is_dir()


def test_an_optimizer_state_gone_inf_is_never_saved(tmp_path: Path, tiny_config: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Huge finite gradients overflow Adam's second moment to inf: the update is then 0, the
    weights stay finite, and training would go on silently stuck. Stopped at the save instead."""
    real = stepping.train_step

    def overflowing(net: Any, batch: Any, optimizer: torch.optim.Optimizer, *args: Any) -> Any:
        result = real(net, batch, optimizer, *args)
        for state in optimizer.state.values():
            state["exp_avg_sq"].fill_(float("inf"))
        return result

    monkeypatch.setattr(stepping, "train_step", overflowing)
    with pytest.raises(DivergedError, match="optimizer state became NaN/inf"):
        train(tiny_config("train.epochs=1"), tmp_path / "run")
    assert not (tmp_path / "run" / "last").exists()
