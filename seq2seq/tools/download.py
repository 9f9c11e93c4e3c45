"""Fetch a public corpus into ``data/``: ``python -m seq2seq download multi30k``.

``python -m seq2seq download multi30k [--out data/multi30k] [--base-url URL] [--langs de en]
[--force]`` downloads Multi30k's raw task-1 files, ``{train,val,test_2016_flickr}.{lang}.gz``,
from the dataset's public repository (or a mirror given by ``--base-url``), and checks
each: it must be gzip, decode as UTF-8, and hold the split's known number of lines. A
file is written to ``NAME.part`` and renamed into place only once it has passed, so a
broken download leaves nothing half-written behind; files already present and valid are
kept. Then: ``python train.py --config configs/multi30k_de_en.yaml`` (the configs read ``data/multi30k``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from ..cli.errors import run_command
from ..cli.usage import examples
from ..data.datasets import DATASETS


class DownloadError(RuntimeError):
    """A file that could not be fetched or failed its check (one line: which and why)."""


TIMEOUT_S = 60.0


def count_lines(path: Path) -> int:
    """Lines of a gzip text file; DownloadError if it is not gzip or not UTF-8."""
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
            return sum(1 for _ in f)
    except (OSError, EOFError, zlib.error) as e:
        raise DownloadError(f"{path.name}: not a complete gzip file ({e})") from None
    except UnicodeDecodeError as e:
        raise DownloadError(f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def fetch(url: str, dest: Path, expected_lines: int, timeout: float = TIMEOUT_S) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``; check the line count; rename."""
    part = dest.with_name(dest.name + ".part")
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
                while chunk := response.read(1 << 16):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise DownloadError(f"{url}: cannot download ({reason})") from None
        n = count_lines(part)
        if n != expected_lines:
            raise DownloadError(f"{url}: {n} lines, expected {expected_lines} (a wrong or truncated file)")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def download(name: str, out: Path, base_url: str | None = None, langs: Sequence[str] | None = None,
             force: bool = False, log: Callable[[str], object] = print) -> list[Path]:
    """Every split of ``name`` for ``langs`` into ``out``; -> the files, all checked."""
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
            if dest.exists() and not force:
                try:
                    if count_lines(dest) == lines:
                        log(f"{dest}: present, {lines} lines")
                        continue
                except DownloadError:
                    pass
                log(f"{dest}: present but not the expected {lines} lines; downloading again")
            fetch(f"{base}/{dest.name}", dest, lines)
            log(f"{dest}: {lines} lines")
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
    args = p.parse_args(argv)

    def body() -> int:
        out = args.out or Path("data") / args.name
        download(args.name, out, args.base_url, args.langs, args.force)
        where = "" if out == Path("data") / args.name else f" data.path={out}"
        print(f"done: python train.py --config configs/multi30k_de_en.yaml{where}")
        return 0

    return run_command(body, (DownloadError,))


if __name__ == "__main__":
    sys.exit(main())
