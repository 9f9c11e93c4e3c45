"""The decoder: an RNN over the embedded previous target tokens and an output layer over the
vocabulary; peeky and attention optional. :class:`DecoderState` is what it carries between steps.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding size, ``H``
hidden size, ``L`` layers, ``V`` vocabulary size.

The RNN starts from the encoder's final state (an LSTM's hidden and cell states; with
``decoder_init: hidden`` the hidden state and a zero cell state). Plain (Sutskever et al.
2014), the context vector ``c`` (the encoder's top-layer final hidden state) enters only
through that initial state::

    h_t = RNN(E y_{t-1}, h_{t-1})               logits_t = W_out h_t + b

**Peeky** (``peeky: true``, the one difference from the plain decoder, as the textbook's
``PeekyDecoder``): ``c`` also joins the RNN's input at every step and the output layer's
input, both by :meth:`Decoder._peek`::

    h_t = RNN([E y_{t-1}; c], h_{t-1})          logits_t = W_out [h_t; c] + b

With ``attention: luong`` each RNN output ``h_t`` is replaced by the attentional ``h~_t``
(:class:`~seq2seq.model.attention.LuongAttention`) before the output layer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .attention import LuongAttention
from .rnn import CELLS, Dropout, run_rnn


@dataclass
class DecoderState:
    """What the decoder carries between steps, for ``N`` rows (sentences, or their beams).

    The encoder's outputs belong to sentences, not rows: ``memory`` holds one entry per
    sentence, shared by that sentence's ``group`` consecutive rows (its beams), so that
    reordering beams never copies it. Rows ``r`` and ``r'`` share a sentence when
    ``r // group == r' // group``.
    """

    hidden: Tensor  # (L, N, H)
    cell: Tensor | None  # (L, N, H) for LSTM, else None
    context: Tensor  # (N, H): the encoder's top-layer final hidden state
    memory: Tensor | None = None  # (N / group, S, H): encoder outputs, with attention only
    memory_mask: Tensor | None = None  # (N / group, S) bool, True at real source tokens
    keys: Tensor | None = None  # (N / group, S, H): the attention keys of memory, once computed
    group: int = 1  # rows per sentence (beams), sharing one entry of memory

    def _rows(self, index: Tensor, group: int, sentences: Tensor | None = None) -> DecoderState:
        """Rows ``index`` (M,) long of the per-row tensors, ``group`` rows a sentence, and the
        entries ``sentences`` long of memory, its mask and keys (None: all, as they are)."""
        def entries(x: Tensor | None) -> Tensor | None:
            return x if x is None or sentences is None else x.index_select(0, sentences)
        return DecoderState(
            hidden=self.hidden.index_select(1, index),
            cell=None if self.cell is None else self.cell.index_select(1, index),
            context=self.context.index_select(0, index),
            memory=entries(self.memory), memory_mask=entries(self.memory_mask), keys=entries(self.keys),
            group=group,
        )

    def select(self, index: Tensor) -> DecoderState:
        """Any rows ``index`` (M,) long, each as a sentence of its own (``group`` 1)."""
        return self._rows(index, 1, torch.div(index, self.group, rounding_mode="floor"))

    def repeat(self, k: int) -> DecoderState:
        """Each row as ``k`` consecutive rows (beams) sharing its sentence's memory: N*k rows."""
        index = torch.arange(self.hidden.size(1), device=self.hidden.device).repeat_interleave(k)
        return self._rows(index, self.group * k)

    def reorder(self, index: Tensor) -> DecoderState:
        """Rows ``index`` (N,) long where row ``r`` takes a row of its own sentence
        (``index[r] // group == r // group``): beams reordered, memory untouched."""
        return self._rows(index, self.group)

    def keep(self, sentences: Tensor) -> DecoderState:
        """Only the sentences ``sentences`` (M,) long, with all their rows: M*group rows."""
        g = self.group
        rows = (sentences[:, None] * g + torch.arange(g, device=sentences.device)).view(-1)  # (M*g,)
        return self._rows(rows, g, sentences)


class Decoder(nn.Module):
    """RNN over embedded target tokens and an output layer; peeky and attention optional.

    ``tie_to``: an embedding of size (V, E) whose weight the output layer shares (through a
    projection to E first).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int, tie_to: nn.Embedding | None = None) -> None:
        super().__init__()
        E, H, L, p = cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.dropout
        self.peeky = cfg.peeky
        context = H if cfg.peeky else 0  # peeky: c joins the RNN input and the output layer input
        self.rnn = CELLS[cfg.cell](E + context, H, L, batch_first=True, dropout=p if L > 1 else 0.0)
        self.attention = LuongAttention(H) if cfg.attention == "luong" else None
        self.dropout = Dropout(p)
        self.pre_output: nn.Linear | None = None
        if tie_to is not None:
            self.pre_output = nn.Linear(H + context, E)
            self.output = nn.Linear(E, vocab_size)
            self.output.weight = tie_to.weight
        else:
            self.output = nn.Linear(H + context, vocab_size)

    def forward(self, emb: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Run ``T`` steps (teacher forcing, or one step of search).

        Args:
            emb: embedded previous target tokens ``(B, T, E)``.
            state: the state before the first of them: hidden ``(L, B, H)``, cell
                ``(L, B, H)`` or None, context ``(B, H)``, memory ``(B, S, H)`` and its
                mask ``(B, S)`` with attention.

        Returns:
            logits ``(B, T, V)`` and the state after the last step.
        """
        out, h, c, ctx = self._run_rnn(emb, state)  # out (B, T, H)
        if self.attention is not None and state.memory is not None:
            out = self.attention(out, state.memory, state.memory_mask, keys=state.keys, group=state.group)
        out = self.dropout(self._peek(out, ctx))  # peeky: [h_t; c] (B, T, 2H) into the output layer
        if self.pre_output is not None:
            out = self.pre_output(out)  # (B, T, E)
        logits = self.output(out)  # (B, T, V)
        return logits, replace(state, hidden=h, cell=c)

    def _peek(self, x: Tensor, ctx: Tensor) -> Tensor:
        """Peeky: ``[x; c]`` at every step, ``x`` ``(B, T, X)`` and ``ctx`` ``(B, T, H)`` ->
        ``(B, T, X+H)`` in ``x``'s dtype. Plain: ``x``."""
        return torch.cat([x, ctx.to(x.dtype)], dim=-1) if self.peeky else x

    def _run_rnn(self, emb: Tensor, state: DecoderState) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """The RNN over ``T`` steps.

        Args:
            emb: embedded previous target tokens ``(B, T, E)``.
            state: as in :meth:`forward`.

        Returns:
            the RNN outputs ``(B, T, H)``, the final hidden and cell state ``(L, B, H)`` (cell
            None but for an LSTM), and the context at every step ``(B, T, H)``.
        """
        B, T = emb.shape[:2]
        ctx = state.context[:, None, :].expand(B, T, state.context.shape[-1])  # (B, T, H)
        x = self._peek(emb, ctx)  # peeky: [E y_{t-1}; c] (B, T, E+H) into the RNN
        init = state.hidden if state.cell is None else (state.hidden, state.cell)
        out, final = run_rnn(self.rnn, x, init)  # out (B, T, H)
        h, c = final if isinstance(final, tuple) else (final, None)
        return out, h, c, ctx

    def alignment(self, emb: Tensor, state: DecoderState) -> Tensor:
        """The attention weights ``(B, T, S)`` of each of the ``T`` steps over the source.
        Arguments as :meth:`forward`."""
        if self.attention is None or state.memory is None:
            raise ValueError("this model has no attention (model.attention: none)")
        out, _, _, _ = self._run_rnn(emb, state)
        return self.attention.weights(out, state.memory, state.memory_mask, keys=state.keys, group=state.group)

    def with_keys(self, state: DecoderState) -> DecoderState:
        """``state`` with the attention keys of its memory computed (once, for step-by-step
        decoding); as it is without attention or when they are there already."""
        if self.attention is None or state.memory is None or state.keys is not None:
            return state
        return replace(state, keys=self.attention.keys(state.memory))
