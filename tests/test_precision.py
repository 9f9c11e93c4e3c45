"""Decoding in bf16 and int8 (decode.bf16, decode.quantize): the training model is never
changed, outputs are near-equal to fp32, and on a trained dates model the scores stay within
the documented tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from seq2seq.config import ConfigError, DecodeConfig, ModelConfig
from seq2seq.model.search import greedy_search, max_lengths
from seq2seq.model.seq2seq import build_model
from seq2seq.runtime.device import use_bf16
from seq2seq.translation import precision

CPU = torch.device("cpu")
V = 40


def small_model() -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=16, hidden_dim=32, num_layers=2, bidirectional=True, attention="luong",
                      tie_embeddings=True)
    model = build_model(cfg, V, V).eval()
    with torch.no_grad():  # larger weights than the initialisation: logits spread, so a broken layer shows
        for p in model.parameters():
            p.mul_(3.0)
    return model


def batch(b: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(3, 12, (b,), generator=g)
    src = torch.randint(4, V, (b, int(src_len.max())), generator=g)
    src[torch.arange(src.size(1))[None, :] >= src_len[:, None]] = 0
    tgt = torch.randint(4, V, (b, 9), generator=g)
    return src, src_len, tgt


def test_resolve_follows_the_settings() -> None:
    assert precision.resolve(DecodeConfig(bf16=False), CPU) == "fp32"
    assert precision.resolve(DecodeConfig(bf16=True), CPU) == "bf16"
    assert precision.resolve(DecodeConfig(), CPU) == ("bf16" if use_bf16("auto", CPU) else "fp32")
    assert precision.resolve(DecodeConfig(bf16=True, quantize="int8"), CPU) == "int8"  # int8 wins
    with pytest.raises(ValueError, match="decode.quantize: int8 runs on the CPU only"):
        precision.resolve(DecodeConfig(quantize="int8"), torch.device("cuda"))


def test_bad_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match="decode.quantize"):
        DecodeConfig(quantize="int4")  # type: ignore[arg-type]
    from seq2seq.config import load_config
    with pytest.raises(ConfigError, match="decode.bf16"):
        load_config("dates", ["decode.bf16=sometimes"])


@pytest.mark.parametrize("setting", [dict(bf16=True), dict(quantize="int8")], ids=str)
def test_the_given_model_is_left_as_it_is(setting: dict) -> None:
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    fast = precision.prepare(model, DecodeConfig(**{"bf16": False, **setting}), CPU)
    assert fast is not model
    assert list(model.parameters()) == params and all(p.dtype == torch.float32 for p in params)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any("quantized" in type(m).__module__ for m in model.modules())
    if "quantize" in setting:
        kinds = {type(m).__module__ for m in fast.modules()}
        assert "torch.ao.nn.quantized.dynamic.modules.rnn" in kinds
        assert "torch.ao.nn.quantized.dynamic.modules.linear" in kinds
    else:
        assert all(p.dtype == torch.bfloat16 for p in fast.parameters())
    assert precision.prepare(model, DecodeConfig(bf16=False), CPU) is model  # fp32: no copy


@pytest.mark.parametrize("setting", [dict(bf16=True), dict(quantize="int8")], ids=str)
def test_near_equal_logits(setting: dict) -> None:
    """Teacher-forced logits close to fp32 (relative to their spread) and nearly always the same
    best token; a broken layer (zeroed, wrong scale) would be far off."""
    model = small_model()
    fast = precision.prepare(model, DecodeConfig(**{"bf16": False, **setting}), CPU)
    src, src_len, tgt = batch()
    with torch.inference_mode():
        ref, got = model(src, src_len, tgt), fast(src, src_len, tgt).float()
    spread = ref.std().item()
    assert spread > 1.0  # the logits are not all alike
    err = (got - ref).abs().mean().item() / spread
    same = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    print(setting, f"error {err:.4f} of the spread, same best token {same:.3f}")
    assert err < 0.05, err
    assert same > 0.9, same


def test_greedy_search_runs_in_each_precision() -> None:
    model = small_model()
    src, src_len, _ = batch()
    kw = dict(bos=1, eos=2, max_len=max_lengths(src_len, 1.0, 2))
    ref = greedy_search(model, src, src_len, **kw)
    for setting in (dict(bf16=True), dict(quantize="int8")):
        fast = precision.prepare(model, DecodeConfig(**{"bf16": False, **setting}), CPU)
        got = greedy_search(fast, src, src_len, **kw)
        first = sum(x[0].tokens[:2] == y[0].tokens[:2] for x, y in zip(ref, got))
        assert first >= 0.75 * len(ref), (setting, first)  # errors compound later in a random model


@pytest.mark.smoke
@pytest.mark.parametrize("flags", [["--quantize", "int8"], ["--bf16", "true"]], ids=str)
def test_translate_takes_the_precision_options(tiny_checkpoint: Path, tmp_path: Path, flags: list[str]) -> None:
    from seq2seq.cli.translate import main as translate_main

    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("Sep 27 1994\n12 nov 2040\n", encoding="utf-8")
    assert translate_main(["--checkpoint", str(tiny_checkpoint), "--input", str(src), "--output", str(out),
                           *flags]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_from_checkpoint_applies_the_changes(tiny_checkpoint: Path) -> None:
    from seq2seq.translation.translator import Translator

    tr = Translator.from_checkpoint(tiny_checkpoint, quantize="int8")
    assert tr.decode.quantize == "int8"
    assert any("quantized" in type(m).__module__ for m in tr.model.modules())
    assert Translator.from_checkpoint(tiny_checkpoint).decode.quantize == "none"


# Measured on this dates model (6,000 pairs, 7 epochs; 2-core Zen 5, 2026-12-03), greedy test BLEU:
# fp32 96.71, bf16 96.82, int8 96.82. A broken path (a layer zeroed, a wrong scale) scores near 0.
TOLERANCE = {"bf16": 1.0, "int8": 1.0}  # BLEU points below fp32 at most


@pytest.mark.learns
@pytest.mark.parametrize("name", ["bf16", "int8"])
def test_trained_dates_model_keeps_its_score(dates_checkpoint: Path, name: str) -> None:
    from seq2seq.config import load_config
    from seq2seq.data.corpus import load_split
    from seq2seq.translation.evaluation import evaluate_split
    from seq2seq.translation.translator import Translator

    pairs = load_split(load_config(dates_checkpoint / "config.yaml").data, "test")
    src, ref = [s for s, _ in pairs], [t for _, t in pairs]
    scores = {}
    for label, change in (("fp32", dict(bf16=False)), (name, dict(bf16=True) if name == "bf16" else
                                                       dict(quantize="int8"))):
        tr = Translator.from_checkpoint(dates_checkpoint, **change)
        assert precision.resolve(tr.decode, CPU) == label
        scores[label] = evaluate_split(tr, src, ref, beam_size=1).scores
    assert scores["fp32"].bleu > 80, scores["fp32"]
    assert scores[name].bleu >= scores["fp32"].bleu - TOLERANCE[name], (scores["fp32"].bleu, scores[name].bleu)
    print(f"{name}: BLEU {scores[name].bleu:.2f} against fp32 {scores['fp32'].bleu:.2f}; exact match "
          f"{scores[name].exact_match:.1f}% against {scores['fp32'].exact_match:.1f}%")
