"""Shared by the server's tests: optional packages, a real server in a subprocess, a free port.

A test that needs an optional package (the ``[serve]`` or ``[browser]`` extra, Debian's
chromium) is skipped with the reason where it is missing, except under CI (``CI=true``),
where a missing one is a failure: CI installs them, and a test that silently stops running
there would hide a regression.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SEQ2SEQ_CHROMIUM", "/usr/bin/chromium")


def missing_or_skip(modules: tuple[str, ...] = (), programs: tuple[str, ...] = (), what: str = "") -> None:
    """Skip the calling module (fail under CI) unless every module imports and every program exists."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    missing += [p for p in programs if shutil.which(p) is None and not Path(p).is_file()]
    if not missing:
        return
    reason = f"{what} needs {', '.join(missing)} (pip install -e '.[serve,browser]'; apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(checkpoint: Path, log: Path, *args: str, timeout: float = 90
                   ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m seq2seq serve`` on a free loopback port, its output in the file ``log``:
    -> (its base URL, the process), once /health answers; stopped (SIGINT, then killed) on exit."""
    port = free_port()
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "seq2seq", "serve", "--checkpoint", str(checkpoint),
                                 "--port", str(port), "--device", "cpu", *args],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}: {log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /health within {timeout} s")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
