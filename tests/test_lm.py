"""The RNN language model (data.task: lm): stream batching, truncated BPTT, scoring, sampling,
the n-gram baseline, training end to end, the generate command, and bad input."""

from __future__ import annotations

import math
import random
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.config import ConfigError, load_config
from seq2seq.data.lm_data import Split, sentence_rows, stream_batches, stream_rows
from seq2seq.data.tokenization import EOS, PAD, train_tokenizer
from seq2seq.model.lm import LanguageModel, build_lm, detach_state
from seq2seq.model.lm_scoring import sentence_log_probs, split_nll, stream_nll
from seq2seq.model.sampling import sample
from seq2seq.tools.ngram import KneserNey

ROOT = Path(__file__).resolve().parent.parent
CHAR = ROOT / "configs" / "lm_multi30k_en_char.yaml"
TINY = ("model.hidden_dim=32", "model.embed_dim=8", "train.batch_size=4", "train.bptt=8", "train.epochs=2",
        "train.progress=false", "train.log_every=2", "train.bf16=false", "decode.batch_size=16")
WORDS = ("a", "dog", "runs", ".", "the", "cat", "sat", "on", "the", "mat", ".", "two", "men", "play", "ball", ".")


def tiny_model(cell: str = "lstm", vocab: int = 12, layers: int = 1, tie: bool = False) -> LanguageModel:
    cfg = load_config(CHAR, [*TINY, f"model.cell={cell}", f"model.num_layers={layers}",
                             f"model.tie_embeddings={str(tie).lower()}"]).model
    torch.manual_seed(0)
    return build_lm(cfg, vocab).eval()


def write_corpus(root: Path, lines: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, text in lines.items():
        (root / f"{split}.en").write_text("".join(t + "\n" for t in text), encoding="utf-8")
    return root


def text_corpus(root: Path, n: int = 120, seed: int = 0) -> Path:
    rng = random.Random(seed)
    make = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))  # noqa: E731
    return write_corpus(root, {"train": [make() for _ in range(n)], "val": [make() for _ in range(20)],
                               "test_2016_flickr": [make() for _ in range(20)]})


def lm_config(path: Path, *overrides: str) -> Any:
    return load_config(CHAR, [*TINY, f"data.path={path}", *overrides])


# --- batching ----------------------------------------------------------------------------
def test_stream_rows_cut_the_stream_into_contiguous_rows_targets_shifted_by_one() -> None:
    sentences = [[4, 5, 6], [7], [8, 9], [10, 11, 12, 13]]
    stream = [EOS, 4, 5, 6, EOS, 7, EOS, 8, 9, EOS, 10, 11, 12, 13, EOS]
    x, y = stream_rows(sentences, batch_size=3)
    assert x.shape == y.shape == (3, 5)  # 14 predicted tokens in 3 rows: ceil(14 / 3) = 5
    assert x.flatten()[:14].tolist() == stream[:-1] and y.flatten()[:14].tolist() == stream[1:]
    assert (x.flatten()[14:] == PAD).all() and (y.flatten()[14:] == PAD).all()  # padding at the very end only
    for b in range(3):  # each row is a contiguous piece of the stream
        assert x[b].tolist()[:4] == stream[5 * b: 5 * b + 4]
    batches = stream_batches(x, y, bptt=2)
    assert [bx.shape[1] for bx, _ in batches] == [2, 2, 1]
    assert torch.equal(torch.cat([bx for bx, _ in batches], dim=1), x)  # row b of batch k+1 continues batch k


def test_stream_rows_never_more_rows_than_tokens() -> None:
    x, y = stream_rows([[4]], batch_size=64)
    assert x.tolist() == [[EOS], [4]] and y.tolist() == [[4], [EOS]]


def test_sentence_rows_read_eos_first_and_predict_eos_last() -> None:
    x, y = sentence_rows([[4, 5], [6]])
    assert x.tolist() == [[EOS, 4, 5], [EOS, 6, PAD]]
    assert y.tolist() == [[4, 5, EOS], [6, EOS, PAD]]


# --- the model and truncated BPTT -----------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_carried_state_equals_one_long_call(cell: str) -> None:
    """The state flows across a batch boundary: two slices with the state carried give the
    logits of the whole sequence read at once."""
    model = tiny_model(cell)
    x = torch.randint(4, 12, (3, 10))
    whole, _ = model(x, model.initial_state(3))
    first, state = model(x[:, :6], model.initial_state(3))
    second, _ = model(x[:, 6:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_gradients_stop_at_a_batch_boundary() -> None:
    """Batch 2's loss, from batch 1's detached state, sends no gradient into what only batch 1
    read (token 5's embedding); from the undetached state it does."""
    model = tiny_model().train()
    first = torch.full((2, 4), 5)
    second = torch.randint(6, 12, (2, 4))
    for detach, expect_zero in ((True, True), (False, False)):
        model.zero_grad()
        _, state = model(first, model.initial_state(2))
        if detach:
            state = detach_state(state)
            assert not state.hidden.requires_grad
        logits, _ = model(second, state)
        logits.sum().backward()
        grad = model.tgt_embed.weight.grad
        assert grad is not None
        assert bool((grad[5] == 0).all()) == expect_zero


def test_tied_embeddings_share_the_output_weight() -> None:
    model = tiny_model(tie=True)
    assert model.decoder.output.weight is model.tgt_embed.weight


@torch.no_grad()
def hand_log_probs(model: LanguageModel, sentence: list[int]) -> float:
    """ln P(sentence + EOS), one decode_step at a time from the zero state."""
    state, prev, total = model.initial_state(1), torch.tensor([EOS]), 0.0
    for target in [*sentence, EOS]:
        logits, state = model.decode_step(prev, state)
        total += float(torch.log_softmax(logits.double(), -1)[0, target])
        prev = torch.tensor([target])
    return total


def test_perplexity_is_exp_of_the_mean_nll_computed_by_hand() -> None:
    model = tiny_model("gru")
    sentences = [[4, 5, 6], [7, 8], [9, 10, 11, 4, 5]]
    by_hand = [hand_log_probs(model, s) for s in sentences]
    assert sentence_log_probs(model, sentences, batch_size=2) == pytest.approx(by_hand, abs=1e-4)
    tokens = sum(len(s) + 1 for s in sentences)
    # one stream read whole: the same tokens, each sentence after the previous one's state
    stream = stream_nll(model, sentences, batch_size=1, bptt=3)
    state, prev, total = model.initial_state(1), torch.tensor([EOS]), 0.0
    with torch.no_grad():
        for target in [t for s in sentences for t in [*s, EOS]]:
            logits, state = model.decode_step(prev, state)
            total -= float(torch.log_softmax(logits.double(), -1)[0, target])
            prev = torch.tensor([target])
    assert stream == pytest.approx(total, abs=1e-4)
    cfg = load_config(CHAR, [*TINY, "train.lm_batching=sentence"])
    nll = split_nll(model, Split(sentences, chars=20), cfg, "cpu")
    assert math.exp(nll / tokens) == pytest.approx(math.exp(-sum(by_hand) / tokens), rel=1e-5)


def test_a_line_scored_alone_equals_the_line_scored_in_a_batch() -> None:
    model = tiny_model()
    rng = random.Random(1)
    sentences = [[rng.randint(4, 11) for _ in range(rng.randint(0, 9))] for _ in range(13)]
    batched = sentence_log_probs(model, sentences, batch_size=5)
    alone = [sentence_log_probs(model, [s], batch_size=1)[0] for s in sentences]
    assert batched == pytest.approx(alone, abs=1e-5)


def test_a_long_line_is_scored_alone_not_padding_the_others_to_its_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """One very long line among short ones: no batch pads several rows to its length (that
    was batch_size rows of the long line's length: 300 GB for a 1 MiB line at batch 256)."""
    from seq2seq.model import lm_scoring

    model = tiny_model()
    sentences = [[5] * 3000] + [[6, 7, 8]] * 15
    shapes: list[tuple[int, ...]] = []
    rows = lm_scoring.sentence_rows
    monkeypatch.setattr(lm_scoring, "sentence_rows", lambda s: shapes.append((len(s), max(map(len, s)) + 1)) or rows(s))
    scores = sentence_log_probs(model, sentences, batch_size=8)
    assert all(b == 1 or b * t <= 8 * 256 for b, t in shapes), shapes
    assert sorted(b for b, _ in shapes) == [1, 7, 8]
    assert scores[0] == pytest.approx(sentence_log_probs(model, sentences[:1], batch_size=1)[0], abs=1e-3)


def test_sentence_batches_cut_a_long_line_alone_and_short_ones_as_before() -> None:
    from seq2seq.data.lm_data import sentence_batches

    rng = random.Random(2)
    short = [[rng.randint(4, 11) for _ in range(rng.randint(1, 255))] for _ in range(40)]
    shapes = [tuple(x.shape) for x, _ in sentence_batches(short, 8, seed=3)]
    assert sorted(b for b, _ in shapes) == [8] * 5  # every batch full, as before the cap
    shapes = [tuple(x.shape) for x, _ in sentence_batches([[5] * 3000, *short[:39]], 8, seed=3)]
    assert all(b == 1 or b * t <= 8 * 256 for b, t in shapes), shapes  # was 8 rows of 3001
    assert (1, 3001) in shapes and sum(b for b, _ in shapes) == 40


# --- sampling ----------------------------------------------------------------------------
def test_same_seed_same_samples_drawn_in_one_batch() -> None:
    tok = train_tokenizer(["a dog runs", "the cat"], "char")
    model = tiny_model(vocab=tok.vocab_size)

    def draw(seed: int, **kw: Any) -> list[str]:
        return sample(model, tok, num=4, max_tokens=12, generator=torch.Generator().manual_seed(seed), **kw)

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    assert len(set(draw(3, temperature=0.0))) == 1  # greedy: every row the same
    assert all(len(t) <= 12 for t in draw(5, top_k=2))


@pytest.mark.parametrize("temperature", [1e-30, 1e-37, 1e-300, 1e300])
def test_extreme_temperatures_draw_without_nan(temperature: float) -> None:
    """A tiny temperature draws the argmax, a huge one any token but the special ones (both
    were a multinomial traceback: nan probabilities)."""
    from seq2seq.data.tokenization import BOS, UNK
    from seq2seq.model.sampling import draw

    logits = 100 * torch.randn(64, 12, generator=torch.Generator().manual_seed(0))
    drawn = draw(logits, temperature, 0, torch.Generator().manual_seed(1))
    if temperature < 1:
        masked = logits.clone()
        masked[:, [PAD, BOS, UNK]] = float("-inf")
        assert drawn.tolist() == masked.argmax(dim=-1).tolist()
    else:
        assert not set(drawn.tolist()) & {PAD, BOS, UNK}
        assert len(set(drawn.tolist())) > 3


def test_a_prompt_with_unseen_characters_falls_back_to_bytes() -> None:
    tok = train_tokenizer(["a dog runs"], "char")
    model = tiny_model(vocab=tok.vocab_size)
    texts = sample(model, tok, prompt="a ☃ dog ü", num=2, max_tokens=5, generator=torch.Generator().manual_seed(0))
    assert all(t.startswith("a ☃ dog ü") for t in texts)


# --- the n-gram baseline -----------------------------------------------------------------
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_kneser_ney_distributions_sum_to_one(order: int) -> None:
    rng = random.Random(order)
    sentences = [[rng.randint(4, 9) for _ in range(rng.randint(1, 8))] for _ in range(100)]
    model = KneserNey(sentences, order, vocab_size=12)
    for history in ([EOS] * 4, [4, 5, 6, 7], [11, 11, 11, 11], [9]):
        assert sum(model.prob(history, w) for w in range(12)) == pytest.approx(1.0, abs=1e-9)


def test_kneser_ney_prefers_what_it_saw() -> None:
    model = KneserNey([[4, 5, 6]] * 10 + [[4, 7]], order=3, vocab_size=10)
    assert model.prob([EOS, 4], 5) > model.prob([EOS, 4], 7) > model.prob([EOS, 4], 9)



@pytest.mark.parametrize("order", ["0", "17", "100"])
def test_ngram_order_out_of_range_is_one_line(order: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any text is read: a 100-gram of Multi30k's characters ran out of memory."""
    from seq2seq.tools.ngram import main

    assert main(["--config", str(CHAR), "--order", "3", order]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --order must be in [1, 16], got {order}")

# --- config and bad input ----------------------------------------------------------------
@pytest.mark.parametrize(("override", "message"), [
    ("train.bptt=0", "train.bptt: must be >= 1, got 0"),
    ("train.lm_batching=bptt", "train.lm_batching: must be one of stream, sentence"),
    ("model.peeky=true", "model.peeky: a language model has no source to read"),
    ("model.attention=luong", "model.attention: a language model has no source to read"),
    ("model.encoder_dim=8", "model.encoder_dim: a language model has no source to read"),
    ("data.source=dates", "data.source: data.task lm reads text files"),
])
def test_bad_lm_config_is_one_config_error(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(CHAR, [override])


@pytest.mark.smoke
def test_a_corpus_with_no_text_is_one_line_error(tmp_path: Path, run_script: Any) -> None:
    root = write_corpus(tmp_path / "c", {"train": ["", "  "], "val": ["a"], "test_2016_flickr": ["a"]})
    r = run_script("train.py", "--config", str(CHAR), "--out", str(tmp_path / "run"), *TINY, f"data.path={root}")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: {root / 'train.en'}: no text (every line is empty)"]


# --- end to end ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny LM run (stream batching). Read only."""
    from seq2seq.training.trainer import train

    root = tmp_path_factory.mktemp("lm")
    out = root / "run"
    train(lm_config(text_corpus(root / "corpus")), out)
    return out


@pytest.mark.smoke
def test_training_writes_perplexity_bpc_and_checkpoints(lm_run: Path, metrics: Any) -> None:
    records = metrics(lm_run)
    epochs = [r for r in records if "valid/ppl" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for r in epochs:
        assert r["valid/ppl"] == pytest.approx(math.exp(r["valid/loss"]))
        assert r["valid/bpc"] == pytest.approx(r["valid/loss"] / math.log(2))  # char model: a token a character
    test = records[-1]
    assert {"test/ppl", "test/bpc", "test/ppl_sentence"} <= set(test)
    assert any("train/loss" in r for r in records)
    for name in ("best", "last"):
        assert (lm_run / name / "model.safetensors").exists()


@pytest.mark.smoke
def test_sentence_batching_trains(tmp_path: Path) -> None:
    from seq2seq.training.trainer import train

    summary = train(lm_config(text_corpus(tmp_path / "c"), "train.lm_batching=sentence", "train.epochs=1"),
                    tmp_path / "run")
    assert summary["test/ppl"] == pytest.approx(summary["test/ppl_sentence"])  # both read by sentence


@pytest.mark.smoke
def test_early_stopping_follows_validation_perplexity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      metrics: Any) -> None:
    """Validation perplexity that stops falling ends the run after train.patience epochs; best/
    holds the epoch with the lowest one."""
    from seq2seq.training import lm_training
    from seq2seq.training.trainer import train

    ppl = iter([5.0, 4.0, 4.5, 4.2, 3.0, 2.0])  # epochs 3 and 4 are no better than epoch 2

    def fake_evaluate(self: Any, split: Any, prefix: str) -> dict[str, float]:
        value = next(ppl) if prefix == "valid" else 9.0
        return {f"{prefix}/loss": math.log(value), f"{prefix}/ppl": value, f"{prefix}/bpc": 1.0}

    monkeypatch.setattr(lm_training.LMTrainer, "evaluate", fake_evaluate)
    summary = train(lm_config(text_corpus(tmp_path / "c"), "train.epochs=6", "train.patience=2"), tmp_path / "run")
    assert (summary["epoch"], summary["best"]) == (4, 4.0)
    assert [r["valid/ppl"] for r in metrics(tmp_path / "run") if "valid/ppl" in r] == [5.0, 4.0, 4.5, 4.2]


@pytest.mark.smoke
def test_a_bpe_language_model_trains_and_samples(tmp_path: Path) -> None:
    from seq2seq.model.checkpoint import load_lm
    from seq2seq.training.trainer import train

    config = load_config(ROOT / "configs" / "lm_multi30k_en_bpe.yaml",
                         [*TINY, f"data.path={text_corpus(tmp_path / 'c')}", "data.vocab_size=300", "train.epochs=1"])
    summary = train(config, tmp_path / "run")
    assert summary["test/ppl"] > 1 and summary["test/bpc"] > 0
    loaded = load_lm(tmp_path / "run")
    assert loaded.tok.kind == "bpe"
    assert sample(loaded.model, loaded.tok, prompt="a dög", num=2, max_tokens=5)[0].startswith("a dög")


def stopped_at_step(monkeypatch: pytest.MonkeyPatch, step: int, cfg: Any, out: Path) -> None:
    """Train ``cfg`` into ``out`` with a SIGINT arriving during step ``step`` (the run saves and
    exits, as on a real signal); the training step is as it was afterwards."""
    from seq2seq.training import lm_training
    from seq2seq.training.trainer import train

    original = lm_training.LMTrainer.train_step
    calls = {"n": 0}

    def interrupted(self: Any, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == step:
            self.flag.signum = signal.SIGINT
        return original(self, *args)

    monkeypatch.setattr(lm_training.LMTrainer, "train_step", interrupted)
    with pytest.raises(SystemExit):
        train(cfg, out)
    monkeypatch.setattr(lm_training.LMTrainer, "train_step", original)


@pytest.mark.smoke
def test_resume_after_a_signal_mid_epoch_takes_the_same_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Interrupted mid-epoch and resumed, the run ends with the weights of an uninterrupted one:
    last/ carries the stream state, the optimizer and the RNGs."""
    from seq2seq.model.checkpoint import load_lm
    from seq2seq.training.trainer import train

    cfg = lm_config(text_corpus(tmp_path / "c"), "model.dropout=0.1")
    train(cfg, tmp_path / "straight")
    stopped_at_step(monkeypatch, 5, cfg, tmp_path / "resumed")  # mid-epoch of the first epoch
    train(cfg, tmp_path / "resumed", resume=True)
    a, b = load_lm(tmp_path / "straight" / "last").model, load_lm(tmp_path / "resumed" / "last").model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


@pytest.mark.parametrize("change", ["train.bptt=5", "train.lm_batching=sentence", "train.seed=2"])
def test_resume_mid_epoch_refuses_other_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
                                                ) -> None:
    """Stopped mid-epoch, a run resumed with another bptt, batching or seed would go on from
    the same batch number of other batches (text skipped or read twice): refused in one line."""
    from seq2seq.model.checkpoint import CheckpointError
    from seq2seq.training.trainer import train

    stopped_at_step(monkeypatch, 1, lm_config(text_corpus(tmp_path / "c")), tmp_path / "run")
    with pytest.raises(CheckpointError, match=f"stopped mid-epoch .*{change.split('=')[0]}="):
        train(lm_config(tmp_path / "c", change), tmp_path / "run", resume=True)
    train(lm_config(tmp_path / "c", "train.epochs=1"), tmp_path / "run", resume=True)  # the same batches: goes on


@pytest.mark.smoke
def test_generate_samples_and_scores(lm_run: Path, tmp_path: Path, run_script: Any) -> None:
    args = ("--checkpoint", str(lm_run), "--num", "3", "--seed", "7", "--max-tokens", "20", "--prompt", "a ☃")
    first = run_script("-m", "seq2seq", "generate", *args)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.splitlines()) == 3 and all(t.startswith("a ☃") for t in first.stdout.splitlines())
    assert run_script("-m", "seq2seq", "generate", *args).stdout == first.stdout  # same seed, same samples
    lines = ["a dog runs .", "", "the cat sat on the mat ."]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    scored = run_script("-m", "seq2seq", "generate", "--checkpoint", str(lm_run), "--score", str(tmp_path / "text.txt"))
    assert scored.returncode == 0, scored.stderr
    rows = [row.split("\t") for row in scored.stdout.splitlines()]
    counts = [len(t) + 1 if t else 0 for t in lines]  # line for line, EOS counted; a blank line is not scored
    assert [int(n) for _, n in rows] == counts
    log_probs = [float(lp) for lp, _ in rows]
    assert all(lp < 0 if n else lp == 0 for lp, n in zip(log_probs, counts))
    ppl = math.exp(-sum(log_probs) / sum(counts))
    assert f"perplexity {ppl:.2f}" in scored.stderr.replace(f"{ppl:.4f}", f"{ppl:.2f}")


@pytest.mark.smoke
def test_generate_draws_more_samples_than_a_batch_in_batches(lm_run: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    """--num past --batch-size: every sample printed, in batches (memory bounded by the batch,
    not by --num: 10**8 samples was an allocation error); the same seed, the same samples."""
    from seq2seq.cli.generate import main

    args = ["--checkpoint", str(lm_run), "--num", "7", "--batch-size", "3", "--seed", "5", "--max-tokens", "8"]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 7
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == first
    assert main([*args, "--batch-size", "1"]) == 0  # one sample per batch (the last --batch-size wins)
    assert len(capsys.readouterr().out.splitlines()) == 7


@pytest.mark.smoke
def test_each_command_refuses_the_other_tasks_checkpoint(lm_run: Path, trained_run: Path, run_script: Any
                                                         ) -> None:
    r = run_script("-m", "seq2seq", "generate", "--checkpoint", str(trained_run))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: {trained_run / 'best'}: this checkpoint is a translator; "
                                             "translate with translate.py (data.task: translate)"]
    r = run_script("translate.py", "--checkpoint", str(lm_run), stdin="a\n")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "is a language model" in r.stderr


@pytest.mark.smoke
@pytest.mark.parametrize(("args", "message"), [
    (["--num", "0"], "--num must be >= 1"), (["--temperature", "-1"], "--temperature must be"),
    (["--top-k", "-2"], "--top-k must be >= 0"), (["--score", "/nonexistent/x.txt"], "/nonexistent/x.txt"),
])
def test_generate_bad_options_are_one_line_errors(lm_run: Path, args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.cli.generate import main

    assert main(["--checkpoint", str(lm_run), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


# --- learns ------------------------------------------------------------------------------
@pytest.mark.learns
def test_learns_a_repetitive_text(tmp_path: Path) -> None:
    """A tiny char LM on a text that repeats a few sentences reaches a low perplexity in seconds."""
    from seq2seq.training.trainer import train

    lines = ["the cat sat on the mat.", "a dog runs in the park.", "two men play ball."] * 60
    root = write_corpus(tmp_path / "c", {"train": lines, "val": lines[:9], "test_2016_flickr": lines[:9]})
    summary = train(lm_config(root, "model.hidden_dim=64", "model.embed_dim=16", "train.batch_size=8",
                              "train.bptt=32", "train.epochs=8", "train.lr=0.01", "train.log_every=50"),
                    tmp_path / "run")
    assert summary["test/ppl_sentence"] < 2.0, summary  # from 28 characters; each sentence's own start is a guess
    shutil.rmtree(tmp_path / "run")


@pytest.mark.smoke
def test_an_lm_sweep_writes_perplexity_table_and_curves(tmp_path: Path) -> None:
    import csv

    from seq2seq.tools.sweep.command import run_sweep
    from seq2seq.tools.sweep.spec import load_sweep

    corpus = text_corpus(tmp_path / "c")
    path = tmp_path / "sweep.yaml"
    overrides = "\n".join(f"  {o.split('=')[0]}: {o.split('=')[1]}" for o in (*TINY, f"data.path={corpus}",
                                                                              "train.epochs=1"))
    path.write_text(f"base: {CHAR}\noverrides:\n{overrides}\naxes:\n  model.cell: {{rnn: rnn, lstm: lstm}}\n"
                    "metric: ppl\n", encoding="utf-8")
    rows = run_sweep(load_sweep(path), tmp_path / "out")
    assert [r["variant"] for r in rows] == ["rnn", "lstm"]
    with open(tmp_path / "out" / "results.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    for row in table:
        assert float(row["test_ppl"]) > 1 and float(row["valid_bpc"]) > 0 and int(row["params"]) > 0
    assert (tmp_path / "out" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="metric: bleu does not fit data.task lm"):
        path.write_text(path.read_text().replace("metric: ppl", "metric: bleu"), encoding="utf-8")
        load_sweep(path)


# --- a translator's decoder started from a language model (model.init_decoder_from) -------------
@pytest.mark.parametrize("tie", [False, True])
def test_init_decoder_copies_the_lm_into_a_peeky_decoder(tie: bool) -> None:
    from seq2seq.model.lm import init_decoder
    from seq2seq.model.seq2seq import build_model

    lm = tiny_model(layers=2, tie=tie)
    cfg = load_config(ROOT / "configs" / "dates.yaml", ["model.hidden_dim=32", "model.embed_dim=8",
                                                        "model.num_layers=2", "model.peeky=true",
                                                        f"model.tie_embeddings={str(tie).lower()}"]).model
    model = build_model(cfg, 9, 12)
    copied = init_decoder(model, lm)
    assert "tgt_embed.weight" in copied and "decoder.rnn.weight_hh_l1" in copied
    d, e = model.decoder, lm.decoder
    torch.testing.assert_close(d.rnn.weight_ih_l0[:, :8], e.rnn.weight_ih_l0)  # the embedding's columns
    torch.testing.assert_close(d.rnn.weight_hh_l0, e.rnn.weight_hh_l0)
    last = d.pre_output if tie else d.output
    assert last is not None
    torch.testing.assert_close(last.weight[:, :32], (e.pre_output if tie else e.output).weight)  # the RNN's columns


def test_a_plain_decoder_from_an_lm_computes_the_lm() -> None:
    """Without peeky and attention, the started decoder is the language model: the same logits
    from the same state."""
    from seq2seq.model.decoder import DecoderState
    from seq2seq.model.lm import init_decoder
    from seq2seq.model.seq2seq import build_model

    lm = tiny_model("gru")
    cfg = load_config(ROOT / "configs" / "dates.yaml", ["model.hidden_dim=32", "model.embed_dim=8",
                                                        "model.cell=gru", "model.peeky=false"]).model
    model = build_model(cfg, 9, 12).eval()
    init_decoder(model, lm)
    x = torch.randint(4, 12, (3, 7))
    state = lm.initial_state(3)
    theirs, _ = lm(x, state)
    ours, _ = model.decode(x, DecoderState(hidden=state.hidden, cell=None, context=torch.zeros(3, 32)))
    torch.testing.assert_close(ours, theirs)


def test_init_decoder_refuses_a_model_that_does_not_fit() -> None:
    from seq2seq.model.lm import init_decoder
    from seq2seq.model.seq2seq import build_model

    cfg = load_config(ROOT / "configs" / "dates.yaml", ["model.hidden_dim=64", "model.embed_dim=8"]).model
    with pytest.raises(ValueError, match=r"model.init_decoder_from: the language model's .* does not fit"):
        init_decoder(build_model(cfg, 9, 12), tiny_model())


@pytest.mark.parametrize(("config", "overrides", "message"), [
    ("lm_multi30k_en_char.yaml", [], "model.init_decoder_from: is for a translator"),
    ("dates.yaml", ["data.joint_vocab=true"], "model.init_decoder_from: needs the language model"),
])
def test_init_decoder_from_bad_configs(config: str, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs" / config, [*overrides, "model.init_decoder_from=x"])


@pytest.mark.smoke
def test_a_translator_trains_from_an_lm_decoder(tmp_path: Path) -> None:
    from seq2seq.model.checkpoint import load, load_lm
    from seq2seq.training.trainer import train

    rng = random.Random(5)
    words = {"a": "ein", "dog": "hund", "runs": "läuft", "the": "die", "cat": "katze", "sat": "saß"}
    pairs = [[rng.choice(list(words)) for _ in range(rng.randint(2, 5))] for _ in range(80)]
    root = tmp_path / "c"
    root.mkdir()
    for split, part in (("train", pairs[:60]), ("val", pairs[60:70]), ("test_2016_flickr", pairs[70:])):
        (root / f"{split}.en").write_text("".join(" ".join(p) + "\n" for p in part), encoding="utf-8")
        (root / f"{split}.de").write_text("".join(" ".join(words[w] for w in p) + "\n" for p in part),
                                          encoding="utf-8")
    model = ["model.hidden_dim=32", "model.embed_dim=8", "model.num_layers=1", "model.tie_embeddings=true"]
    train(lm_config(root, *model, "train.epochs=1"), tmp_path / "lm")
    translator = load_config(ROOT / "configs" / "multi30k_de_en.yaml",
                             [f"data.path={root}", "data.tokenizer=char", *model, "model.dropout=0",
                              f"model.init_decoder_from={tmp_path / 'lm'}", "train.epochs=1", "train.progress=false",
                              "train.bf16=false", "train.batch_size=16", "decode.beam_size=1"])
    train(translator, tmp_path / "mt")
    assert load(tmp_path / "mt" / "last").tgt_tok.to_json() == load_lm(tmp_path / "lm").tok.to_json()


# --- resuming, scoring and the commands' bad input ----------------------------------------------
def lm_records(out: Path) -> list[str]:
    return (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()


@pytest.mark.smoke
@pytest.mark.parametrize("stop", ["train.max_steps=3", "train.epochs=1"])
def test_a_finished_lm_run_resumed_trains_and_tests_nothing(stop: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Stopped by max_steps mid-epoch (or after its last epoch), the run is finished: --resume
    says so and leaves metrics.jsonl as it is (no further test record), as the translator's does."""
    from seq2seq.training.trainer import train

    cfg = lm_config(text_corpus(tmp_path / "c"), stop)
    first = train(cfg, tmp_path / "run")
    records = lm_records(tmp_path / "run")
    assert sum("test/ppl" in r for r in records) == 1
    capsys.readouterr()
    again = train(cfg, tmp_path / "run", resume=True)
    assert "training already finished" in capsys.readouterr().out
    assert lm_records(tmp_path / "run") == records
    assert (again["step"], again["test/ppl_sentence"]) == (first["step"], first["test/ppl_sentence"])


@pytest.mark.smoke
def test_a_finished_lm_run_without_its_test_record_is_tested_once_on_resume(tmp_path: Path) -> None:
    """A run stopped after its last save but before its test (a kill) gets the test on resume, once."""
    from seq2seq.training.trainer import train

    cfg = lm_config(text_corpus(tmp_path / "c"), "train.max_steps=3")
    train(cfg, tmp_path / "run")
    metrics_file = tmp_path / "run" / "metrics.jsonl"
    metrics_file.write_text("".join(r + "\n" for r in lm_records(tmp_path / "run") if "test/ppl" not in r))
    for _ in range(2):
        assert "test/ppl" in train(cfg, tmp_path / "run", resume=True)
        assert sum("test/ppl" in r for r in lm_records(tmp_path / "run")) == 1


@pytest.mark.smoke
def test_resume_mid_epoch_without_bf16_after_a_bf16_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """last/ holds the carried state in fp32, whatever the run's precision: a bf16 run stopped
    mid-epoch resumes with train.bf16=false (a bf16 state was a oneDNN dtype error)."""
    from seq2seq.model.checkpoint import load_trainer
    from seq2seq.training.trainer import train

    root = text_corpus(tmp_path / "c")
    stopped_at_step(monkeypatch, 2, lm_config(root, "train.bf16=true"), tmp_path / "run")
    tensors, _ = load_trainer(tmp_path / "run" / "last")
    assert tensors["lm.hidden"].dtype == tensors["lm.cell"].dtype == torch.float32
    summary = train(lm_config(root, "train.bf16=false", "train.epochs=1"), tmp_path / "run", resume=True)
    assert summary["step"] > 2


def score_rows(out: str) -> list[tuple[float, int]]:
    return [(float(lp), int(n)) for lp, n in (row.split("\t") for row in out.splitlines())]


def stderr_ppl(err: str) -> float:
    return float(err.split("perplexity ")[1].split(",")[0])


@pytest.mark.smoke
def test_score_skips_blank_lines_as_training_does_and_agrees_with_test_ppl_sentence(
        lm_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], metrics: Any) -> None:
    """Blank lines (empty or whitespace only) are dropped by training; --score gives each a row
    of 0.0000 and 0 tokens and leaves it out of every total, so the test file scored with blank
    lines between its sentences has the run's test/ppl_sentence."""
    from seq2seq.cli.generate import main

    lines = (lm_run.parent / "corpus" / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    padded = [x for line in lines for x in (line, "", "  \t")]
    (tmp_path / "t.txt").write_text("\n".join(padded) + "\n", encoding="utf-8")
    assert main(["--checkpoint", str(lm_run), "--score", str(tmp_path / "t.txt")]) == 0
    out, err = capsys.readouterr()
    rows = score_rows(out)
    assert len(rows) == len(padded)
    assert rows[1::3] == rows[2::3] == [(0.0, 0)] * len(lines)
    assert [n for _, n in rows[::3]] == [len(t) + 1 for t in lines]
    test = [r for r in metrics(lm_run) if "test/ppl_sentence" in r][-1]
    assert stderr_ppl(err) == pytest.approx(test["test/ppl_sentence"], abs=2e-4)
    assert f"{len(padded)} lines ({2 * len(lines)} blank, not scored)" in err


@pytest.mark.smoke
def test_bf16_scores_do_not_depend_on_the_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bf16 model's lines are scored in fp32: the same score alone (--batch-size 1) or in a
    batch, to fp32's rounding (in bf16 they differed in the third decimal)."""
    from seq2seq.cli.generate import main
    from seq2seq.training.trainer import train

    train(lm_config(text_corpus(tmp_path / "c"), "train.bf16=true", "train.max_steps=2"), tmp_path / "run")
    rng = random.Random(4)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(12)]
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    outs = []
    for batch in ("1", "5"):
        assert main(["--checkpoint", str(tmp_path / "run"), "--score", str(tmp_path / "t.txt"),
                     "--batch-size", batch]) == 0
        outs.append(score_rows(capsys.readouterr().out))
    alone, batched = outs
    assert [n for _, n in alone] == [n for _, n in batched]
    for (a, _), (b, _) in zip(alone, batched):
        assert abs(a - b) <= 2e-6 * abs(a) + 1e-4, (a, b)  # fp32 rounding, and the printed fourth decimal


@pytest.mark.smoke
def test_score_reads_standard_input_and_pipes(lm_run: Path, tmp_path: Path, run_script: Any) -> None:
    """--score - reads standard input; a pipe (/dev/stdin here) is read as a file is."""
    text = "a dog runs .\nthe cat sat on the mat .\n"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    want = run_script("-m", "seq2seq", "generate", "--checkpoint", str(lm_run), "--score", str(tmp_path / "t.txt"))
    assert want.returncode == 0, want.stderr
    for name in ("-", "/dev/stdin"):
        got = run_script("-m", "seq2seq", "generate", "--checkpoint", str(lm_run), "--score", name, stdin=text)
        assert got.returncode == 0, got.stderr
        assert got.stdout == want.stdout
        assert got.stderr.split(": ", 1)[1] == want.stderr.split(": ", 1)[1]  # the same totals


def run_bounded(target: Any, seconds: float) -> list[Any]:
    """``target()`` in a thread, waited for ``seconds`` at most; -> ``[its result]``, or ``[]``."""
    import threading

    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(target()), daemon=True)
    thread.start()
    thread.join(seconds)
    return result


@pytest.mark.smoke
def test_score_of_a_fifo_with_no_writer_is_a_one_line_error_in_bounded_time(
        lm_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from seq2seq.cli import generate

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    monkeypatch.setattr(generate, "FIFO_WAIT_S", 0.3, raising=False)
    result = run_bounded(lambda: generate.main(["--checkpoint", str(lm_run), "--score", str(fifo)]), 20)
    if not result:  # blocked in open(): let it go (a writer that closes at once), then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("--score blocked on a FIFO with no writer")
    assert result == [1]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {fifo}: no writer") and "--score -" in err[0], err


@pytest.mark.smoke
def test_score_of_a_fifo_reads_a_writer_that_comes_later(lm_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import threading
    import time

    from seq2seq.cli.generate import main

    (tmp_path / "t.txt").write_text("a dog runs .\nthe cat .\n", encoding="utf-8")
    assert main(["--checkpoint", str(lm_run), "--score", str(tmp_path / "t.txt")]) == 0
    want = capsys.readouterr().out
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write_later() -> None:
        time.sleep(0.5)
        with open(fifo, "wb") as f:
            f.write(b"a dog runs .\nthe cat .\n")

    threading.Thread(target=write_later, daemon=True).start()
    assert run_bounded(lambda: main(["--checkpoint", str(lm_run), "--score", str(fifo)]), 30) == [0]
    assert capsys.readouterr().out == want


def test_a_long_line_is_scored_in_slices_of_bounded_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by the slice, not by the line (a 1 MiB line held 3.9 GB in one pass):
    a long line is read in slices of at most 256 steps, the state carried, to the same score."""
    model = tiny_model("gru")
    sentence = [random.Random(3).randint(4, 11) for _ in range(1000)]
    whole = hand_log_probs(model, sentence)
    widths: list[int] = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x, state: widths.append(x.shape[1]) or forward(x, state))
    assert sentence_log_probs(model, [sentence, [4, 5]], batch_size=4) [0] == pytest.approx(whole, abs=1e-3)
    assert max(widths) <= 256 and sum(widths) >= 1001, widths


@pytest.mark.smoke
def test_sigterm_during_a_long_score_ends_the_command(lm_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM while a long line is scored ends the command after the slice in progress:
    ``terminated``, exit 143, nothing printed on stdout."""
    import os

    from seq2seq.cli.generate import main
    from seq2seq.model.lm import LanguageModel

    (tmp_path / "long.txt").write_text("a dog " * 20_000 + "\n", encoding="utf-8")
    widths: list[int] = []
    forward = LanguageModel.forward

    def counting(self: Any, x: Any, state: Any) -> Any:
        widths.append(x.shape[1])
        if len(widths) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return forward(self, x, state)

    monkeypatch.setattr(LanguageModel, "forward", counting)
    assert main(["--checkpoint", str(lm_run), "--score", str(tmp_path / "long.txt")]) == 143
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "terminated"
    assert len(widths) <= 2 and max(widths) <= 256, widths


@pytest.mark.smoke
def test_score_of_invalid_utf8_suggests_what_the_user_can_do(lm_run: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.cli.generate import main

    (tmp_path / "bad.txt").write_bytes(b"a dog\nb\xffad\n")
    assert main(["--checkpoint", str(lm_run), "--score", str(tmp_path / "bad.txt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'bad.txt'}: line 2: invalid UTF-8"), err
    assert "data.invalid_utf8" not in err[0] and "iconv" in err[0]


@pytest.mark.smoke
def test_an_invalid_utf8_prompt_is_a_one_line_error(lm_run: Path, run_script: Any) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "seq2seq", "generate", "--checkpoint", str(lm_run),
                        "--prompt", b"a \xff dog"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --prompt is not valid UTF-8"), r.stderr


@pytest.mark.smoke
def test_ngram_overrides_after_order_apply(lm_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seq2seq.tools.ngram import main

    corpus = lm_run.parent / "corpus"
    assert main(["--config", str(CHAR), "--order", "1", "2", f"data.path={corpus}", "train.seed=3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{corpus} (en)") and [line.split(":")[0] for line in out[1:]] == ["order 1", "order 2"]


@pytest.mark.smoke
@pytest.mark.parametrize("where", ["before", "after"])
def test_ngram_refuses_overrides_with_a_checkpoint(where: str, lm_run: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--checkpoint reads the run's own config and tokenizer: an override would be ignored, so
    it is refused in one line, wherever it stands."""
    from seq2seq.tools.ngram import main

    args = ["--checkpoint", str(lm_run), "--order", "1"]
    args = [*args, "data.path=/elsewhere"] if where == "after" else ["data.path=/elsewhere", *args]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.path=/elsewhere: overrides apply with --config"), err


@pytest.mark.smoke
def test_lm_resume_with_another_optimizer_suggests_reset_optimizer(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.model.checkpoint import CheckpointError
    from seq2seq.training.trainer import train

    root = text_corpus(tmp_path / "c")
    stopped_at_step(monkeypatch, 2, lm_config(root), tmp_path / "run")
    sgd = lm_config(root, "train.optimizer=sgd", "train.epochs=1")
    with pytest.raises(CheckpointError, match="--reset-optimizer"):
        train(sgd, tmp_path / "run", resume=True)
    assert train(sgd, tmp_path / "run", resume=True, reset_optimizer=True)["step"] > 2
