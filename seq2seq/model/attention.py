"""Luong "general" attention over the encoder outputs (``model.attention: luong``).

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``H`` hidden size.

Each decoder RNN output ``h_t`` reads the encoder outputs ``m_s`` and is combined with what
it read; there is no input feeding, so the whole target still runs through the RNN in one
call::

    a_ts = softmax_s(h_t^T W_a m_s)    r_t = sum_s a_ts m_s    h~_t = tanh(W_c [h_t; r_t])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LuongAttention(nn.Module):
    """Luong "general" attention: ``h~_t = tanh(W_c [h_t; sum_s softmax_s(h_t^T W_a m_s) m_s])``.

    Step-by-step decoding computes the keys ``k_s = W_a^T m_s`` once (:meth:`keys`), so a step
    scores ``h_t^T k_s`` without projecting its queries. Rows may come in groups (a sentence's
    beams) sharing one entry of the memory: ``group`` consecutive rows of ``out`` read one row
    of ``memory``, which is never copied per beam.
    """

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden_dim, hidden_dim, bias=False)  # W_a
        self.combine = nn.Linear(2 * hidden_dim, hidden_dim, bias=False)  # W_c

    def forward(self, out: Tensor, memory: Tensor, mask: Tensor | None, *, keys: Tensor | None = None,
                group: int = 1) -> Tensor:
        """The attentional outputs ``h~``.

        Args:
            out: the decoder RNN's outputs ``h`` ``(N, T, H)``, ``N = B * group``.
            memory: the encoder outputs ``m`` ``(B, S, H)``.
            mask: ``(B, S)`` bool, True at real source tokens; None: all are real.
            keys: :meth:`keys` of ``memory`` ``(B, S, H)``, or None to project the queries instead.
            group: rows of ``out`` per row of ``memory`` (consecutive).

        Returns:
            ``h~`` ``(N, T, H)``.
        """
        read = self.read(out, memory, mask, keys=keys, group=group)
        return torch.tanh(self.combine(torch.cat([out, read], dim=-1)))

    def keys(self, memory: Tensor) -> Tensor:
        """``k = m W_a`` ``(B, S, H)``: scores are then ``h^T k``, the same as ``(W_a h)^T m``."""
        weight = self.score.weight
        if callable(weight):  # a dynamically quantized Linear gives its weight by a call
            weight = weight().dequantize()
        return memory @ weight.to(memory.dtype)

    def weights(self, out: Tensor, memory: Tensor, mask: Tensor | None, *, keys: Tensor | None = None,
                group: int = 1) -> Tensor:
        """The alignment ``a`` ``(N, T, S)``: each target step's distribution over source positions.
        Arguments as :meth:`forward`."""
        n, t, h = out.shape
        query = out if keys is not None else self.score(out)  # (N, T, H)
        scores = torch.bmm(query.reshape(n // group, group * t, h),
                           (memory if keys is None else keys).transpose(1, 2))  # (B, group*T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        return torch.softmax(scores.float(), dim=-1).to(memory.dtype).view(n, t, -1)

    def read(self, out: Tensor, memory: Tensor, mask: Tensor | None, *, keys: Tensor | None = None,
             group: int = 1) -> Tensor:
        """``r`` ``(N, T, H)``: the attention-weighted sum of ``memory``, in ``out``'s dtype.
        Arguments as :meth:`forward`."""
        n, t, _ = out.shape
        a = self.weights(out, memory, mask, keys=keys, group=group)  # (N, T, S)
        return torch.bmm(a.view(n // group, group * t, -1), memory).to(out.dtype).view(n, t, -1)
