"""What every command's ``--help`` ends with: example lines (:func:`examples`)."""

from __future__ import annotations

import argparse
from typing import Any


def examples(*lines: str, note: str = "") -> dict[str, Any]:
    """Keyword arguments for :class:`argparse.ArgumentParser`: an epilog of ``note`` (if any) and
    the example command lines, laid out as written."""
    text = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    return {"epilog": f"{note}\n\n{text}" if note else text, "formatter_class": argparse.RawDescriptionHelpFormatter}
