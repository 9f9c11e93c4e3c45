"""A translation run's validation at an epoch's end: the teacher-forced loss and perplexity,
greedy BLEU, chrF and exact match on the validation split, a few sample translations, and
the attention of the first sentences (for W&B)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..config import Config
from ..data.batching import make_batches
from ..model.loss import sequence_loss
from ..model.seq2seq import Seq2Seq
from ..runtime.distributed import World
from ..translation.evaluation import score
from ..translation.translator import Alignment, Translator
from .batches import Data


@torch.inference_mode()
def validate(model: Seq2Seq, data: Data, cfg: Config, device: torch.device, autocast: Any
             ) -> tuple[dict[str, float], list[tuple[str, str, str]]]:
    """Validation loss and perplexity (teacher forced; summed on the device, read once), then
    greedy BLEU, chrF, exact match (``Translator``: length-sorted batches of ``decode.batch_size``)."""
    model.eval()
    summed, tokens = torch.zeros((), dtype=torch.float64, device=device), 0
    for batch in make_batches(data.valid, batch_size=cfg.decode.batch_size, reverse=cfg.data.reverse_source,
                              shuffle=False, by=cfg.train.batch_by):
        batch = batch.to(device, non_blocking=True)
        with autocast:
            logits = model(batch.src, batch.src_len, batch.tgt_in)
        summed += sequence_loss(logits, batch.tgt_out)
        tokens += batch.num_tgt_tokens
    loss = float(summed)
    pairs = data.valid_pairs[: cfg.train.valid_max_sentences or None]
    translator = Translator(model, data.src_tok, data.tgt_tok, cfg.data, cfg.decode, device)
    with autocast:
        hyps = translator.translate_best([s for s, _ in pairs], beam_size=1)
    refs = [t for _, t in pairs]
    s = score(hyps, refs)
    model.train()
    mean = loss / max(tokens, 1)
    metrics = {"valid/loss": mean, "valid/ppl": math.exp(min(mean, 50.0)), "valid/bleu": s.bleu,
               "valid/chrf": s.chrf, "valid/exact_match": s.exact_match}
    samples = [(src, ref, hyp) for (src, ref), hyp in zip(pairs[: cfg.train.samples], hyps)]
    return metrics, samples


def alignments(model: Seq2Seq, data: Data, cfg: Config, device: torch.device, autocast: Any, n: int = 2
               ) -> list[Alignment]:
    """The attention of the first ``n`` validation sentences (greedy), for W&B."""
    translator = Translator(model, data.src_tok, data.tgt_tok, cfg.data, cfg.decode, device)
    with autocast:
        return [translator.alignment(src, beam_size=1) for src, _ in data.valid_pairs[:n] if src.strip()]


def print_validation(world: World, epoch: int, metrics: dict[str, Any], samples: list[tuple[str, str, str]]
                     ) -> None:
    """The epoch's validation in one line (rank 0), and up to three of its sample translations."""
    world.print(f"epoch {epoch}: valid loss {metrics['valid/loss']:.3f} ppl {metrics['valid/ppl']:.2f} "
                f"BLEU {metrics['valid/bleu']:.2f} chrF {metrics['valid/chrf']:.2f} "
                f"exact {metrics['valid/exact_match']:.1f}%", flush=True)
    for src, ref, hyp in samples[:3]:
        print(f"  {src!r} -> {hyp!r} (ref {ref!r})", flush=True)
