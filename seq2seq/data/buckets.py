"""Static-shape training batches: the corpus on the device, in a few fixed-shape buckets.

A CUDA graph replays fixed shapes and reads fixed addresses, so the graphed training step
(:mod:`seq2seq.training.graphs`) needs batches of a few shapes known in advance, built without Python
on the host each step. Here the training examples are padded once, into buckets:

* bucket by the longer side: an example of source length ``s`` and target length ``t``
  (``t + 1`` with BOS or EOS) goes to the bucket ``w = ceil(max(s, t + 1) / m) * m``, ``m``
  being ``train.pad_multiple`` (:data:`DEFAULT_MULTIPLE` when it is 0); the bucket's source
  and target widths ``S``, ``T <= w`` are its longest source and target, rounded up to ``m``.
  So there are at most ``max_len / m + 1`` shapes;
* rows per batch: ``train.batch_size``, or with ``train.max_tokens`` as many as the budget
  allows at width ``w`` (``max_tokens // w``, as :func:`~seq2seq.data.batching.batch_cuts`
  counts it), at least one;
* whole batches: from the narrowest bucket up, the examples over a multiple of its rows (its
  longest) move up into the next bucket, so only the widest bucket has a partial batch;
* each bucket is four tensors on the device (:class:`Bucket`), plus one all-PAD row at the
  end. The partial batch of an epoch is filled up with that row: its target is all PAD,
  so it adds nothing to the loss, to the token count the loss is divided by, or to the
  gradient (tested against :func:`~seq2seq.data.batching.collate`).

Padded positions per real token on Multi30k (29k pairs; multiple 4): 1.21 source and 1.17
target at batch 128 (9 shapes), 1.49 and 1.40 at batch 2048 (6 shapes); length-sorted
dynamic batches pad 1.24 and 1.02 at 128, 2.02 and 1.32 at 2048. Bucketing by the target
alone would give each bucket the source width of its longest source (2.5 source positions
per token at 128).

A step gathers its rows into the shape's fixed buffers (:meth:`StaticBatch.fill`, four
``index_select`` on the device); the only host-to-device copy is one index tensor per
bucket and epoch. The source is reversed (when asked) before padding, as ``collate`` does;
``src_len`` lives on the device, for the padded encoder (``Seq2Seq.forward(padded=True)``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .batching import Example, collate
from .tokenization import PAD

DEFAULT_MULTIPLE = 4  # widths' granularity when train.pad_multiple is 0


@dataclass(frozen=True)
class Shape:
    """A static batch shape: ``rows`` sentences, source width ``src``, target width ``tgt``."""

    rows: int
    src: int
    tgt: int


@dataclass
class StaticBatch:
    """One batch of a fixed :class:`Shape` (all tensors ``long``, on the device). The graphed
    step reads these very tensors: :meth:`fill` writes a batch into them in place."""

    src: Tensor  # (B, S) source ids, reversed if asked, PAD at the end
    src_len: Tensor  # (B,) real source lengths, >= 1 (1 in padding rows), on the device
    tgt_in: Tensor  # (B, T) BOS + target ids, PAD at the end
    tgt_out: Tensor  # (B, T) target ids + EOS, PAD at the end (all PAD in padding rows)

    @classmethod
    def empty(cls, shape: Shape, device: torch.device) -> StaticBatch:
        def ids(*size: int) -> Tensor:
            return torch.full(size, PAD, dtype=torch.long, device=device)

        return cls(ids(shape.rows, shape.src), torch.ones(shape.rows, dtype=torch.long, device=device),
                   ids(shape.rows, shape.tgt), ids(shape.rows, shape.tgt))

    @property
    def shape(self) -> Shape:
        rows, src = self.src.shape
        return Shape(rows, src, self.tgt_in.shape[1])

    def fill(self, bucket: Bucket, rows: Tensor) -> None:
        """Write ``bucket``'s rows ``rows`` ``(B,)`` (on the device) into these tensors."""
        for name in ("src", "src_len", "tgt_in", "tgt_out"):
            torch.index_select(getattr(bucket, name), 0, rows, out=getattr(self, name))


@dataclass
class Bucket:
    """The examples of one shape, padded, on the device; row ``n`` (the last) is all PAD."""

    shape: Shape
    src: Tensor  # (n + 1, S)
    src_len: Tensor  # (n + 1,)
    tgt_in: Tensor  # (n + 1, T)
    tgt_out: Tensor  # (n + 1, T)
    ids: list[int]  # (n) each row's position in the example list

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def batches(self) -> int:
        return -(-self.size // self.shape.rows)


class DeviceCorpus:
    """The training examples in static-shape buckets on ``device``; :meth:`epoch` walks them."""

    def __init__(self, examples: Sequence[Example], *, batch_size: int, max_tokens: int, pad_multiple: int,
                 reverse: bool, device: torch.device) -> None:
        m = pad_multiple or DEFAULT_MULTIPLE

        def up(n: int) -> int:
            return -(-n // m) * m

        def side(i: int) -> int:  # the longer side's length, EOS or BOS included
            return max(len(examples[i][0]), len(examples[i][1]) + 1)

        by_width: dict[int, list[int]] = {}
        for i in range(len(examples)):
            by_width.setdefault(up(side(i)), []).append(i)
        self.buckets: list[Bucket] = []
        carried: list[int] = []  # examples moved up from narrower buckets
        widths = sorted(by_width)
        for key in widths:
            rows = max(1, max_tokens // key) if max_tokens else batch_size
            ids = sorted(carried + by_width[key], key=side)
            whole = len(ids) if key == widths[-1] else len(ids) // rows * rows
            ids, carried = ids[:whole], ids[whole:]
            if not ids:
                continue
            S = up(max(len(examples[i][0]) for i in ids))
            T = up(max(len(examples[i][1]) for i in ids) + 1)
            padded = collate([examples[i] for i in ids], ids, reverse)  # (n, <= S), (n, <= T)
            self.buckets.append(Bucket(Shape(rows, S, T), src=_with_pad_row(padded.src, S, device),
                                       src_len=_with_pad_row(padded.src_len, 0, device),
                                       tgt_in=_with_pad_row(padded.tgt_in, T, device),
                                       tgt_out=_with_pad_row(padded.tgt_out, T, device), ids=ids))

    @property
    def shapes(self) -> list[Shape]:
        return [b.shape for b in self.buckets]

    def batches_per_epoch(self) -> int:
        return sum(b.batches for b in self.buckets)

    def epoch(self, seed: int, skip: int = 0) -> Iterator[tuple[Bucket, Tensor]]:
        """An epoch's batches as ``(bucket, rows)``, ``rows`` ``(B,)`` on the device: every
        example once, in a new order for each ``seed`` (rows shuffled within each bucket, the
        batches of all buckets shuffled together); the first ``skip`` batches (done before a
        resume) are left out."""
        gen = torch.Generator().manual_seed(seed)
        plans = []
        for bucket in self.buckets:
            B, n = bucket.shape.rows, bucket.size
            order = torch.cat([torch.randperm(n, generator=gen),
                               torch.full((bucket.batches * B - n,), n, dtype=torch.long)])  # pad row: n
            plans.append(order.view(bucket.batches, B))  # (batches, B)
        steps = [(k, j) for k, b in enumerate(self.buckets) for j in range(b.batches)]
        random.Random(seed).shuffle(steps)
        on_device: dict[int, Tensor] = {}
        for k, j in steps[skip:]:
            if k not in on_device:  # one copy per bucket and epoch
                on_device[k] = plans[k].to(self.buckets[k].src.device, non_blocking=True)
            yield self.buckets[k], on_device[k][j]


def _with_pad_row(t: Tensor, width: int, device: torch.device) -> Tensor:
    """``t`` ``(n, w)`` padded with PAD to ``(n + 1, width)``, on ``device``; lengths ``(n,)``
    (``width`` 0) get a 1 for the padding row."""
    if not width:
        return torch.cat([t, torch.ones(1, dtype=t.dtype)]).to(device)
    out = torch.full((t.shape[0] + 1, width), PAD, dtype=t.dtype)
    out[: t.shape[0], : t.shape[1]] = t
    return out.to(device)
