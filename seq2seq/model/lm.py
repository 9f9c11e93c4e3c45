"""An RNN language model: the seq2seq :class:`~seq2seq.model.decoder.Decoder` without a context.

The textbook builds up to seq2seq from its RNNLM, whose decoder *is* the seq2seq decoder
with nothing to read: an embedding, an RNN (tanh, GRU or LSTM) and an output layer. Here it
is that decoder, built with ``peeky: false`` and no attention, its state's ``context`` a
zero-width ``(B, 0)`` tensor (so the decoder needs no special case). The embedding is called
``tgt_embed`` as in :class:`~seq2seq.model.seq2seq.Seq2Seq`, and ``model.tie_embeddings`` shares it
with the output layer the same way (through a projection to ``embed_dim``).

The interface mirrors the translator's: :meth:`LanguageModel.initial_state` (a zero state,
like ``encode``), :meth:`~LanguageModel.decode_step` for sampling and :meth:`~LanguageModel.forward`
(many steps from a given state) for training and scoring.

Text convention (:mod:`seq2seq.data.lm_data`): every sentence ends with EOS, and EOS is also what
the model reads before a sentence's first token (in a stream, the previous sentence's EOS).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..data.tokenization import PAD
from .decoder import Decoder, DecoderState
from .rnn import Dropout


def detach_state(state: DecoderState) -> DecoderState:
    """The same state cut from the graph: truncated BPTT's cut at a batch boundary (the
    values flow on into the next batch, the gradients stop here)."""
    return DecoderState(hidden=state.hidden.detach(), cell=None if state.cell is None else state.cell.detach(),
                        context=state.context)


class LanguageModel(nn.Module):
    """Embedding -> :class:`~seq2seq.model.decoder.Decoder` (no context) -> logits over the vocabulary."""

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        if cfg.peeky or cfg.attention != "none":
            raise ValueError("a language model has no context: model.peeky must be false, model.attention none")
        self.cfg = cfg
        self.tgt_embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=PAD)
        self.dropout = Dropout(cfg.dropout)
        self.decoder = Decoder(cfg, vocab_size, tie_to=self.tgt_embed if cfg.tie_embeddings else None)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> DecoderState:
        """The zero state of ``batch_size`` rows: hidden (and cell, LSTM) ``(L, B, H)``, context ``(B, 0)``."""
        cfg = self.cfg
        device = device if device is not None else self.tgt_embed.weight.device
        zeros = torch.zeros(cfg.num_layers, batch_size, cfg.hidden_dim, device=device)  # (L, B, H)
        return DecoderState(hidden=zeros, cell=zeros.clone() if cfg.cell == "lstm" else None,
                            context=torch.zeros(batch_size, 0, device=device))  # (B, 0): nothing to peek at

    def forward(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """tokens ``(B, T)`` long, the state before them -> logits ``(B, T, V)``, the state after."""
        logits: Tensor
        logits, new_state = self.decoder(self.dropout(self.tgt_embed(tokens)), state)
        return logits, new_state

    def decode_step(self, prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """prev ``(N,)`` long -> next-token logits ``(N, V)`` and the state after this step."""
        logits, new_state = self(prev[:, None], state)
        return logits[:, 0], new_state


def build_lm(cfg: ModelConfig, vocab_size: int) -> LanguageModel:
    return LanguageModel(cfg, vocab_size)


def init_decoder(model: nn.Module, lm: LanguageModel) -> list[str]:
    """Start a translator's decoder from a language model (``model.init_decoder_from``): every
    tensor of the LM (``tgt_embed.*``, ``decoder.*``) is copied into the translator's tensor of
    the same name; where the translator's is wider, as a peeky decoder's RNN input and output
    layer are (``[input; context]``), into its leading columns, the context's columns left as
    initialised. -> the names copied. ValueError naming the first tensor that does not fit."""
    ours = dict(model.named_parameters())
    copied = []
    with torch.no_grad():
        for name, theirs in lm.named_parameters():
            target = ours.get(name)
            fits = target is not None and (target.shape == theirs.shape or (
                target.dim() == 2 and target.shape[0] == theirs.shape[0] and target.shape[1] > theirs.shape[1]))
            if target is None or not fits:
                shape = "none" if target is None else tuple(target.shape)
                raise ValueError(f"model.init_decoder_from: the language model's {name} {tuple(theirs.shape)} does "
                                 f"not fit this decoder's ({shape}); cell, embed_dim, hidden_dim, num_layers and "
                                 "tie_embeddings must be the language model's")
            target[..., : theirs.shape[-1]].copy_(theirs)
            copied.append(name)
    return copied
