"""translate.py as a user runs it: a Unix filter, files, n-best lists, a terminal session.

Most tests use the tiny checkpoint (it translates badly, but differently for different
inputs), and compare the script's output with the in-process :class:`Translator`.
The slow test trains a real dates model and checks it turns unseen dates into ISO dates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq.cli.translate import _interactive, _translate_stream, _utf8_stdout
from seq2seq.cli.translate import main as translate_main
from seq2seq.translation.translator import Translator, one_line

ROOT = Path(__file__).resolve().parent.parent
LINE_BREAKS = "\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits on


def run_translate(ckpt: Path, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None,
                  timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run([sys.executable, "translate.py", "--checkpoint", str(ckpt), *args], cwd=ROOT,
                          env=env, input=stdin, capture_output=True, timeout=timeout)


def out_lines(data: bytes) -> list[str]:
    """Output lines split on '\\n' only; the output must end with a newline."""
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return text.split("\n")[:-1]


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(tiny_checkpoint)


SENTENCES = ["march 3, 2011", "TUESDAY, SEPTEMBER 27, 1994", "5/17/1953", "x", "17.05.1953",
             "Wed, Jan 1, 2020", "12 nov 2040", "1994/09/27 1994/09/27 1994/09/27"]


# --- the filter ------------------------------------------------------------------------


@pytest.mark.smoke
def test_filter_stdin_to_stdout_one_line_per_line(tiny_checkpoint: Path, translator: Translator) -> None:
    lines = ["march 3, 2011", "", "5/17/1953", "x", "17.05.1953"]
    result = run_translate(tiny_checkpoint, stdin="\n".join(lines).encode())  # no trailing newline
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    got = out_lines(result.stdout)
    assert got == translator.translate_best(lines)  # same order, same text as in-process
    assert got[1] == ""  # an empty line gives an empty line
    assert all(got[i] for i in (0, 2, 3, 4))
    assert len(set(got)) >= 4  # distinct outputs: a shuffled order would show


@pytest.mark.smoke
def test_filter_files_and_decoding_options(tiny_checkpoint: Path, translator: Translator, tmp_path: Path) -> None:
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    result = run_translate(tiny_checkpoint, "--input", str(src), "--output", str(out), "--beam", "2",
                           "--batch-size", "3", "--max-len-ratio", "0.5", "--device", "cpu")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""
    got = out_lines(out.read_bytes())

    custom = Translator.from_checkpoint(tiny_checkpoint)
    custom.decode = dataclasses.replace(custom.decode, batch_size=3, max_len_ratio=0.5)
    assert got == custom.translate_best(SENTENCES, beam_size=2)
    # --max-len-ratio is applied: each output (char-level) fits ceil(0.5 * src) + offset tokens
    offset = translator.decode.max_len_offset
    for s, t in zip(SENTENCES, got):
        assert len(t) <= -(-len(s) // 2) + offset
    assert got != translator.translate_best(SENTENCES, beam_size=2)  # the default ratio gives longer ones


@pytest.mark.smoke
def test_filter_nbest(tiny_checkpoint: Path, translator: Translator) -> None:
    lines = ["march 3, 2011", "5/17/1953", "", "x"]
    result = run_translate(tiny_checkpoint, "--nbest", "3", "--beam", "3",
                           stdin="".join(s + "\n" for s in lines).encode())
    assert result.returncode == 0, result.stderr.decode()
    rows = [line.split(" ||| ") for line in out_lines(result.stdout)]
    assert all(len(r) == 3 for r in rows)
    by_index: dict[int, list[tuple[str, float]]] = {}
    for index, hyp, score in rows:
        by_index.setdefault(int(index), []).append((hyp, float(score)))
    assert [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)  # grouped, in input order
    assert sorted(by_index) == [0, 1, 2, 3]  # 0-based, every input present
    expected = translator.translate(lines, beam_size=3, nbest=3)
    for i in (0, 1, 3):
        assert len(by_index[i]) == 3
        scores = [s for _, s in by_index[i]]
        assert scores == sorted(scores, reverse=True)
        assert [h for h, _ in by_index[i]] == [t.text for t in expected[i]]
        assert scores == pytest.approx([t.score for t in expected[i]], abs=1e-4)
        assert len({h for h, _ in by_index[i]}) == 3  # three different hypotheses
    assert by_index[2] == [("", 0.0)]  # an empty line: one empty hypothesis, index kept
    assert by_index[0][0][0] == translator.translate_best(["march 3, 2011"], beam_size=3)[0]


@pytest.mark.smoke
def test_filter_messy_input(tiny_checkpoint: Path, translator: Translator) -> None:
    """Blank lines, invalid UTF-8, a very long line, control characters, CRLF: one line out per
    line in, in order, with warnings naming the line numbers, exit 0. The output is UTF-8 even
    where the locale's encoding is ASCII (the input is read as UTF-8 too)."""
    long_line = "september 27, 1994 " * 263  # 4997 characters
    raw = [b"march 3, 2011\r", b"", b"\xff\xfe abc", b"   ", long_line.encode(),
           b"\x00\x07\x1b[31mred\x1b[0m\x0c\x0b\x1c tab\there", "caf\u00e9 \u2028 \u00e0 \U0001f600".encode(),
           b"\r", b"5/17/1953\r"]
    stdin = b"\n".join(raw)  # CRLF line endings, and the last line ends in \r without \n
    result = run_translate(tiny_checkpoint, stdin=stdin, env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr.decode()
    got = out_lines(result.stdout)
    assert len(got) == len(raw)
    assert len(result.stdout.decode().splitlines()) == len(raw)  # no stray line breaks of any kind
    decoded = ["march 3, 2011", "", "\ufffd\ufffd abc", "   ", long_line,
               "\x00\x07\x1b[31mred\x1b[0m\x0c\x0b\x1c tab\there", "caf\u00e9 \u2028 \u00e0 \U0001f600", "",
               "5/17/1953"]
    assert got == translator.translate_best(decoded)
    assert got[1] == got[7] == ""
    stderr = result.stderr.decode()
    warnings = stderr.splitlines()
    assert len(warnings) == 2, stderr
    assert warnings[0].startswith("warning: line 3: invalid UTF-8")
    assert warnings[1].startswith("warning: line 5: ")
    assert "cut to the model's limit of 64" in warnings[1]
    assert "Traceback" not in stderr


def test_stdout_is_utf8_whatever_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The input is read as UTF-8, so translations are written as UTF-8 even under an ASCII locale."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    out = _utf8_stdout()
    out.write("1994-09-27 caf\u00e9 \ufffd\n")
    out.flush()
    assert raw.getvalue() == "1994-09-27 caf\u00e9 \ufffd\n".encode()


@pytest.mark.smoke
def test_missing_checkpoint_is_one_line_error(tmp_path: Path) -> None:
    result = run_translate(tmp_path / "nope", stdin=b"x\n")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [f"error: {tmp_path / 'nope'}: checkpoint directory not found"]


@pytest.mark.smoke
@pytest.mark.parametrize(("args", "message"), [
    (["--nbest", "4", "--beam", "3"], "error: --nbest (4) must not exceed the beam size (3)"),
    (["--nbest", "6"], "error: --nbest (6) must not exceed the beam size (5)"),  # the checkpoint's beam 5
    (["--beam", "0"], "error: --beam must be >= 1, got 0"),
    (["--max-len-ratio", "0"], "error: --max-len-ratio must be > 0, got 0.0"),
    # inf, or >= ~1e18, overflowed the length limit: every output line was empty, exit 0
    (["--max-len-ratio", "inf"], "error: --max-len-ratio must be a finite number, got inf"),
    (["--max-len-ratio", "nan"], "error: --max-len-ratio must be a finite number, got nan"),
    (["--max-len-ratio", "1e18"], "error: --max-len-ratio must be in (0, 1000], got 1e+18"),
    (["--length-penalty", "inf"], "error: --length-penalty must be a finite number, got inf"),
    (["--length-penalty", "-1"], "error: --length-penalty must be in [0, 10], got -1.0"),
])
def test_bad_options_are_one_line_errors(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], message: str) -> None:
    assert translate_main(["--checkpoint", str(tiny_checkpoint), *args]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [message]


@pytest.mark.smoke
def test_device_cuda_without_cuda_is_one_line_error(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert translate_main(["--checkpoint", str(tiny_checkpoint), "--device", "cuda"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["error: --device cuda was asked for but CUDA is not available on this machine"]


# --- output files ------------------------------------------------------------------------
def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoding started")

    monkeypatch.setattr(Translator, "translate", boom)


@pytest.mark.smoke
def test_output_that_is_the_input_is_refused(tiny_checkpoint: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    (tmp_path / "link.txt").symlink_to(src)
    (tmp_path / "sub").mkdir()
    _no_decoding(monkeypatch)
    for out in (src, tmp_path / "link.txt", tmp_path / "sub" / ".." / "in.txt"):
        assert translate_main(["--checkpoint", str(tiny_checkpoint), "--input", str(src), "--output", str(out)]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --output {out}: is the same file as --input"), err
        assert src.read_text(encoding="utf-8") == "".join(s + "\n" for s in SENTENCES)


@pytest.mark.smoke
def test_unwritable_output_is_refused_before_decoding(tiny_checkpoint: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x\n", encoding="utf-8")
    _no_decoding(monkeypatch)
    for out in (tmp_path / "missing" / "out.txt", tmp_path):
        assert translate_main(["--checkpoint", str(tiny_checkpoint), "--input", str(src), "--output", str(out)]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --output {out}: "), err


@pytest.mark.smoke
def test_failed_translation_keeps_the_old_output(tiny_checkpoint: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The output is written to a temporary file beside it, renamed over it only at the end."""
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("x\ny\n", encoding="utf-8")
    out.write_text("yesterday's translations\n", encoding="utf-8")

    def fail(*args: object, **kwargs: object) -> None:
        raise ValueError("decoding failed")

    monkeypatch.setattr(Translator, "translate", fail)
    assert translate_main(["--checkpoint", str(tiny_checkpoint), "--input", str(src), "--output", str(out)]) == 1
    assert capsys.readouterr().err.splitlines() == ["error: decoding failed"]
    assert out.read_text(encoding="utf-8") == "yesterday's translations\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]  # no temporary file left
    monkeypatch.undo()
    out.chmod(0o640)
    assert translate_main(["--checkpoint", str(tiny_checkpoint), "--input", str(src), "--output", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
    assert out.stat().st_mode & 0o777 == 0o640  # replaced, with the old file's permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


# --- order and batching ------------------------------------------------------------------


@pytest.mark.parametrize("beam", [1, 3])
def test_batch_translation_equals_one_by_one(tiny_checkpoint: Path, beam: int) -> None:
    """Sorting by length and restoring the order: a sentence alone = the same sentence in a batch."""
    tr = Translator.from_checkpoint(tiny_checkpoint)
    tr.decode = dataclasses.replace(tr.decode, batch_size=3)  # several batches, lengths mixed across them
    lines = [*SENTENCES, "", "a", "Sep 27 1994" * 4, "27 sep 1994"]
    together = tr.translate(lines, beam_size=beam)
    alone = [tr.translate([line], beam_size=beam)[0] for line in lines]
    assert [nb[0].text for nb in together] == [nb[0].text for nb in alone]
    assert [nb[0].score for nb in together] == pytest.approx([nb[0].score for nb in alone], abs=1e-5)
    assert len({nb[0].text for nb in alone}) >= len(lines) // 2  # a permuted order would be caught
    reordered = tr.translate_best(lines[::-1], beam_size=beam)
    assert reordered == [nb[0].text for nb in together][::-1]


# --- properties over random lines -----------------------------------------------------------

_no_newline = st.characters(codec="utf-8", exclude_characters="\n")
# Not valid Unicode: a lone surrogate (what surrogateescape decoding of a bad byte gives).
_broken = st.tuples(st.text(max_size=5), st.characters(categories=["Cs"]), st.text(max_size=5)).map("".join)
_line = st.one_of(
    st.text(max_size=30),  # any Unicode but surrogates, control characters included
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=30),  # no control characters
    st.text(st.characters(codec="utf-8", exclude_characters="\n") | st.sampled_from(LINE_BREAKS), max_size=30),
    st.just(""),
    st.text(_no_newline, min_size=70, max_size=200),  # longer than data.max_len = 64 (char tokens)
)
_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _has_surrogates(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _too_long(translator: Translator, text: str) -> bool:
    """More source tokens than data.max_len (64): each character is one token or its UTF-8 bytes."""
    return len(translator.src_tok.encode(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))) > 64


@_SETTINGS
@given(lines=st.lists(_line | _broken, max_size=8))
def test_translator_lines_in_lines_out(translator: Translator, lines: list[str]) -> None:
    """Any list of strings (surrogates, line breaks, control characters included): one line each."""
    warned: list[int] = []
    got = translator.translate_best(lines, beam_size=2, warn=lambda i, msg: warned.append(i))
    assert len(got) == len(lines)
    for line, text in zip(lines, got):
        assert not any(c in LINE_BREAKS for c in text)
        assert len(text.splitlines()) <= 1
        if line == "":
            assert text == ""
    assert set(warned) >= {i for i, line in enumerate(lines) if len(line) > 64}
    assert set(warned) == {i for i, line in enumerate(lines) if _too_long(translator, line) or _has_surrogates(line)}


@_SETTINGS
@given(raw=st.lists(st.binary(max_size=20).filter(lambda b: b"\n" not in b)
                    | _line.filter(lambda s: "\n" not in s).map(lambda s: s.encode("utf-8")), max_size=9),
       crlf=st.booleans(), nbest=st.sampled_from([1, 2]))
def test_stream_lines_in_lines_out(translator: Translator, raw: list[bytes], crlf: bool, nbest: int) -> None:
    """_translate_stream over bytes, in chunks of 3 lines: one output line (or n-best group) per
    input line, in order; warnings name the right line numbers."""
    stdin = io.BytesIO(b"".join(r + (b"\r\n" if crlf else b"\n") for r in raw))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        _translate_stream(translator, stdin, out, 2, nbest, 3)
    lines = out.getvalue().split("\n")
    assert lines.pop() == ""
    assert len(out.getvalue().splitlines()) == len(lines)  # no other line breaks
    if nbest == 1:
        assert len(lines) == len(raw)
    else:
        indices = [int(line.split(" ||| ")[0]) for line in lines]
        assert sorted(set(indices)) == list(range(len(raw)))
        assert indices == sorted(indices)
    invalid = set()
    for i, r in enumerate(raw):
        try:
            r.decode("utf-8")
        except UnicodeDecodeError:
            invalid.add(i + 1)
    texts = [r.decode("utf-8", "replace") for r in raw]
    long = {i + 1 for i, t in enumerate(texts) if _too_long(translator, t if crlf else t.removesuffix("\r"))}
    assert long >= {i + 1 for i, t in enumerate(texts) if len(t) > 65}
    warnings = err.getvalue()
    assert {int(n) for n in re.findall(r"^warning: line (\d+): invalid UTF-8", warnings, re.M)} == invalid
    assert {int(n) for n in re.findall(r"^warning: line (\d+): \d+ source tokens, cut", warnings, re.M)} == long


# --- interactive ------------------------------------------------------------------------------


def _read_until(fd: int, token: bytes, timeout: float = 60) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while token not in buf and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            buf += chunk
    return buf


@pytest.mark.smoke
@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_interactive_terminal_session(tiny_checkpoint: Path, translator: Translator) -> None:
    """stdin a terminal: a '> ' prompt, one translation per typed line, Ctrl-D exits 0.

    stdin, stdout and stderr are all the terminal (the prompt and warnings go to stderr). A strict
    UTF-8 terminal encoding: a bad byte typed must not end the session.
    """
    master, slave = os.openpty()
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONIOENCODING": "utf-8:strict"}
    proc = subprocess.Popen([sys.executable, "translate.py", "--checkpoint", str(tiny_checkpoint)], cwd=ROOT,
                            stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    try:
        banner = _read_until(master, b"> ")
        assert banner == b"Type a sentence and press Enter (Ctrl-D to quit).\r\n> "
        os.write(master, b"march 3, 2011\n")
        screen = _read_until(master, b"> ")
        assert screen.endswith(b"\r\n> ")
        echoed, answer = screen[:-4].decode("utf-8").split("\r\n")  # exactly one line of answer
        assert echoed == "march 3, 2011"
        assert answer == translator.translate_best(["march 3, 2011"])[0]
        os.write(master, b"\xff\xfe abc\n")  # a bad byte typed: a warning, not the end
        screen = _read_until(master, b"> ")
        assert screen.endswith(b"\r\n> ")
        assert b"warning: not valid UTF-8" in screen
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=60) == 0
        assert b"Traceback" not in _read_until(master, b"never")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_interactive_nbest_with_fake_terminal(translator: Translator, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    typed = iter(["march 3, 2011", "", "5/17/1953"])
    prompts: list[str] = []

    def fake_input(prompt: str = "") -> str:
        prompts.append(prompt)
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert _interactive(translator, 3, 2) == 0
    assert prompts == ["> "] * 4
    rows = [line.split(" ||| ") for line in capsys.readouterr().out.splitlines()]
    expected = translator.translate(["march 3, 2011", "", "5/17/1953"], beam_size=3, nbest=2)
    assert [(int(i), h) for i, h, _ in rows] == [(i, t.text) for i, nb in enumerate(expected) for t in nb]


def test_translations_are_single_lines(translator: Translator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the target tokenizer decodes to, a translation is one line."""
    monkeypatch.setattr(translator.tgt_tok, "decode", lambda ids: "a\nb\r\nc\u2028d\x85e")
    for beam, nbest in ((1, 1), (3, 3)):
        results = translator.translate(["march 3, 2011", "5/17/1953"], beam_size=beam, nbest=nbest)
        assert [[t.text for t in nb] for nb in results] == [["a b  c d e"] * nbest] * 2


def test_one_line() -> None:
    assert one_line("a\nb\r\nc\x0bd\x0ce\x1cf\x1dg\x1eh\x85i\u2028j\u2029k") == "a b  c d e f g h i j k"
    assert one_line("tab\tstays \x00 \x1b") == "tab\tstays \x00 \x1b"


# --- the dates model learns ------------------------------------------------------------------

# Hand-written dates in the task's formats; the test checks none is in the training split.
UNSEEN = {
    "march 3, 2011": "2011-03-03",
    "TUESDAY, SEPTEMBER 27, 1994": "1994-09-27",
    "5/17/1953": "1953-05-17",
    "17.05.1953": "1953-05-17",
    "2031/12/01": "2031-12-01",
    "Sep 5 1977": "1977-09-05",
    "12 nov 2040": "2040-11-12",
    "Wed, Jan 1, 2020": "2020-01-01",
}
@pytest.mark.learns
def test_unseen_human_dates_become_iso_dates(dates_checkpoint: Path) -> None:
    from seq2seq.config import load_config
    from seq2seq.data.corpus import load_split

    train_sources = {s for s, _ in load_split(load_config(dates_checkpoint / "config.yaml").data, "train")}
    assert not set(UNSEEN) & train_sources
    result = run_translate(dates_checkpoint, stdin="".join(s + "\n" for s in UNSEEN).encode())
    assert result.returncode == 0, result.stderr.decode()
    got = out_lines(result.stdout)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", g) for g in got), got
    exact = sum(g == iso for g, iso in zip(got, UNSEEN.values()))
    assert exact >= 6, list(zip(UNSEEN, got))
