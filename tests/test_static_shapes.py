"""Static-shape training: the corpus in fixed-shape buckets on the device
(seq2seq/data/buckets.py), the padded encoder (``Encoder.forward_padded``) and ``static_step``,
which together make a training step a CUDA graph can capture. Each is checked here, on the
CPU, against today's path: ``collate`` + the packed encoder + ``train_step``."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.config import ConfigError, ModelConfig
from seq2seq.data.batching import collate
from seq2seq.data.buckets import DeviceCorpus, StaticBatch
from seq2seq.data.tokenization import BOS, EOS, PAD
from seq2seq.model.loss import sequence_loss
from seq2seq.model.seq2seq import build_model
from seq2seq.runtime import distributed
from seq2seq.training.loop import make_optimizer
from seq2seq.training.stepping import use_cuda_graphs, use_static_shapes
from seq2seq.training.steps import static_step, train_step
from seq2seq.training.trainer import train

CPU = torch.device("cpu")


def random_examples(n: int, seed: int = 0, max_src: int = 13, max_tgt: int = 11) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(4, 30) for _ in range(rng.randint(1, max_src))],
             [rng.randrange(4, 30) for _ in range(rng.randint(1, max_tgt))]) for _ in range(n)]


# --- the padded encoder ----------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("attention", ["none", "luong"])
@pytest.mark.parametrize("layers", [1, 3])
def test_the_padded_encoder_equals_the_packed_one(cell: str, attention: str, layers: int) -> None:
    """Every layer's final hidden (and LSTM cell) state, the context and the attention memory,
    for rows of lengths 1 to S: equal to float64 rounding."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(cell=cell, embed_dim=8, hidden_dim=16, num_layers=layers, attention=attention),
                        30, 30).double()
    lengths = torch.tensor([9, 1, 4, 7, 2, 9])
    src = torch.randint(4, 30, (6, 9)).masked_fill(torch.arange(9)[None, :] >= lengths[:, None], PAD)  # (B, S)
    packed, padded = model.encode(src, lengths), model.encode(src, lengths, padded=True)
    for name in ("hidden", "cell", "context", "memory", "memory_mask"):
        a, b = getattr(packed, name), getattr(padded, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, rtol=0, atol=1e-12, msg=name)


def test_the_padded_encoder_gradients_equal_the_packed_ones() -> None:
    """fp32, 2-layer LSTM: the gradient of every weight through the final states (rebuilt
    cell state included) and the memory equals the packed encoder's."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_dim=8, hidden_dim=16, num_layers=2, attention="luong"), 30, 30)
    lengths = torch.tensor([7, 1, 3, 5])
    src = torch.randint(4, 30, (4, 8)).masked_fill(torch.arange(8)[None, :] >= lengths[:, None], PAD)
    grads = []
    for padded in (False, True):
        state = model.encode(src, lengths, padded=padded)
        assert state.memory is not None and state.cell is not None
        total = (state.hidden.sin().sum() + state.cell.cos().sum() + state.memory.tanh().sum())
        grads.append(torch.autograd.grad(total, [p for p in model.parameters() if p.requires_grad],
                                         allow_unused=True))
    for g_padded, g_packed in zip(grads[1], grads[0]):
        if g_packed is None:
            assert g_padded is None
        else:
            torch.testing.assert_close(g_padded, g_packed, rtol=1e-5, atol=1e-6)


def test_the_padded_encoder_refuses_a_bidirectional_encoder() -> None:
    model = build_model(ModelConfig(embed_dim=8, hidden_dim=16, bidirectional=True), 30, 30)
    with pytest.raises(ValueError, match="unidirectional"):
        model.encode(torch.ones(2, 3, dtype=torch.long), torch.tensor([3, 2]), padded=True)


# --- buckets ---------------------------------------------------------------------------------
def test_an_epoch_covers_every_example_once_in_a_few_static_shapes() -> None:
    examples = random_examples(300, max_src=30, max_tgt=30)
    corpus = DeviceCorpus(examples, batch_size=16, max_tokens=0, pad_multiple=8, reverse=True, device=CPU)
    assert all(s.rows == 16 and s.src % 8 == 0 and s.tgt % 8 == 0 for s in corpus.shapes)
    assert 1 < len(set(corpus.shapes)) == len(corpus.shapes) <= 31 // 8 + 1
    assert all(b.size % 16 == 0 for b in corpus.buckets[:-1])  # whole batches but in the widest bucket
    seen: list[int] = []
    steps = list(corpus.epoch(seed=3))
    assert len(steps) == corpus.batches_per_epoch()
    for bucket, rows in steps:
        real = rows[rows < bucket.size]
        assert bool((rows[len(real):] == bucket.size).all())  # the padding row fills up the end only
        seen += [bucket.ids[i] for i in real.tolist()]
        batch = StaticBatch.empty(bucket.shape, CPU)
        batch.fill(bucket, rows)
        for i, row in zip(real.tolist(), range(len(real))):
            src, tgt = examples[bucket.ids[i]]
            assert batch.src[row, : len(src)].tolist() == src[::-1] and int(batch.src_len[row]) == len(src)
            assert batch.tgt_out[row].tolist() == [*tgt, EOS] + [PAD] * (bucket.shape.tgt - len(tgt) - 1)
            assert batch.tgt_in[row].tolist() == [BOS, *tgt] + [PAD] * (bucket.shape.tgt - len(tgt) - 1)
        assert bool((batch.tgt_out[len(real):] == PAD).all()) and bool((batch.src_len[len(real):] == 1).all())
    assert sorted(seen) == list(range(len(examples)))
    other = [bucket.ids[i] for bucket, rows in corpus.epoch(seed=4) for i in rows.tolist() if i < bucket.size]
    assert other != seen and sorted(other) == sorted(seen)  # a new order each epoch
    resumed = [(b.shape, r.tolist()) for b, r in corpus.epoch(seed=3, skip=5)]
    assert resumed == [(b.shape, r.tolist()) for b, r in steps[5:]]


def test_a_token_budget_sets_the_rows_per_shape() -> None:
    corpus = DeviceCorpus(random_examples(200, max_src=20, max_tgt=30), batch_size=1, max_tokens=256,
                          pad_multiple=4, reverse=False, device=CPU)
    assert all(s.rows * max(s.src, s.tgt) <= 256 for s in corpus.shapes)
    assert len({s.rows for s in corpus.shapes}) > 1
    assert all(b.size % b.shape.rows == 0 for b in corpus.buckets[:-1])


# --- the step ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("attention", "tf_ratio"), [("none", 1.0), ("luong", 1.0), ("none", 0.0)])
def test_static_step_equals_train_step_on_the_same_examples(attention: str, tf_ratio: float,
                                                            tiny_config: Any) -> None:
    """A bucket's batch (wider than the examples need, filled up with padding rows) takes the
    step ``collate`` + ``train_step`` takes on the same examples: the same summed loss and
    token count, gradient norm, gradients and updated weights (fp32, up to summation order;
    plain SGD, since Adam's first step is about ``lr * sign(gradient)`` and so turns rounding
    in a near-zero gradient into a step of ``lr``). Scheduled sampling too, at ratio 0 (always
    the model's own predictions: the batches' random draws differ in number, so no other ratio
    gives the two the same choices)."""
    cfg = tiny_config("train.clip_norm=1.0", "train.label_smoothing=0.1", "train.optimizer=sgd", "train.lr=0.5")
    examples = random_examples(40, seed=1)
    corpus = DeviceCorpus(examples, batch_size=16, max_tokens=0, pad_multiple=8, reverse=True, device=CPU)
    bucket, rows = next((b, r) for b, r in corpus.epoch(seed=0) if bool((r == b.size).any()))  # a partial batch
    real = [bucket.ids[i] for i in rows.tolist() if i < bucket.size]
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_dim=8, hidden_dim=16, num_layers=2, attention=attention), 30, 30)
    other = copy.deepcopy(model)
    batch = StaticBatch.empty(bucket.shape, CPU)
    batch.fill(bucket, rows)
    fp32 = torch.autocast("cpu", enabled=False)
    ours = static_step(model, batch, make_optimizer(model, cfg, CPU), cfg, tf_ratio, fp32)
    theirs = train_step(other, collate([examples[i] for i in real], real, reverse=True),
                        make_optimizer(other, cfg, CPU), cfg, tf_ratio, fp32)
    assert ours[1] == theirs[1] == sum(len(examples[i][1]) + 1 for i in real)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours[2], theirs[2], rtol=1e-5, atol=1e-6)
    assert ours[3] is theirs[3] is True
    for (name, a), b in zip(model.named_parameters(), other.parameters()):
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_padding_rows_add_nothing() -> None:
    """One real row and fifteen padding rows: the loss and the gradient of the row alone (the
    padded encoder runs the padding rows too; they reach nothing)."""
    examples = random_examples(1, seed=2)
    corpus = DeviceCorpus(examples, batch_size=16, max_tokens=0, pad_multiple=8, reverse=True, device=CPU)
    (bucket, rows), = corpus.epoch(seed=0)
    assert int((rows == bucket.size).sum()) == 15
    batch = StaticBatch.empty(bucket.shape, CPU)
    batch.fill(bucket, rows)
    torch.manual_seed(0)
    model = build_model(ModelConfig(embed_dim=8, hidden_dim=16, num_layers=2), 30, 30)
    alone = collate(examples, [0], reverse=True)
    full = sequence_loss(model(batch.src, batch.src_len, batch.tgt_in, padded=True), batch.tgt_out)
    one = sequence_loss(model(alone.src, alone.src_len, alone.tgt_in), alone.tgt_out)
    torch.testing.assert_close(full, one, rtol=1e-6, atol=1e-6)
    params = list(model.parameters())
    for g_full, g_one in zip(torch.autograd.grad(full, params), torch.autograd.grad(one, params)):
        torch.testing.assert_close(g_full, g_one, rtol=1e-5, atol=1e-7)


# --- the settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "message"), [
    (["train.static_shapes=true", "model.bidirectional=true"], "train.static_shapes: true needs a unidirectional"),
    (["train.static_shapes=true", "model.encoder_dim=8"], "needs a unidirectional encoder of the decoder's size"),
    (["train.static_shapes=true", "data.prepared=somewhere"], "train.static_shapes: true needs the training data"),
    (["train.cuda_graphs=true", "train.device=cpu"], "train.cuda_graphs: true needs CUDA"),
    (["train.cuda_graphs=true", "train.device=cuda", "train.optimizer=sgd"], "needs train.optimizer: adam"),
    (["train.cuda_graphs=true", "train.device=cuda", "train.static_shapes=false"], "needs train.static_shapes"),
    (["train.cuda_graphs=true", "train.device=cuda", "train.sync_free=false"], "needs train.sync_free"),
    (["train.cuda_graphs=true", "train.device=cuda", "train.teacher_forcing=0.5"], "needs train.teacher_forcing"),
    (["train.cuda_graphs=true", "train.device=cuda", "model.bidirectional=true"], "cuda_graphs: true needs a uni"),
    (["train.static_shapes=sometimes"], "train.static_shapes: must be one of auto, true, false"),
    (["train.cuda_graphs=1"], "train.cuda_graphs: must be one of auto, true, false"),
])
def test_bad_settings_are_refused_with_the_config(tiny_config: Any, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_config(*overrides)


def test_the_cpu_trains_as_before_unless_asked(tiny_config: Any) -> None:
    world = distributed.SINGLE
    assert world.device.type == "cpu"
    assert not use_static_shapes(tiny_config(), world)
    assert use_static_shapes(tiny_config("train.static_shapes=true"), world)
    assert not use_cuda_graphs(tiny_config("train.static_shapes=true"), world, defer=True, static=True)
    with pytest.raises(ConfigError, match="train.cuda_graphs: true needs CUDA; the device is cpu"):
        use_cuda_graphs(tiny_config("train.cuda_graphs=true"), world, defer=True, static=False)


@pytest.mark.smoke
def test_cuda_graphs_true_on_a_machine_without_cuda_is_one_line(tmp_path: Path, tiny_overrides: tuple[str, ...],
                                                                run_script: Any) -> None:
    """``train.device: auto`` passes the config; the run stops before training, with one line."""
    done = run_script("train.py", "--config", "configs/dates.yaml", "--out", str(tmp_path / "run"),
                      *tiny_overrides, "train.cuda_graphs=true")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == "error: train.cuda_graphs: true needs CUDA; the device is cpu"


# --- training ------------------------------------------------------------------------------------
@pytest.mark.smoke
def test_training_on_static_shapes_learns_and_resumes_alike(tmp_path: Path, tiny_config: Any, metrics: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run on static shapes (the CPU, eager steps): the loss falls; stopped by SIGTERM
    mid-epoch and resumed, it logs the records an uninterrupted run logs."""
    from test_run_lock_and_saves import LONG
    from test_training import sigterm_at

    cfg = tiny_config(*LONG, "train.static_shapes=true")
    train(cfg, tmp_path / "whole")
    losses = [(r["step"], r["train/loss"]) for r in metrics(tmp_path / "whole") if "train/loss" in r]
    assert losses[-1][1] < losses[0][1]
    sigterm_at(7, cfg, tmp_path / "split", monkeypatch, step="static_step")
    train(cfg, tmp_path / "split", resume=True)
    assert [(r["step"], r["train/loss"]) for r in metrics(tmp_path / "split") if "train/loss" in r] == losses
