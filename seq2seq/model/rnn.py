"""Running the recurrent layers: the RNN cells, a faster CPU dropout, and a multi-layer RNN
run one layer at a time so that this dropout can stand between the layers.

Shapes: ``B`` batch, ``S`` sequence length, ``In`` input size, ``H`` hidden size, ``L``
layers, ``dirs`` directions (2 if bidirectional, else 1), ``N`` the rows of a packed sequence.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

CELLS: dict[str, Any] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # ModelConfig.cell -> the module


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)``; on the CPU the mask is drawn as 16-bit uniform integers, two
    from each 32-bit draw of the random generator, instead of by ``bernoulli_`` (one slow draw
    an element), and applied as a product: 3x faster there, where PyTorch's masks took 9% of
    the Multi30k training step. ``p`` is rounded to a multiple of 1/65,536 and the kept values
    are scaled by 1 / (1 - that), so the expected output is the input, exactly. On a GPU,
    PyTorch's fused kernel.

    Args:
        x: any shape, any floating dtype.
        p: the probability of dropping an element, in [0, 1).
        training: False: ``x`` itself.

    Returns:
        ``x``'s shape and dtype.
    """
    if not training or p == 0.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    n = x.numel()
    draws = torch.empty((n + 1) // 2, dtype=torch.int32).random_(-2**31, 2**31)
    uniform = draws.view(torch.int16)[:n].view(x.shape)  # each of the 65,536 values equally likely
    dropped = min(round(p * 65536), 65535)  # values below -32768 + dropped are dropped
    keep = (uniform >= dropped - 32768).to(x.dtype)  # 0 or 1: x * keep is exact in any dtype
    return x * keep * (65536 / (65536 - dropped))  # a product, not torch.where: 5x faster on the CPU


class Dropout(nn.Dropout):
    """``nn.Dropout`` by :func:`dropout`."""

    def forward(self, x: Tensor) -> Tensor:
        """x: any shape -> the same shape."""
        return dropout(x, self.p, self.training)


_KERNELS = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}  # RNNBase.mode -> _VF


def run_rnn(rnn: nn.RNNBase, x: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None = None
            ) -> tuple[Any, Any]:
    """``rnn(x, hx)``. Training on the CPU with dropout between layers, its layers run one at a
    time (the kernels ``rnn`` calls for each layer anyway) with :func:`dropout` between them
    instead of PyTorch's ``bernoulli_`` masks, which took 4% of the Multi30k step.

    Args:
        rnn: a batch-first ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``.
        x: the input ``(B, S, In)``, or a :class:`PackedSequence` of it.
        hx: the initial state ``(L*dirs, B, H)`` (a pair for an LSTM), or None for zeros.

    Returns:
        as ``rnn``: the outputs ``(B, S, dirs*H)`` (packed if ``x`` is) and the final state
        ``(L*dirs, B, H)`` (a pair for an LSTM).
    """
    data = x.data if isinstance(x, PackedSequence) else x
    if not (rnn.training and rnn.dropout > 0 and rnn.num_layers > 1 and data.device.type == "cpu"):
        return rnn(x, hx)
    assert rnn.batch_first and not rnn.proj_size
    dirs, lstm = 2 if rnn.bidirectional else 1, rnn.mode == "LSTM"
    batch_sizes = x.batch_sizes if isinstance(x, PackedSequence) else None
    if hx is not None and isinstance(x, PackedSequence) and x.sorted_indices is not None:
        hx = rnn.permute_hidden(hx, x.sorted_indices)  # type: ignore[arg-type]  # rows in packing order, as nn does
    finals: list[tuple[Tensor, ...]] = []
    for layer in range(rnn.num_layers):
        if layer:
            data = dropout(data, rnn.dropout, True)
        rows = slice(layer * dirs, (layer + 1) * dirs)
        h0 = None if hx is None else ((hx[0][rows], hx[1][rows]) if lstm else hx[rows])
        data, *final_layer = run_layer(rnn, layer, data, h0, batch_sizes)
        finals.append(tuple(final_layer))  # (dirs, B, H): h (and c)
    final: Any = tuple(torch.cat(parts) for parts in zip(*finals))  # (L*dirs, B, H) each
    final = final if lstm else final[0]
    if isinstance(x, PackedSequence):
        if x.unsorted_indices is not None:
            final = rnn.permute_hidden(final, x.unsorted_indices)
        return PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices), final
    return data, final


def run_layer(rnn: nn.RNNBase, layer: int, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None,
              batch_sizes: Tensor | None = None) -> tuple[Tensor, ...]:
    """Layer ``layer`` of ``rnn`` alone (both directions if bidirectional): the kernel ``rnn``
    itself calls (cuDNN on a GPU), with one layer's weights and no dropout.

    Args:
        x: batch-first ``(B, S, In)``, or a packed sequence's data ``(N, In)`` with its ``batch_sizes``.
        hx: the initial state ``(dirs, B, H)`` (a pair for an LSTM); None: zeros.

    Returns:
        the outputs (``(B, S, dirs*H)`` or packed ``(N, dirs*H)``) and the final hidden state
        ``(dirs, B, H)``, then an LSTM's final cell state.
    """
    per_layer = len(rnn._flat_weights) // rnn.num_layers  # weight_ih, weight_hh(, biases) of each direction
    weights = rnn._flat_weights[layer * per_layer:(layer + 1) * per_layer]
    if hx is None:
        batch = x.shape[0] if batch_sizes is None else int(batch_sizes[0])
        h0 = x.new_zeros(2 if rnn.bidirectional else 1, batch, rnn.hidden_size)
        hx = (h0, h0) if rnn.mode == "LSTM" else h0
    kernel = getattr(torch._VF, _KERNELS[rnn.mode])
    with warnings.catch_warnings():  # cuDNN copies one layer's weights into a buffer of its own where needed
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")
        if batch_sizes is None:
            return tuple(kernel(x, hx, weights, rnn.bias, 1, 0.0, rnn.training, rnn.bidirectional, True))
        return tuple(kernel(x, batch_sizes, hx, weights, rnn.bias, 1, 0.0, rnn.training, rnn.bidirectional))
