"""The precision options that translate.py, evaluate and the server share: ``--bf16`` and
``--quantize``, overriding the checkpoint's ``decode.bf16`` and ``decode.quantize``."""

from __future__ import annotations

import argparse
from typing import Any

_BF16 = {"auto": "auto", "true": True, "false": False}


def add_precision_options(p: argparse.ArgumentParser) -> None:
    """``--bf16 {auto,true,false}`` and ``--quantize {none,int8}`` (default: the checkpoint's)."""
    p.add_argument("--bf16", choices=tuple(_BF16), default=None,
                   help="decode with bf16 weights: auto = where the CPU has native bf16 or on CUDA "
                        "(default: the checkpoint's decode.bf16, normally auto)")
    p.add_argument("--quantize", choices=("none", "int8"), default=None,
                   help="int8: dynamic int8 LSTM and linear layers, on the CPU (default: the checkpoint's "
                        "decode.quantize, normally none)")


def precision_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The decode fields the options given set: ``{"bf16": ..., "quantize": ...}``, those given only."""
    changes: dict[str, Any] = {}
    if args.bf16 is not None:
        changes["bf16"] = _BF16[args.bf16]
    if args.quantize is not None:
        changes["quantize"] = args.quantize
    return changes
