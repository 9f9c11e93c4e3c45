"""Batching: reversal, padding, BOS/EOS placement, bucketing, token budgets, determinism."""

from __future__ import annotations

import random

import pytest
import torch

from seq2seq.data.batching import (
    Batch,
    Example,
    collate,
    encode_pairs,
    make_batches,
    pad_sequences,
    reverse_source,
)
from seq2seq.data.tokenization import BOS, EOS, PAD, train_tokenizer


def _examples(n: int, seed: int = 0, max_len: int = 12) -> list[Example]:
    rng = random.Random(seed)
    return [([rng.randint(4, 50) for _ in range(rng.randint(1, max_len))],
             [rng.randint(4, 50) for _ in range(rng.randint(1, max_len))]) for _ in range(n)]


def _signature(batches: list[Batch]) -> list[list[int]]:
    return [b.index.tolist() for b in batches]


def test_reverse_source() -> None:
    assert reverse_source([5, 6, 7]) == [7, 6, 5]
    assert reverse_source([]) == []


def test_pad_sequences() -> None:
    padded, lengths = pad_sequences([[5, 6, 7], [8], [9, 10]])
    assert padded.dtype == torch.long and lengths.dtype == torch.long
    assert padded.tolist() == [[5, 6, 7], [8, PAD, PAD], [9, 10, PAD]]
    assert lengths.tolist() == [3, 1, 2]
    assert pad_sequences([[4]], pad=-1)[0].tolist() == [[4]]
    empty, empty_len = pad_sequences([])
    assert empty.shape == (0, 0) and empty_len.shape == (0,)


def test_collate_reversal_keeps_pads_at_end() -> None:
    examples = [([5, 6, 7], [10, 11]), ([8, 9], [12, 13, 14, 15])]
    b = collate(examples, [3, 1], reverse=True)
    assert b.src.tolist() == [[7, 6, 5], [9, 8, PAD]]
    assert b.src_len.tolist() == [3, 2]
    plain = collate(examples, [3, 1], reverse=False)
    assert plain.src.tolist() == [[5, 6, 7], [8, 9, PAD]]
    assert examples[0][0] == [5, 6, 7]  # inputs not modified


def test_collate_targets_bos_eos() -> None:
    examples = [([5], [10, 11]), ([6, 7], [12, 13, 14, 15])]
    b = collate(examples, [0, 1], reverse=False)
    assert b.tgt_in.shape == b.tgt_out.shape == (2, 5)
    assert b.tgt_in.tolist() == [[BOS, 10, 11, PAD, PAD], [BOS, 12, 13, 14, 15]]
    assert b.tgt_out.tolist() == [[10, 11, EOS, PAD, PAD], [12, 13, 14, 15, EOS]]
    assert b.index.tolist() == [0, 1]
    assert b.num_tgt_tokens == 2 + 1 + 4 + 1
    assert all(t.dtype == torch.long for t in (b.src, b.src_len, b.tgt_in, b.tgt_out, b.index))
    assert len(b) == 2


def test_collate_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        collate([([5], [6])], [0, 1], reverse=False)
    with pytest.raises(ValueError):
        collate([([], [6])], [0], reverse=False)


def test_batch_to_and_token_count_without_hint() -> None:
    b = collate([([5, 6], [7]), ([8], [9, 10, 11])], [0, 1], reverse=True)
    moved = b.to("cpu")
    assert moved.num_tgt_tokens == b.num_tgt_tokens == 6
    assert torch.equal(moved.src, b.src) and torch.equal(moved.tgt_out, b.tgt_out)
    rebuilt = Batch(src=b.src, src_len=b.src_len, tgt_in=b.tgt_in, tgt_out=b.tgt_out, index=b.index)
    assert rebuilt.num_tgt_tokens == 6


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("max_tokens", [0, 40])
def test_every_example_once(shuffle: bool, max_tokens: int) -> None:
    examples = _examples(1000)
    batches = make_batches(examples, batch_size=16, max_tokens=max_tokens, reverse=True, shuffle=shuffle,
                           seed=3)
    indices = [i for b in batches for i in b.index.tolist()]
    assert sorted(indices) == list(range(len(examples)))
    assert all(len(b) >= 1 for b in batches)
    for b in batches:  # rows match their examples
        for row, i in enumerate(b.index.tolist()):
            src, tgt = examples[i]
            n = int(b.src_len[row])
            assert n == len(src)
            assert b.src[row, :n].tolist() == src[::-1]
            assert (b.src[row, n:] == PAD).all()
            assert b.tgt_out[row, :len(tgt) + 1].tolist() == [*tgt, EOS]
            assert b.tgt_in[row, :len(tgt) + 1].tolist() == [BOS, *tgt]
            assert (b.tgt_out[row, len(tgt) + 1:] == PAD).all()
        assert b.num_tgt_tokens == int((b.tgt_out != PAD).sum())


def test_sentence_count_batches() -> None:
    batches = make_batches(_examples(100), batch_size=32, reverse=False, shuffle=False)
    assert [len(b) for b in batches] == [32, 32, 32, 4]


def test_unshuffled_is_sorted_by_target_then_source_length_and_deterministic() -> None:
    examples = _examples(300)
    batches = make_batches(examples, batch_size=10, reverse=False, shuffle=False)
    keys = [(len(examples[i][1]), len(examples[i][0])) for b in batches for i in b.index.tolist()]
    assert keys == sorted(keys)
    again = make_batches(examples, batch_size=10, reverse=False, shuffle=False, seed=99)
    assert _signature(again) == _signature(batches)


def test_bucketing_reduces_padding() -> None:
    examples = _examples(2000, max_len=40)
    batches = make_batches(examples, batch_size=32, reverse=False, shuffle=True, seed=0)
    padded = sum(b.tgt_out.numel() for b in batches)  # the decoder runs over every padded target position
    real = sum(len(t) + 1 for _, t in examples)
    assert padded < 1.15 * real


@pytest.mark.parametrize("max_tokens", [1, 25, 64, 300])
def test_token_budget_respected(max_tokens: int) -> None:
    examples = _examples(500, seed=1, max_len=20)
    batches = make_batches(examples, batch_size=1, max_tokens=max_tokens, reverse=True, shuffle=True, seed=5)
    assert sum(len(b) for b in batches) == len(examples)
    for b in batches:
        rows, src_width = b.src.shape
        tgt_width = b.tgt_out.shape[1]
        if rows > 1:  # an over-budget example alone is allowed
            assert rows * src_width <= max_tokens and rows * tgt_width <= max_tokens
        assert src_width == int(b.src_len.max())
        assert tgt_width == max(len(examples[i][1]) for i in b.index.tolist()) + 1
    if max_tokens == 300:
        assert max(len(b) for b in batches) > 10  # the budget is actually used


def test_token_budget_isolates_long_example() -> None:
    examples = [([5] * 3, [6] * 3)] * 4 + [([7] * 50, [8] * 2)]
    batches = make_batches(examples, batch_size=1, max_tokens=12, reverse=False, shuffle=False)
    assert [b.index.tolist() for b in batches] == [[4], [0, 1, 2], [3]]  # sorted by target length first


def test_shuffle_deterministic_per_seed_and_varies_across_seeds() -> None:
    examples = _examples(3000)
    for max_tokens in (0, 100):
        a = make_batches(examples, batch_size=16, max_tokens=max_tokens, reverse=True, shuffle=True, seed=7)
        b = make_batches(examples, batch_size=16, max_tokens=max_tokens, reverse=True, shuffle=True, seed=7)
        c = make_batches(examples, batch_size=16, max_tokens=max_tokens, reverse=True, shuffle=True, seed=8)
        assert _signature(a) == _signature(b)
        assert _signature(a) != _signature(c)
        assert {tuple(x) for x in _signature(a)} != {tuple(x) for x in _signature(c)}  # new batches
        assert all(torch.equal(x.src, y.src) for x, y in zip(a, b))


def test_shuffle_mixes_batch_order() -> None:
    examples = _examples(2000)
    batches = make_batches(examples, batch_size=16, reverse=False, shuffle=True, seed=0)
    first_len = [int(b.src_len.min()) for b in batches]
    assert first_len != sorted(first_len)  # short and long batches interleave


def test_shuffle_uses_no_global_state() -> None:
    examples = _examples(500)
    random.seed(0)
    torch.manual_seed(0)
    a = make_batches(examples, batch_size=8, reverse=False, shuffle=True, seed=1)
    random.seed(123)
    torch.manual_seed(123)
    b = make_batches(examples, batch_size=8, reverse=False, shuffle=True, seed=1)
    assert _signature(a) == _signature(b)


def test_make_batches_edge_cases() -> None:
    assert make_batches([], batch_size=4, reverse=True, shuffle=True) == []
    with pytest.raises(ValueError):
        make_batches(_examples(3), batch_size=0, reverse=True, shuffle=False)
    with pytest.raises(ValueError):
        make_batches(_examples(3), batch_size=2, max_tokens=-1, reverse=True, shuffle=False)


def test_encode_pairs_drop_counts() -> None:
    tok = train_tokenizer(["abcdefghij 0123456789"], "char")
    pairs = [
        ("abc", "12"),  # kept
        ("", "12"),  # empty source
        ("abc", ""),  # empty target
        ("abcdefg", "1"),  # source too long (7 > 5)
        ("ab", "123456"),  # target too long
        ("abcde", "12345"),  # exactly max_len: kept
        ("", "1234567"),  # empty and too long: counted as empty
    ]
    examples, too_long, empty = encode_pairs(pairs, tok, tok, max_len=5)
    assert (too_long, empty) == (2, 3)
    assert examples == [(tok.encode("abc"), tok.encode("12")), (tok.encode("abcde"), tok.encode("12345"))]
    assert all(BOS not in s and EOS not in t for s, t in examples)


def test_to_a_device_keeps_the_source_lengths_on_the_cpu() -> None:
    """The encoder packs with CPU lengths: on a GPU, lengths moved there would be copied back
    each step, a host sync. The meta device stands in for a GPU here."""
    b = collate([([5, 6, 7], [8, 9]), ([5, 6], [8])], range(2), reverse=False)
    moved = b.to(torch.device("meta"))
    assert moved.src.device.type == moved.tgt_in.device.type == moved.tgt_out.device.type == "meta"
    assert moved.src_len.device.type == "cpu" and moved.src_len.tolist() == [3, 2]
    assert moved.num_tgt_tokens == b.num_tgt_tokens


def test_pad_multiple_gives_static_widths_and_the_same_loss_and_gradients() -> None:
    """``train.pad_multiple`` (static shapes for CUDA graphs): widths become
    multiples of N; the extra columns are padding, so the loss and every gradient equal those
    of the tight batch (up to float summation order)."""
    from seq2seq.config import ModelConfig
    from seq2seq.model.loss import sequence_loss
    from seq2seq.model.seq2seq import build_model

    rng = random.Random(0)
    examples = [([rng.randrange(4, 30) for _ in range(rng.randint(1, 11))],
                 [rng.randrange(4, 30) for _ in range(rng.randint(1, 9))]) for _ in range(12)]
    tight = collate(examples, range(12), reverse=True)
    padded = collate(examples, range(12), reverse=True, pad_multiple=8)
    assert padded.src.shape[1] % 8 == 0 and padded.tgt_in.shape[1] % 8 == 0
    assert padded.src.shape[1] > tight.src.shape[1] or tight.src.shape[1] % 8 == 0
    assert torch.equal(padded.src_len, tight.src_len) and padded.num_tgt_tokens == tight.num_tgt_tokens
    for attention in ("none", "luong"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(embed_dim=8, hidden_dim=16, num_layers=2, attention=attention), 30, 30)
        results = []
        for b in (tight, padded):
            loss = sequence_loss(model(b.src, b.src_len, b.tgt_in), b.tgt_out, 0.1)
            grads = torch.autograd.grad(loss, list(model.parameters()))
            results.append((loss, grads))
        torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
        for g_pad, g_tight in zip(results[1][1], results[0][1]):
            torch.testing.assert_close(g_pad, g_tight, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("max_tokens", [0, 40])
def test_batch_by_source_gives_batches_of_one_source_length(shuffle: bool, max_tokens: int) -> None:
    """Each source length's examples fill batches of that length alone; what is left of each
    (less than a batch) is batched together. As many batches as by target, at most one more."""
    examples = _examples(1000, max_len=20)
    batches = make_batches(examples, batch_size=16, max_tokens=max_tokens, reverse=True, shuffle=shuffle, seed=3,
                           by="source")
    assert sorted(i for b in batches for i in b.index.tolist()) == list(range(len(examples)))
    one_length = [b for b in batches if len(set(b.src_len.tolist())) == 1]
    for b in one_length:  # no source padding: the encoder runs them unpacked
        assert b.src.shape[1] == int(b.src_len[0]) and not (b.src == PAD).any()
    if max_tokens:
        for b in batches:
            assert len(b) == 1 or len(b) * max(b.src.shape[1], b.tgt_out.shape[1]) <= max_tokens
    else:
        counts = [sum(1 for s, _ in examples if len(s) == n) for n in range(1, 21)]
        assert len(batches) == -(-len(examples) // 16)
        assert sorted(len(b) for b in batches)[1:] == [16] * (len(batches) - 1)
        assert len(one_length) >= sum(n // 16 for n in counts)
    by_target = make_batches(examples, batch_size=16, max_tokens=max_tokens, reverse=True, shuffle=shuffle, seed=3)
    assert len(batches) <= (len(by_target) + 1 if not max_tokens else 1.05 * len(by_target))  # budgets: widths differ
    if not shuffle:  # sorted by (source, target) length within the one-length batches
        for b in one_length:
            keys = [len(examples[i][1]) for i in b.index.tolist()]
            assert keys == sorted(keys)


def test_batch_by_source_shuffles_per_seed_and_rejects_an_unknown_order() -> None:
    examples = _examples(500, max_len=8)
    a = make_batches(examples, batch_size=8, reverse=False, shuffle=True, seed=1, by="source")
    b = make_batches(examples, batch_size=8, reverse=False, shuffle=True, seed=1, by="source")
    c = make_batches(examples, batch_size=8, reverse=False, shuffle=True, seed=2, by="source")
    assert _signature(a) == _signature(b) != _signature(c)
    # new batches, not only a new order
    assert {frozenset(x) for x in _signature(a)} != {frozenset(x) for x in _signature(c)}
    with pytest.raises(ValueError, match="by must be"):
        make_batches(examples, batch_size=8, reverse=False, shuffle=False, by="length")
