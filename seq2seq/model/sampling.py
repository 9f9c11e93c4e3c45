"""Drawing text from a language model: temperature, top-k, many samples in one batch.

Every sample reads EOS (the start of a sentence, :mod:`seq2seq.data.lm_data`) and the prompt from
the zero state (read once, for one row, then copied to the ``num`` rows), then draws one
token at a time until it draws EOS or has drawn ``max_tokens``. The draws come from a
``torch.Generator`` on the CPU, so the same seed gives the same samples. The special tokens
other than EOS are never drawn.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.tokenization import BOS, EOS, PAD, UNK, Tokenizer
from .lm import LanguageModel


def draw(logits: Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> Tensor:
    """One token per row of ``logits`` ``(N, V)`` -> ``(N,)`` long (on the CPU).

    ``temperature`` 0 is greedy (argmax); otherwise softmax(logits / temperature) over the
    ``top_k`` largest logits (0: all of them)."""
    logits = logits.float().cpu()
    logits[:, [PAD, BOS, UNK]] = float("-inf")
    if temperature == 0:
        return logits.argmax(dim=-1)
    if temperature < torch.finfo(logits.dtype).tiny:  # 0 in fp32 (1e-300): its limit, greedy
        return logits.argmax(dim=-1)
    # a huge temperature (inf in fp32) made the masked -inf / inf = nan, a tiny one could
    # overflow to inf (then inf - inf in the softmax): the masked kept -inf, and on overflow
    # the largest shifted to 0 before the division
    allowed = torch.isfinite(logits)
    scaled = logits / temperature
    if not bool(torch.isfinite(scaled[allowed]).all()):
        scaled = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    logits = scaled.masked_fill(~allowed, float("-inf"))
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (N, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def sample(model: LanguageModel, tok: Tokenizer, *, prompt: str = "", num: int = 1, max_tokens: int = 200,
           temperature: float = 1.0, top_k: int = 0, generator: torch.Generator | None = None) -> list[str]:
    """``num`` continuations of ``prompt`` drawn in one batch; -> each text, the prompt included."""
    was_training = model.training
    model.eval()
    device = model.tgt_embed.weight.device
    prompt_ids = tok.encode(prompt)
    x = torch.tensor([[EOS, *prompt_ids]], device=device)  # (1, 1 + P)
    logits, state = model(x, model.initial_state(1, device))  # the prompt read once, in one call
    copies = torch.zeros(num, dtype=torch.long, device=device)  # (N,): every sample starts from it
    last, state = logits[:, -1].index_select(0, copies), state.select(copies)  # (N, V), N rows
    drawn: list[Tensor] = []
    done = torch.zeros(num, dtype=torch.bool)
    for _ in range(max_tokens):
        token = draw(last, temperature, top_k, generator).masked_fill(done, EOS)  # (N,)
        drawn.append(token)
        done |= token == EOS
        if bool(done.all()):
            break
        last, state = model.decode_step(token.to(device), state)
    model.train(was_training)
    rows = torch.stack(drawn, dim=1).tolist() if drawn else [[] for _ in range(num)]  # (N, steps)
    texts = []
    for row in rows:
        ids = row[: row.index(EOS)] if EOS in row else row
        texts.append(prompt + tok.decode(ids))  # the prompt as given (bytes drawn after it never merge into it)
    return texts
