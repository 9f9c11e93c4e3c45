"""The encoder-decoder RNN: :class:`Seq2Seq` joins the source and target embeddings, an
:class:`~seq2seq.model.encoder.Encoder` and a :class:`~seq2seq.model.decoder.Decoder`; and
the loading of checkpoints in the flat tensor layout.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding size,
``H`` hidden size, ``L`` layers, ``V`` vocabulary size.

The encoder reads the embedded source; its top layer's final hidden state is the **context
vector** ``c`` ``(B, H)``, and its final state starts the decoder (plain, or **peeky**: ``c``
also at every step's RNN input and output layer input; optionally attending to the encoder
outputs). The modules::

    rnn.py        the cells, the CPU dropout, a multi-layer RNN run layer by layer
    encoder.py    Encoder: packed (or, for static shapes, padded) RNN over the source
    attention.py  LuongAttention: "general" attention over the encoder outputs
    decoder.py    Decoder (plain or peeky, attention optional) and DecoderState
    seq2seq.py    Seq2Seq, build_model, count_parameters, the flat-layout upgrade

The embeddings belong to :class:`Seq2Seq` (as in Joey NMT): the encoder and decoder take
embedded inputs, so a decoder also serves as an RNN language model. Search uses
:meth:`Seq2Seq.encode` and :meth:`Seq2Seq.decode_step`; training the teacher-forced
:meth:`Seq2Seq.forward`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..data.tokenization import PAD
from .decoder import Decoder, DecoderState
from .encoder import Encoder
from .rnn import Dropout


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
            state: the rows' state (N rows; :meth:`DecoderState.repeat` makes beams of them).
                The first step computes the attention keys, which the returned state carries.

        Returns:
            next-token logits ``(N, V)`` and the state after this step.
        """
        logits, new_state = self.decode(prev[:, None], self.decoder.with_keys(state))
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
    """A fresh :class:`Seq2Seq` for vocabularies of ``src_vocab`` and ``tgt_vocab`` tokens."""
    return Seq2Seq(cfg, src_vocab, tgt_vocab)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters (a tied weight once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- the flat layout: checkpoints whose RNN, bridge and output tensors sit at the top level -----
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
