"""The output files of ``translate`` and ``evaluate``: checked before any decoding, written whole.

An output that is one of the command's inputs (the same file under any spelling: a symlink,
``./``, ``..``) is refused, and so is one that cannot be written (its directory missing or
not writable, a directory in its place), before decoding starts. A regular file is written to
a hidden temporary file beside it and renamed over it at the end (:func:`open_output`), so a
command that fails half way leaves an earlier output as it was; a special file
(``/dev/stdout``, a named pipe) is written directly.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (``os.path.samefile`` when both exist, else their resolved paths)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: Mapping[str, Path | None], inputs: Mapping[str, Path | None]) -> None:
    """Refuse an output (``{"--output": path}``; None: not asked for) that is an input or another
    output, or that cannot be written; the error names the option and the file."""
    seen: dict[str, Path] = {k: v for k, v in inputs.items() if v is not None}
    for option, path in outputs.items():
        if path is None:
            continue
        for other, used in seen.items():
            if same_file(path, used):
                raise ValueError(f"{option} {path}: is the same file as {other} {used}; write it elsewhere")
        seen[option] = path
        target = Path(os.path.realpath(path))
        if target.is_dir():
            raise ValueError(f"{option} {path}: is a directory")
        if not target.parent.is_dir():
            raise ValueError(f"{option} {path}: directory {path.parent} not found")
        if not _special(path) and not os.access(target.parent, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path}: directory {path.parent} is not writable")


@contextmanager
def open_output(path: Path) -> Iterator[TextIO]:
    """``path`` opened for writing text (UTF-8), replaced only when the block ends without an error.

    A regular file is written to ``.<name>.<pid>.tmp`` beside it, fsynced and renamed over it
    (keeping an existing file's permissions); on an error the temporary file is removed and
    ``path`` is left as it was.
    """
    if _special(path):  # /dev/stdout, a pipe: nothing to rename over
        with open(path, "w", encoding="utf-8") as f:
            yield f
        return
    target = Path(os.path.realpath(path))  # through a symlink: replace the file, not the link
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    _remove_stale(target)
    try:
        f = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed below, on every path
    except OSError as e:
        raise ValueError(f"{path}: cannot write ({e.strerror})") from None
    try:
        if target.exists():
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, target)
    finally:
        f.close()
        tmp.unlink(missing_ok=True)


def _remove_stale(target: Path) -> None:
    """Remove the ``.<name>.<pid>.tmp`` files that killed writers (``kill -9``) left beside
    ``target``: those whose process no longer exists."""
    prefix = f".{target.name}."
    for tmp in target.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):-len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (PermissionError, OverflowError, ValueError):  # another user's live process, or no pid at all
            pass


def _special(path: Path) -> bool:
    """A device, pipe or file-descriptor path (``/dev/stdout`` even when redirected to a file):
    written directly, never replaced by a rename."""
    return str(path).startswith(("/dev/", "/proc/")) or (path.exists() and not path.is_file())
