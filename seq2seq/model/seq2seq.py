"""The encoder-decoder RNN: an :class:`Encoder`, a :class:`Decoder`, and :class:`Seq2Seq` joining them.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding size,
``H`` hidden size, ``L`` layers, ``V`` vocabulary size.

Encoder: embedding -> RNN (LSTM, GRU or tanh RNN) over the (optionally reversed, done by
batching) source, packed so padding never enters the recurrence; a batch without padding
(all its sources of one length, as ``train.batch_by: source`` makes them) runs unpacked, in
one fused RNN call a layer (oneDNN on the CPU), which is faster. The **context vector**
``c`` is the top layer's final hidden state, ``(B, H)``. Static-shape training (CUDA graphs,
which cannot capture packing's data-dependent shapes) runs it over the padded source instead
and reads each row's final state at its length (:meth:`Encoder.forward_padded`): the same
numbers, for a unidirectional encoder.

Decoder: an RNN over the embedded previous target tokens, started from the encoder's final
state (an LSTM's hidden and cell states; with ``decoder_init: hidden`` the hidden state and
a zero cell state), and an output layer over the vocabulary. Plain (Sutskever et al. 2014),
``c`` enters only through the initial state::

    h_t = RNN(E y_{t-1}, h_{t-1})               logits_t = W_out h_t + b

**Peeky** (``peeky: true``, the one difference from the plain decoder): ``c`` also joins
the RNN's input at every step and the output layer's input::

    h_t = RNN([E y_{t-1}; c], h_{t-1})          logits_t = W_out [h_t; c] + b

With ``attention: luong`` the decoder holds a :class:`LuongAttention` that combines each
RNN output with a "general" attention read of the encoder outputs ``m_s`` (no input
feeding, so the whole target still runs through the RNN in one call)::

    a_ts = softmax_s(h_t^T W_a m_s)    r_t = sum_s a_ts m_s    h~_t = tanh(W_c [h_t; r_t])

The embeddings belong to :class:`Seq2Seq` (as in Joey NMT): the encoder and decoder take
embedded inputs, so a decoder also serves as an RNN language model. Search uses
:meth:`Seq2Seq.encode` and :meth:`Seq2Seq.decode_step`; training the teacher-forced
:meth:`Seq2Seq.forward`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..config import ModelConfig
from ..data.tokenization import PAD

_CELLS: dict[str, Any] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)``; on the CPU the mask is drawn as 16-bit uniform integers, two
    from each 32-bit draw of the random generator, instead of by ``bernoulli_`` (one slow draw
    an element), and applied as a product: 3x faster there, where PyTorch's masks took 9% of
    the Multi30k training step. ``p`` is rounded to a multiple of 1/65,536 and the kept values
    are scaled by 1 / (1 - that), so the expected output is the input, exactly. On a GPU,
    PyTorch's fused kernel."""
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
        data, *final_layer = _run_layer(rnn, layer, data, h0, batch_sizes)
        finals.append(tuple(final_layer))  # (dirs, B, H): h (and c)
    final: Any = tuple(torch.cat(parts) for parts in zip(*finals))  # (L*dirs, B, H) each
    final = final if lstm else final[0]
    if isinstance(x, PackedSequence):
        if x.unsorted_indices is not None:
            final = rnn.permute_hidden(final, x.unsorted_indices)
        return PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices), final
    return data, final


@dataclass
class DecoderState:
    """What the decoder carries between steps. ``select`` gathers batch rows (beams)."""

    hidden: Tensor  # (L, B, H)
    cell: Tensor | None  # (L, B, H) for LSTM, else None
    context: Tensor  # (B, H): the encoder's top-layer final hidden state
    memory: Tensor | None = None  # (B, S, H): encoder outputs, with attention only
    memory_mask: Tensor | None = None  # (B, S) bool, True at real source tokens

    def select(self, index: Tensor) -> DecoderState:
        """Rows ``index`` (N,) of every tensor: expands to beams or reorders them."""
        return DecoderState(
            hidden=self.hidden.index_select(1, index),
            cell=None if self.cell is None else self.cell.index_select(1, index),
            context=self.context.index_select(0, index),
            memory=None if self.memory is None else self.memory.index_select(0, index),
            memory_mask=None if self.memory_mask is None else self.memory_mask.index_select(0, index),
        )


# --- encoder ---------------------------------------------------------------------------
def _pack(emb: Tensor, src_len: Tensor) -> PackedSequence:
    """``pack_padded_sequence(emb, src_len, batch_first=True, enforce_sorted=False)``, the same
    packing, without its host sync on a GPU: the lengths are sorted on the CPU (where
    :class:`~seq2seq.data.batching.Batch` keeps them) and the order is copied over non-blocking
    (PyTorch's own copies it blocking)."""
    lengths, order = torch.sort(src_len.cpu(), descending=True)
    order = order.to(emb.device, non_blocking=True)
    sorted_packed = pack_padded_sequence(emb.index_select(0, order), lengths, batch_first=True, enforce_sorted=True)
    return PackedSequence(sorted_packed.data, sorted_packed.batch_sizes, order)  # unsorted order: on the device


class Encoder(nn.Module):
    """RNN over the embedded source; a bidirectional one's two directions joined to size H."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        E, H, L, p = cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.dropout
        dirs = 2 if cfg.bidirectional else 1
        self.rnn = _CELLS[cfg.cell](E, H, L, batch_first=True, dropout=p if L > 1 else 0.0,
                                    bidirectional=cfg.bidirectional)
        # A bidirectional encoder's two final states per layer are joined into one of size H.
        self.bridge = nn.Linear(dirs * H, H) if cfg.bidirectional else None
        self.memory_proj = nn.Linear(dirs * H, H, bias=False) if cfg.bidirectional else None

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
            out, final = run_rnn(self.rnn, emb)  # out (B, S, dirs*H)
        else:
            out_packed, final = run_rnn(self.rnn, _pack(emb, lengths))
            out = pad_packed_sequence(out_packed, batch_first=True, total_length=S)[0] if with_memory else None
        h, c = final if isinstance(final, tuple) else (final, None)  # (L*dirs, B, H)
        if self.bridge is not None:
            h = self._join_directions(h)
            c = None if c is None else self._join_directions(c)
        memory = None
        if with_memory:
            memory = out if self.memory_proj is None else self.memory_proj(out)  # (B, S, H)
        return h, c, memory

    def forward_padded(self, emb: Tensor, src_len: Tensor, *, with_memory: bool
                       ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """:meth:`forward` without packing: fixed shapes and no host data, so a CUDA graph can
        capture it. Unidirectional encoders only.

        The source is padded at the end, so a forward RNN reads a row's real tokens first and
        its state at position ``len - 1`` is the packed run's final state; the padding after it
        never reaches that state. The layers run one at a time, so that every layer's outputs
        are at hand: a layer's final hidden state is its output at ``len - 1`` (a gather). An
        LSTM's final cell state is not an output; it is rebuilt from the gates, which the
        outputs determine (:func:`_final_cell`).

        Args:
            emb: embedded source ``(B, S, E)``, padded at the end.
            src_len: real lengths ``(B,)`` long, each in [1, S], on any device.

        Returns:
            as :meth:`forward`: hidden ``(L, B, H)``, cell ``(L, B, H)`` (LSTM) or None, and
            the outputs ``(B, S, H)`` (zero at padding) or None.
        """
        if self.bridge is not None:
            raise ValueError("the padded encoder is for unidirectional encoders (model.bidirectional: false)")
        B, S, _ = emb.shape
        rnn = self.rnn
        last = (src_len.to(emb.device, non_blocking=True) - 1).clamp(0, S - 1)  # (B,) position of the last token
        real = torch.arange(S, device=emb.device)[None, :] <= last[:, None]  # (B, S) bool
        x, hs, cs = emb, [], []
        for layer in range(rnn.num_layers):
            if layer:
                x = dropout(x, rnn.dropout, self.training)  # as run_rnn does between layers
            out = _run_layer(rnn, layer, x)[0]  # (B, S, H), exact up to len - 1
            h = out.gather(1, last[:, None, None].expand(B, 1, out.shape[-1])).squeeze(1)  # (B, H)
            hs.append(h)
            if isinstance(rnn, nn.LSTM):
                cs.append(_final_cell(x, out, rnn, layer, real).to(h.dtype))
            x = out
        memory = x.masked_fill(~real[:, :, None], 0.0) if with_memory else None  # (B, S, H)
        return torch.stack(hs), torch.stack(cs) if cs else None, memory  # (L, B, H)

    def _join_directions(self, x: Tensor) -> Tensor:
        """(L*2, B, H) forward/backward final states -> (L, B, H) via tanh(W [fwd; bwd])."""
        L2, B, H = x.shape
        x = x.view(L2 // 2, 2, B, H).permute(0, 2, 1, 3).reshape(L2 // 2, B, 2 * H)  # (L, B, 2H)
        assert self.bridge is not None
        return torch.tanh(self.bridge(x))


def _run_layer(rnn: nn.RNNBase, layer: int, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None,
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


# --- attention -------------------------------------------------------------------------
class LuongAttention(nn.Module):
    """Luong "general" attention: ``h~_t = tanh(W_c [h_t; sum_s softmax_s(h_t^T W_a m_s) m_s])``."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden_dim, hidden_dim, bias=False)  # W_a
        self.combine = nn.Linear(2 * hidden_dim, hidden_dim, bias=False)  # W_c

    def forward(self, out: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """out (B, T, H), memory (B, S, H), mask (B, S) bool -> h~ (B, T, H)."""
        return torch.tanh(self.combine(torch.cat([out, self.read(out, memory, mask)], dim=-1)))

    def weights(self, out: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """The alignment ``a`` (B, T, S): each target step's distribution over source positions."""
        scores = torch.bmm(self.score(out), memory.transpose(1, 2))  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        return torch.softmax(scores.float(), dim=-1).to(memory.dtype)

    def read(self, out: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        """r (B, T, H): the attention-weighted sum of ``memory``, in ``out``'s dtype."""
        return torch.bmm(self.weights(out, memory, mask), memory).to(out.dtype)


# --- decoder ---------------------------------------------------------------------------
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
        self.rnn = _CELLS[cfg.cell](E + context, H, L, batch_first=True, dropout=p if L > 1 else 0.0)
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
            out = self.attention(out, state.memory, state.memory_mask)  # (B, T, H)
        if self.peeky:
            out = torch.cat([out, ctx.to(out.dtype)], dim=-1)  # (B, T, 2H)
        out = self.dropout(out)
        if self.pre_output is not None:
            out = self.pre_output(out)  # (B, T, E)
        logits = self.output(out)  # (B, T, V)
        return logits, DecoderState(hidden=h, cell=c, context=state.context, memory=state.memory,
                                    memory_mask=state.memory_mask)

    def _run_rnn(self, emb: Tensor, state: DecoderState) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """-> RNN outputs (B, T, H), final hidden and cell (L, B, H), the context per step (B, T, H)."""
        B, T = emb.shape[:2]
        x = emb
        ctx = state.context[:, None, :].expand(B, T, state.context.shape[-1])  # (B, T, H)
        if self.peeky:
            x = torch.cat([x, ctx.to(x.dtype)], dim=-1)  # (B, T, E+H)
        init = state.hidden if state.cell is None else (state.hidden, state.cell)
        out, final = run_rnn(self.rnn, x, init)  # out (B, T, H)
        h, c = final if isinstance(final, tuple) else (final, None)
        return out, h, c, ctx

    def alignment(self, emb: Tensor, state: DecoderState) -> Tensor:
        """The attention weights ``(B, T, S)`` of each of the ``T`` steps over the source."""
        if self.attention is None or state.memory is None:
            raise ValueError("this model has no attention (model.attention: none)")
        out, _, _, _ = self._run_rnn(emb, state)
        return self.attention.weights(out, state.memory, state.memory_mask)


# --- the whole model -------------------------------------------------------------------
class Seq2Seq(nn.Module):
    """Source and target embeddings, an :class:`Encoder` and a :class:`Decoder`.

    The narrow interface: :meth:`encode` and :meth:`decode_step` for search
    (``search.SearchModel``), :meth:`forward` (the whole target in one RNN call) for training.
    """

    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(src_vocab, cfg.embed_dim, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab, cfg.embed_dim, padding_idx=PAD)
        self.dropout = Dropout(cfg.dropout)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, tgt_vocab, tie_to=self.tgt_embed if cfg.tie_embeddings else None)
        self._register_load_state_dict_pre_hook(_upgrade_hook)

    def encode(self, src: Tensor, src_len: Tensor, padded: bool = False) -> DecoderState:
        """Encode a batch into the decoder's initial state.

        Args:
            src: source ids ``(B, S)`` long, padded with PAD at the end.
            src_len: real lengths ``(B,)`` long, each >= 1.
            padded: run the encoder over the padded batch (:meth:`Encoder.forward_padded`;
                static shapes, CUDA graphs) instead of packing it; ``src_len`` may then be
                on the device.

        Returns:
            the state before the first target step: hidden ``(L, B, H)``, cell ``(L, B, H)``
            (LSTM) or None, context ``(B, H)``; with attention, memory ``(B, S, H)`` and its
            mask ``(B, S)``, True at real tokens.
        """
        S = src.shape[1]
        attend = self.cfg.attention != "none"
        emb = self.dropout(self.src_embed(src))  # (B, S, E)
        run = self.encoder.forward_padded if padded else self.encoder
        h, c, memory = run(emb, src_len, with_memory=attend)
        if c is not None and self.cfg.decoder_init == "hidden":
            c = torch.zeros_like(c)  # the decoder's memory cells start empty; h carries the source
        mask = None
        if attend:
            lengths = src_len.to(src.device, non_blocking=True)  # CPU -> device: no host sync
            mask = torch.arange(S, device=src.device)[None, :] < lengths[:, None]  # (B, S)
        return DecoderState(hidden=h, cell=c, context=h[-1], memory=memory, memory_mask=mask)

    def decode(self, tgt_in: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """tgt_in ``(B, T)`` long: previous target tokens -> logits ``(B, T, V)``, state after them."""
        return self.decoder(self.dropout(self.tgt_embed(tgt_in)), state)

    def decode_step(self, prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One search step.

        Args:
            prev: the previous target token of each row ``(N,)`` long (BOS at the start).
            state: the rows' state (N rows; :meth:`DecoderState.select` makes beams of them).

        Returns:
            next-token logits ``(N, V)`` and the state after this step.
        """
        logits, new_state = self.decode(prev[:, None], state)
        return logits[:, 0], new_state

    def alignment(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
        """Attention weights ``(B, T, S)``: how much each target step (fed ``tgt_in``, ``(B, T)``)
        reads each source position of ``src`` ``(B, S)``. Only for ``model.attention: luong``."""
        return self.decoder.alignment(self.dropout(self.tgt_embed(tgt_in)), self.encode(src, src_len))

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, padded: bool = False) -> Tensor:
        """Teacher forcing: src ``(B, S)``, src_len ``(B,)``, tgt_in ``(B, T)`` -> logits ``(B, T, V)``.
        ``padded``: as in :meth:`encode`."""
        logits, _ = self.decode(tgt_in, self.encode(src, src_len, padded))
        return logits


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    return Seq2Seq(cfg, src_vocab, tgt_vocab)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- checkpoints written before the encoder and decoder were modules of their own ----------
_LEGACY = (("encoder.", "encoder.rnn."), ("bridge.", "encoder.bridge."), ("memory_proj.", "encoder.memory_proj."),
           ("decoder.", "decoder.rnn."), ("attn_score.", "decoder.attention.score."),
           ("attn_combine.", "decoder.attention.combine."), ("pre_output.", "decoder.pre_output."),
           ("output.", "decoder.output."))


def upgrade_state_dict(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Tensor names of a flat-layout checkpoint (``encoder.weight_ih_l0``, ``output.bias``)
    -> this layout's (``encoder.rnn.weight_ih_l0``, ``decoder.output.bias``); others as they are.
    The parameters' order, and so an optimizer state saved with them, is the same in both."""
    if "encoder.weight_ih_l0" not in weights:
        return weights
    renamed = {}
    for key, value in weights.items():
        new = next((to + key[len(old):] for old, to in _LEGACY if key.startswith(old)), key)
        renamed[new] = value
    return renamed


def _upgrade_hook(state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
    """``load_state_dict`` accepts the flat layout too (see :func:`upgrade_state_dict`)."""
    ours = {k[len(prefix):]: state_dict.pop(k) for k in list(state_dict) if k.startswith(prefix)}
    state_dict.update({prefix + k: v for k, v in upgrade_state_dict(ours).items()})
