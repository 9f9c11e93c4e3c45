"""Fetch a public corpus into ``data/``: ``python -m seq2seq download multi30k``.

``python -m seq2seq download multi30k [--out data/multi30k] [--base-url URL] [--langs de en]
[--force] [--timeout SECONDS]`` downloads Multi30k's raw task-1 files,
``{train,val,test_2016_flickr}.{lang}.gz``, from the dataset's public repository (or a
mirror given by ``--base-url``), and checks each: its SHA-256 must be the registry's
(:data:`seq2seq.data.datasets.DATASETS`), and it must be gzip, decode as UTF-8, and hold
the split's known number of lines. Each file's SHA-256 is printed. A file is written to
``NAME.part`` and renamed into place only once it has passed, so a broken download leaves
nothing half-written behind; files already present and valid are kept. A file that has
not arrived within ``--timeout`` seconds (default 900) is given up, however slowly the
server keeps sending; errors name the URL. Then:
``python train.py --config configs/multi30k_de_en.yaml`` (the configs read ``data/multi30k``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import math
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from ..cli.errors import run_command
from ..cli.usage import examples
from ..data.datasets import DATASETS


class DownloadError(RuntimeError):
    """A file that could not be fetched or failed its check (one line: which and why)."""


TIMEOUT_S = 60.0  # the longest one read may wait for the server
DEADLINE_S = 900.0  # the longest one file may take (--timeout); Multi30k's largest is 640 kB
CHUNK = 1 << 16


def count_lines(path: Path, name: str | None = None) -> int:
    """Lines of a gzip text file; DownloadError (naming ``name``, default the file's name) if it
    is not gzip or not UTF-8."""
    name = name or path.name
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
            return sum(1 for _ in f)
    except (OSError, EOFError, zlib.error) as e:
        raise DownloadError(f"{name}: not a complete gzip file ({e})") from None
    except UnicodeDecodeError as e:
        raise DownloadError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _create(part: Path, dest: Path) -> BinaryIO:
    try:
        return open(part, "wb")
    except OSError as e:  # named as the file it becomes, not the temporary
        raise DownloadError(f"{dest}: cannot write ({e.strerror or e})") from None


def fetch(url: str, dest: Path, expected_lines: int, timeout: float = TIMEOUT_S, deadline: float = DEADLINE_S,
          sha256: str | None = None) -> str:
    """Download ``url`` to ``dest`` through ``dest.part`` (the server's bytes, unchanged); check
    the SHA-256 (when known) and the line count; rename; -> the SHA-256.

    The whole file must arrive within ``deadline`` seconds (checked after every read; a read
    waits at most ``timeout`` seconds, or ``deadline`` when that is shorter), however slowly
    the server keeps sending."""
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    size = 0
    start = time.monotonic()
    try:
        try:
            with urllib.request.urlopen(url, timeout=min(timeout, deadline)) as response, _create(part, dest) as f:
                while True:
                    if time.monotonic() - start > deadline:
                        raise DownloadError(f"{url}: not downloaded within --timeout {deadline:g} s "
                                            f"({size:,} bytes arrived); try again, or a larger --timeout")
                    chunk = response.read1(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e or type(e).__name__
            raise DownloadError(f"{url}: cannot download ({reason})") from None
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256:
            raise DownloadError(f"{url}: SHA-256 {digest}, expected {sha256} (not the file the registry knows)")
        n = count_lines(part, url)
        if n != expected_lines:
            raise DownloadError(f"{url}: {n} lines, expected {expected_lines} (a wrong or truncated file)")
        os.replace(part, dest)
        return digest
    finally:
        part.unlink(missing_ok=True)


def download(name: str, out: Path, base_url: str | None = None, langs: Sequence[str] | None = None,
             force: bool = False, log: Callable[[str], object] = print, deadline: float = DEADLINE_S) -> list[Path]:
    """Every split of ``name`` for ``langs`` into ``out``; -> the files, all checked (line counts,
    and SHA-256 where the registry knows it). Each file's SHA-256 is logged."""
    if not (math.isfinite(deadline) and deadline > 0):
        raise DownloadError(f"--timeout must be a positive number of seconds, got {deadline:g}")
    ds = DATASETS[name]
    langs = tuple(langs or ds.langs[:2])
    unknown = [lang for lang in langs if lang not in ds.langs]
    if unknown:
        raise DownloadError(f"--langs: {name} has no {', '.join(unknown)} (it has {', '.join(ds.langs)})")
    base = (base_url or ds.base_url).rstrip("/")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for split, lines in ds.lines.items():
        for lang in langs:
            dest = out / f"{split}.{lang}.gz"
            files.append(dest)
            known = ds.sha256.get(dest.name)
            if dest.exists() and not force:
                try:
                    if count_lines(dest) == lines:
                        digest = sha256_of(dest)
                        if known is None or digest == known:
                            log(f"{dest}: present, {lines} lines, sha256 {digest}")
                            continue
                        log(f"{dest}: present but not the expected file (SHA-256 {digest}, expected {known}); "
                            "downloading again")
                    else:
                        log(f"{dest}: present but not the expected {lines} lines; downloading again")
                except (DownloadError, OSError):
                    log(f"{dest}: present but not the expected {lines} lines; downloading again")
            digest = fetch(f"{base}/{dest.name}", dest, lines, deadline=deadline, sha256=known)
            log(f"{dest}: {lines} lines, sha256 {digest}" + (" (as the registry knows it)" if known else ""))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq download", description=__doc__.split("\n\n")[0],
        **examples(
            "python -m seq2seq download multi30k",
            "python -m seq2seq download multi30k --langs de en fr --out corpora/multi30k",
        ))
    p.add_argument("name", choices=sorted(DATASETS))
    p.add_argument("--out", type=Path, default=None, help="directory (default: data/<name>)")
    p.add_argument("--base-url", default=None, help="where the files are (default: the dataset's public repository)")
    p.add_argument("--langs", nargs="+", default=None, help="languages (default: de en)")
    p.add_argument("--force", action="store_true", help="download again even where a valid file is present")
    p.add_argument("--timeout", type=float, default=DEADLINE_S, metavar="SECONDS",
                   help=f"the longest one file may take to download (default {DEADLINE_S:g})")
    args = p.parse_args(argv)

    def body() -> int:
        out = args.out or Path("data") / args.name
        download(args.name, out, args.base_url, args.langs, args.force, deadline=args.timeout)
        where = "" if out == Path("data") / args.name else f" data.path={out}"
        print(f"done: python train.py --config configs/multi30k_de_en.yaml{where}")
        return 0

    return run_command(body, (DownloadError,))


if __name__ == "__main__":
    sys.exit(main())
