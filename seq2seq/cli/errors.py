"""User errors, and how a command reports them.

Any problem a user can cause (a bad config key, a missing file, a crafted checkpoint, CUDA
asked for but absent) ends a command with one line ``error: ...`` on stderr and exit status 1,
never a traceback: every command's ``main`` runs its work through :func:`run_command`.

This module is light (the error classes are imported only when an error is being reported)
and imports no command, so any command may use it. An error that only some commands raise is
theirs to name in ``extra_errors``: the commands that train name
:class:`~seq2seq.training.loop.TrainError`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

ErrorTypes = tuple[type[BaseException], ...]
MoreErrors = ErrorTypes | Callable[[], ErrorTypes]  # a function: called (its imports made) only on an error


def user_errors(extra_errors: MoreErrors = ()) -> ErrorTypes:
    """The exceptions that are the user's doing, not a bug (shown as one line, not a traceback):
    those of configs, corpora, tokenizers, checkpoints, run directories and devices,
    ``extra_errors``, and any OSError or ValueError."""
    from ..config import ConfigError
    from ..data.corpus import CorpusError
    from ..data.tokenization import TokenizerError
    from ..model.checkpoint import CheckpointError
    from ..runtime.device import DeviceError
    from ..training.rundir import RunDirError

    extra = extra_errors() if callable(extra_errors) else extra_errors
    return (ConfigError, CorpusError, TokenizerError, CheckpointError, RunDirError, *extra, DeviceError, OSError,
            ValueError)


def run_command(main: Callable[[], int], extra_errors: MoreErrors = ()) -> int:
    """Run a command's work, ``main``; turn a user error (:func:`user_errors`) into one line
    ``error: ...`` on stderr and exit status 1. Ctrl-C gives ``interrupted`` and 130, a closed
    pipe 0."""
    previous = _on_sigterm(_terminate)
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:  # SIGTERM: the same clean exit as Ctrl-C (temporary outputs removed, nothing replaced)
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        return 0
    except user_errors(extra_errors) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, OSError) and e.filename:
            msg = f"{e.filename}: {e.strerror or msg}"
        print(f"error: {excerpt(msg)}", file=sys.stderr)
        return 1
    finally:
        _on_sigterm(previous)


class Terminated(BaseException):
    """SIGTERM arrived (raised by the handler :func:`run_command` installs)."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM (main thread only); -> the previous one (None: unchanged)."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def excerpt(msg: str, head: int = 400, tail: int = 200) -> str:
    """``msg``, its middle cut when it is long: a message may echo a value of megabytes."""
    cut = len(msg) - head - tail
    return msg if cut <= 20 else f"{msg[:head]} ...[{cut:,} characters cut]... {msg[-tail:]}"


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """A user error unless each option ``names`` of ``args`` is unset or at least 1."""
    for name in names:
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def require_stdout(instead: str) -> None:
    """A user error if standard output is closed (``>&-``: Python sets ``sys.stdout`` to None,
    and ``print`` then drops everything without a word), found before any work is done.
    ``instead`` names the option that writes a file instead."""
    if sys.stdout is None:
        raise ValueError(f"standard output is closed; give {instead} to write to a file")
