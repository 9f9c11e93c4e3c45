"""Tokenizers: lossless round trips, vocabulary sizes, specials, save/load."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.data.tokenization import (
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    Tokenizer,
    TokenizerError,
    train_tokenizer,
)

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

TRICKY = [
    "Zwei junge weiße Männer sind im Freien.",
    "Un homme âgé, à côté d'un œuf.",
    "👍🏽 thumbs up",
    "日本語のテキスト、中文文本",
    "  leading and trailing  ",
    "double  spaces   here",
    "tabs\tand\nnewlines\r\n",
    "nul\x00byte and \x1b escape",
    "literal specials <s> </s> <pad> <unk> <0x41>",
    "ﬁ ligature, Å (U+212B) and e\u0301 stay as they are",
    " ",
    "",
]


def _dates(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(DAYS)}, {rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1900, 2099)}"
            for _ in range(n)]


def _sentences(n: int, seed: int = 0) -> list[str]:
    """Pseudo-sentences of random words: plenty of merges for a BPE of a few hundred."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzäöüéèàß") for _ in range(rng.randint(1, 9)))
             for _ in range(2000)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return train_tokenizer(_sentences(3000), "bpe", vocab_size=500)


@pytest.fixture(scope="module")
def char() -> Tokenizer:
    return train_tokenizer(_dates(2000) + [f"{a}+{b}" for a in range(30) for b in range(30)], "char")


@pytest.fixture(params=["bpe", "char"])
def tok(request: pytest.FixtureRequest, bpe: Tokenizer, char: Tokenizer) -> Tokenizer:
    return {"bpe": bpe, "char": char}[request.param]


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_tricky_strings(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(i > UNK for i in ids)  # no specials and no <unk>: nothing is unknown
    assert len(ids) >= (1 if text else 0)


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_round_trip_any_text_bpe(bpe: Tokenizer, text: str) -> None:
    assert bpe.decode(bpe.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_round_trip_any_text_char(char: Tokenizer, text: str) -> None:
    assert char.decode(char.encode(text)) == text


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(st.text(max_size=30), max_size=8))
def test_encode_batch_matches_encode(bpe: Tokenizer, char: Tokenizer, texts: list[str]) -> None:
    for t in (bpe, char):
        assert t.encode_batch(texts) == [t.encode(x) for x in texts]


def test_special_ids(tok: Tokenizer) -> None:
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert [tok._hf.token_to_id(s) for s in SPECIAL_TOKENS] == [0, 1, 2, 3]
    ids = tok.encode("may 5, 1999")
    assert tok.decode([BOS, *ids, EOS, PAD, PAD]) == "may 5, 1999"
    assert tok.decode([UNK]) == ""


def test_encode_adds_no_bos_eos(tok: Tokenizer) -> None:
    ids = tok.encode("a")
    assert BOS not in ids and EOS not in ids and len(ids) == 1


def test_bpe_vocab_size_close_to_requested(bpe: Tokenizer) -> None:
    assert bpe.kind == "bpe"
    assert 480 <= bpe.vocab_size <= 500


def test_bpe_merges_common_words() -> None:
    tok = train_tokenizer(["the cat sat on the mat"] * 50, "bpe", vocab_size=300)
    assert len(tok.encode("the cat")) < len("the cat")


def test_bpe_rejects_tiny_vocab_and_unknown_kind() -> None:
    with pytest.raises(ValueError):
        train_tokenizer(["abc"], "bpe", vocab_size=100)
    with pytest.raises(ValueError):
        train_tokenizer(["abc"], "word")


def test_bpe_refuses_a_vocab_no_corpus_can_fill() -> None:
    """vocab_size=2**32 aborted the process inside the tokenizers library."""
    with pytest.raises(ValueError, match=r"BPE vocab_size must be <= 1000000, got 4294967296"):
        train_tokenizer(["abc"], "bpe", vocab_size=2**32)
    assert train_tokenizer(["the cat sat on the mat"] * 5, "bpe", vocab_size=1_000_000).vocab_size < 300


def test_char_one_token_per_seen_character(char: Tokenizer) -> None:
    assert char.kind == "char"
    assert char.vocab_size < 400
    text = "tuesday, september 27, 1994"
    ids = char.encode(text)
    assert len(ids) == len(text)
    assert dict(zip(text, ids)) == {c: char.encode(c)[0] for c in set(text)}  # one id per character
    assert len(set(ids)) == len(set(text))
    assert len(char.encode("16+75")) == 5


def test_char_unseen_characters_fall_back_to_bytes(char: Tokenizer) -> None:
    for c in ["Q", "é", "👍", "日"]:
        ids = char.encode(c)
        assert len(ids) == len(c.encode("utf-8"))
        assert char.decode(ids) == c


def test_char_vocab_is_specials_chars_bytes() -> None:
    tok = train_tokenizer(["abca", "cb"], "char")
    assert tok.vocab_size == 4 + 3 + 256
    assert tok.encode("abc") == [4, 5, 6]


def test_save_load_round_trip(tok: Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tok.json"
    tok.save(path)
    json.loads(path.read_text(encoding="utf-8"))  # one plain JSON file
    loaded = Tokenizer.load(str(path))
    assert loaded.kind == tok.kind
    assert loaded.vocab_size == tok.vocab_size
    for text in TRICKY + _dates(20, seed=1) + _sentences(20, seed=1):
        assert loaded.encode(text) == tok.encode(text)
    assert Tokenizer.from_json(tok.to_json()).encode("x y") == tok.encode("x y")


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(TokenizerError, match="nope.json") as e:
        Tokenizer.load(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("content", [
    "not json at all {",
    "[1, 2, 3]",
    '{"format": "seq2seq-tokenizer/1", "kind": "char", "tokenizer": {"model": 5}}',
    '{"format": "seq2seq-tokenizer/1", "kind": "word", "tokenizer": {}}',
    '{"format": "something-else", "kind": "bpe", "tokenizer": {}}',
])
def test_load_corrupt_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError, match="bad.json") as e:
        Tokenizer.load(path)
    assert "\n" not in str(e.value)


def test_load_truncated_and_binary_file(char: Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text(char.to_json()[:200], encoding="utf-8")
    with pytest.raises(TokenizerError, match="cut.json"):
        Tokenizer.load(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TokenizerError, match="cut.json"):
        Tokenizer.load(path)


def test_load_rejects_wrong_special_ids(char: Tokenizer, tmp_path: Path) -> None:
    data = json.loads(char.to_json())
    vocab = data["tokenizer"]["model"]["vocab"]
    vocab["<s>"], vocab["<pad>"] = vocab["<pad>"], vocab["<s>"]
    path = tmp_path / "swapped.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerError, match="swapped.json"):
        Tokenizer.load(path)
