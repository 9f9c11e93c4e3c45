"""Greedy and beam search over the narrow model interface ``encode`` / ``decode_step``.

Search sees the model only through two methods and three of the state's::

    state = model.encode(src, src_len)              # src (B, S) long, src_len (B,) long
    logits, state = model.decode_step(prev, state)  # prev (N,) long -> logits (N, V)
    state = state.repeat(k)                         # each sentence's row as k beams: B*k rows
    state = state.reorder(index)                    # index (N,) long: beams within their sentence
    state = state.keep(sentences)                   # sentences (M,) long: the rest leave the batch

A sentence leaves the batch as soon as it is finished, so later steps compute only the
sentences still searched (their beams stay together, so the model can keep one copy of
a sentence's encoder outputs for all its beams).

Both searches return the same type: one list of :class:`Hypothesis` per input sentence,
in input order, best first. A hypothesis is scored by its length-normalised
log-probability (GNMT, Wu et al. 2016)::

    score(Y) = sum_i log p(y_i | y_<i, X) / lp(n),    lp(n) = ((5 + n) / 6) ** alpha

where the sum runs over the emitted tokens including EOS, and ``n`` is the number of
tokens scored (EOS included when emitted). ``alpha = 0`` gives the raw log-probability.

Every sentence has its own length limit ``max_len[b]``: a hypothesis that reaches
``max_len[b]`` tokens without EOS is finished there, scored without EOS. Search adds no
padding-dependent behaviour: each sentence's result is the same alone or in a batch
(given a model whose outputs per row do not depend on the rest of the batch).

Beam search and greedy share :func:`top_candidates`, so ties are broken identically and
``beam_search(beam_size=1)`` returns exactly ``greedy_search``'s tokens and scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

import torch
from torch import Tensor

_Self = TypeVar("_Self", bound="SearchState")


class SearchState(Protocol):
    """A decoder state for N rows (e.g. ``decoder.DecoderState``), the rows of a sentence
    consecutive: search only rearranges its rows."""

    def repeat(self: _Self, k: int) -> _Self:
        """Each row as ``k`` consecutive rows (one sentence's beams): N*k rows."""
        ...

    def reorder(self: _Self, index: Tensor) -> _Self:
        """Rows ``index`` (N,) long, each taken from the same sentence's rows."""
        ...

    def keep(self: _Self, sentences: Tensor) -> _Self:
        """Only the sentences ``sentences`` (M,) long (positions among this state's), all their rows."""
        ...


S = TypeVar("S", bound=SearchState)


class SearchModel(Protocol[S]):
    """What search needs from a model: encode once, then decode one step at a time."""

    def encode(self, src: Tensor, src_len: Tensor) -> S:
        """Source ids (B, S) long and lengths (B,) long -> initial decoder state (B rows)."""
        ...

    def decode_step(self, prev: Tensor, state: S) -> tuple[Tensor, S]:
        """Previous tokens (N,) long -> next-token logits (N, V) and the new state."""
        ...


@dataclass(frozen=True)
class Hypothesis:
    """One output sentence.

    ``tokens`` are output ids without BOS and EOS. ``score`` is the length-normalised
    log-probability ``sum log p / lp(n)`` (see the module docstring).
    """

    tokens: list[int]
    score: float


# --- small pieces -------------------------------------------------------------------------


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty ``lp(n) = ((5 + n) / 6) ** alpha``, elementwise, as float64.

    ``lp(1) = 1`` for every alpha and ``alpha = 0`` gives 1 everywhere (no normalisation).
    """
    return ((5.0 + length.to(torch.float64)) / 6.0) ** alpha


def max_lengths(src_len: Tensor, ratio: float, offset: int) -> Tensor:
    """Per-sentence output length limit ``ceil(ratio * src_len) + offset``, (B,) long.

    Computed in float64 with a 1e-9 tolerance so that, e.g., ``1.1 * 10`` gives 11, not 12.
    """
    limit = torch.ceil(src_len.to(torch.float64) * ratio - 1e-9)  # (B,)
    return limit.long() + offset


def top_candidates(logits: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
    """The best ``2K`` extensions of each sentence's ``K`` beams, best first.

    ``logits`` (A*K, V): next-token logits of every beam; ``score`` (A, K): the beams' raw
    log-probs so far. An extension's score is ``score[b, k] + log p(v | beam k)``. The best
    2K of a sentence are among each of its beams' best 2K tokens, so only those are scored
    (``log p = logit - logsumexp(logits)``, in float32): no (A, K*V) tensor of candidates.
    Returns the scores and flat indices ``k * V + v``, both (A, min(2K, K*V)). Twice the beam
    size guarantees K candidates that do not end in EOS (each beam has one EOS extension).
    Greedy search calls this with ``K = 1`` so it breaks ties exactly as beam search.
    """
    a, k = score.shape
    v = logits.size(-1)
    logits = logits.float()
    c = min(2 * k, v)
    top_logit, top_tok = logits.topk(c, dim=-1)  # (A*K, c): each beam's best tokens
    cand = score.reshape(-1, 1) + (top_logit - torch.logsumexp(logits, dim=-1, keepdim=True))  # (A*K, c)
    best, pos = cand.view(a, k * c).topk(min(2 * k, k * c), dim=1)  # (A, 2K)
    tok = top_tok.view(a, k * c).gather(1, pos)  # (A, 2K)
    return best, torch.div(pos, c, rounding_mode="floor") * v + tok


def continuing(tokens: Tensor, eos: int, beam_size: int) -> Tensor:
    """Positions (B, K) of the first ``beam_size`` candidates not ending in EOS.

    ``tokens`` (B, C) are the candidates' last tokens, best first. The positions keep
    that order (the best continuing candidate becomes beam 0).
    """
    c = tokens.size(1)
    rank = torch.arange(c, device=tokens.device)  # (C,)
    key = (tokens == eos).long() * c + rank  # (B, C): distinct, non-EOS first, then by rank
    return key.topk(beam_size, dim=1, largest=False).indices  # (B, K), ascending key


def finishing(top_score: Tensor, top_tok: Tensor, keep: Tensor, eos: int, last: Tensor) -> Tensor:
    """Which of the top candidates (B, 2K) become finished hypotheses at this step.

    A candidate finishes when its score is finite and either it ends in EOS and ranks within
    the top K (candidates ``0..K-1``; as in fairseq, an EOS ranked below K is dropped), or
    this is the sentence's ``last`` (B,) step and it is one of the ``keep`` (B, K)
    continuing candidates (reached max_len). (Sentences already done are not in the batch.)
    """
    k = keep.size(1)
    rank = torch.arange(top_tok.size(1), device=top_tok.device)  # (2K,)
    ends = (top_tok == eos) & (rank < k)  # (B, 2K)
    kept = torch.zeros_like(ends).scatter_(1, keep, True)  # (B, 2K)
    full = kept & last.unsqueeze(1)  # (B, 2K)
    return (ends | full) & torch.isfinite(top_score)


def still_searched(finished: Tensor) -> Tensor | None:
    """Positions (M,) of the sentences not ``finished`` (A,) bool, or None when all are
    (the one host sync of a search step)."""
    left = int((~finished).sum())
    return None if left == finished.numel() else (~finished).nonzero()[:, 0]


def _normalise(raw: Tensor, n: Tensor, alpha: float) -> Tensor:
    """Length-normalised score ``raw / lp(n)`` in float64 (raw log-probs float32)."""
    return raw.to(torch.float64) / length_penalty(n, alpha)


def _check_args(src: Tensor, max_len: Tensor, beam_size: int, nbest: int) -> None:
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be in [1, beam_size={beam_size}], got {nbest}")
    if src.dim() != 2:
        raise ValueError(f"src must be (B, S), got shape {tuple(src.shape)}")
    if max_len.shape != (src.size(0),):
        raise ValueError(f"max_len must be (B,) = ({src.size(0)},), got shape {tuple(max_len.shape)}")


# --- greedy -------------------------------------------------------------------------------


@torch.inference_mode()
def greedy_search(
    model: SearchModel[S],
    src: Tensor,
    src_len: Tensor,
    *,
    bos: int,
    eos: int,
    max_len: Tensor,
    alpha: float = 1.0,
) -> list[list[Hypothesis]]:
    """Pick the most probable next token for the whole batch, one decode step at a time.

    ``src`` (B, S), ``src_len`` (B,), ``max_len`` (B,): per-sentence limit on output tokens.
    A sentence stops at EOS or after ``max_len[b]`` tokens and leaves the batch; the loop
    stops when all have. Returns ``[[Hypothesis]] * B`` (one hypothesis per sentence). The
    caller puts the model in eval mode.
    """
    _check_args(src, max_len, 1, 1)
    b, device = src.size(0), src.device
    max_len = max_len.to(device)
    active = (max_len > 0).nonzero()[:, 0]  # (A,) the sentences still searched
    state = model.encode(src, src_len)
    if active.numel() < b:
        state = state.keep(active)
    limit = max_len[active]  # (A,)
    prev = torch.full((active.numel(),), bos, dtype=torch.long, device=device)  # (A,)
    score = torch.zeros(active.numel(), device=device)  # (A,) raw log-prob so far
    final_score = torch.zeros(b, device=device)  # (B,) raw log-prob when finished
    final_n = torch.zeros(b, dtype=torch.long, device=device)  # (B,) tokens scored
    out_len = torch.zeros(b, dtype=torch.long, device=device)  # (B,) tokens without EOS
    steps: list[Tensor] = []  # per step: (B,) chosen tokens (EOS for sentences no longer searched)
    for t in range(int(max_len.max()) if active.numel() else 0):
        logits, state = model.decode_step(prev, state)  # (A, V)
        top_score, top_idx = top_candidates(logits, score.unsqueeze(1))  # (A, 2)
        tok, score = top_idx[:, 0], top_score[:, 0]  # (A,)
        is_eos = tok == eos
        finish = is_eos | (t + 1 >= limit)  # (A,)
        final_score.index_copy_(0, active, torch.where(finish, score, final_score[active]))
        final_n.index_copy_(0, active, torch.where(finish, t + 1, final_n[active]))
        out_len.index_copy_(0, active, torch.where(finish, t + 1 - is_eos.long(), out_len[active]))
        steps.append(torch.full((b,), eos, dtype=torch.long, device=device).index_copy_(0, active, tok))
        prev = tok
        left = still_searched(finish)
        if left is not None:
            if left.numel() == 0:
                break
            active, limit, prev, score, state = active[left], limit[left], prev[left], score[left], state.keep(left)
    tokens = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(b)]  # (B, T)
    norm = _normalise(final_score, final_n, alpha).tolist()
    return [[Hypothesis(row[:n], s)] for row, n, s in zip(tokens, out_len.tolist(), norm)]


# --- beam ---------------------------------------------------------------------------------


class _Step(NamedTuple):
    """What one beam step keeps for backtracking, all (B, 2K) except ``keep`` (B, K)."""

    beam: Tensor  # parent beam of each candidate
    token: Tensor  # candidate's last token
    score: Tensor  # raw accumulated log-prob
    final: Tensor  # bool: candidate became a finished hypothesis
    keep: Tensor  # positions of the K continuing candidates: new beam k = candidate keep[k]

    def survivors(self) -> tuple[Tensor, Tensor, Tensor]:
        """The K continuing candidates' raw log-probs, parent beams and last tokens, each (B, K)."""
        return self.score.gather(1, self.keep), self.beam.gather(1, self.keep), self.token.gather(1, self.keep)


@torch.inference_mode()
def beam_search(
    model: SearchModel[S],
    src: Tensor,
    src_len: Tensor,
    *,
    beam_size: int,
    bos: int,
    eos: int,
    max_len: Tensor,
    alpha: float = 1.0,
    nbest: int = 1,
) -> list[list[Hypothesis]]:
    """Beam search over the sentences still searched x K beams as one batch.

    Each step (``t`` = 0, 1, ...; candidates at step t have ``n = t + 1`` tokens scored):

    1. ``cand[b, k*V + v] = score[b, k] + log p(v | beam k)``; at t = 0 only beam 0 is
       live (the others start at -inf), so no two hypotheses are the same;
    2. take the top 2K candidates (:func:`top_candidates`);
    3. EOS candidates within the top K become finished hypotheses (score frozen);
    4. the best K non-EOS candidates continue (:func:`continuing`); at a sentence's
       last step (``t + 1 == max_len[b]``) they become finished hypotheses too.

    Stopping rule: a sentence is done when it has at least ``beam_size`` finished
    hypotheses or reaches ``max_len[b]``, and leaves the batch; the loop stops when all
    sentences are done. Finished hypotheses are ranked by ``raw / lp(n)``; the best
    ``nbest`` are returned (fewer only if fewer exist, e.g. a tiny vocabulary).
    ``max_len[b] = 0`` gives one empty hypothesis of score 0. The caller puts the model in
    eval mode.
    """
    _check_args(src, max_len, beam_size, nbest)
    b, k, device = src.size(0), beam_size, src.device
    max_len = max_len.to(device)
    active = (max_len > 0).nonzero()[:, 0]  # (A,) the sentences still searched
    state, prev, score = _start_beams(model, src, src_len, active, k, bos)
    limit = max_len[active]  # (A,)
    n_finished = torch.zeros(active.numel(), dtype=torch.long, device=device)  # (A,)
    history: list[_Step] = []  # per step, for all B sentences
    for t in range(int(max_len.max()) if active.numel() else 0):
        logits, state = model.decode_step(prev.view(-1), state)  # (A*K, V)
        last = t + 1 >= limit  # (A,)
        step = _beam_step(logits, score, eos, last)
        history.append(step if active.numel() == b else _for_all(step, active, b))
        n_finished = n_finished + step.final.sum(dim=1)
        score, parent, prev = step.survivors()  # (A, K) each
        rows = torch.arange(active.numel(), device=device).unsqueeze(1)  # (A, 1)
        state = state.reorder((rows * k + parent).view(-1))  # A*K rows, beams within their sentence
        left = still_searched(last | (n_finished >= k))
        if left is not None:
            if left.numel() == 0:
                break
            active, limit, n_finished = active[left], limit[left], n_finished[left]
            score, prev, state = score[left], prev[left], state.keep(left)
    return _collect(history, b, eos, alpha, nbest)


def _start_beams(model: SearchModel[S], src: Tensor, src_len: Tensor, active: Tensor, k: int, bos: int
                 ) -> tuple[S, Tensor, Tensor]:
    """The ``k`` beams of each sentence searched before step 0.

    Args:
        src: source ids ``(B, S)`` long; src_len: their lengths ``(B,)`` long.
        active: the sentences searched ``(A,)`` long (the others have no output to search).

    Returns:
        the state of ``A*K`` rows (each sentence's ``k`` beams together), BOS as each beam's
        previous token ``(A, K)``, and the beams' raw log-probs ``(A, K)``: 0 for beam 0,
        -inf for the others, so that no two hypotheses are the same.
    """
    a, device = active.numel(), src.device
    state = model.encode(src, src_len)
    if a < src.size(0):
        state = state.keep(active)
    prev = torch.full((a, k), bos, dtype=torch.long, device=device)  # (A, K)
    score = torch.zeros(a, k, device=device)  # (A, K) raw log-prob of each beam
    score[:, 1:] = float("-inf")
    return state.repeat(k), prev, score


def _beam_step(logits: Tensor, score: Tensor, eos: int, last: Tensor) -> _Step:
    """Steps 1 to 4 of :func:`beam_search` at one time step.

    Args:
        logits: next-token logits of every beam ``(A*K, V)``.
        score: the beams' raw log-probs so far ``(A, K)``.
        last: ``(A,)`` bool, this is the sentence's last step.

    Returns:
        the top ``2K`` candidates of each sentence, which of them finish, and the ``K`` that continue.
    """
    k, v = score.size(1), logits.size(-1)
    top_score, top_idx = top_candidates(logits, score)  # (A, 2K)
    top_beam, top_tok = top_idx // v, top_idx % v  # (A, 2K)
    keep = continuing(top_tok, eos, k)  # (A, K)
    final = finishing(top_score, top_tok, keep, eos, last)  # (A, 2K)
    return _Step(top_beam, top_tok, top_score, final, keep)


def _for_all(step: _Step, active: Tensor, b: int) -> _Step:
    """``step`` of the sentences ``active`` (A,) as a step of all ``b``: the others' rows
    finish nothing (and are never read back)."""
    def rows(x: Tensor) -> Tensor:
        return x.new_zeros((b, *x.shape[1:])).index_copy_(0, active, x)
    return _Step(*(rows(x) for x in step))


def _collect(history: list[_Step], b: int, eos: int, alpha: float, nbest: int) -> list[list[Hypothesis]]:
    """Rank each sentence's finished hypotheses and backtrack their tokens (on the host)."""
    if not history:
        return [[Hypothesis([], 0.0)] for _ in range(b)]
    beam, token, score, final, keep = (torch.stack(x).cpu() for x in zip(*history))  # (T, B, 2K)
    n = torch.arange(1, len(history) + 1).view(-1, 1, 1)  # (T, 1, 1) tokens scored
    norm = _normalise(score, n, alpha)  # (T, B, 2K) float64
    beam_l, token_l, keep_l, norm_l = beam.tolist(), token.tolist(), keep.tolist(), norm.tolist()
    results = []
    for i in range(b):
        ends = final[:, i].nonzero().tolist()  # [(t, j)] in step, then rank order
        ends.sort(key=lambda tj: -norm_l[tj[0]][i][tj[1]])  # stable: ties keep that order
        hyps = []
        for t, j in ends[:nbest]:
            out = [] if token_l[t][i][j] == eos else [token_l[t][i][j]]
            parent = beam_l[t][i][j]
            for s in range(t - 1, -1, -1):  # follow parents back to step 0
                j_s = keep_l[s][i][parent]
                out.append(token_l[s][i][j_s])
                parent = beam_l[s][i][j_s]
            hyps.append(Hypothesis(out[::-1], norm_l[t][i][j]))
        results.append(hyps or [Hypothesis([], 0.0)])
    return results


def search(
    model: SearchModel[S],
    src: Tensor,
    src_len: Tensor,
    *,
    beam_size: int,
    bos: int,
    eos: int,
    max_len: Tensor,
    alpha: float = 1.0,
    nbest: int = 1,
) -> list[list[Hypothesis]]:
    """The one entry point: greedy for ``beam_size == 1``, beam search otherwise.

    Returns one n-best list per sentence, in input order, best first.
    """
    _check_args(src, max_len, beam_size, nbest)
    if beam_size == 1:
        return greedy_search(model, src, src_len, bos=bos, eos=eos, max_len=max_len, alpha=alpha)
    return beam_search(
        model, src, src_len, beam_size=beam_size, bos=bos, eos=eos, max_len=max_len, alpha=alpha, nbest=nbest
    )
