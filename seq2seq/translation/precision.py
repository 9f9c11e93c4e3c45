"""The model a translator decodes with: fp32, bf16 or dynamic int8 (``decode.bf16``,
``decode.quantize``).

Decoding speed on a CPU is the speed of the LSTM steps and the output layer's matrix
products. Where the CPU multiplies bf16 natively (AVX512-BF16, AMX), a bf16 copy of the
weights runs those at about twice the fp32 rate; search still takes the log-softmax and
accumulates the beam scores in fp32. bf16 is a copy of the weights, cast once, not autocast,
which would cast every weight again at every step. int8 is PyTorch's dynamic quantization
(``torch.ao.quantization.quantize_dynamic``): weights stored as int8, activations quantized
on the fly, of every ``nn.LSTM``/``nn.GRU`` and ``nn.Linear`` (a tanh ``nn.RNN`` stays fp32:
PyTorch has no dynamic int8 RNN); the embeddings and the attention's softmax stay fp32. The
model given is never changed: training and validation keep their own.
"""

from __future__ import annotations

import copy
import warnings
from typing import Literal, TypeVar, cast

import torch
from torch import nn

from ..config import DecodeConfig
from ..runtime.device import cpu_bf16_flags, use_bf16

Precision = Literal["fp32", "bf16", "int8"]
M = TypeVar("M", bound=nn.Module)


def resolve(decode: DecodeConfig, device: torch.device) -> Precision:
    """The precision ``decode`` asks for on ``device``; ValueError for int8 off the CPU."""
    if decode.quantize == "int8":
        if device.type != "cpu":
            raise ValueError(f"decode.quantize: int8 runs on the CPU only, not on {device.type} "
                             "(--quantize none, or --device cpu)")
        return "int8"
    return "bf16" if use_bf16(decode.bf16, device) else "fp32"


def prepare(model: M, decode: DecodeConfig, device: torch.device) -> M:
    """A model for decoding in the precision ``decode`` asks for: ``model`` itself for fp32,
    else a copy (bf16 weights, or int8 LSTM and linear layers) in eval mode."""
    precision = resolve(decode, device)
    if precision == "fp32":
        return model
    if precision == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    with warnings.catch_warnings():  # torch.ao's eager quantization says it moves to torchao; it works here
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        layers = {nn.LSTM, nn.GRU, nn.Linear}
        return cast(M, torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), layers, dtype=torch.qint8))


def describe(decode: DecodeConfig, device: torch.device) -> str:
    """``"bf16 (avx512_bf16)"``, ``"int8 (dynamic)"`` or ``"fp32"``: for the commands' logs."""
    precision = resolve(decode, device)
    if precision == "bf16" and device.type == "cpu":
        flags = cpu_bf16_flags()
        return f"bf16 ({', '.join(flags) if flags else 'emulated: no bf16 units'})"
    return "int8 (dynamic quantization)" if precision == "int8" else precision
