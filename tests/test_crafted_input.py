"""Crafted files and odd input: a one-line error at a bounded cost, never a traceback,
a hang or an unbounded allocation, for pathological YAML and JSON, wrong types in the trainer
state, special files in a checkpoint, tokenizers whose ids do not fit the embedding."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from seq2seq.cli.train import main as train_main
from seq2seq.cli.translate import main as translate_main
from seq2seq.config.parsing import ParseError, check_size, load_json, load_yaml

pytestmark = pytest.mark.smoke


def billion_laughs(levels: int = 12) -> str:
    """A YAML flow list of ``levels`` anchors, each nine aliases of the one before: 9**levels values."""
    items, prev = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"], "a0"
    for i in range(1, levels):
        items.append(f"&a{i} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = f"a{i}"
    return "[" + ", ".join(items) + "]"


def one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class TookTooLong(BaseException):  # not an Exception: no command's error handling swallows it
    pass


def quick(fn: Callable[[], Any], seconds: int = 20) -> Any:
    """``fn()``, failed if it takes ``seconds`` (a blocked read or a runaway walk, not a hung suite)."""
    def expire(signum: int, frame: Any) -> None:
        raise TookTooLong(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- the parsers ----------------------------------------------------------------------------
def test_parsers_bound_size_and_depth() -> None:
    with pytest.raises(ParseError, match="too large"):
        quick(lambda: load_yaml(f"tags: {billion_laughs()}\n"), 5)
    with pytest.raises(ParseError, match="nested too deeply"):
        load_yaml("x: " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ParseError, match="nested too deeply"):
        load_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ParseError, match="nested too deeply"):
        check_size([[[[1]]]], max_values=None, max_depth=3)
    assert load_yaml("a: [1, 2]\nb: {c: d}\n") == {"a": [1, 2], "b": {"c": "d"}}  # ordinary input passes
    assert load_json('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


@pytest.mark.parametrize(("text", "fragment"), [
    (f"tracking:\n  tags: {billion_laughs()}\n", "too large (more than 100,000 values"),
    ("data:\n  path: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    ("# " + "x" * (2 << 20) + "\n", "too large (over 1,048,576 bytes)"),
], ids=["billion-laughs", "deep", "huge"])
def test_pathological_config_files(text: str, fragment: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert quick(lambda: train_main(["--config", str(config), "--out", str(tmp_path / "run")])) == 1
    one_error_line(capsys.readouterr().err, str(config), fragment)


def test_pathological_override_and_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert quick(lambda: train_main(["--out", str(tmp_path / "run"), f"tracking.tags={billion_laughs()}"])) == 1
    one_error_line(capsys.readouterr().err, "tracking.tags", "too large")
    from seq2seq.tools.sweep.command import main as sweep_main

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: x\nbase: dates.yaml\nvariants: {billion_laughs()}\n")
    assert quick(lambda: sweep_main([str(sweep), "--out", str(tmp_path / "s")])) == 1
    one_error_line(capsys.readouterr().err, str(sweep), "too large")


def test_deeply_nested_jsonl_line(tmp_path: Path, tiny_overrides: tuple[str, ...],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    good = json.dumps({"src": "1 jan 2000", "tgt": "2000-01-01"}) + "\n"
    for split in ("train", "val", "test"):
        (root / f"{split}.jsonl").write_text(good * 20)
    (root / "train.jsonl").write_text(good * 5 + "[" * 100_000 + "]" * 100_000 + "\n")
    code = train_main(["--out", str(tmp_path / "run"), *tiny_overrides, "data.source=jsonl", f"data.path={root}",
                       "data.src_lang=src", "data.tgt_lang=tgt"])
    assert code == 1
    one_error_line(capsys.readouterr().err, f"{root / 'train.jsonl'}: line 6", "nested too deeply")


# --- a crafted run or checkpoint -----------------------------------------------------------
@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def edit_trainer_state(run: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = run / "last" / "trainer.json"
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _delete(*path: str) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        target = state
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


@pytest.mark.parametrize(("edit", "fragment"), [
    (_set(("progress", "epoch"), "one"), "progress.epoch has a wrong type"),
    (_set(("progress", "step"), [1]), "progress.step has a wrong type"),
    (_set(("progress", "lr_scale"), None), "progress.lr_scale has a wrong type"),
    (_set(("progress", "best"), "NaN"), "progress.best has a wrong type"),
    (_set(("progress", "batch_in_epoch"), 10**30), "progress.batch_in_epoch has a wrong type"),
    (_set(("progress", "batch_in_epoch"), 100), "progress.batch_in_epoch 100 is past this epoch's 3 batches"),
    (_set(("progress", "window"), {"loss": "a"}), "progress.window has a wrong type"),
    (_set(("progress", "done"), "no"), "progress.done has a wrong type"),
    (_set(("progress", "zzz"), 1), "progress has an unknown field 'zzz'"),
    (_set(("progress",), []), "progress must be a JSON object"),
    (_delete("progress", "epoch"), "progress.epoch is missing"),
    (_set(("optimizer",), 5), "cannot resume"),
    (_set(("optimizer", "param_groups", 0, "betas"), "x"), "param_groups[0].betas has a wrong type"),
    (_set(("optimizer", "param_groups", 0, "eps"), None), "param_groups[0].eps has a wrong type"),
    (_set(("python_rng",), "x"), "cannot resume"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_wrong_types_in_the_trainer_state(edit: Callable[[dict[str, Any]], None], fragment: str, run: Path,
                                          tiny_overrides: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    edit_trainer_state(run, edit)
    before = (run / "last" / "trainer.json").read_bytes()
    assert train_main(["--out", str(run), "--resume", *tiny_overrides, "train.epochs=3"]) == 1
    one_error_line(capsys.readouterr().err, "trainer.json", fragment)
    assert (run / "last" / "trainer.json").read_bytes() == before


def test_a_sound_trainer_state_still_resumes(run: Path, tiny_overrides: tuple[str, ...]) -> None:
    edit_trainer_state(run, lambda state: None)  # rewritten by json, unchanged in content
    assert train_main(["--out", str(run), "--resume", *tiny_overrides, "train.epochs=3"]) == 0


def test_deeply_nested_trainer_json(run: Path, tiny_overrides: tuple[str, ...],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    (run / "last" / "trainer.json").write_text("[" * 100_000 + "]" * 100_000)
    assert train_main(["--out", str(run), "--resume", *tiny_overrides, "train.epochs=3"]) == 1
    one_error_line(capsys.readouterr().err, "trainer.json", "nested too deeply")


SPECIAL = {
    "fifo": lambda p: os.mkfifo(p),
    "device-link": lambda p: p.symlink_to("/dev/zero"),
    "directory": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("name", ["model.safetensors", "src_tokenizer.json", "config.yaml"])
@pytest.mark.parametrize("kind", list(SPECIAL))
def test_special_files_in_a_checkpoint(kind: str, name: str, run: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO would block the read forever and /dev/zero never ends: refused before reading."""
    path = run / "best" / name
    path.unlink()
    SPECIAL[kind](path)
    src = tmp_path / "in.txt"
    src.write_text("1999/01/02\n")
    code = quick(lambda: translate_main(["--checkpoint", str(run / "best"), "--input", str(src),
                                         "--output", str(tmp_path / "out.txt")]))
    assert code == 1
    one_error_line(capsys.readouterr().err, str(path), "not a regular file")


def test_special_files_in_a_run_directory(run: Path, tiny_overrides: tuple[str, ...],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    for path, extra in ((run / "config.yaml", []), (run / "last" / "trainer.json", tiny_overrides)):
        saved = path.read_bytes()
        path.unlink()
        os.mkfifo(path)
        args = ["--out", str(run), "--resume", *extra]
        assert quick(lambda: train_main(args)) == 1  # noqa: B023 - called at once
        one_error_line(capsys.readouterr().err, str(path), "not a regular file (a FIFO)")
        path.unlink()
        path.write_bytes(saved)


def test_a_symlink_to_a_regular_file_is_fine(run: Path, tmp_path: Path) -> None:
    tok = run / "best" / "src_tokenizer.json"
    (tmp_path / "tok.json").write_bytes(tok.read_bytes())
    tok.unlink()
    tok.symlink_to(tmp_path / "tok.json")
    src = tmp_path / "in.txt"
    src.write_text("1999/01/02\n")
    assert translate_main(["--checkpoint", str(run / "best"), "--input", str(src)]) == 0


@pytest.mark.parametrize(("new_id", "fragment"), [(100_000, "got ids up to 100000"), (6, "with repeats")])
def test_tokenizer_ids_that_do_not_fit_the_embedding(new_id: int, fragment: str, run: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The vocabulary size matches the embedding, but an id lies past it (or two tokens share
    one): the model's output id 5 would decode to nothing. Refused at load."""
    path = run / "best" / "tgt_tokenizer.json"
    data = json.loads(path.read_text())
    vocab = data["tokenizer"]["model"]["vocab"]
    token = next(t for t, i in vocab.items() if i == 5)
    vocab[token] = new_id
    path.write_text(json.dumps(data))
    assert translate_main(["--checkpoint", str(run / "best")]) == 1
    one_error_line(capsys.readouterr().err, str(path), "token ids must be 0..", fragment)


# --- lines with no end ------------------------------------------------------------------------
def test_bounded_lines() -> None:
    import io

    from seq2seq.config.parsing import bounded_lines

    assert list(bounded_lines(io.BytesIO(b"a\nbb\r\nccc"), limit=4)) == [b"a\n", b"bb\r\n", b"ccc"]
    assert list(bounded_lines(io.BytesIO(b"abcd\n"), limit=4)) == [b"abcd\n"]  # the limit, and its newline
    with pytest.raises(ParseError, match="line 2: longer than 4 bytes"):
        list(bounded_lines(io.BytesIO(b"ok\nabcde\n"), limit=4))


def test_translate_input_without_line_ends_is_refused(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/dev/zero (or a binary file) as --input: one endless "line" would be read into memory."""
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    code = quick(lambda: translate_main(["--checkpoint", str(trained_run / "best"), "--input", "/dev/zero"]))
    assert code == 1
    one_error_line(capsys.readouterr().err, "--input /dev/zero: line 1: longer than 1,048,576 bytes")


def test_a_corpus_line_without_end_is_refused(tmp_path: Path, tiny_overrides: tuple[str, ...],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    for split in ("train", "val", "test"):
        (root / f"{split}.src").write_text("1 jan 2000\n" * 20)
        (root / f"{split}.tgt").write_text("2000-01-01\n" * 20)
    (root / "train.tgt").write_bytes(b"2000-01-01\n" * 3 + b"x" * (2 << 20))
    code = train_main(["--out", str(tmp_path / "run"), *tiny_overrides, "data.source=files", f"data.path={root}"])
    assert code == 1
    one_error_line(capsys.readouterr().err, f"{root / 'train.tgt'}: line 4: longer than 1,048,576 bytes")
