"""From sentence pairs to padded, length-bucketed tensor batches.

Pipeline: :func:`encode_pairs` (text -> token ids, dropping empty or too-long pairs),
then :func:`make_batches` (sort by length, cut by sentence count or token budget with
:func:`batch_cuts`, :func:`collate` each cut into a :class:`Batch`). Training walks an
epoch with :func:`epoch_batches`: the same cuts, made chunk by chunk (a corpus streamed from
disk is one chunk at a time in memory) and shared among the ranks of a distributed run.

Conventions (B: sentences, S: source length, T: target length incl. BOS or EOS):

* ``src``: the source ids, reversed (Sutskever et al., 2014) when asked, *then*
  padded with PAD at the end, so padding always trails the real tokens.
* ``tgt_in = [BOS] + y`` and ``tgt_out = y + [EOS]``: the decoder reads ``tgt_in``
  and is trained to predict ``tgt_out`` at the same positions.
* ``index``: each row's position in the example list, to restore the original order
  after length-sorted decoding.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seq2seq.data.tokenization import BOS, EOS, PAD, Tokenizer

Example = tuple[list[int], list[int]]  # (source ids, target ids), no special tokens

SORT_CHUNK = 10_000  # when shuffling, examples are length-sorted within random chunks of this size


@dataclass
class Batch:
    """A padded batch of sentence pairs (all tensors ``long``)."""

    src: Tensor  # (B, S) source ids, reversed if asked, PAD at the end
    src_len: Tensor  # (B,) real source lengths, >= 1; stays on the CPU (see :meth:`to`)
    tgt_in: Tensor  # (B, T) BOS + target ids, PAD at the end
    tgt_out: Tensor  # (B, T) target ids + EOS, PAD at the end
    index: Tensor  # (B,) position of each pair in the example list
    num_tgt_tokens: int = -1  # real target tokens incl. EOS; counted from tgt_out if not given

    def __post_init__(self) -> None:
        if self.num_tgt_tokens < 0:
            self.num_tgt_tokens = int((self.tgt_out != PAD).sum().item())  # a device sync; avoided by collate

    def __len__(self) -> int:
        return self.src.size(0)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on ``device`` but ``src_len``: the encoder packs the source
        with lengths on the CPU, so a copy on a GPU would cost a host sync each step to bring
        them back (the attention mask copies them over without one)."""
        return Batch(
            src=self.src.to(device, non_blocking=non_blocking),
            src_len=self.src_len,
            tgt_in=self.tgt_in.to(device, non_blocking=non_blocking),
            tgt_out=self.tgt_out.to(device, non_blocking=non_blocking),
            index=self.index.to(device, non_blocking=non_blocking),
            num_tgt_tokens=self.num_tgt_tokens,
        )


def encode_pairs(pairs: Sequence[tuple[str, str]], src_tok: Tokenizer, tgt_tok: Tokenizer,
                 max_len: int) -> tuple[list[Example], int, int]:
    """Tokenize ``pairs``; drop those with an empty side or a side over ``max_len`` tokens.

    Lengths are counted before BOS/EOS. A pair with one side empty and the other too
    long counts as empty. Returns ``(examples, n_dropped_too_long, n_dropped_empty)``.
    """
    srcs = src_tok.encode_batch([s for s, _ in pairs])
    tgts = tgt_tok.encode_batch([t for _, t in pairs])
    examples: list[Example] = []
    too_long = empty = 0
    for s, t in zip(srcs, tgts):
        if not s or not t:
            empty += 1
        elif len(s) > max_len or len(t) > max_len:
            too_long += 1
        else:
            examples.append((s, t))
    return examples, too_long, empty


def reverse_source(ids: list[int]) -> list[int]:
    """The source in reverse order (real tokens only: reverse before padding)."""
    return ids[::-1]


def pad_sequences(seqs: Sequence[list[int]], pad: int = PAD, multiple: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad ``seqs`` with ``pad``: a ``(B, L)`` long tensor and the ``(B,)`` lengths. With
    ``multiple`` > 0, L is rounded up to a multiple of it (a few static shapes, for CUDA graphs)."""
    lengths = [len(s) for s in seqs]
    width = max(lengths, default=0)
    if multiple > 0:
        width = -(-width // multiple) * multiple
    padded = [s + [pad] * (width - n) for s, n in zip(seqs, lengths)]
    # numpy converts nested int lists about 3x faster than torch.tensor does
    out = torch.from_numpy(np.array(padded, dtype=np.int64).reshape(len(seqs), width))  # (B, L)
    return out, torch.tensor(lengths, dtype=torch.long)  # (B, L), (B,)


def collate(examples: Sequence[Example], indices: Sequence[int], reverse: bool, pad_multiple: int = 0) -> Batch:
    """Build a :class:`Batch` from examples; ``indices`` are their positions, kept in ``index``.
    ``pad_multiple``: source and target widths rounded up to a multiple of it (``train.pad_multiple``);
    the extra columns are padding, which the encoder's packing and the loss ignore."""
    if len(examples) != len(indices):
        raise ValueError(f"collate: {len(examples)} examples but {len(indices)} indices")
    srcs = [reverse_source(s) if reverse else s for s, _ in examples]
    if any(not s for s in srcs):
        raise ValueError("collate: empty source sentence (filter with encode_pairs)")
    src, src_len = pad_sequences(srcs, multiple=pad_multiple)  # (B, S), (B,)
    tgt_in, _ = pad_sequences([[BOS, *t] for _, t in examples], multiple=pad_multiple)  # (B, T), (B,)
    tgt_out, _ = pad_sequences([[*t, EOS] for _, t in examples], multiple=pad_multiple)  # (B, T)
    return Batch(src=src, src_len=src_len, tgt_in=tgt_in, tgt_out=tgt_out,
                 index=torch.tensor(list(indices), dtype=torch.long),  # (B,)
                 num_tgt_tokens=sum(len(t) for _, t in examples) + len(examples))


def _runs(order: list[int], lens: list[int]) -> list[list[int]]:
    """``order`` split wherever ``lens`` of consecutive examples differ."""
    runs: list[list[int]] = []
    for i in order:
        if runs and lens[runs[-1][-1]] == lens[i]:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _cut_by_count(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _cut_by_tokens(order: list[int], src_lens: list[int], tgt_lens: list[int],
                   max_tokens: int) -> list[list[int]]:
    """Greedy cut: B * max(src len) and B * max(tgt len + 1) stay within ``max_tokens``.

    An example over the budget on its own still gets a batch (never an empty one).
    """
    cuts: list[list[int]] = []
    cur: list[int] = []
    max_s = max_t = 0
    for i in order:
        s, t = max(max_s, src_lens[i]), max(max_t, tgt_lens[i] + 1)
        if cur and (len(cur) + 1) * max(s, t) > max_tokens:
            cuts.append(cur)
            cur, s, t = [], src_lens[i], tgt_lens[i] + 1
        cur.append(i)
        max_s, max_t = s, t
    if cur:
        cuts.append(cur)
    return cuts


def batch_cuts(src_lens: Sequence[int], tgt_lens: Sequence[int], *, batch_size: int, max_tokens: int = 0,
               shuffle: bool, seed: int = 0, by: str = "target") -> list[list[int]]:
    """The batches of :func:`make_batches` as lists of example positions, from the lengths alone.

    ``by="target"``: examples are sorted by (target length, source length) -- globally
    without ``shuffle``, which gives a deterministic order; with ``shuffle``, within random
    chunks of :data:`SORT_CHUNK` examples. ``by="source"`` (``train.batch_by``): sorted by
    (source length, target length), always globally; each source length's examples are cut
    into batches of **one source length** (the encoder runs them unpacked, in one fused call
    a layer: :meth:`~seq2seq.model.encoder.Encoder.forward`), and what is left of each length, fewer
    than a batch, is cut together into batches of mixed, neighbouring lengths (packed as
    usual). So there are as many batches as by target, at most one more. With ``shuffle``, ties are
    in random order and the batches are then shuffled, so a new ``seed`` (e.g. ``seed +
    epoch``) gives new batches. Batches hold ``batch_size`` sentences, or, if ``max_tokens >
    0``, as many as fit the token budget (see :func:`_cut_by_tokens`; ``batch_size`` is then
    unused).
    """
    if batch_size < 1 or max_tokens < 0:
        raise ValueError(f"need batch_size >= 1 and max_tokens >= 0, got {batch_size}, {max_tokens}")
    if by not in ("target", "source"):
        raise ValueError(f"by must be 'target' or 'source', got {by!r}")
    src_lens, tgt_lens = list(src_lens), list(tgt_lens)
    key = _sort_keys(src_lens, tgt_lens, by)
    order = list(range(len(src_lens)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    cut: Callable[[list[int]], list[list[int]]] = (
        (lambda run: _cut_by_tokens(run, src_lens, tgt_lens, max_tokens)) if max_tokens
        else (lambda run: _cut_by_count(run, batch_size)))
    cuts: list[list[int]] = []
    for part in _sort_chunks(order, shuffle and by == "target", batch_size, max_tokens):
        by_len = sorted(part, key=key.__getitem__)  # stable: ties keep the (shuffled) order
        cuts += cut(by_len) if by == "target" else _cut_by_source_length(by_len, src_lens, cut, batch_size, max_tokens)
    if shuffle:
        rng.shuffle(cuts)
    return cuts


def _sort_keys(src_lens: list[int], tgt_lens: list[int], by: str) -> list[int]:
    """Each example's sort key: it sorts as (target length, source length) for ``by="target"``,
    as (source length, target length) for ``by="source"``."""
    # Target length first: the decoder and the output layer run over every padded target
    # position, while the encoder's packed RNN skips source padding. Sorting by source first
    # left Multi30k batches 79% full of real target tokens; this way they are nearly full.
    # By source, Multi30k's batches are 94% full of target tokens, and 92% have one source length.
    if by == "source":
        width = max(tgt_lens, default=0) + 1
        return [s * width + t for s, t in zip(src_lens, tgt_lens)]  # sorts as (src len, tgt len)
    width = max(src_lens, default=0) + 1
    return [t * width + s for s, t in zip(src_lens, tgt_lens)]  # sorts as (tgt len, src len)


def _sort_chunks(order: list[int], chunked: bool, batch_size: int, max_tokens: int) -> list[list[int]]:
    """``order`` in the parts that are length-sorted apart: random chunks of :data:`SORT_CHUNK`
    examples (whole batches of ``batch_size`` without a token budget) if ``chunked``, else all of it."""
    if not chunked:
        return [order]
    chunk = SORT_CHUNK if max_tokens else -(-SORT_CHUNK // batch_size) * batch_size  # whole batches
    return [order[i:i + chunk] for i in range(0, len(order), chunk)]


def _cut_by_source_length(by_len: list[int], src_lens: list[int], cut: Callable[[list[int]], list[list[int]]],
                          batch_size: int, max_tokens: int) -> list[list[int]]:
    """Batches of one source length, then the rest of each length cut together.

    ``by_len``, sorted by (source length, target length), is cut by ``cut`` one source length
    at a time; each length's last batch, when partial (always, with a token budget), goes to a
    rest, which is cut at the end into batches of mixed, neighbouring lengths."""
    cuts: list[list[int]] = []
    rest: list[int] = []  # each source length's last, partial batch: cut together below
    for run in _runs(by_len, src_lens):
        run_cuts = cut(run)
        if max_tokens or len(run_cuts[-1]) < batch_size:
            rest += run_cuts.pop()
        cuts += run_cuts
    return cuts + (cut(rest) if rest else [])  # still (source, target)-sorted: lengths close, packed


def make_batches(examples: Sequence[Example], *, batch_size: int, max_tokens: int = 0, reverse: bool,
                 shuffle: bool, seed: int = 0, pad_multiple: int = 0, by: str = "target") -> list[Batch]:
    """Length-bucketed batches covering every example exactly once (cut by :func:`batch_cuts`)."""
    cuts = batch_cuts([len(s) for s, _ in examples], [len(t) for _, t in examples], batch_size=batch_size,
                      max_tokens=max_tokens, shuffle=shuffle, seed=seed, by=by)
    return [collate([examples[i] for i in cut], cut, reverse, pad_multiple) for cut in cuts]


# --- an epoch of training batches, for one rank of ``world`` ---------------------------------
Chunk = tuple[Sequence[Example], Sequence[int], int]  # examples, their ids in the corpus, a shuffling seed


def shard(cut: Sequence[int], rank: int, world: int) -> list[int]:
    """Rank ``rank``'s share of a global batch: every ``world``-th example from the ``rank``-th.

    The ``world`` shares partition ``cut``, differ in size by at most one, and -- ``cut``
    being length-sorted -- have alike lengths, so no rank waits long for the others.
    """
    return list(cut[rank::world])


def epoch_batches(chunks: Iterable[Chunk], *, batch_size: int, max_tokens: int = 0, reverse: bool,
                  rank: int = 0, world: int = 1, skip: int = 0, pad_multiple: int = 0, by: str = "target"
                 ) -> Iterator[Batch]:
    """This rank's training batches for one epoch, collated one at a time as they are needed.

    Each chunk ``(examples, ids, seed)`` is cut as ``make_batches(shuffle=True, seed=seed, by=by)``
    cuts it, but into *global* batches of ``batch_size * world`` sentences (or
    ``max_tokens * world`` tokens), and this rank collates its :func:`shard` of each. So every
    rank walks the same global batches in the same order, and a step's global batch is
    exactly what one process with ``batch_size * world`` would train on (one process:
    ``world=1``, the batches of ``make_batches``). ``Batch.index`` holds the examples' ``ids``.

    A global batch with fewer than ``world`` sentences (only the last of a length-sorted run
    can be that small) is dropped, since every rank must take a step. The first ``skip``
    global batches (done before a resume) are counted but not collated.
    """
    done = 0
    for examples, ids, seed in chunks:
        cuts = batch_cuts([len(s) for s, _ in examples], [len(t) for _, t in examples],
                          batch_size=batch_size * world, max_tokens=max_tokens * world, shuffle=True, seed=seed,
                          by=by)
        for cut in cuts:
            if len(cut) < world:
                continue
            done += 1
            if done <= skip:
                continue
            mine = shard(cut, rank, world)
            yield collate([examples[i] for i in mine], [ids[i] for i in mine], reverse, pad_multiple)
