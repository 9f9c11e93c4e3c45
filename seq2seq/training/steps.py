"""One training step on a batch: the forward pass (teacher forcing, or scheduled sampling below
ratio 1), the summed token loss, and the optimizer's update (:func:`seq2seq.training.loop.update`:
backward, clipping, the NaN/inf guard). Two kinds of batch:

* :func:`train_step`: a packed :class:`~seq2seq.data.batching.Batch`, this rank's share of
  the step's global batch; in a data-parallel run the loss is normalised by the global token
  count, and the model runs inside :class:`TrainingForward` (DDP synchronises what runs
  through the forward of the module it wraps).
* :func:`static_step`: a static-shape :class:`~seq2seq.data.buckets.StaticBatch` (one process),
  with nothing a CUDA graph cannot capture (:mod:`seq2seq.training.graphs`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..config import Config
from ..data.batching import Batch
from ..data.buckets import StaticBatch
from ..data.tokenization import PAD
from ..model.loss import sequence_loss
from ..model.seq2seq import Seq2Seq
from ..runtime import distributed
from ..runtime.distributed import World
from .loop import update


# --- the forward pass ---------------------------------------------------------------
def teacher_forcing_ratio(epoch: int, cfg: Config) -> float:
    """Epoch ``epoch``'s (0-based) share of gold inputs: ``train.teacher_forcing`` less
    ``train.teacher_forcing_decay`` an epoch, down to ``train.teacher_forcing_min``; 1 when
    neither asks for less."""
    t = cfg.train
    return max(t.teacher_forcing_min, t.teacher_forcing - t.teacher_forcing_decay * epoch) \
        if t.teacher_forcing < 1.0 or t.teacher_forcing_decay > 0 else 1.0


def scheduled_sampling_logits(model: Seq2Seq, batch: Batch | StaticBatch, ratio: float, padded: bool = False
                              ) -> Tensor:
    """Step through time; feed the gold token with probability ``ratio``, else the model's
    own argmax prediction (scheduled sampling). -> logits (B, T, V). ``padded``: the padded
    encoder (static shapes)."""
    state = model.encode(batch.src, batch.src_len, padded)
    prev = batch.tgt_in[:, 0]  # (B,) BOS
    steps = []
    T = batch.tgt_in.shape[1]
    for t in range(T):
        logits, state = model.decode_step(prev, state)  # (B, V)
        steps.append(logits)
        if t + 1 < T:
            gold = batch.tgt_in[:, t + 1]
            use_gold = torch.rand(gold.shape, device=gold.device) < ratio
            prev = torch.where(use_gold, gold, logits.argmax(-1))
    return torch.stack(steps, dim=1)  # (B, T, V)


class TrainingForward(nn.Module):
    """The training forward pass in one module call: teacher forcing, or scheduled sampling
    below ratio 1. DistributedDataParallel synchronises the gradients of what runs through
    the ``forward`` of the module it wraps, so both paths go through this one."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch, ratio: float) -> Tensor:
        if ratio >= 1.0:
            return self.model(batch.src, batch.src_len, batch.tgt_in)  # (B, T, V)
        return scheduled_sampling_logits(self.model, batch, ratio)  # (B, T, V)


# --- one step ------------------------------------------------------------------------
def train_step(net: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer, cfg: Config, tf_ratio: float,
               autocast: Any, world: World = distributed.SINGLE, defer: bool = False
               ) -> tuple[Tensor, Any, Tensor, Any]:
    """One optimizer step on ``batch``, this rank's share of the step's global batch.

    ``net`` is ``TrainingForward(model)``, in DistributedDataParallel when there are several
    ranks (a bare ``Seq2Seq`` is wrapped here). -> (summed loss and target tokens of the
    *global* batch, gradient norm before clipping, whether the step was taken: not when the
    loss or gradient is NaN/inf, which every rank sees alike).

    The gradient is that of the global batch's mean token loss, as one process would take
    it: each rank divides its summed loss by the global token count (one all-reduce of two
    numbers before backward) and multiplies it by the world size, which DDP's averaging of
    the ranks' gradients divides out again. So N ranks with ``batch_size`` B take the steps
    of one process with N * B, up to the order of floating-point sums.

    ``defer`` (``train.sync_free``; fused Adam only): no host sync. The step is always
    launched, and the fused kernel skips it on the device when the loss or gradient is not
    finite (``found_inf``, as a GradScaler would set it); "taken" is then a 0-dim bool tensor,
    and the target-token count a tensor in a data-parallel run.
    """
    if isinstance(net, Seq2Seq):  # a bare model (bench.py times steps this way)
        net = TrainingForward(net)
    with autocast:
        logits = net(batch, tf_ratio)  # (B, T, V)
        loss_sum = sequence_loss(logits, batch.tgt_out, cfg.train.label_smoothing)
    loss_total, tokens = _global_sums(loss_sum, batch.num_tgt_tokens, world)
    return update(net, loss_sum, loss_total, tokens, optimizer, cfg, defer, scale=world.size)


def static_step(model: Seq2Seq, batch: StaticBatch, optimizer: torch.optim.Optimizer, cfg: Config,
                tf_ratio: float, autocast: Any, defer: bool = False) -> tuple[Tensor, Any, Tensor, Any]:
    """:func:`train_step` on a static-shape batch (:mod:`seq2seq.data.buckets`; one process), with
    nothing a CUDA graph cannot capture when ``defer``: the padded encoder, and the token count
    the loss is divided by counted on the device (exact: padding rows are all PAD). The same
    returns as :func:`train_step`; with ``defer``, the token count is a 0-dim tensor."""
    with autocast:
        if tf_ratio >= 1.0:
            logits = model(batch.src, batch.src_len, batch.tgt_in, padded=True)  # (B, T, V)
        else:
            logits = scheduled_sampling_logits(model, batch, tf_ratio, padded=True)  # (B, T, V)
        loss_sum = sequence_loss(logits, batch.tgt_out, cfg.train.label_smoothing)
    tokens = (batch.tgt_out != PAD).sum()  # () int64, on the device
    return update(model, loss_sum, loss_sum.detach(), tokens, optimizer, cfg, defer)


def _global_sums(loss_sum: Tensor, tokens: int, world: World) -> tuple[Tensor, Tensor | int]:
    """(summed loss, target tokens) over all ranks; in one process, as they are."""
    if world.size == 1:
        return loss_sum.detach(), tokens
    sums = torch.stack([loss_sum.detach().double(), torch.tensor(float(tokens), dtype=torch.float64,
                                                                 device=loss_sum.device)])  # (2,)
    world.sum(sums)
    return sums[0].float(), sums[1].float()
