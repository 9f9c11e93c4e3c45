"""The encoder-decoder RNN: LSTM (or GRU, or tanh RNN) encoder, peeky decoder.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding size,
``H`` hidden size, ``L`` layers, ``V`` vocabulary size.

Encoder: embedding -> RNN over the (optionally reversed, done by batching) source,
packed so padding never enters the recurrence. The **context vector** ``c`` is the top
layer's final hidden state, ``(B, H)``.

Peeky decoder (``peeky: true``): starts from the encoder's final state (an LSTM's hidden
and cell states; with ``decoder_init: hidden`` the hidden state and a zero cell state). At
every step its input is ``[embed(y_{t-1}); c]`` and the output layer sees ``[h_t; c]``::

    h_t = RNN([E y_{t-1}; c], h_{t-1})          logits_t = W_out [h_t; c] + b

With ``peeky: false`` it is the plain Sutskever decoder: ``c`` enters only through the
initial state. With ``attention: luong`` the decoder output is first combined with a
Luong "general" attention read of the encoder outputs ``m_s`` (no input feeding, so the
whole target still runs through the RNN in one call)::

    a_ts = softmax_s(h_t^T W_a m_s)    r_t = sum_s a_ts m_s    h~_t = tanh(W_c [h_t; r_t])

The interface that search uses is :meth:`Seq2Seq.encode` and :meth:`Seq2Seq.decode_step`;
training uses the teacher-forced :meth:`Seq2Seq.forward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import ModelConfig
from .tokenization import PAD

_CELLS: dict[str, Any] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class State:
    """What the decoder carries between steps. ``select`` gathers batch rows (beams)."""

    hidden: Tensor  # (L, B, H)
    cell: Tensor | None  # (L, B, H) for LSTM, else None
    context: Tensor  # (B, H): the encoder's top-layer final hidden state
    memory: Tensor | None = None  # (B, S, H): encoder outputs, with attention only
    memory_mask: Tensor | None = None  # (B, S) bool, True at real source tokens

    def select(self, index: Tensor) -> State:
        """Rows ``index`` (N,) of every tensor: expands to beams or reorders them."""
        return State(
            hidden=self.hidden.index_select(1, index),
            cell=None if self.cell is None else self.cell.index_select(1, index),
            context=self.context.index_select(0, index),
            memory=None if self.memory is None else self.memory.index_select(0, index),
            memory_mask=None if self.memory_mask is None else self.memory_mask.index_select(0, index),
        )


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        E, H, L, p = cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.dropout
        rnn = _CELLS[cfg.cell]
        dirs = 2 if cfg.bidirectional else 1
        self.src_embed = nn.Embedding(src_vocab, E, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab, E, padding_idx=PAD)
        self.dropout = nn.Dropout(p)
        self.encoder = rnn(E, H, L, batch_first=True, dropout=p if L > 1 else 0.0,
                           bidirectional=cfg.bidirectional)
        # A bidirectional encoder's two final states per layer are joined into one of size H.
        self.bridge = nn.Linear(dirs * H, H) if cfg.bidirectional else None
        self.memory_proj = nn.Linear(dirs * H, H, bias=False) if cfg.bidirectional else None
        self.decoder = rnn(E + (H if cfg.peeky else 0), H, L, batch_first=True,
                           dropout=p if L > 1 else 0.0)
        if cfg.attention == "luong":
            self.attn_score = nn.Linear(H, H, bias=False)  # W_a
            self.attn_combine = nn.Linear(2 * H, H, bias=False)  # W_c
        out_in = H + (H if cfg.peeky else 0)
        self.pre_output: nn.Linear | None = None
        if cfg.tie_embeddings:
            self.pre_output = nn.Linear(out_in, E)
            self.output = nn.Linear(E, tgt_vocab)
            self.output.weight = self.tgt_embed.weight
        else:
            self.output = nn.Linear(out_in, tgt_vocab)

    # --- encoder -----------------------------------------------------------------
    def encode(self, src: Tensor, src_len: Tensor) -> State:
        """src (B, S) long, padded at the end; src_len (B,) long, >= 1 -> State."""
        B, S = src.shape
        emb = self.dropout(self.src_embed(src))  # (B, S, E)
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out_packed, final = self.encoder(packed)
        h, c = final if isinstance(final, tuple) else (final, None)  # (L*dirs, B, H)
        if self.bridge is not None:
            h = self._join_directions(h)
            c = None if c is None else self._join_directions(c)
        if c is not None and self.cfg.decoder_init == "hidden":
            c = torch.zeros_like(c)  # the decoder's memory cells start empty; h carries the source
        memory = mask = None
        if self.cfg.attention != "none":
            memory, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=S)  # (B, S, dirs*H)
            if self.memory_proj is not None:
                memory = self.memory_proj(memory)  # (B, S, H)
            mask = torch.arange(S, device=src.device)[None, :] < src_len.to(src.device)[:, None]  # (B, S)
        return State(hidden=h, cell=c, context=h[-1], memory=memory, memory_mask=mask)

    def _join_directions(self, x: Tensor) -> Tensor:
        """(L*2, B, H) forward/backward final states -> (L, B, H) via tanh(W [fwd; bwd])."""
        L2, B, H = x.shape
        x = x.view(L2 // 2, 2, B, H).permute(0, 2, 1, 3).reshape(L2 // 2, B, 2 * H)  # (L, B, 2H)
        assert self.bridge is not None
        return torch.tanh(self.bridge(x))

    # --- decoder -----------------------------------------------------------------
    def _decode(self, tgt_in: Tensor, state: State) -> tuple[Tensor, State]:
        """tgt_in (B, T) -> logits (B, T, V), state after the last step."""
        B, T = tgt_in.shape
        x = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        ctx = state.context[:, None, :].expand(B, T, state.context.shape[-1])  # (B, T, H)
        if self.cfg.peeky:
            x = torch.cat([x, ctx.to(x.dtype)], dim=-1)  # (B, T, E+H)
        init = state.hidden if state.cell is None else (state.hidden, state.cell)
        out, final = self.decoder(x, init)  # out (B, T, H)
        h, c = final if isinstance(final, tuple) else (final, None)
        if state.memory is not None:
            out = self._attend(out, state.memory, state.memory_mask)  # (B, T, H)
        if self.cfg.peeky:
            out = torch.cat([out, ctx.to(out.dtype)], dim=-1)  # (B, T, 2H)
        out = self.dropout(out)
        if self.pre_output is not None:
            out = self.pre_output(out)  # (B, T, E)
        logits = self.output(out)  # (B, T, V)
        new_state = State(hidden=h, cell=c, context=state.context, memory=state.memory,
                          memory_mask=state.memory_mask)
        return logits, new_state

    def _attend(self, out: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """Luong general attention: out (B, T, H), memory (B, S, H) -> h~ (B, T, H)."""
        scores = torch.bmm(self.attn_score(out), memory.transpose(1, 2))  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(memory.dtype)  # (B, T, S)
        read = torch.bmm(weights, memory)  # (B, T, H)
        return torch.tanh(self.attn_combine(torch.cat([out, read.to(out.dtype)], dim=-1)))

    def decode_step(self, prev: Tensor, state: State) -> tuple[Tensor, State]:
        """prev (B,) long: the previous target token -> logits (B, V), next state."""
        logits, new_state = self._decode(prev[:, None], state)
        return logits[:, 0], new_state

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: the whole target in one RNN call. -> logits (B, T, V)."""
        logits, _ = self._decode(tgt_in, self.encode(src, src_len))
        return logits


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    return Seq2Seq(cfg, src_vocab, tgt_vocab)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
