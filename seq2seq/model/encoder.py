"""The encoder: an RNN (LSTM, GRU or tanh RNN) over the embedded source.

Shapes: ``B`` batch, ``S`` source length, ``E`` embedding size, ``H`` hidden size (the
decoder's), ``He`` the encoder's size a direction (``model.encoder_dim``, by default ``H``), ``L``
layers, ``dirs`` directions (2 if bidirectional, else 1).

The source (reversed, if it is, by batching) is packed so that padding never enters the
recurrence; a batch without padding (all its sources of one length, as ``train.batch_by:
source`` makes them) runs unpacked, in one fused RNN call a layer (oneDNN on the CPU), which
is faster; training in fp32 on the CPU, a padded batch runs so too, a group of rows of one
length at a time (:meth:`Encoder._by_length`). The **context vector** ``c`` is the top layer's
final hidden state, ``(B, H)``. Static-shape training (CUDA graphs, which cannot capture
packing's data-dependent shapes) runs it over the padded source instead and reads each row's
final state at its length (:meth:`Encoder.forward_padded`): the same numbers, for a
unidirectional encoder.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..config import ModelConfig
from .rnn import CELLS, dropout, run_layer, run_rnn


def _pack(emb: Tensor, src_len: Tensor) -> PackedSequence:
    """``pack_padded_sequence(emb, src_len, batch_first=True, enforce_sorted=False)``, the same
    packing, without its host sync on a GPU: the lengths are sorted on the CPU (where
    :class:`~seq2seq.data.batching.Batch` keeps them) and the order is copied over non-blocking
    (PyTorch's own copies it blocking).

    Args:
        emb: ``(B, S, E)``, padded at the end.
        src_len: real lengths ``(B,)`` long, each >= 1 (sorted on the CPU).
    """
    lengths, order = torch.sort(src_len.cpu(), descending=True)
    order = order.to(emb.device, non_blocking=True)
    sorted_packed = pack_padded_sequence(emb.index_select(0, order), lengths, batch_first=True, enforce_sorted=True)
    return PackedSequence(sorted_packed.data, sorted_packed.batch_sizes, order)  # unsorted order: on the device


def runs_by_length(training: bool, emb: Tensor) -> bool:
    """Whether a padded batch runs by source length (:meth:`Encoder._by_length`) rather than
    packed: training in fp32 on the CPU (under bf16 autocast the packed run was faster)."""
    return training and emb.device.type == "cpu" and not torch.is_autocast_enabled("cpu")


class Encoder(nn.Module):
    """RNN over the embedded source; a bidirectional one's two directions (or states of another
    size than the decoder's) joined to size H."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        E, He, H, L, p = cfg.embed_dim, cfg.encoder_size, cfg.hidden_dim, cfg.num_layers, cfg.dropout
        dirs = 2 if cfg.bidirectional else 1
        self.rnn = CELLS[cfg.cell](E, He, L, batch_first=True, dropout=p if L > 1 else 0.0,
                                   bidirectional=cfg.bidirectional)
        # A bidirectional encoder's two final states a layer (or one of another size than the
        # decoder's) are joined into one of size H; its outputs are projected to H.
        self.bridge = nn.Linear(dirs * He, H) if cfg.bridged else None
        self.memory_proj = nn.Linear(dirs * He, H, bias=False) if cfg.bridged else None

    def forward(self, emb: Tensor, src_len: Tensor, *, with_memory: bool
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Encode a padded batch.

        Args:
            emb: embedded source ``(B, S, E)``, padded at the end.
            src_len: real lengths ``(B,)`` long, each >= 1.
            with_memory: also return the outputs at every position (for attention).

        Returns:
            hidden ``(L, B, H)``, cell ``(L, B, H)`` (LSTM) or None, and the outputs
            ``(B, S, H)`` (zero at padding) or None.
        """
        S = emb.shape[1]
        lengths = src_len.cpu()  # where Batch keeps them: no host sync
        if bool((lengths == S).all()):  # no padding (train.batch_by: source): one fused call a layer
            out, final = run_rnn(self.rnn, emb)  # out (B, S, dirs*He)
        elif runs_by_length(self.training, emb):  # fused calls, a group of rows at a time
            out, final = self._by_length(emb, lengths)
        else:
            out_packed, final = run_rnn(self.rnn, _pack(emb, lengths))
            out = pad_packed_sequence(out_packed, batch_first=True, total_length=S)[0] if with_memory else None
        h, c = final if isinstance(final, tuple) else (final, None)  # (L*dirs, B, He)
        if self.bridge is not None:
            h = self._join(h)
            c = None if c is None else self._join(c)
        memory = None
        if with_memory:
            memory = out if self.memory_proj is None else self.memory_proj(out)  # (B, S, H)
        return h, c, memory

    def _by_length(self, emb: Tensor, lengths: Tensor) -> tuple[Tensor, Any]:
        """The RNN over each group of rows of one source length, without their padding: fused
        calls, one a layer a group, for the packed run's numbers up to rounding. Training in fp32
        on the CPU, where a packed RNN runs one time step at a time and its backward pass fills a
        gradient the size of the whole packed input at every step; the rows of a training batch,
        sorted by length, have few distinct source lengths (a median of 5 in the Multi30k
        recipe's batches of 128). Its fp32 training step: 1.22x faster than packed (1,432 against
        1,171 target tokens/s); under bf16 autocast 0.71x (1,833 against 2,599), so bf16 stays
        packed (``python docs/bench/encoder_by_length/run.py``, 2 threads, AMD EPYC Zen 5).

        Args:
            emb: ``(B, S, E)``, padded at the end; lengths: ``(B,)`` long on the CPU, each in [1, S].

        Returns:
            the outputs ``(B, S, dirs*He)`` (zero at padding) and the final state ``(L*dirs, B, He)``
            (a pair for an LSTM), rows in the batch's order.
        """
        S = emb.shape[1]
        outs, finals, rows = [], [], []
        for length in lengths.unique().tolist():
            idx = (lengths == length).nonzero().squeeze(1)  # (b,) rows of this length (the CPU's, as emb)
            out, final = run_rnn(self.rnn, emb.index_select(0, idx)[:, :length])  # (b, length, dirs*He)
            outs.append(F.pad(out, (0, 0, 0, S - length)))  # (b, S, dirs*He)
            finals.append(final if isinstance(final, tuple) else (final,))  # (L*dirs, b, He) each
            rows.append(idx)
        back = torch.cat(rows).argsort()  # (B,): where each batch row is among the groups' rows
        out = torch.cat(outs).index_select(0, back)
        final = tuple(torch.cat(parts, dim=1).index_select(1, back) for parts in zip(*finals))
        return out, final if len(final) == 2 else final[0]

    def forward_padded(self, emb: Tensor, src_len: Tensor, *, with_memory: bool
                       ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """:meth:`forward` without packing: fixed shapes and no host data, so a CUDA graph can
        capture it. Unidirectional encoders of the decoder's size only (no bridge).

        The source is padded at the end, so a forward RNN reads a row's real tokens first and
        its state at position ``len - 1`` is the packed run's final state; the padding after it
        never reaches that state. The layers run one at a time, so that every layer's outputs
        are at hand: a layer's final hidden state is its output at ``len - 1`` (a gather). An
        LSTM's final cell state is not an output; it is rebuilt from the gates, which the
        outputs determine (:func:`_final_cell`).

        Args:
            emb: embedded source ``(B, S, E)``, padded at the end.
            src_len: real lengths ``(B,)`` long, each in [1, S], on any device.
            with_memory: also return the outputs at every position (for attention).

        Returns:
            as :meth:`forward`: hidden ``(L, B, H)``, cell ``(L, B, H)`` (LSTM) or None, and
            the outputs ``(B, S, H)`` (zero at padding) or None.
        """
        if self.bridge is not None:
            raise ValueError("the padded encoder is for unidirectional encoders of the decoder's size "
                             "(model.bidirectional: false, model.encoder_dim: 0)")
        B, S, _ = emb.shape
        rnn = self.rnn
        last = (src_len.to(emb.device, non_blocking=True) - 1).clamp(0, S - 1)  # (B,) position of the last token
        real = torch.arange(S, device=emb.device)[None, :] <= last[:, None]  # (B, S) bool
        x, hs, cs = emb, [], []
        for layer in range(rnn.num_layers):
            if layer:
                x = dropout(x, rnn.dropout, self.training)  # as run_rnn does between layers
            out = run_layer(rnn, layer, x)[0]  # (B, S, H), exact up to len - 1
            h = out.gather(1, last[:, None, None].expand(B, 1, out.shape[-1])).squeeze(1)  # (B, H)
            hs.append(h)
            if isinstance(rnn, nn.LSTM):
                cs.append(_final_cell(x, out, rnn, layer, real).to(h.dtype))
            x = out
        memory = x.masked_fill(~real[:, :, None], 0.0) if with_memory else None  # (B, S, H)
        return torch.stack(hs), torch.stack(cs) if cs else None, memory  # (L, B, H)

    def _join(self, x: Tensor) -> Tensor:
        """(L*dirs, B, He) final states (forward, backward a layer) -> (L, B, H) via tanh(W [fwd; bwd])."""
        Ld, B, He = x.shape
        L = self.rnn.num_layers
        x = x.view(L, Ld // L, B, He).permute(0, 2, 1, 3).reshape(L, B, Ld // L * He)  # (L, B, dirs*He)
        assert self.bridge is not None
        return torch.tanh(self.bridge(x))

def _final_cell(x: Tensor, out: Tensor, lstm: nn.RNNBase, layer: int, real: Tensor) -> Tensor:
    """An LSTM layer's cell state at position ``last`` of each row, from its input and outputs.

    With ``h_{-1} = 0`` and ``c_{-1} = 0``, the gates at step ``t`` follow from ``x_t`` and
    ``h_{t-1}`` (both known), and the cell recurrence ``c_t = f_t c_{t-1} + i_t g_t`` unrolls to

        c_last = sum_{k <= last} exp(sum_{k < j <= last} log f_j) * i_k g_k,

    computed for all rows at once (no loop over time; at least fp32). ``exp`` of a sum of ``log f <= 0``
    never overflows. Gradients reach the weights through the gates and ``out``, as they do
    through the recurrence.

    Args:
        x: the layer's input ``(B, S, In)``; out: its outputs ``(B, S, H)``;
        lstm, layer: the LSTM and the layer (its ``weight_ih`` ``(4H, In)``, ``weight_hh`` ``(4H, H)``,
            biases ``(4H,)``);
        real: ``(B, S)`` True at each row's real positions (up to ``last``).

    Returns:
        ``(B, H)``, fp32 (fp64 for an fp64 model).
    """
    H = out.shape[-1]
    h_prev = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)  # (B, S, H): h_{t-1}

    def w(name: str) -> Tensor:  # the rows of gates i, f, g (PyTorch's order: i, f, g, o; o is not needed)
        weight: Tensor = getattr(lstm, f"{name}_l{layer}")
        return weight[: 3 * H]

    acc = torch.promote_types(out.dtype, torch.float32)  # fp32 under bf16 autocast
    gates = (F.linear(x, w("weight_ih")) + F.linear(h_prev, w("weight_hh"))).to(acc)  # (B, S, 3H)
    if lstm.bias:
        gates = gates + (w("bias_ih") + w("bias_hh")).to(acc)
    i, f, g = gates.chunk(3, dim=-1)  # (B, S, H) each
    mask = real[:, :, None].to(acc)  # (B, S, 1)
    log_f = F.logsigmoid(f) * mask  # (B, S, H): 0 past ``last``
    after = log_f.flip(1).cumsum(1).flip(1)  # (B, S, H): sum_{j >= k} log f_j
    decay = torch.cat([after[:, 1:], torch.zeros_like(after[:, :1])], dim=1)  # sum_{j > k}: shifted, not subtracted
    return (torch.exp(decay) * torch.sigmoid(i) * torch.tanh(g) * mask).sum(1)  # (B, H)
