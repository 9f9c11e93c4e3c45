"""Tests for seq2seq.data.corpus, seq2seq.data.hub and seq2seq.data.synthetic: every source, its errors, and the
synthetic tasks."""

from __future__ import annotations

import datetime
import gzip
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here; set before datasets is imported
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

from seq2seq.config import ConfigError, DataConfig  # noqa: E402
from seq2seq.data import (
    corpus,
    hub,
    synthetic,  # noqa: E402
)
from seq2seq.data.corpus import (  # noqa: E402
    CorpusError,
    drop_empty,
    load_corpus,
    load_split,
    read_jsonl,
    read_parallel_files,
    read_tsv,
)
from seq2seq.data.synthetic import make_addition, make_addition_textbook, make_dates  # noqa: E402

# the raw Multi30k files (python -m seq2seq download multi30k writes them to data/multi30k)
MULTI30K = Path(os.environ.get("SEQ2SEQ_MULTI30K", Path(__file__).resolve().parents[1] / "data" / "multi30k"))


def error(fn: Callable[[], object]) -> str:
    """The CorpusError message of ``fn()``; it must be one line."""
    with pytest.raises(CorpusError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def files_cfg(tmp_path: Path, **kw: Any) -> DataConfig:
    return DataConfig(source="files", path=str(tmp_path), src_lang="de", tgt_lang="en", **kw)


def write_splits(tmp_path: Path, gz: bool = False) -> None:
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        write(tmp_path / f"{split}.de", "".join(f"{split} de {i}\n" for i in range(n)).encode(), gz)
        write(tmp_path / f"{split}.en", "".join(f"{split} en {i}\n" for i in range(n)).encode(), gz)


# ---------------------------------------------------------------------------- files


@pytest.mark.parametrize("gz", [False, True])
def test_parallel_files_keep_text_exactly(tmp_path: Path, gz: bool) -> None:
    src = write(tmp_path / "a.de", b'  zwei  M\xc3\xa4nner \r\nx\ty\rz\n"q" \'r\'\nlast', gz)
    tgt = write(tmp_path / "a.en", b"two men\r\nb\n\xe2\x80\xa8c\nend\n", gz)
    pairs = read_parallel_files(src, tgt)
    assert pairs == [("  zwei  Männer ", "two men"), ("x\ty\rz", "b"), ('"q" \'r\'', "\u2028c"),
                     ("last", "end")]


@pytest.mark.parametrize("gz", [False, True])
def test_load_corpus_files_finds_plain_or_gz(tmp_path: Path, gz: bool) -> None:
    write_splits(tmp_path, gz)
    c = load_corpus(files_cfg(tmp_path))
    assert (len(c.train), len(c.valid), len(c.test)) == (5, 2, 3)
    assert c.train[4] == ("train de 4", "train en 4")
    assert c.test[0] == ("test de 0", "test en 0")
    assert "train: 5 pairs read, 0 empty pairs dropped" in c.report
    assert load_split(files_cfg(tmp_path), "val") == c.valid


def test_empty_pairs_dropped_and_reported(tmp_path: Path) -> None:
    write_splits(tmp_path)
    write(tmp_path / "train.de", b"a\n\nc\n  \ne\n")
    write(tmp_path / "train.en", b"A\nB\n\nD\nE\n")
    c = load_corpus(files_cfg(tmp_path))
    assert c.train == [("a", "A"), ("e", "E")]
    assert "train: 5 pairs read, 3 empty pairs dropped" in c.report
    assert drop_empty([("a", "b"), ("", "b"), ("a", "\t "), ("\u3000", "x")]) == ([("a", "b")], 3)


def test_mismatched_line_counts(tmp_path: Path) -> None:
    src, tgt = write(tmp_path / "a.de", b"1\n2\n3\n"), write(tmp_path / "a.en", b"1\n2\n", gz=True)
    msg = error(lambda: read_parallel_files(src, tgt))
    assert str(src) in msg and str(tgt) in msg and "3" in msg and "2" in msg


def test_missing_file(tmp_path: Path) -> None:
    write_splits(tmp_path)
    (tmp_path / "test.en").unlink()
    msg = error(lambda: load_corpus(files_cfg(tmp_path)))
    assert f"{tmp_path}/test.en" in msg and f"{tmp_path}/test.en.gz" in msg and "not found" in msg


def test_unreadable_files(tmp_path: Path) -> None:
    write(tmp_path / "a.en", b"x\n")
    (tmp_path / "a.de").mkdir()  # a directory where a file should be
    msg = error(lambda: read_parallel_files(tmp_path / "a.de", tmp_path / "a.en"))
    assert msg.startswith(f"{tmp_path / 'a.de'}: cannot read")
    (tmp_path / "b.de.gz").write_bytes(b"\x1f\x8b" + b"not really gzip")
    msg = error(lambda: read_parallel_files(tmp_path / "b.de", tmp_path / "a.en"))
    assert msg.startswith(f"{tmp_path / 'b.de.gz'}: cannot read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_denied(tmp_path: Path) -> None:
    src, tgt = write(tmp_path / "a.de", b"x\n"), write(tmp_path / "a.en", b"y\n")
    src.chmod(0)
    msg = error(lambda: read_parallel_files(src, tgt))
    assert str(src) in msg and "ermission" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_invalid_utf8(tmp_path: Path, gz: bool) -> None:
    write_splits(tmp_path, gz)
    write(tmp_path / "train.de", b"ok\nbad \xff byte\nfine\ncut \xc3\n", gz)
    write(tmp_path / "train.en", b"1\n2\n3\n4\n", gz)
    msg = error(lambda: load_corpus(files_cfg(tmp_path)))
    assert "train.de" in msg and "line 2" in msg and "UTF-8" in msg
    c = load_corpus(files_cfg(tmp_path, invalid_utf8="skip"))
    assert c.train == [("ok", "1"), ("fine", "3")]
    assert "train: 2 pairs read, 0 empty pairs dropped, 2 pairs with invalid UTF-8 skipped" in c.report


def test_empty_corpus(tmp_path: Path) -> None:
    write_splits(tmp_path)
    write(tmp_path / "val.de", b"")
    write(tmp_path / "val.en", b"")
    assert "val.de" in error(lambda: load_corpus(files_cfg(tmp_path)))
    write(tmp_path / "val.de", b" \n\n")
    write(tmp_path / "val.en", b"a\nb\n")
    assert "val.de" in error(lambda: load_split(files_cfg(tmp_path), "val"))


# ---------------------------------------------------------------------------- tsv and jsonl


def test_tsv_keeps_quotes(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", b'He said "hi"\tEr sagte \xe2\x80\x9ehallo\xe2\x80\x9c\n'
                                         b'"a\tb"\n\'x\'\t""\r\n\nlast\tone')
    assert read_tsv(path) == [('He said "hi"', "Er sagte „hallo“"), ('"a', 'b"'), ("'x'", '""'),
                              ("last", "one")]


def test_tsv_bad_column_count(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", b"a\tb\nc\td\te\n")
    msg = error(lambda: read_tsv(path))
    assert str(path) in msg and "line 2" in msg and "3" in msg
    write(tmp_path / "train.tsv", b"a\tb\nno tab here\n")
    assert "line 2" in error(lambda: read_tsv(path))


def test_tsv_source(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        write(tmp_path / f"{split}.tsv", f"{split} a\t{split} b\n\t\n".encode())
    c = load_corpus(DataConfig(source="tsv", path=str(tmp_path)))
    assert c.valid == [("val a", "val b")]
    assert "val: 2 pairs read, 1 empty pairs dropped" in c.report


def test_jsonl_both_forms(tmp_path: Path) -> None:
    lines = [{"de": "Hallo \"Welt\"", "en": "Hello", "id": 1},
             {"translation": {"de": "Ja", "en": "Yes", "fr": "Oui"}}]
    path = write(tmp_path / "train.jsonl", ("\n".join(map(json.dumps, lines)) + "\n\n  \n").encode())
    assert read_jsonl(path, "de", "en") == [('Hallo "Welt"', "Hello"), ("Ja", "Yes")]
    assert load_split(DataConfig(source="jsonl", path=str(tmp_path), src_lang="de", tgt_lang="en"),
                      "train") == [('Hallo "Welt"', "Hello"), ("Ja", "Yes")]
    for split in ("val", "test"):
        write(tmp_path / f"{split}.jsonl", b'{"source": "s", "target": "t"}\n')
    cfg = DataConfig(source="jsonl", path=str(tmp_path), src_field="source", tgt_field="target")
    assert load_split(cfg, "val") == load_split(cfg, "test") == [("s", "t")]
    msg = error(lambda: load_corpus(cfg))  # train.jsonl has no 'source'
    assert "train.jsonl: line 1: missing key 'source'" in msg and "de, en, id" in msg


@pytest.mark.parametrize(("line", "expect"), [
    (b'{"de": "a", "en": "b"', "invalid JSON"),
    (b'["a", "b"]', "JSON object"),
    (b'{"de": "a", "fr": "b"}', "'en'"),
    (b'{"translation": {"de": "a"}}', "'en'"),
    (b'{"de": "a", "en": 3}', "'en'"),
    (b'{"de": null, "en": "b"}', "'de'"),
])
def test_jsonl_bad_line(tmp_path: Path, line: bytes, expect: str) -> None:
    path = write(tmp_path / "train.jsonl", b'{"de": "ok", "en": "ok"}\n' + line + b"\n")
    msg = error(lambda: read_jsonl(path, "de", "en"))
    assert msg.startswith(f"{path}: line 2") and expect in msg


# ---------------------------------------------------------------------------- Hugging Face datasets


def test_hf_saved_dataset_dict_translation_column(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    def split(n: int, tag: str) -> Dataset:
        return Dataset.from_dict({"translation": [{"de": f"{tag} de {i}", "en": f"{tag} en {i}"}
                                                  for i in range(n)]})

    DatasetDict({"train": split(4, "tr"), "validation": split(2, "va"), "test": split(1, "te")}
                ).save_to_disk(str(tmp_path / "ds"))
    cfg = DataConfig(source="hf", path=str(tmp_path / "ds"), src_lang="de", tgt_lang="en")
    c = load_corpus(cfg)  # valid_split "val" finds "validation"
    assert c.train[3] == ("tr de 3", "tr en 3")
    assert c.valid == [("va de 0", "va en 0"), ("va de 1", "va en 1")]
    assert len(c.test) == 1
    msg = error(lambda: load_split(cfg, "test_2016_flickr"))
    assert "test_2016_flickr" in msg and "train, validation, test" in msg
    czech = DataConfig(source="hf", path=cfg.path, src_lang="de", tgt_lang="cs")
    msg = error(lambda: load_split(czech, "train"))
    assert "'cs'" in msg and "de, en" in msg


def test_hf_columns_and_data_files(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_dict({"src": ["a", "b", " "], "tgt": ["A", "B", "C"], "other": [1, 2, 3]})
    DatasetDict({"train": ds, "val": ds, "test": ds}).save_to_disk(str(tmp_path / "ds"))
    cfg = DataConfig(source="hf", path=str(tmp_path / "ds"), src_field="src", tgt_field="tgt")
    c = load_corpus(cfg)
    assert c.train == c.valid == [("a", "A"), ("b", "B")]
    assert "train: 3 pairs read, 1 empty pairs dropped" in c.report
    no_tgt = DataConfig(source="hf", path=cfg.path, src_field="src", tgt_lang="en")
    msg = error(lambda: load_split(no_tgt, "train"))
    assert "'en'" in msg and "src, tgt, other" in msg
    # a directory of plain data files, loaded by datasets.load_dataset
    (tmp_path / "files").mkdir()
    write(tmp_path / "files" / "train.jsonl", b'{"de": "x", "en": "X"}\n{"de": "y", "en": "Y"}\n')
    assert load_split(DataConfig(source="hf", path=str(tmp_path / "files"), src_lang="de", tgt_lang="en"),
                      "train") == [("x", "X"), ("y", "Y")]


def test_hf_hub_name_fails_fast_offline() -> None:
    cfg = DataConfig(source="hf", path="nobody-here/no-such-dataset", src_lang="de", tgt_lang="en")
    start = time.perf_counter()
    msg = error(lambda: load_corpus(cfg))
    assert time.perf_counter() - start < 5
    assert msg.startswith("nobody-here/no-such-dataset: ") and "unreachable" in msg and "cache" in msg


def test_hf_hub_unreachable_without_offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with datasets imported in online mode, an unreachable hub is not retried for 20 s."""
    import datasets.config
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert not hub._hub_reachable(2.0)
    start = time.perf_counter()
    msg = error(lambda: load_split(DataConfig(source="hf", path="no-such-dataset"), "train"))
    assert time.perf_counter() - start < 5 and "unreachable" in msg
    assert datasets.config.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ  # restored


def test_hf_missing_directory(tmp_path: Path) -> None:
    msg = error(lambda: load_corpus(DataConfig(source="hf", path=str(tmp_path / "nope"))))
    assert str(tmp_path / "nope") in msg and "not found" in msg


# ---------------------------------------------------------------------------- synthetic tasks

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]
WEEKDAYS_FROM_SATURDAY = ["saturday", "sunday", "monday", "tuesday", "wednesday", "thursday", "friday"]
FULL = "|".join(MONTHS)
ABBR = "|".join(m[:3] for m in MONTHS)
WD = "|".join(WEEKDAYS_FROM_SATURDAY)
REQUIRED_FORMATS = {  # example -> a regex that only that format's outputs match
    "september 27, 1994": rf"(?:{FULL}) \d{{1,2}}, \d{{4}}",
    "September 27, 1994": rf"(?:{FULL.title()}) \d{{1,2}}, \d{{4}}",
    "SEPTEMBER 27, 1994": rf"(?:{FULL.upper()}) \d{{1,2}}, \d{{4}}",
    "27 September 1994": rf"\d{{1,2}} (?:{FULL.title()}) \d{{4}}",
    "Sep 27 1994": rf"(?:{ABBR.title()}) \d{{1,2}} \d{{4}}",
    "sep 27, 1994": rf"(?:{ABBR}) \d{{1,2}}, \d{{4}}",
    "tuesday, september 27, 1994": rf"(?:{WD}), (?:{FULL}) \d{{1,2}}, \d{{4}}",
    "TUESDAY, SEPTEMBER 27, 1994": rf"(?:{WD.upper()}), (?:{FULL.upper()}) \d{{1,2}}, \d{{4}}",
    "9/27/1994": r"[1-9]\d?/[1-9]\d?/\d{4}",
    "27.09.1994": r"\d\d\.\d\d\.\d{4}",
    "1994/09/27": r"\d{4}/\d\d/\d\d",
}


def zeller_weekday(y: int, m: int, d: int) -> str:
    """Weekday by Zeller's congruence, independent of datetime."""
    if m < 3:
        m, y = m + 12, y - 1
    k, j = y % 100, y // 100
    return WEEKDAYS_FROM_SATURDAY[(d + 13 * (m + 1) // 5 + k + k // 4 + j // 4 + 5 * j) % 7]


def parse_date(text: str) -> tuple[int, int, int]:
    """(year, month, day) of any generated source, checking a weekday if one is written."""
    if m := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text):
        return int(m[3]), int(m[1]), int(m[2])
    if m := re.fullmatch(r"(\d\d)\.(\d\d)\.(\d{4})", text):
        return int(m[3]), int(m[2]), int(m[1])
    if m := re.fullmatch(r"(\d{4})/(\d\d)/(\d\d)", text):
        return int(m[1]), int(m[2]), int(m[3])
    words = text.lower().replace(",", "").split()
    weekday = words.pop(0) if len(words) == 4 else None  # "tue sep 27 1994"
    day_first = words[0].isdigit()
    day, month, year = (words[0], words[1], words[2]) if day_first else (words[1], words[0], words[2])
    mon = next(i for i, name in enumerate(MONTHS, 1) if month in (name, name[:3]))
    y, mo, d = int(year), mon, int(day)
    if weekday is not None:
        real = zeller_weekday(y, mo, d)
        assert weekday in (real, real[:3]), f"{text}: weekday should be {real}"
    return y, mo, d


def test_dates_meaning_and_formats() -> None:
    pairs = make_dates(4000, seed=7)
    seen = {example: 0 for example in REQUIRED_FORMATS}
    for src, tgt in pairs:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", tgt)
        assert parse_date(src) == tuple(map(int, tgt.split("-"))), src
        datetime.date.fromisoformat(tgt)  # a real calendar date
        for example, pattern in REQUIRED_FORMATS.items():
            seen[example] += bool(re.fullmatch(pattern, src))
    assert min(seen.values()) >= 100, seen  # ~4000/14 each
    years = [int(t[:4]) for _, t in pairs]
    assert 1900 <= min(years) <= 1905 and 2094 <= max(years) <= 2099
    for example in REQUIRED_FORMATS:  # the docs' examples are what the formats write
        assert example in {f(datetime.date(1994, 9, 27)) for f in synthetic.DATE_FORMATS.values()}
    assert len({s for s, _ in pairs}) == len(pairs)  # redraws keep sources unique at this size


def test_dates_weekdays_across_the_range() -> None:
    fmt = synthetic.DATE_FORMATS["TUESDAY, SEPTEMBER 27, 1994"]
    for d in (datetime.date(1900, 1, 1), datetime.date(1900, 3, 1), datetime.date(2000, 2, 29),
              datetime.date(2099, 12, 31)):
        assert fmt(d).split(",")[0].lower() == zeller_weekday(d.year, d.month, d.day)


def test_addition() -> None:
    pairs = make_addition(5000, seed=3)
    operands = []
    for src, tgt in pairs:
        m = re.fullmatch(r"(0|[1-9]\d{0,2})\+(0|[1-9]\d{0,2})", src)
        assert m, src
        assert tgt == str(int(m[1]) + int(m[2]))
        operands += [int(m[1]), int(m[2])]
    assert min(operands) < 10 and max(operands) > 990
    assert sum(len(str(x)) == 3 for x in operands) > 0.8 * len(operands)  # uniform: mostly 3 digits


def test_addition_textbook_style() -> None:
    pairs = make_addition_textbook(5000, seed=3)
    assert pairs == make_addition_textbook(5000, seed=3) != make_addition_textbook(5000, seed=4)
    problems, operands = set(), []
    for src, tgt in pairs:
        assert len(src) == 7 and len(tgt) == 4, (src, tgt)  # padded with spaces as in addition.txt
        m = re.fullmatch(r"(\d{1,3})\+(\d{1,3}) *", src)
        assert m, src
        a, b = int(m[1]), int(m[2])
        assert str(a) == m[1] and str(b) == m[2]  # no leading zeros
        assert tgt == str(a + b).ljust(4)
        problems.add((min(a, b), max(a, b)))
        operands += [a, b]
    assert len(problems) == len(pairs)  # each problem once, "3+5" excluding "5+3"
    # operands of 1 to 3 random digits: about a third are below 10 (1% if uniform in 0..999)
    assert 0.2 < sum(x < 10 for x in operands) / len(operands) < 0.4
    assert {(a, b) for a, b in problems if b < 10} == {(a, b) for a in range(10) for b in range(a, 10)}
    # shuffled after drawing: the short problems are not all at the front
    first, last = pairs[:2500], pairs[2500:]
    assert abs(sum(s.count(" ") for s, _ in first) - sum(s.count(" ") for s, _ in last)) < 0.1 * sum(
        s.count(" ") for s, _ in pairs)


def test_addition_textbook_splits_and_size_limit() -> None:
    cfg = DataConfig(source="addition", addition_style="textbook", size=2000, seed=5)
    c = load_corpus(cfg)
    assert "textbook" in c.report[0]
    assert c.train + c.valid + c.test == make_addition_textbook(2000, 5)
    assert list(corpus.iter_synthetic(cfg)) == c.train + c.valid + c.test  # what prepare streams
    assert load_split(cfg, "test") == c.test
    with pytest.raises(ConfigError, match=r"data\.size.*250,000"):
        DataConfig(source="addition", addition_style="textbook", size=300_000)
    DataConfig(source="addition", size=300_000)  # the uniform style has no such limit


@pytest.mark.parametrize("make", [make_dates, make_addition])
def test_synthetic_deterministic_any_size(make: Callable[[int, int], list[tuple[str, str]]]) -> None:
    assert make(500, 1) == make(500, 1)
    assert make(500, 1) != make(500, 2)
    assert make(3, 1) == make(500, 1)[:3] and len(make(3, 1)) == 3
    assert make(0, 1) == []
    assert len(make(10001, 5)) == 10001


def test_synthetic_splits() -> None:
    cfg = DataConfig(source="dates", size=1000, valid_fraction=0.1, test_fraction=0.05, seed=9)
    c = load_corpus(cfg)
    assert (len(c.train), len(c.valid), len(c.test)) == (850, 100, 50)
    assert c.train + c.valid + c.test == make_dates(1000, 9)
    assert load_split(cfg, "val") == load_split(cfg, cfg.valid_split) == c.valid
    assert load_split(cfg, "test") == c.test and load_split(cfg, "train") == c.train
    assert "no split 'dev2'" in error(lambda: load_split(cfg, "dev2"))
    tiny = load_corpus(DataConfig(source="addition", size=3, seed=1))
    assert (len(tiny.train), len(tiny.valid), len(tiny.test)) == (1, 1, 1)
    none = load_corpus(DataConfig(source="addition", size=10, valid_fraction=0.0, test_fraction=0.0))
    assert (len(none.train), none.valid, none.test) == (10, [], [])


# ---------------------------------------------------------------------------- Multi30k


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="Multi30k not available")
def test_multi30k() -> None:
    cfg = DataConfig(source="files", path=str(MULTI30K), src_lang="de", tgt_lang="en",
                     valid_split="val", test_split="test_2016_flickr")
    c = load_corpus(cfg)
    assert (len(c.train), len(c.valid), len(c.test)) == (29000, 1014, 1000)
    assert c.train[0] == ("Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
                          "Two young, White males are outside near many bushes.")
    assert c.test[-1][1] == "A girl at the shore of a beach with a mountain in the distance."
    assert not any("\n" in s or "\n" in t for s, t in c.train)
    assert "test_2016_flickr: 1000 pairs read, 0 empty pairs dropped" in c.report


def test_a_missing_data_folder_names_it_and_the_command_that_fills_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    def files(path: str) -> DataConfig:
        return DataConfig(source="files", path=path, src_lang="de", tgt_lang="en", valid_split="val",
                          test_split="test_2016_flickr")

    assert error(lambda: load_corpus(files("data/multi30k"))) == (
        "data.path: folder data/multi30k is missing; fill it with: python -m seq2seq download multi30k")
    elsewhere = tmp_path / "corpora" / "multi30k"
    assert error(lambda: load_corpus(files(str(elsewhere)))) == (
        f"data.path: folder {elsewhere} is missing; fill it with: "
        f"python -m seq2seq download multi30k --out {elsewhere}")
    assert error(lambda: load_corpus(files("data/mine"))) == "data.path: folder data/mine is missing"
    (tmp_path / "data" / "mine").mkdir(parents=True)  # the folder is there, a file is not
    assert error(lambda: load_corpus(files("data/mine"))).startswith("data/mine/train.de: file not found")


@pytest.mark.smoke  # the real script
def test_a_shipped_multi30k_config_without_its_data_says_how_to_fetch_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    config = root / "configs" / "multi30k_de_en.yaml"
    done = subprocess.run([sys.executable, str(root / "train.py"), "--config", str(config),
                           "--out", str(tmp_path / "run")], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == ("error: data.path: folder data/multi30k is missing; "
                                           "fill it with: python -m seq2seq download multi30k"), done.stderr
