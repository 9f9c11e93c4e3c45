"""A translation run's data: the corpus loaded, tokenizers trained (or reused) on its training
split and the pairs encoded; or, with ``data.prepared``, a store made by ``python -m seq2seq
prepare`` opened (:mod:`seq2seq.data.store`; the training split stays on disk and is
streamed a chunk at a time). Then each epoch's batches for this rank, and how many optimizer
steps an epoch takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..config import Config
from ..data.batching import Batch, Chunk, Example, batch_cuts, encode_pairs, epoch_batches
from ..data.corpus import Pair, load_corpus
from ..data.store import Store
from ..data.tokenization import Tokenizer, train_tokenizer, train_tokenizers
from ..runtime.distributed import World
from .loop import TrainError


@dataclass
class Data:
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    train: list[Example]
    valid: list[Example]
    valid_pairs: list[Pair]
    report: list[str] = field(default_factory=list)
    store: Store | None = None  # with data.prepared: the training split, on disk (``train`` is then empty)


def prepare_data(cfg: Config, tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
                 tgt_tok: Tokenizer | None = None) -> Data:
    """Load the corpus, train (or reuse) tokenizers on the training split, encode, filter;
    with ``data.prepared``, open the store instead (training examples stay on disk).
    ``tgt_tok``: the target tokenizer to use (a language model's); only the source's is trained."""
    d = cfg.data
    if d.prepared:
        return _open_store(cfg, tokenizers)
    corpus = load_corpus(d)
    report = list(corpus.report)
    if tokenizers is None and tgt_tok is not None:
        tokenizers = (train_tokenizer([s for s, _ in corpus.train], d.tokenizer, d.vocab_size), tgt_tok)
    if tokenizers is None:
        tokenizers = train_tokenizers(corpus.train, d.tokenizer, d.vocab_size, d.joint_vocab)
    src_tok, tgt_tok = tokenizers
    train, too_long, empty = encode_pairs(corpus.train, src_tok, tgt_tok, d.max_len)
    report.append(f"train: {len(train)} pairs kept, {too_long} longer than max_len={d.max_len} "
                  f"and {empty} empty after tokenization dropped")
    if not train:
        raise TrainError(f"no training pairs left after filtering (max_len={d.max_len})")
    valid, _, _ = encode_pairs(corpus.valid, src_tok, tgt_tok, d.max_len)
    report.append(f"vocabulary: source {src_tok.vocab_size}, target {tgt_tok.vocab_size} ({d.tokenizer})")
    return Data(src_tok, tgt_tok, train, valid, list(corpus.valid), report)


def _open_store(cfg: Config, tokenizers: tuple[Tokenizer, Tokenizer] | None) -> Data:
    store = Store(cfg.data.prepared)
    store.check(cfg.data)
    if tokenizers is not None and [t.to_json() for t in tokenizers] != [store.src_tok.to_json(),
                                                                       store.tgt_tok.to_json()]:
        raise TrainError(f"{store.path}: its tokenizers are not the checkpoint's (was it prepared again?); "
                         "resume with the store the run was trained on")
    valid_pairs = store.valid_pairs()
    valid, _, _ = encode_pairs(valid_pairs, store.src_tok, store.tgt_tok, cfg.data.max_len)
    report = [*store.report, f"train: streamed from {store.path}, up to {store.block * store.chunk_blocks:,} "
                             "examples in memory at a time"]
    return Data(store.src_tok, store.tgt_tok, [], valid, valid_pairs, report, store)


def train_chunks(data: Data, seed: int) -> Iterable[Chunk]:
    """An epoch's training examples for ``batching.epoch_batches``: one chunk in memory, or
    the store's chunks, read one at a time."""
    if data.store is not None:
        return data.store.chunks(seed)
    return [(data.train, range(len(data.train)), seed)]


def rank_batches(data: Data, cfg: Config, world: World, seed: int, skip: int) -> Iterator[Batch]:
    """This rank's share of each of the epoch's global batches (shuffled by ``seed``), collated
    one at a time, from global batch ``skip`` on (those before were done before a resume)."""
    return epoch_batches(train_chunks(data, seed=seed),
                         batch_size=cfg.train.batch_size, max_tokens=cfg.train.max_tokens,
                         reverse=cfg.data.reverse_source, rank=world.rank, world=world.size,
                         skip=skip, pad_multiple=cfg.train.pad_multiple, by=cfg.train.batch_by)


def steps_per_epoch(data: Data, cfg: Config, world: World) -> int:
    """Optimizer steps in an epoch (a global batch a step), for the schedule and progress bar.

    In memory, the batches of a length-sorted pass; streamed, the store's estimate. The
    shuffled epoch can differ by a few with a token budget, as batches fall differently.
    """
    batch_size, max_tokens = cfg.train.batch_size * world.size, cfg.train.max_tokens * world.size
    if data.store is not None:
        return data.store.estimated_batches(batch_size, max_tokens)
    return len(batch_cuts([len(s) for s, _ in data.train], [len(t) for _, t in data.train],
                          batch_size=batch_size, max_tokens=max_tokens, shuffle=False, by=cfg.train.batch_by))
