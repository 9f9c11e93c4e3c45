"""The training loss: summed token cross-entropy with label smoothing, in one fused step.

``sequence_loss(logits, target, label_smoothing)`` equals
``F.cross_entropy(logits.float(), target, ignore_index=PAD, label_smoothing=..., reduction="sum")``
(tested), but its backward writes the gradient in one pass, ``softmax(x) - q`` with ``q`` the
smoothed one-hot target, instead of PyTorch's chain of a zero-filled NLL gradient, a
smoothing gradient, their sum and the log-softmax backward over the whole ``(B*T, V)`` array.
On the CPU that chain costs more than the output projection's matrix product (a profile of
the training step), and it saves the ``(B*T, V)`` fp32 log-probabilities for backward; this keeps only
the logits (bf16 under autocast) and one number per token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.tokenization import PAD


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy of logits ``(N, V)`` against ``target`` ``(N,)``,
    skipping ``ignore_index``; computed in fp32 whatever the logits' dtype."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, smoothing: float, ignore_index: int) -> Tensor:
        keep = target != ignore_index  # (N,)
        safe = target.masked_fill(~keep, 0)  # (N,): a valid index at ignored rows, masked below
        lse = torch.empty(logits.shape[0], device=logits.device)  # (N,)
        mean = torch.empty_like(lse)
        for rows in _chunks(logits):  # a block of rows stays in cache through its passes
            x = logits[rows].float()
            lse[rows] = torch.logsumexp(x, dim=-1)
            if smoothing:
                mean[rows] = x.mean(dim=-1)
        loss = lse - logits.gather(1, safe[:, None]).squeeze(1).float()  # (N,) -log p(target)
        if smoothing:  # PyTorch's: (1 - eps) * nll + eps * mean over the vocabulary of -log p
            loss = (1.0 - smoothing) * loss + smoothing * (lse - mean)
        ctx.save_for_backward(logits, lse, safe, keep)
        ctx.smoothing = smoothing
        return (loss * keep).sum()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        logits, lse, safe, keep = ctx.saved_tensors
        eps, V = ctx.smoothing, logits.shape[-1]
        scale = keep.to(lse.dtype) * grad  # (N,)
        out = torch.empty_like(logits)
        for rows in _chunks(logits):
            g = torch.exp(logits[rows].float() - lse[rows, None])  # softmax
            if eps:
                g.sub_(eps / V)
            g.scatter_add_(1, safe[rows, None], torch.full_like(g[:, :1], eps - 1.0))
            out[rows] = g.mul_(scale[rows, None])
        return out, None, None, None


def _chunks(logits: Tensor, size: int = 64) -> list[slice]:
    """Blocks of ``size`` rows on the CPU (each stays in cache through its passes); on a GPU one
    block, since every block costs kernel launches and the step is launch-bound there."""
    n = logits.shape[0]
    if logits.device.type != "cpu":
        return [slice(0, n)]
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def sequence_loss(logits: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Summed token cross-entropy over non-pad targets: logits ``(B, T, V)``, tgt_out ``(B, T)``
    -> a 0-dim fp32 tensor."""
    loss: Tensor = _SmoothedCrossEntropy.apply(logits.flatten(0, 1), tgt_out.flatten(), float(label_smoothing), PAD)
    return loss
