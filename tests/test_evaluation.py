"""Scoring (sacreBLEU BLEU and chrF, exact match, BLEU by length) and ``python -m seq2seq evaluate``."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from seq2seq.cli.evaluate import main as evaluate_main
from seq2seq.config import load_config
from seq2seq.data.corpus import load_split
from seq2seq.translation import evaluation
from seq2seq.translation.evaluation import DEFAULT_BUCKETS, Bucket, Scores, bleu_by_length, format_report, score
from seq2seq.translation.translator import Translator

ROOT = Path(__file__).resolve().parent.parent
BLEU_SIGNATURE = re.compile(r"nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:\d+\.\d+\.\d+")
CHRF_SIGNATURE = re.compile(r"nrefs:1\|case:mixed\|eff:yes\|nc:6\|nw:0\|space:no\|version:\d+\.\d+\.\d+")


def run_evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "seq2seq", "evaluate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "WANDB_MODE": "disabled"})


# --- score -------------------------------------------------------------------------------


def test_perfect_hypotheses_score_100() -> None:
    refs = ["the cat sat on the mat", "1994-09-27", "a b c d e"]
    s = score(refs, refs)
    assert (s.bleu, s.chrf, s.exact_match, s.n) == (pytest.approx(100.0), pytest.approx(100.0), 100.0, 3)
    assert BLEU_SIGNATURE.fullmatch(s.bleu_signature)
    assert CHRF_SIGNATURE.fullmatch(s.chrf_signature)


def test_bleu_by_hand_and_sacrebleu() -> None:
    """One sentence: precisions 5/6, 3/5, 1/4 and 0/3 (exp smoothing: 1/(2*3)), no brevity penalty."""
    s = score(["the cat is on the mat"], ["the cat sat on the mat"])
    by_hand = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4) + math.log(1 / 6)) / 4)
    assert s.bleu == pytest.approx(by_hand)
    assert s.bleu == pytest.approx(37.99, abs=0.01)
    assert s.exact_match == 0.0
    assert s.chrf == pytest.approx(sacrebleu.corpus_chrf(["the cat is on the mat"], [["the cat sat on the mat"]]).score)
    assert 0 < s.chrf < 100


def test_corpus_scores_match_sacrebleu_and_exact_match_counts() -> None:
    hyps = ["2011-03-03", "1994-09-27", "the quick brown fox", "Hello, world!"]
    refs = ["2011-03-03", "1994-09-28", "the quick brown dog", "Hello world"]
    s = score(hyps, refs)
    assert s.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert s.chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert s.exact_match == 25.0
    assert s.n == 4
    assert score(["Hello"], ["hello"]).exact_match == 0.0  # cased, like BLEU


def test_score_refuses_mismatched_or_empty() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        score(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no sentences"):
        score([], [])


# --- bleu_by_length --------------------------------------------------------------------------


def test_bleu_by_length_buckets_and_labels() -> None:
    lengths = [1, 10, 11, 20, 35, 99]
    good = "one two three four five"
    hyps = [good, good, "x y z w", "x y z w", good, "nothing matches here at all"]
    refs = [good, good, "a b c d", "a b c d", good, "something else entirely is here"]
    buckets = bleu_by_length(lengths, hyps, refs, edges=(10, 20, 30))
    assert [(b.label, b.n) for b in buckets] == [("1-10", 2), ("11-20", 2), ("31+", 2)]  # 21-30 empty: left out
    assert buckets[0].bleu == pytest.approx(100.0)
    assert buckets[1].bleu == pytest.approx(0.0)
    assert buckets[2].bleu == pytest.approx(sacrebleu.corpus_bleu(hyps[4:], [refs[4:]]).score)
    assert all(isinstance(b, Bucket) for b in buckets)


def test_bleu_by_length_default_edges_and_bounds() -> None:
    assert DEFAULT_BUCKETS == (10, 20, 30, 40)
    lengths = [10, 11, 20, 21, 30, 31, 40, 41]
    buckets = bleu_by_length(lengths, ["a"] * 8, ["a"] * 8)
    assert [(b.label, b.n) for b in buckets] == [("1-10", 1), ("11-20", 2), ("21-30", 2), ("31-40", 2), ("41+", 1)]
    assert bleu_by_length([], [], []) == []


def test_length_groups_are_the_buckets_of_bleu_by_length() -> None:
    lengths = [1, 10, 11, 20, 35, 99]
    groups = evaluation.length_groups(lengths, (10, 20, 30))
    assert groups == [("1-10", [0, 1]), ("11-20", [2, 3]), ("31+", [4, 5])]
    buckets = bleu_by_length(lengths, ["a"] * 6, ["a"] * 6, (10, 20, 30))
    assert [(b.label, b.n) for b in buckets] == [(label, len(idx)) for label, idx in groups]
    assert evaluation.length_groups([]) == []


def test_source_lengths_in_words_or_chars() -> None:
    sources = ["  one two  three ", "", "12+345"]
    assert evaluation.source_lengths(sources) == evaluation.source_lengths(sources, "words") == [3, 0, 1]
    assert evaluation.source_lengths(sources, "chars") == [14, 0, 6]
    with pytest.raises(ValueError, match="length unit must be one of words, chars; got 'tokens'"):
        evaluation.source_lengths(sources, "tokens")


class _Parrot:
    """A translator that gives canned translations and records how it was called."""

    def __init__(self, hyps: list[str]) -> None:
        self.hyps = hyps
        self.calls: list[tuple[list[str], int | None, object]] = []

    def translate_best(self, lines: list[str], *, beam_size: int | None = None, warn: object = None) -> list[str]:
        self.calls.append((list(lines), beam_size, warn))
        return self.hyps[: len(lines)]


def test_evaluate_split_scores_overall_and_by_length() -> None:
    sources = ["a b", "a b c d e", "a", "a b c d e f g"]
    hyps = ["x", "one two three", "y", "p q r s"]
    refs = ["x", "one two four", "z", "p q r s"]
    parrot = _Parrot(hyps)
    warn = print
    result = evaluation.evaluate_split(parrot, sources, refs, 3, edges=(2, 5), warn=warn)
    assert parrot.calls == [(sources, 3, warn)]
    assert result.hyps == hyps
    assert result.scores == score(hyps, refs)
    assert result.buckets == bleu_by_length([2, 5, 1, 7], hyps, refs, (2, 5))
    assert [b.label for b in result.buckets] == ["1-2", "3-5", "6+"]
    assert result.bucket_exact_match == [50.0, 0.0, 100.0]
    by_chars = evaluation.evaluate_split(_Parrot(hyps), sources, refs, None, edges=(3,), length_unit="chars")
    assert [(b.label, b.n) for b in by_chars.buckets] == [("1-3", 2), ("4+", 2)]  # "a b" is 3 characters
    assert by_chars.bucket_exact_match == [50.0, 50.0]
    with pytest.raises(ValueError, match="no sentences to score"):
        evaluation.evaluate_split(_Parrot([]), [], [], None)


def test_format_report() -> None:
    scores = Scores(bleu=12.345, chrf=56.789, exact_match=25.0, bleu_signature="nrefs:1|sig-b",
                    chrf_signature="nrefs:1|sig-c", n=4)
    report = format_report(scores, [Bucket("1-10", 3, 10.0), Bucket("11-20", 1, 0.0)]).splitlines()
    assert report[0] == "BLEU = 12.35  nrefs:1|sig-b"
    assert report[1] == "chrF = 56.79  nrefs:1|sig-c"
    assert report[2] == "exact match = 25.00%  (4 sentences)"
    assert report[3] == "BLEU by source length (words):"
    assert re.fullmatch(r"\s+1-10\s+n=3\s+BLEU = 10\.00", report[4])
    assert re.fullmatch(r"\s+11-20\s+n=1\s+BLEU = 0\.00", report[5])
    assert len(report) == 6
    assert len(format_report(scores).splitlines()) == 3


# --- python -m seq2seq evaluate ------------------------------------------------------------


def _report_value(stdout: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} = ([\d.]+)", stdout, re.M)
    assert match, stdout
    return float(match.group(1))


@pytest.mark.smoke
def test_evaluate_checkpoint_test_split(tiny_checkpoint: Path, tmp_path: Path) -> None:
    hyp_file, json_file = tmp_path / "hyp.txt", tmp_path / "scores.json"
    result = run_evaluate("--checkpoint", str(tiny_checkpoint), "--output", str(hyp_file), "--json", str(json_file))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    test = load_split(load_config(tiny_checkpoint / "config.yaml").data, "test")
    assert out.splitlines()[0] == f"dates:test: {len(test)} sentences, beam 5, fp32"
    assert re.search(r"^BLEU = [\d.]+  " + BLEU_SIGNATURE.pattern + "$", out, re.M), out
    assert re.search(r"^chrF = [\d.]+  " + CHRF_SIGNATURE.pattern + "$", out, re.M), out
    assert re.search(rf"^exact match = [\d.]+%  \({len(test)} sentences\)$", out, re.M), out
    assert "BLEU by source length (words):" in out
    assert re.search(rf"^\s+1-10\s+n={len(test)}\s+BLEU = [\d.]+$", out, re.M), out  # dates are 1-5 words

    hyps = hyp_file.read_text(encoding="utf-8").split("\n")
    assert hyps.pop() == ""
    assert len(hyps) == len(test)
    assert hyps == Translator.from_checkpoint(tiny_checkpoint).translate_best([s for s, _ in test])

    data = json.loads(json_file.read_text())
    expected = score(hyps, [t for _, t in test])
    assert data["data"] == "dates:test"
    assert data["beam"] == 5
    assert data["n"] == len(test)
    assert data["bleu"] == pytest.approx(expected.bleu)
    assert data["chrf"] == pytest.approx(expected.chrf)
    assert data["exact_match"] == pytest.approx(expected.exact_match)
    assert data["bleu_signature"] == expected.bleu_signature
    assert data["chrf_signature"] == expected.chrf_signature
    assert data["buckets"] == [{"label": "1-10", "n": len(test), "bleu": pytest.approx(expected.bleu)}]
    assert _report_value(out, "BLEU") == pytest.approx(data["bleu"], abs=0.005)
    assert _report_value(out, "chrF") == pytest.approx(data["chrf"], abs=0.005)


@pytest.mark.smoke
def test_evaluate_src_ref_files(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """With --src/--ref: two references are the model's own output (exact match 50%), one long
    source lands in the 11-20 bucket."""
    sources = ["march 3, 2011", "5/17/1953", "x", "one two three four five six seven eight nine ten eleven twelve"]
    own = Translator.from_checkpoint(tiny_checkpoint).translate_best(sources, beam_size=2)
    refs = [own[0], "1953-05-17", own[2], "2011-03-03"]
    assert own[1] != refs[1] and own[3] != refs[3]
    src, ref, js = tmp_path / "src.txt", tmp_path / "ref.txt", tmp_path / "s.json"
    src.write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    ref.write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    result = run_evaluate("--checkpoint", str(tiny_checkpoint), "--src", str(src), "--ref", str(ref), "--beam", "2",
                          "--batch-size", "2", "--json", str(js), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{src} / {ref}: 4 sentences, beam 2, fp32"
    assert "exact match = 50.00%  (4 sentences)" in result.stdout
    assert re.search(r"^\s+1-10\s+n=3\s+BLEU", result.stdout, re.M)
    assert re.search(r"^\s+11-20\s+n=1\s+BLEU", result.stdout, re.M)
    data = json.loads(js.read_text())
    expected = score(own, refs)
    assert (data["bleu"], data["chrf"]) == (pytest.approx(expected.bleu), pytest.approx(expected.chrf))
    assert [(b["label"], b["n"]) for b in data["buckets"]] == [("1-10", 3), ("11-20", 1)]


def _one_line_error(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    out, err = capsys.readouterr()
    assert rc == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.smoke
def test_evaluate_mismatched_files_is_one_line_error(tiny_checkpoint: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("a\nb\nc\n")
    ref.write_text("a\nb\n")
    msg = _one_line_error(capsys, evaluate_main(["--checkpoint", str(tiny_checkpoint), "--src", str(src),
                                                 "--ref", str(ref)]))
    assert "3 lines" in msg and "2" in msg


@pytest.mark.smoke
def test_evaluate_argument_errors(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = ["--checkpoint", str(tiny_checkpoint)]
    src = tmp_path / "src.txt"
    src.write_text("a\n")
    assert _one_line_error(capsys, evaluate_main([*ckpt, "--src", str(src)])) == "error: --src and --ref go together"
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    msg = _one_line_error(capsys, evaluate_main([*ckpt, "--src", str(empty), "--ref", str(empty)]))
    assert "no sentences" in msg
    assert _one_line_error(capsys, evaluate_main([*ckpt, "--beam", "0"])) == "error: --beam must be >= 1, got 0"
    msg = _one_line_error(capsys, evaluate_main([*ckpt, "--split", "nope"]))
    assert "no split 'nope'" in msg
    msg = _one_line_error(capsys, evaluate_main(["--checkpoint", str(tmp_path / "missing")]))
    assert "checkpoint directory not found" in msg


@pytest.mark.smoke
def test_evaluate_outputs_that_are_inputs_or_unwritable_are_refused_before_decoding(
        tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("march 3, 2011\n5/17/1953\n")
    ref.write_text("2011-03-03\n1953-05-17\n")
    (tmp_path / "link.txt").symlink_to(src)

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoding started")

    monkeypatch.setattr(evaluation, "evaluate_split", boom)
    base = ["--checkpoint", str(tiny_checkpoint), "--src", str(src), "--ref", str(ref)]
    for args, start in ((["--output", str(src)], f"error: --output {src}: is the same file as --src"),
                        (["--output", str(tmp_path / "link.txt")], "error: --output"),
                        (["--json", str(ref)], f"error: --json {ref}: is the same file as --ref"),
                        (["--output", str(tmp_path / "o"), "--json", str(tmp_path / "o")], "error: --json"),
                        (["--output", str(tmp_path / "no" / "hyps.txt")], f"error: --output {tmp_path / 'no'}"),
                        (["--json", str(tmp_path)], f"error: --json {tmp_path}: ")):
        assert _one_line_error(capsys, evaluate_main([*base, *args])).startswith(start)
    assert (src.read_text(), ref.read_text()) == ("march 3, 2011\n5/17/1953\n", "2011-03-03\n1953-05-17\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.smoke
def test_evaluate_buckets_and_the_by_length_plot(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from seq2seq.tools.plots import main as plots_main

    js = tmp_path / "e.json"
    result = run_evaluate("--checkpoint", str(tiny_checkpoint), "--json", str(js), "--buckets", "2", "3", "9")
    assert result.returncode == 0, result.stderr
    buckets = json.loads(js.read_text())["buckets"]
    assert [b["label"] for b in buckets] == [b["label"] for b in buckets if b["n"] > 0]
    test = load_split(load_config(tiny_checkpoint / "config.yaml").data, "test")
    assert sum(b["n"] for b in buckets) == len(test)
    assert {b["label"] for b in buckets} <= {"1-2", "3-3", "4-9", "10+"}
    bad = run_evaluate("--checkpoint", str(tiny_checkpoint), "--buckets", "5", "3")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: --buckets must be increasing positive word counts, got 5 3"
    png = tmp_path / "len.png"
    assert plots_main(["by-length", "--eval", f"a={js}", f"b={js}", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert plots_main(["by-length", "--eval", "nofile", "--out", str(png)]) == 1


@pytest.mark.smoke
def test_results_entry_for_a_run(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """python -m seq2seq results: greedy and beam scores of best/ on both splits, the training
    record from metrics.jsonl; a second entry is added beside it, the same name replaced."""
    from seq2seq.tools import results

    out = tmp_path / "docs" / "results.json"
    argv = ["--run", str(trained_run), "--name", "tiny", "--json", str(out), "--command", "python train.py",
            "--beam", "3"]
    assert results.main(argv) == 0
    (entry,) = json.loads(out.read_text())
    cfg = load_config(trained_run / "config.yaml")
    test = load_split(cfg.data, "test")
    hyps = Translator.from_checkpoint(trained_run / "best").translate_best([s for s, _ in test], beam_size=3)
    assert entry["test"]["beam"]["bleu"] == pytest.approx(score(hyps, [t for _, t in test]).bleu, abs=0.006)
    assert entry["test"]["beam"]["beam"] == 3 and entry[cfg.data.valid_split]["greedy"]["beam"] == 1
    assert entry["epochs"] == 2 and entry["training_seconds"] >= 0 and len(entry["valid_bleu_by_epoch"]) == 2
    assert (entry["test_split"], entry["valid_split"]) == ("test", cfg.data.valid_split)
    assert entry["command"] == "python train.py" and entry["device"]["type"] == "cpu"
    assert capsys.readouterr().out.startswith("| tiny | `python train.py` |")
    assert results.main([*argv[:3], "other", *argv[4:]]) == 0
    assert results.main(argv) == 0
    assert [e["name"] for e in json.loads(out.read_text())] == ["other", "tiny"]
    out.write_text("{broken")
    assert results.main(argv) == 1 and out.read_text() == "{broken"  # never overwrites what it cannot read


def test_by_length_reads_an_entry_of_a_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """plots by-length --eval NAME=FILE: FILE may be a results list; NAME picks its entry (test, greedy)."""
    from seq2seq.tools.plots import read_evaluations

    greedy = {"beam": 1, "buckets": [{"label": "1-8", "n": 3, "bleu": 30.0}]}
    entries = [{"name": "peeky", "test_split": "test_2016_flickr", "valid_split": "val",
                "val": {"greedy": {"beam": 1, "buckets": [{"label": "1-8", "n": 3, "bleu": 10.0}]}},
                "test_2016_flickr": {"greedy": greedy, "beam": {"beam": 5, "buckets": []}}},
               {"name": "other", "test_2016_flickr": {"greedy": {"buckets": []}}}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(entries))
    assert read_evaluations([f"peeky={path}"]) == {"peeky": greedy["buckets"]}
    with pytest.raises(ValueError, match="no entry named 'missing'"):
        read_evaluations([f"missing={path}"])
    with pytest.raises(ValueError, match="not an evaluation JSON with buckets"):  # no test_split recorded
        read_evaluations([f"other={path}"])


@pytest.mark.smoke
def test_evaluate_split_never_writes_over_the_corpus(tiny_checkpoint: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``--split`` reads ``{data.path}/{split}.*``: an --output or --json naming one of those
    files would have replaced the references with hypotheses."""
    from seq2seq.data.synthetic import make_dates

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "val", "test"):
        pairs = make_dates(5, seed=1)
        (corpus / f"{split}.src").write_text("".join(s + "\n" for s, _ in pairs))
        (corpus / f"{split}.tgt").write_text("".join(t + "\n" for _, t in pairs))
    before = {p.name: p.read_bytes() for p in corpus.iterdir()}
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    config = ckpt / "config.yaml"
    text = config.read_text().replace("source: dates", "source: files")
    config.write_text(text.replace("path: ''", f"path: {corpus}"))
    base = ["--checkpoint", str(ckpt), "--split", "test"]
    for option, target in (("--output", corpus / "test.tgt"), ("--json", corpus / "test.src")):
        msg = _one_line_error(capsys, evaluate_main([*base, option, str(target)]))
        assert msg.startswith(f"error: {option} {target}: is the same file as the corpus's {target.name}"), msg
    assert {p.name: p.read_bytes() for p in corpus.iterdir()} == before
    assert evaluate_main([*base, "--output", str(tmp_path / "hyps.txt")]) == 0  # elsewhere: fine


@pytest.mark.smoke
def test_results_scores_another_checkpoint_of_the_run(trained_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--checkpoint last scores run/last (e.g. averaged, from python -m seq2seq average), recorded as such."""
    from seq2seq.tools import results

    out = tmp_path / "results.json"
    argv = ["--run", str(trained_run), "--name", "tiny", "--json", str(out), "--beam", "2"]
    assert results.main([*argv, "--checkpoint", "last"]) == 0
    (entry,) = json.loads(out.read_text())
    cfg = load_config(trained_run / "config.yaml")
    test = load_split(cfg.data, "test")
    hyps = Translator.from_checkpoint(trained_run / "last").translate_best([s for s, _ in test], beam_size=1)
    assert entry["checkpoint"] == "last"
    assert entry["test"]["greedy"]["bleu"] == pytest.approx(score(hyps, [t for _, t in test]).bleu, abs=0.006)
    capsys.readouterr()
    assert results.main([*argv, "--checkpoint", "../elsewhere"]) == 1
    assert "--checkpoint must name a checkpoint folder inside --run" in capsys.readouterr().err


@pytest.mark.smoke
@pytest.mark.parametrize("beam", ["0", "-2"])
def test_results_refuses_a_beam_it_would_not_use(trained_run: Path, tmp_path: Path, beam: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A beam under 1 would decode with the checkpoint's own beam yet be recorded as given: refused
    in one line, nothing written; a translator refuses it too, so no caller records a beam it did not use."""
    from seq2seq.tools import results

    out = tmp_path / "results.json"
    argv = ["--run", str(trained_run), "--name", "tiny", "--json", str(out), "--beam", beam]
    assert _one_line_error(capsys, results.main(argv)) == f"error: --beam must be >= 1, got {beam}"
    assert not out.exists()
    translator = Translator.from_checkpoint(trained_run / "best")
    for call in (lambda: translator.translate_best(["1999/01/02"], beam_size=int(beam)),
                 lambda: translator.translate(["1999/01/02"], beam_size=int(beam))):
        with pytest.raises(ValueError, match=f"beam size must be >= 1, got {beam}"):
            call()
    with pytest.raises(ValueError, match="beam size must be >= 1"):
        results.score_run(trained_run, int(beam))


@pytest.mark.parametrize("text, says", [
    ('{"buckets": 5}', "buckets must be a list"),
    ('{"buckets": [{"label": "1-8", "bleu": 3.0}]}', "buckets[0]: no n"),
    ('{"buckets": [{"label": "1-8", "n": 3}]}', "buckets[0]: no bleu"),
    ('{"buckets": [{"label": 7, "n": 3, "bleu": 3.0}]}', "buckets[0]: label must be a string"),
    ('{"buckets": [{"label": "1-8", "n": "3", "bleu": 3.0}]}', "buckets[0]: n must be a whole number"),
    ('{"buckets": [{"label": "1-8", "n": 3, "bleu": [1]}]}', "buckets[0]: bleu must be a number"),
    ('{"buckets": [{"label": "1-8", "n": 3, "bleu": true}]}', "buckets[0]: bleu must be a number"),
    ('{"buckets": ["1-8"]}', "buckets[0]: must be an object"),
    ('{"nothing": 1}', "no buckets"),
    ("[1, 2]", "no entry named 'a'"),
    ('[{"name": "a", "test_split": ["x"]}]', "test_split"),
    ('[{"name": "a", "test_split": "t", "t": {"greedy": 3}}]', "no buckets"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"buckets": [' + "[" * 70 + "]" * 70 + "]}", "nested too deeply"),
    ("{broken", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_by_length_refuses_malformed_json_in_one_line(text: str | bytes, says: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.tools.plots import main as plots_main

    path = tmp_path / "e.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    png = tmp_path / "len.png"
    msg = _one_line_error(capsys, plots_main(["by-length", "--eval", f"a={path}", "--out", str(png)]))
    assert msg.startswith(f"error: {path}: ") and says in msg, msg
    assert not png.exists()


def test_by_length_refuses_a_file_that_is_not_a_regular_file(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO would block the read forever, /dev/zero would never end."""
    import os

    from seq2seq.tools.plots import main as plots_main

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        argv = ["by-length", "--eval", f"a={path}", "--out", str(tmp_path / "p.png")]
        msg = _one_line_error(capsys, plots_main(argv))
        assert msg.startswith(f"error: {path}: "), msg
