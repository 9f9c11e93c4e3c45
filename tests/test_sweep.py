"""Sweeps and plots: grid expansion and names, sweep-file errors, a tiny real sweep end to end
(table, CSV, PNGs), skipping finished runs on a re-run, and the hidden-state plot."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from seq2seq.config import ConfigError
from seq2seq.tools.sweep.command import run_sweep
from seq2seq.tools.sweep.spec import expand_grid, load_sweep

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_sweep(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"base: {ROOT / 'configs' / 'dates.yaml'}\n{body}", encoding="utf-8")
    return path


# --- grid and names ------------------------------------------------------------------------
def test_grid_is_the_product_with_labels_of_non_first_values() -> None:
    grid = expand_grid({"data.reverse_source": {"plain": False, "reversed": True},
                        "model.peeky": {"plain": False, "peeky": True}})
    assert [name for name, _ in grid] == ["plain", "peeky", "reversed", "reversed+peeky"]
    assert grid[3][1] == {"data.reverse_source": True, "model.peeky": True}
    assert grid[0][1] == {"data.reverse_source": False, "model.peeky": False}


def test_list_axes_are_named_key_equals_value() -> None:
    grid = expand_grid({"model.cell": ["lstm", "gru", "rnn"], "model.peeky": [True, False]})
    assert len(grid) == 6
    names = [name for name, _ in grid]
    assert names[0] == "cell=lstm+peeky=true"  # all-first: every first label
    assert names[1] == "peeky=false"
    assert names[2] == "cell=gru"
    assert names[5] == "cell=rnn+peeky=false"
    assert grid[5][1] == {"model.cell": "rnn", "model.peeky": False}


def test_load_sweep_builds_configs_tags_and_named_variants(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, """
name: demo
overrides: {model.hidden_dim: 16}
axes:
  model.peeky: {plain: false, peeky: true}
variants:
  - {name: gru, overrides: {model.cell: gru}}
quick: {train.epochs: 1}
""")
    sweep = load_sweep(path, quick=True, extra=["train.lr=0.5"])
    assert [v.name for v in sweep.variants] == ["plain", "peeky", "gru"]
    plain, peeky, gru = (v.config for v in sweep.variants)
    assert (plain.model.peeky, peeky.model.peeky, gru.model.cell) == (False, True, "gru")
    assert all(c.model.hidden_dim == 16 and c.train.epochs == 1 and c.train.lr == 0.5
               for c in (plain, peeky, gru))
    assert peeky.tracking.group == "demo" and peeky.tracking.name == "peeky"
    assert peeky.tracking.tags == ("peeky=true",)
    assert load_sweep(path).variants[0].config.train.epochs == 8  # no --quick: the base value


# --- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("body, words", [
    ("axes: {model.celll: [lstm, gru]}\n", ["model.celll", "unknown key"]),
    ("axes: {modle.cell: [lstm, gru]}\n", ["modle.cell", "unknown key"]),
    ("axes: {peeky: [true, false]}\n", ["peeky", "unknown key"]),
    ("axes: {model.cell: [lstm, lstmm]}\n", ["model.cell", "lstmm"]),
    ("variants: [{name: a, overrides: {train.lrr: 1}}]\n", ["train.lrr"]),
    ("axes: {model.peeky: [true]}\nsweeps: 3\n", ["sweeps", "unknown key"]),
    ("variants: [{name: a}, {name: a}]\n", ["'a'", "twice"]),
    ("variants: [{name: 'a b'}]\n", ["'a b'"]),
    ("axes: {model.peeky: [true]}\nmetric: accuracy\n", ["metric", "accuracy"]),
    ("axes: {model.peeky: [true]}\nreference: {nope: 1}\n", ["reference", "nope"]),
    ("name: x\n", ["no variants"]),
])
def test_sweep_file_errors_are_one_line_and_name_the_key(tmp_path: Path, body: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_sweep(write_sweep(tmp_path, body))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_base_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("axes: {model.peeky: [true]}\n")
    with pytest.raises(ConfigError, match="base"):
        load_sweep(path)
    path.write_text("axes: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_sweep(path)


# --- a tiny real sweep -----------------------------------------------------------------------
TINY = """
name: tiny
overrides: {data.size: 300, model.hidden_dim: 16, model.embed_dim: 8, train.epochs: 2, train.max_steps: 4,
            train.log_every: 1, train.progress: false, decode.beam_size: 1, decode.batch_size: 64,
            tracking.wandb: disabled}
axes:
  model.peeky: {plain: false, peeky: true}
metric: exact_match
length_unit: chars
length_edges: [12, 20]
"""


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    out = tmp / "out"
    run_sweep(load_sweep(write_sweep(tmp, TINY)), out)
    return out


@pytest.mark.smoke
def test_tiny_sweep_writes_table_csv_and_plots(tiny_sweep: Path) -> None:
    rows = list(csv.DictReader((tiny_sweep / "results.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["variant"] for r in rows] == ["plain", "peeky"]
    assert [r["peeky"] for r in rows] == ["false", "true"]
    for row in rows:
        assert row["status"] == "finished"
        assert int(row["params"]) > 0
        assert 0.0 <= float(row["test_exact_match"]) <= 100.0
        assert float(row["test_bleu"]) >= 0.0 and row["valid_chrf"] != ""
    assert int(rows[1]["params"]) > int(rows[0]["params"])  # peeky feeds the context to every step
    table = (tiny_sweep / "results.md").read_text()
    assert table.splitlines()[0].startswith("| variant | peeky | params |")
    assert "| plain | false |" in table and "| peeky | true |" in table
    for name in ("curves", "final", "by_length", "grad_norm"):
        png = tiny_sweep / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000, name
    test = json.loads((tiny_sweep / "peeky" / "test.json").read_text())
    assert sum(b["n"] for b in test["buckets"]) == test["n"] == 15
    assert [b["label"] for b in test["buckets"]][0] == "1-12"
    run_config = (tiny_sweep / "peeky" / "config.yaml").read_text()
    assert "group: tiny" in run_config and "name: peeky" in run_config


@pytest.mark.smoke
def test_rerun_skips_finished_runs_and_resumes_unfinished(tiny_sweep: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    shutil.copytree(tiny_sweep, out)
    before = (out / "plain" / "metrics.jsonl").read_text()
    shutil.rmtree(out / "peeky")  # as if the sweep had been stopped before this variant
    capsys.readouterr()
    run_sweep(load_sweep(write_sweep(tmp_path, TINY)), out)
    log = capsys.readouterr().out
    assert "== plain: already finished, skipped" in log
    assert "== peeky: training" in log
    assert (out / "plain" / "metrics.jsonl").read_text() == before  # untouched
    assert (out / "peeky" / "best").is_dir() and (out / "results.md").exists()


@pytest.mark.smoke
def test_rerun_with_another_config_is_refused(tiny_sweep: Path, tmp_path: Path) -> None:
    from seq2seq.training.loop import TrainError

    out = tmp_path / "out"
    shutil.copytree(tiny_sweep, out)
    changed = TINY.replace("model.hidden_dim: 16", "model.hidden_dim: 24")
    with pytest.raises(TrainError, match="hidden_dim"):
        run_sweep(load_sweep(write_sweep(tmp_path, changed)), out)


@pytest.mark.smoke
def test_more_epochs_continue_a_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = TINY.replace(" train.max_steps: 4,", "").replace("train.epochs: 2", "train.epochs: 1").replace(
        "{plain: false, peeky: true}", "{peeky: true}")
    out = tmp_path / "out"
    run_sweep(load_sweep(write_sweep(tmp_path, body)), out)
    run_sweep(load_sweep(write_sweep(tmp_path, body.replace("train.epochs: 1", "train.epochs: 2"))), out)
    assert "== peeky: resuming" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["epochs"] for r in rows] == ["2"]


@pytest.mark.smoke
def test_a_diverged_run_is_a_result_and_is_not_retrained(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.training import steps as training_steps

    real = training_steps.sequence_loss
    # Every training loss NaN (no finite train.lr can be relied on to overflow a tiny model).
    monkeypatch.setattr(training_steps, "sequence_loss",
                        lambda logits, tgt, ls=0.0: real(logits, tgt, ls) * float("nan") if logits.requires_grad
                        else real(logits, tgt, ls))
    body = TINY.replace("{plain: false, peeky: true}", "{boom: true}").replace(
        "tracking.wandb: disabled}", "tracking.wandb: disabled, train.max_bad_steps: 2}")
    out = tmp_path / "out"
    run_sweep(load_sweep(write_sweep(tmp_path, body)), out)
    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    assert rows[0]["status"] == "diverged" and rows[0]["test_exact_match"] == ""
    assert "NaN" in json.loads((out / "boom" / "sweep.json").read_text())["message"]
    assert (out / "grad_norm.png").exists()
    capsys.readouterr()
    run_sweep(load_sweep(write_sweep(tmp_path, body)), out)
    assert "== boom: already diverged, skipped" in capsys.readouterr().out


@pytest.mark.smoke
def test_parallel_jobs_match_one_at_a_time(tiny_sweep: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    run_sweep(load_sweep(write_sweep(tmp_path, TINY)), out, jobs=2)
    log = capsys.readouterr().out
    assert "== plain: queued" in log and "== peeky: finished" in log
    for name in ("plain", "peeky"):
        assert "done: best valid BLEU" in (out / name / "sweep.log").read_text()  # its output went there
        one = [json.loads(x) for x in (tiny_sweep / name / "metrics.jsonl").read_text().splitlines()]
        par = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]
        losses = [[r["train/loss"] for r in rows if "train/loss" in r] for rows in (one, par)]
        assert losses[0] and losses[1] == pytest.approx(losses[0], rel=1e-4)  # same runs, other processes
    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["variant"] for r in rows] == ["plain", "peeky"] and {r["status"] for r in rows} == {"finished"}


@pytest.mark.smoke
def test_a_failing_parallel_variant_is_named(tmp_path: Path) -> None:
    from seq2seq.training.loop import TrainError

    body = TINY.replace("{plain: false, peeky: true}", "{ok: false, bad: true}") + (
        "variants:\n  - {name: nofile, overrides: {data.source: files, data.path: /nonexistent/corpus}}\n")
    with pytest.raises(TrainError, match=r"variant nofile: .*/nonexistent/corpus.*sweep\.log"):
        run_sweep(load_sweep(write_sweep(tmp_path, body)), tmp_path / "out", jobs=2)


@pytest.mark.smoke
def test_seeds_run_the_sweep_per_seed_and_report_medians(tmp_path: Path) -> None:
    from seq2seq.tools.sweep.command import run_seeds

    body = TINY.replace(" train.max_steps: 4,", " train.max_steps: 6,")
    out = tmp_path / "out"
    rows = run_seeds(write_sweep(tmp_path, body), [1, 2, 3], out)
    per_seed = {s: list(csv.DictReader((out / f"seed-{s}" / "results.csv").read_text().splitlines()))
                for s in (1, 2, 3)}
    for s in (1, 2, 3):
        assert f"seed: {s}" in (out / f"seed-{s}" / "peeky" / "config.yaml").read_text()
    losses = [(out / f"seed-{s}" / "peeky" / "metrics.jsonl").read_text() for s in (1, 2)]
    assert losses[0] != losses[1]  # other seeds, other runs
    assert [r["variant"] for r in rows] == ["plain", "peeky"]
    for i, row in enumerate(rows):
        tests = sorted(float(per_seed[s][i]["test_exact_match"]) for s in (1, 2, 3))
        assert row["test_exact_match_median"] == pytest.approx(tests[1])
        assert (row["test_exact_match_min"], row["test_exact_match_max"]) == pytest.approx((tests[0], tests[2]))
        assert row["test_exact_match_by_seed"].count(" / ") == 2 and row["status"] == "3 finished"
    table = (out / "results.md").read_text()
    assert "test_exact_match_median" in table and "| peeky | true |" in table
    png = out / "seeds.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000


@pytest.mark.smoke
def test_bad_seeds_and_jobs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.tools.sweep.command import main

    path = write_sweep(tmp_path, TINY)
    kept = tmp_path / "out" / "plain" / "keep.txt"  # an earlier sweep's output: --clean must not delete it
    kept.parent.mkdir(parents=True)
    kept.write_text("x")
    for args, words in ((["--seeds", "1", "1"], "--seeds: a seed is repeated"), (["--jobs", "0"], "--jobs: must be")):
        assert main([str(path), "--out", str(tmp_path / "out"), "--clean", *args]) == 1
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1
    assert kept.read_text() == "x"


def test_clean_removes_only_folders_a_sweep_made(tmp_path: Path) -> None:
    from seq2seq.tools.sweep.running import SWEEP_MARK, clean, mark_sweep_folder

    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    with pytest.raises(ConfigError, match=f"{thesis}: not a folder a sweep made .no {SWEEP_MARK}"):
        clean(thesis)
    mark_sweep_folder(thesis)  # a sweep run into a folder that holds other things does not claim it
    assert not (thesis / SWEEP_MARK).exists()
    with pytest.raises(ConfigError):
        clean(thesis)
    assert (thesis / "chapter1.tex").read_text() == "years of work"

    made = tmp_path / "sweep"
    mark_sweep_folder(made)  # made by the sweep: marked
    (made / "plain").mkdir()
    clean(made)
    assert not made.exists()
    (tmp_path / "empty").mkdir()
    clean(tmp_path / "empty")  # nothing to lose
    clean(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        clean(tmp_path / "file")


@pytest.mark.smoke
def test_clean_refuses_a_folder_no_sweep_made(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.tools.sweep.command import main

    thesis = tmp_path / "thesis"
    (thesis / "figures").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("years of work")
    assert main([str(write_sweep(tmp_path, TINY)), "--out", str(thesis), "--clean"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {thesis}: not a folder a sweep made"), err
    assert (thesis / "thesis.tex").read_text() == "years of work" and (thesis / "figures").is_dir()


@pytest.mark.smoke
def test_a_sweep_marks_the_folder_it_makes(tiny_sweep: Path) -> None:
    from seq2seq.tools.sweep.running import SWEEP_MARK

    assert (tiny_sweep / SWEEP_MARK).is_file()


# --- hidden-state plot -------------------------------------------------------------------------
@pytest.mark.smoke
def test_hidden_state_plot(tiny_sweep: Path, tmp_path: Path) -> None:
    import torch

    from seq2seq.model import checkpoint
    from seq2seq.tools.plots import encoder_states, hidden_states, main

    run = tiny_sweep / "peeky"
    out = tmp_path / "hidden.png"
    unit = hidden_states(run, "Sep 27 1994", out, top_k=4)
    assert out.read_bytes()[:8] == PNG_MAGIC
    # the unit chosen is the one whose activation varies most over the (reversed) sentence
    loaded = checkpoint.load(run)
    ids = loaded.src_tok.encode("Sep 27 1994")[::-1]
    states = encoder_states(loaded.model, ids)
    assert states.shape == (len(ids), 16)
    assert unit == int(states.var(0).argmax())
    # step by step equals the whole sentence in one call
    with torch.no_grad():
        full, _ = loaded.model.encoder.rnn(loaded.model.src_embed(torch.tensor([ids])))
    torch.testing.assert_close(states, full[0])
    assert main(["hidden", "--checkpoint", str(run), "--text", "May 1 2000", "--out", str(out),
                 "--unit", "3", "--state", "cell"]) == 0
    assert main(["hidden", "--checkpoint", str(run), "--text", "x", "--out", str(out), "--unit", "99"]) == 1


@pytest.mark.smoke
def test_a_damaged_run_config_in_a_sweep_is_refused_not_read_as_defaults(tiny_sweep: Path, tmp_path: Path) -> None:
    """An empty ``config.yaml`` read as the defaults differs from the sweep's config in some key
    or, worse, in none that is checked; either way it must be named as damaged."""
    from seq2seq.training.rundir import RunDirError

    out = tmp_path / "out"
    shutil.copytree(tiny_sweep, out)
    (out / "plain" / "config.yaml").write_text("")
    before = (out / "plain" / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match=r"plain/config.yaml: the run's config is empty"):
        run_sweep(load_sweep(write_sweep(tmp_path, TINY)), out)
    assert (out / "plain" / "metrics.jsonl").read_text() == before


@pytest.mark.smoke
@pytest.mark.parametrize("damage", ["status-list", "status-deep", "test-cache", "trainer-list"])
def test_damaged_sweep_files_are_read_as_absent(damage: str, tiny_sweep: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep's own bookkeeping (sweep.json, test.json, last/trainer.json) damaged: no
    traceback; the sweep skips, rescores or resumes as if the file were absent or says why."""
    from seq2seq.tools.sweep.running import finished, read_status

    out = tmp_path / "out"
    shutil.copytree(tiny_sweep, out)
    run = out / "plain"
    if damage == "status-list":
        (run / "sweep.json").write_text("[1, 2]")
        assert read_status(run) == {}
    elif damage == "status-deep":
        (run / "sweep.json").write_text("[" * 100_000 + "]" * 100_000)
        assert read_status(run) == {}
    elif damage == "test-cache":
        (run / "test.json").write_text('"not an object"')
    else:
        (run / "last" / "trainer.json").write_text("[]")
        assert not finished(run, load_sweep(write_sweep(tmp_path, TINY)).variants[0].config)
    try:
        run_sweep(load_sweep(write_sweep(tmp_path, TINY)), out)
    except Exception as e:  # noqa: BLE001 - a clear error is acceptable for a damaged trainer state
        assert damage == "trainer-list" and "trainer.json" in str(e), e
    else:
        rows = (out / "results.csv").read_text()
        assert "plain" in rows and "peeky" in rows
