"""Prepared stores: the prepare step streams the corpus into flat token files, and training
streams batches back from them a chunk at a time (seq2seq/data/store.py)."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seq2seq.config import load_config
from seq2seq.data import corpus, store, synthetic
from seq2seq.data.batching import encode_pairs, epoch_batches
from seq2seq.data.store import Store, StoreError, prepare
from seq2seq.data.tokenization import train_tokenizers
from seq2seq.tools.prepare import main as prepare_main
from seq2seq.training import batches as training_batches
from seq2seq.training.batches import prepare_data
from seq2seq.training.trainer import train

ROOT = Path(__file__).resolve().parent.parent
SIZE = ("data.size=1000",)  # 900 training pairs
SMALL = {"block": 16, "chunk_blocks": 8}  # 57 blocks in 8 chunks of up to 128 examples


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 900 date pairs, prepared while loading the corpus into memory is forbidden."""
    out = tmp_path_factory.mktemp("store") / "dates"
    cfg = load_config(ROOT / "configs" / "dates.yaml", SIZE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpus, "load_corpus", lambda *a: pytest.fail("prepare read the whole corpus"))
        mp.setattr(synthetic, "make_dates", lambda *a: pytest.fail("prepare made the whole corpus as a list"))
        prepare(cfg.data, out, say=lambda line: None)
    return out


def streamed_ids(st: Store, seed: int, **kw: Any) -> list[list[int]]:
    """Batch by batch, the example ids of one epoch."""
    return [b.index.tolist() for b in epoch_batches(st.chunks(seed), reverse=True, **{"batch_size": 32, **kw})]


def test_store_holds_the_corpus_as_memory_would(prepared: Path) -> None:
    """Same tokenizers (trained on all 900 pairs: fewer than TOKENIZER_SAMPLE), same examples, same
    order as the in-memory path; valid and test splits kept as text."""
    cfg = load_config(ROOT / "configs" / "dates.yaml", SIZE)
    c = corpus.load_corpus(cfg.data)
    src_tok, tgt_tok = train_tokenizers(c.train, "char")
    st = Store(prepared)
    assert (st.src_tok.to_json(), st.tgt_tok.to_json()) == (src_tok.to_json(), tgt_tok.to_json())
    assert st.examples(0, st.size) == encode_pairs(c.train, src_tok, tgt_tok, cfg.data.max_len)[0]
    assert (st.valid_pairs(), st.test_pairs()) == (c.valid, c.test)
    assert st.dtype == np.uint16  # a char vocabulary of ~300 ids: two bytes a token
    for side, name in enumerate(("train.src.bin", "train.tgt.bin")):
        assert (prepared / name).stat().st_size == 2 * sum(len(e[side]) for e in st.examples(0, st.size))


@pytest.mark.parametrize("max_tokens", [0, 300])
def test_every_example_exactly_once_per_epoch(prepared: Path, max_tokens: int) -> None:
    st = Store(prepared, **SMALL)
    chunks = list(st.chunks(seed=5))
    assert len(chunks) == 8 and all(len(examples) <= 16 * 8 for examples, _, _ in chunks)  # bounded: a chunk
    epoch = streamed_ids(st, 5, max_tokens=max_tokens)
    assert sorted(i for batch in epoch for i in batch) == list(range(900))
    if not max_tokens:
        assert all(len(b) <= 32 for b in epoch)
    # batches are length-bucketed within their chunk: source lengths spread less than in unsorted batches
    lengths = [len(s) for s, _ in st.examples(0, st.size)]

    def median_spread(batches: list[list[int]]) -> float:
        return float(np.median([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]))

    unsorted = [list(range(i, min(i + 32, 900))) for i in range(0, 900, 32)]
    assert median_spread(epoch) < median_spread(unsorted) / 2


def test_two_ranks_share_each_global_batch(prepared: Path) -> None:
    """Rank 0 and rank 1 of a 2-process run together see what one process with twice the batch sees."""
    st = Store(prepared, **SMALL)
    one = streamed_ids(st, 3, batch_size=32)
    ranks = [streamed_ids(st, 3, batch_size=16, rank=r, world=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # the same number of steps on every rank
    for a, b, both in zip(*ranks, one):
        assert sorted(a + b) == sorted(both) and abs(len(a) - len(b)) <= 1


def test_epochs_are_deterministic_per_seed(prepared: Path) -> None:
    st = Store(prepared, **SMALL)
    a, b, c = streamed_ids(st, 1), streamed_ids(st, 1), streamed_ids(st, 2)
    assert a == b
    assert a != c and sorted(map(sorted, a)) != sorted(map(sorted, c))  # other order, other batches
    resumed = [x.index.tolist() for x in epoch_batches(st.chunks(1), batch_size=32, reverse=True, skip=5)]
    assert resumed == a[5:]  # resuming mid-epoch skips exactly the batches done


def test_a_chunk_reads_only_its_own_bytes(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded memory: the files are raw arrays on disk (np.memmap maps them as they are), the store
    object holds none of them, and a chunk reads its own examples' bytes and nothing else."""
    st = Store(prepared, **SMALL)
    src = np.memmap(prepared / "train.src.bin", dtype=st.dtype, mode="r")
    offsets = np.memmap(prepared / "train.src_offsets.bin", dtype=np.int64, mode="r")
    assert offsets.shape == (st.size + 1,) and src.shape == (st.tokens["src"],)
    assert src[offsets[7]:offsets[8]].tolist() == st.examples(7, 8)[0][0]
    del src, offsets
    assert not [v for v in vars(st).values() if isinstance(v, (np.ndarray, list)) and len(v) > 100]

    reads: list[int] = []
    real = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    examples, ids, _ = next(st.chunks(seed=0))
    tokens = sum(len(s) + len(t) for s, t in examples) * st.dtype.itemsize
    offset_bytes = 2 * 8 * (len(examples) + 8)  # n + 1 int64 offsets per side for each of the 8 blocks
    assert sum(reads) == tokens + offset_bytes < sum(f.stat().st_size for f in prepared.glob("*.bin")) / 5

    cfg = load_config(ROOT / "configs" / "dates.yaml", [*SIZE, "data.reverse_source=false"])
    st.check(cfg.data)  # reversal happens when batching: the same store serves
    other = load_config(ROOT / "configs" / "dates.yaml", ["data.size=2000"])
    with pytest.raises(StoreError, match=r"prepared from another data config \(data.size: 1000 in the store"):
        st.check(other.data)

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in prepared.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes()[:-2] if f.name == "train.tgt.bin" else f.read_bytes())
    with pytest.raises(StoreError, match="train.tgt.bin: missing or not"):
        Store(damaged)
    with pytest.raises(StoreError, match="no prepared store here"):
        Store(tmp_path / "nothing")


@pytest.mark.smoke
def test_training_streams_from_the_store(prepared: Path, tmp_path: Path, tiny_config: Any, metrics: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end, the corpus never loaded: batches come from the store; stopped mid-epoch by a
    signal and resumed, the run ends as the uninterrupted one does."""
    monkeypatch.setattr(training_batches, "load_corpus", lambda *a: pytest.fail("training read the corpus"))
    cfg = tiny_config(*SIZE, f"data.prepared={prepared}", "train.batch_size=64", "train.log_every=1")
    data = prepare_data(cfg)
    assert data.train == [] and data.store is not None and len(data.valid) == 50
    summary = train(cfg, tmp_path / "run")
    assert (summary["epoch"], summary["step"]) == (2, 2 * 15)  # 900 pairs: 15 batches of up to 64 an epoch
    records = metrics(tmp_path / "run")
    assert [r["epoch"] for r in records if "valid/loss" in r] == [1, 2]

    from test_training import sigterm_at  # the same SIGTERM helper as the in-memory resume tests

    sigterm_at(20, cfg, tmp_path / "stopped", monkeypatch)
    progress = json.loads((tmp_path / "stopped" / "last" / "trainer.json").read_text())["progress"]
    assert (progress["epoch"], progress["batch_in_epoch"]) == (1, 5)
    train(cfg, tmp_path / "stopped", resume=True)
    again = metrics(tmp_path / "stopped")
    for key in ("train/loss", "valid/loss"):
        assert [(r["step"], r[key]) for r in again if key in r] == [(r["step"], r[key]) for r in records if key in r]


@pytest.mark.smoke
def test_prepare_streams_files_and_refuses_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``files`` corpus (gzip train split) read line by line gives the examples of the in-memory
    reader; a bad corpus or an existing store is one error line from the command."""
    root = tmp_path / "corpus"
    root.mkdir()
    pairs = synthetic.make_addition(300, seed=4) + [("  ", "x"), ("1+1", "2")]  # an empty pair is dropped
    for split, part in (("train", pairs[:250] + pairs[300:]), ("val", pairs[250:275]), ("test", pairs[275:300])):
        for lang, side in (("src", 0), ("tgt", 1)):
            text = "".join(p[side] + "\n" for p in part).encode()
            if split == "train":
                (root / f"{split}.{lang}.gz").write_bytes(gzip.compress(text))
            else:
                (root / f"{split}.{lang}").write_bytes(text)
    args = ["--config", str(ROOT / "configs" / "addition.yaml"), "data.source=files", f"data.path={root}"]
    assert prepare_main([*args, "--out", str(tmp_path / "store")]) == 0
    assert "prepared" in capsys.readouterr().out
    st = Store(tmp_path / "store")
    c = corpus.load_corpus(load_config(ROOT / "configs" / "addition.yaml", args[2:]).data)
    assert len(c.train) == st.size == 251
    assert [st.src_tok.decode(s) for s, _ in st.examples(0, st.size)] == [s for s, _ in c.train]
    assert Counter(st.tgt_tok.decode(t) for _, t in st.examples(0, st.size)) == Counter(t for _, t in c.train)

    assert prepare_main([*args, "--out", str(tmp_path / "store")]) == 1  # already there
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'store'}: already exists; add --overwrite " \
                                              "to replace it, or choose another --out"
    (root / "train.tgt.gz").write_bytes(gzip.compress(b"1\n2\n"))
    assert prepare_main([*args, "--out", str(tmp_path / "bad"), "--overwrite"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ in length" in err[0] and "train.tgt.gz ends after line 2" in err[0]
    assert not (tmp_path / "bad").exists()


def test_a_vocabulary_over_65536_is_stored_in_uint32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.data.tokenization import Tokenizer

    monkeypatch.setattr(Tokenizer, "vocab_size", property(lambda self: 70_000))
    cfg = load_config(ROOT / "configs" / "addition.yaml", ["data.size=50"])
    prepare(cfg.data, tmp_path / "s", say=lambda line: None)
    assert Store(tmp_path / "s").dtype == np.uint32
    assert store.FORMAT in (tmp_path / "s" / "store.json").read_text()
