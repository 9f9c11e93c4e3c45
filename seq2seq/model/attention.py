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
    """Luong "general" attention: ``h~_t = tanh(W_c [h_t; sum_s softmax_s(h_t^T W_a m_s) m_s])``."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden_dim, hidden_dim, bias=False)  # W_a
        self.combine = nn.Linear(2 * hidden_dim, hidden_dim, bias=False)  # W_c

    def forward(self, out: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """The attentional outputs ``h~``.

        Args:
            out: the decoder RNN's outputs ``h`` ``(B, T, H)``.
            memory: the encoder outputs ``m`` ``(B, S, H)``.
            mask: ``(B, S)`` bool, True at real source tokens; None: all are real.

        Returns:
            ``h~`` ``(B, T, H)``.
        """
        return torch.tanh(self.combine(torch.cat([out, self.read(out, memory, mask)], dim=-1)))

    def weights(self, out: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """The alignment ``a`` ``(B, T, S)``: each target step's distribution over source positions.
        Arguments as :meth:`forward`."""
        scores = torch.bmm(self.score(out), memory.transpose(1, 2))  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        return torch.softmax(scores.float(), dim=-1).to(memory.dtype)

    def read(self, out: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """``r`` ``(B, T, H)``: the attention-weighted sum of ``memory``, in ``out``'s dtype.
        Arguments as :meth:`forward`."""
        return torch.bmm(self.weights(out, memory, mask), memory).to(out.dtype)
