"""Greedy and beam search driven by small fake models whose best outputs are known."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from seq2seq.model.search import (
    Hypothesis,
    beam_search,
    greedy_search,
    length_penalty,
    max_lengths,
    search,
)

PAD, BOS, EOS, A, B = 0, 1, 2, 3, 4  # A and B: the two "word" tokens of the hand-made models


# --- fake models --------------------------------------------------------------------------


@dataclass
class FakeState:
    """Per-row decoder state: a source key, a hash of the tokens fed so far, the step."""

    src_key: Tensor  # (N,) long
    history: Tensor  # (N,) long
    step: Tensor  # (N,) long
    group: int = 1  # rows per sentence, consecutive

    def select(self, index: Tensor, group: int = 1) -> FakeState:
        assert index.dtype == torch.long and index.dim() == 1
        return FakeState(self.src_key[index], self.history[index], self.step[index], group)

    def repeat(self, k: int) -> FakeState:
        return self.select(torch.arange(self.step.numel()).repeat_interleave(k), self.group * k)

    def reorder(self, index: Tensor) -> FakeState:
        rows = torch.arange(self.step.numel())
        assert torch.equal(index // self.group, rows // self.group), "a row taken from another sentence"
        return self.select(index, self.group)

    def keep(self, sentences: Tensor) -> FakeState:
        assert sentences.numel() < self.step.numel() // self.group, "keep() called without dropping a sentence"
        rows = (sentences[:, None] * self.group + torch.arange(self.group)).view(-1)
        return self.select(rows, self.group)


class HashModel:
    """Logits looked up in a random table by (source content, full output history, step).

    The source key uses only the first ``src_len`` tokens of each row, so padding cannot
    change anything; the history hash makes any beam-reordering mistake change the logits.
    Lookups are per row, so a row's logits do not depend on the rest of the batch.
    """

    def __init__(self, vocab: int = 6, seed: int = 0, keys: int = 4099, eos_bias: float = 0.0):
        g = torch.Generator().manual_seed(seed)
        self.table = 2.0 * torch.randn(keys, vocab, generator=g)  # (keys, V)
        self.table[:, EOS] += eos_bias
        self.keys = keys
        self.calls: list[int] = []  # rows per decode_step call

    def encode(self, src: Tensor, src_len: Tensor) -> FakeState:
        pos = torch.arange(src.size(1))  # (S,)
        real = pos.unsqueeze(0) < src_len.unsqueeze(1)  # (B, S)
        weighted = (src * (pos + 7) * 131).masked_fill(~real, 0)  # (B, S)
        key = (weighted.sum(1) + 17 * src_len) % self.keys  # (B,)
        return FakeState(key, torch.zeros_like(key), torch.zeros_like(key))

    def decode_step(self, prev: Tensor, state: FakeState) -> tuple[Tensor, FakeState]:
        assert prev.shape == state.step.shape
        self.calls.append(prev.size(0))
        history = (state.history * 31 + prev + 1) % self.keys
        key = (state.src_key * 7 + history + 101 * state.step) % self.keys  # (N,)
        return self.table[key], FakeState(state.src_key, history, state.step + 1, state.group)


class MarkovModel:
    """Next-token probabilities depend only on the previous token: ``probs[prev]`` (V,).

    Probability 0 gives logit -inf. Rows not given are uniform.
    """

    def __init__(self, probs: dict[int, list[float]], vocab: int = 5):
        table = torch.full((vocab, vocab), 1.0 / vocab)
        for prev, row in probs.items():
            table[prev] = torch.tensor(row)
        self.logits = table.log()  # (V, V)
        self.calls: list[int] = []

    def encode(self, src: Tensor, src_len: Tensor) -> FakeState:
        zeros = torch.zeros(src.size(0), dtype=torch.long)
        return FakeState(zeros, zeros, zeros)

    def decode_step(self, prev: Tensor, state: FakeState) -> tuple[Tensor, FakeState]:
        self.calls.append(prev.size(0))
        return self.logits[prev], state


def gnmt(probs: list[float], alpha: float) -> float:
    """Expected score: sum of log-probs over ((5 + n) / 6) ** alpha."""
    return sum(math.log(p) for p in probs) / ((5 + len(probs)) / 6) ** alpha


def batch(sentences: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Pad to (B, S) with PAD; lengths (B,)."""
    longest = max(len(s) for s in sentences)
    src = torch.tensor([s + [PAD] * (longest - len(s)) for s in sentences])
    return src, torch.tensor([len(s) for s in sentences])


def as_tuples(result: list[list[Hypothesis]]) -> list[list[tuple[list[int], float]]]:
    return [[(h.tokens, h.score) for h in hyps] for hyps in result]


SENTENCES = [[5, 3, 4], [4], [3, 3, 5, 4, 5, 3], [5, 5], [3, 4, 5, 3]]

# from BOS: A .6, B .4; after A: EOS .4, A .35, B .25; after B: EOS .9, A .06, B .04.
# Greedy takes A (.6) then EOS: p = .24. Best: B EOS, p = .36.
TRAP = {BOS: [0, 0, 0, 0.6, 0.4], A: [0, 0, 0.4, 0.35, 0.25], B: [0, 0, 0.9, 0.06, 0.04]}


# --- small pieces -------------------------------------------------------------------------


def test_length_penalty_values() -> None:
    n = torch.tensor([0, 1, 2, 7])
    assert length_penalty(n, 1.0).tolist() == pytest.approx([5 / 6, 1.0, 7 / 6, 2.0])
    assert length_penalty(n, 2.0).tolist() == pytest.approx([25 / 36, 1.0, 49 / 36, 4.0])
    assert length_penalty(n, 0.0).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert length_penalty(n, 1.0).dtype == torch.float64


def test_max_lengths() -> None:
    src_len = torch.tensor([1, 10, 3, 0])
    got = max_lengths(src_len, 1.1, 2)
    assert got.dtype == torch.long
    assert got.tolist() == [4, 13, 6, 2]  # ceil(1.1)=2, 1.1*10 is 11 (not 12), ceil(3.3)=4
    assert max_lengths(src_len, 2.0, 0).tolist() == [2, 20, 6, 0]


def test_invalid_arguments() -> None:
    model = HashModel()
    src, src_len = batch(SENTENCES)
    max_len = torch.full((len(SENTENCES),), 5)
    for bad in (dict(beam_size=0), dict(beam_size=2, nbest=3), dict(beam_size=2, nbest=0)):
        kw = dict(beam_size=2, nbest=1) | bad
        with pytest.raises(ValueError):
            search(model, src, src_len, bos=BOS, eos=EOS, max_len=max_len, **kw)
        with pytest.raises(ValueError):
            beam_search(model, src, src_len, bos=BOS, eos=EOS, max_len=max_len, **kw)
    with pytest.raises(ValueError):
        greedy_search(model, src, src_len, bos=BOS, eos=EOS, max_len=max_len[:2])


# --- the search finds what it should ------------------------------------------------------


def test_beam_finds_better_sequence_than_greedy() -> None:
    model = MarkovModel(TRAP)
    src, src_len = batch([[5]])
    max_len = torch.tensor([10])
    [[g]] = greedy_search(model, src, src_len, bos=BOS, eos=EOS, max_len=max_len, alpha=1.0)
    assert g.tokens == [A]
    assert g.score == pytest.approx(gnmt([0.6, 0.4], 1.0), abs=1e-6)
    assert model.calls == [1, 1]  # A, then EOS

    model.calls.clear()
    [two] = beam_search(model, src, src_len, beam_size=2, bos=BOS, eos=EOS, max_len=max_len, nbest=2)
    assert [h.tokens for h in two] == [[B], [A]]
    assert [h.score for h in two] == pytest.approx([gnmt([0.4, 0.9], 1.0), gnmt([0.6, 0.4], 1.0)], abs=1e-6)
    assert model.calls == [2, 2]  # step 1 finishes B.EOS and A.EOS: two finished, done

    model.calls.clear()
    # K=3: step 1 finishes B.EOS and A.EOS and keeps AA, AB, BA; step 2 finishes AB.EOS and AA.EOS.
    [three] = beam_search(model, src, src_len, beam_size=3, bos=BOS, eos=EOS, max_len=max_len, nbest=3)
    assert [h.tokens for h in three] == [[B], [A], [A, B]]
    expected = [gnmt([0.4, 0.9], 1.0), gnmt([0.6, 0.4], 1.0), gnmt([0.6, 0.25, 0.9], 1.0)]
    assert [h.score for h in three] == pytest.approx(expected, abs=1e-6)
    assert model.calls == [3, 3, 3]  # stopped after step 2 with four finished hypotheses


def test_larger_alpha_prefers_longer_hypothesis() -> None:
    # EOS at once: p = .52 (n = 1); A then EOS: p = .48 * .98 = .4704 (n = 2).
    model = MarkovModel({BOS: [0, 0, 0.52, 0.48, 0], A: [0, 0, 0.98, 0, 0.02]})
    src, src_len = batch([[5, 5]])
    kw = dict(beam_size=2, bos=BOS, eos=EOS, max_len=torch.tensor([10]), nbest=2)
    [raw] = beam_search(model, src, src_len, alpha=0.0, **kw)
    assert [h.tokens for h in raw] == [[], [A]]
    assert [h.score for h in raw] == pytest.approx([math.log(0.52), math.log(0.4704)], abs=1e-6)
    [normed] = beam_search(model, src, src_len, alpha=1.0, **kw)
    assert [h.tokens for h in normed] == [[A], []]
    assert [h.score for h in normed] == pytest.approx([math.log(0.4704) / (7 / 6), math.log(0.52)], abs=1e-6)


def brute_force(model: HashModel, src: list[int], limit: int, alpha: float) -> list[tuple[list[int], float]]:
    """Every possible output, scored with the same float32 arithmetic as search, best first."""
    words = [t for t in range(model.table.size(1)) if t != EOS]
    seqs = [list(p) + [EOS] for n in range(limit) for p in itertools.product(words, repeat=n)]
    seqs += [list(p) for p in itertools.product(words, repeat=limit)]
    n = torch.tensor([len(s) for s in seqs])  # (N,) tokens scored
    toks = torch.tensor([s + [EOS] * (limit - len(s)) for s in seqs])  # (N, limit)
    state = model.encode(*batch([src])).select(torch.zeros(len(seqs), dtype=torch.long))
    prev, score = torch.full((len(seqs),), BOS), torch.zeros(len(seqs))
    for t in range(limit):
        logits, state = model.decode_step(prev, state)
        logp = torch.log_softmax(logits, -1).gather(1, toks[:, t : t + 1]).squeeze(1)  # (N,)
        score = torch.where(t < n, score + logp, score)
        prev = toks[:, t]
    norm = (score.double() / length_penalty(n, alpha)).tolist()
    found = [([t for t in s if t != EOS], sc) for s, sc in zip(seqs, norm)]
    return sorted(found, key=lambda x: -x[1])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_brute_force(alpha: float, seed: int) -> None:
    # Vocabulary 5, max_len 4: at most 4**3 = 64 live prefixes, so K = 128 loses nothing
    # and the 10-best list must be the exact top 10 of all 341 possible outputs.
    model = HashModel(vocab=5, seed=seed, eos_bias=1.0)
    sentences = [[3, 4, 3], [4, 4]]
    src, src_len = batch(sentences)
    kw = dict(bos=BOS, eos=EOS, max_len=torch.tensor([4, 4]), alpha=alpha)
    result = beam_search(model, src, src_len, beam_size=128, nbest=10, **kw)
    for sentence, hyps in zip(sentences, result):
        truth = brute_force(model, sentence, 4, alpha)[:10]
        assert [h.tokens for h in hyps] == [t for t, _ in truth]
        assert [h.score for h in hyps] == pytest.approx([s for _, s in truth], abs=1e-6)
        assert all(a.score >= b.score for a, b in zip(hyps, hyps[1:]))  # sorted
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps)  # no duplicates


# --- invariants ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_beam_size_one_equals_greedy(seed: int) -> None:
    model = HashModel(vocab=7, seed=seed, eos_bias=-1.0)
    src, src_len = batch(SENTENCES)
    max_len = max_lengths(src_len, 1.5, 1)
    for alpha in (0.0, 0.6, 1.0):
        greedy = greedy_search(model, src, src_len, bos=BOS, eos=EOS, max_len=max_len, alpha=alpha)
        beam = beam_search(model, src, src_len, beam_size=1, bos=BOS, eos=EOS, max_len=max_len, alpha=alpha)
        assert as_tuples(beam) == as_tuples(greedy)  # exact: same tokens, same float scores
    assert any(len(h.tokens) for [h] in greedy)


def test_beam_size_one_equals_greedy_under_ties() -> None:
    model = MarkovModel({})  # every row uniform: every step is a five-way tie
    src, src_len = batch([[3], [4, 4], [5, 5, 5]])
    max_len = torch.tensor([3, 1, 4])
    greedy = greedy_search(model, src, src_len, bos=BOS, eos=EOS, max_len=max_len)
    beam = beam_search(model, src, src_len, beam_size=1, bos=BOS, eos=EOS, max_len=max_len)
    assert as_tuples(beam) == as_tuples(greedy)


def test_search_dispatches_on_beam_size() -> None:
    model = HashModel(seed=3)
    src, src_len = batch(SENTENCES)
    kw = dict(bos=BOS, eos=EOS, max_len=torch.full((len(SENTENCES),), 6))
    assert search(model, src, src_len, beam_size=1, **kw) == greedy_search(model, src, src_len, **kw)
    assert search(model, src, src_len, beam_size=3, nbest=2, **kw) == beam_search(
        model, src, src_len, beam_size=3, nbest=2, **kw
    )


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sentence_alone_equals_sentence_in_batch(beam_size: int, seed: int) -> None:
    model = HashModel(vocab=8, seed=seed, eos_bias=-0.5)
    src, src_len = batch(SENTENCES)  # padded to the longest
    max_len = max_lengths(src_len, 1.5, 2)
    kw = dict(beam_size=beam_size, nbest=beam_size, bos=BOS, eos=EOS, alpha=0.8)
    together = search(model, src, src_len, max_len=max_len, **kw)
    for i, sentence in enumerate(SENTENCES):
        one, one_len = batch([sentence])  # no padding at all
        [alone] = search(model, one, one_len, max_len=max_len[i : i + 1], **kw)
        assert as_tuples([alone]) == as_tuples([together[i]])
        assert len(alone) == beam_size


def test_one_batched_decode_step_per_time_step() -> None:
    model = HashModel(seed=4)
    src, src_len = batch(SENTENCES)
    max_len = torch.full((5,), 7)
    for k in (1, 4):
        model.calls.clear()
        search(model, src, src_len, beam_size=k, bos=BOS, eos=EOS, max_len=max_len)
        assert 1 <= len(model.calls) <= 7 and model.calls[0] == 5 * k
        assert all(n % k == 0 for n in model.calls) and model.calls == sorted(model.calls, reverse=True)


@pytest.mark.parametrize("k", [1, 3])
def test_finished_sentences_leave_the_batch(k: int) -> None:
    model = MarkovModel({t: [0, 0, 0, 0.7, 0.3] for t in range(5)})  # never emits EOS
    src, src_len = batch([[3], [4, 4], [5], [3, 3]])
    max_len = torch.tensor([1, 3, 5, 0])  # the last is never searched; the first done after one step
    search(model, src, src_len, beam_size=k, bos=BOS, eos=EOS, max_len=max_len)
    assert model.calls == [3 * k, 2 * k, 2 * k, k, k]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_max_len_is_per_sentence(k: int) -> None:
    model = MarkovModel({t: [0, 0, 0, 0.7, 0.3] for t in range(5)})  # never emits EOS
    src, src_len = batch([[3], [4, 4], [5], [3, 3]])
    max_len = torch.tensor([1, 3, 5, 0])
    result = search(model, src, src_len, beam_size=k, nbest=k, bos=BOS, eos=EOS, max_len=max_len)
    for hyps, n in zip(result, max_len.tolist()):
        assert all(len(h.tokens) == n for h in hyps)
        assert hyps[0].tokens == [A] * n
        assert hyps[0].score == pytest.approx(gnmt([0.7] * n, 1.0) if n else 0.0, abs=1e-6)
    assert len(model.calls) == 5  # the longest limit


@pytest.mark.parametrize("k", [1, 2])
def test_finished_hypotheses_stop_growing(k: int) -> None:
    model = MarkovModel({t: [0, 0, 0.9, 0.06, 0.04] for t in range(5)})  # EOS first, nearly always
    src, src_len = batch([[3], [4, 4, 4]])
    max_len = torch.tensor([20, 20])
    result = search(model, src, src_len, beam_size=k, nbest=k, bos=BOS, eos=EOS, max_len=max_len)
    for hyps in result:
        assert hyps[0] == Hypothesis([], pytest.approx(math.log(0.9), abs=1e-6))
        if k == 2:
            assert hyps[1].tokens == [A]
            assert hyps[1].score == pytest.approx(gnmt([0.06, 0.9], 1.0), abs=1e-6)
    assert len(model.calls) == k  # greedy: one step; beam: two finished after two steps


@pytest.mark.parametrize("k", [1, 3, 5])
def test_outputs_never_contain_eos_and_respect_max_len(k: int) -> None:
    model = HashModel(vocab=6, seed=7, eos_bias=-2.0)
    src, src_len = batch(SENTENCES)
    max_len = max_lengths(src_len, 1.0, 1)
    result = search(model, src, src_len, beam_size=k, nbest=k, bos=BOS, eos=EOS, max_len=max_len)
    assert len(result) == len(SENTENCES)
    for hyps, n in zip(result, max_len.tolist()):
        assert len(hyps) == k
        assert all(EOS not in h.tokens and len(h.tokens) <= n for h in hyps)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == k
