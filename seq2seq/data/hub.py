"""Hugging Face ``datasets`` as a corpus source (``data.source: hf``): a local directory or a hub name.

:func:`open_hf` loads ``data.path`` as a mapping from split to ``Dataset``: a directory written
by ``save_to_disk``, a directory of data files, or a name on the hub. :func:`read_hf` takes
one split's pairs from a ``translation`` column of dicts or from two text columns; a split
asked for as ``validation``/``valid``/``val``/``dev`` that the dataset lacks finds the first
of those it has.

A local directory is always loaded in offline mode. A hub name is loaded in offline mode too
when the environment says so (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``) or a short TCP
connect to the hub fails: the dataset must then be in the local cache, and a load fails in
seconds instead of retrying for ~20 s. ``datasets`` is imported only when an ``hf`` source
is opened: the other sources work without it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..config import DataConfig
from .pairs import CorpusError, Read

_SPLIT_ALIASES = ("validation", "valid", "val", "dev")
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def open_hf(cfg: DataConfig) -> Mapping[str, Any]:
    """Load ``cfg.path`` (a local directory or a hub name) as a mapping from split to Dataset.

    Without a network the hub is not tried (it would retry for ~20 s): the dataset must then
    be in the local cache.
    """
    try:
        import datasets
    except ImportError:
        raise CorpusError(f"{cfg.path}: data.source 'hf' needs the 'datasets' package") from None
    path = Path(cfg.path).expanduser()
    name = cfg.hf_config or None
    if path.is_dir():
        try:
            with _hf_offline():
                if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                    loaded = datasets.load_from_disk(str(path))  # saved with save_to_disk
                else:
                    loaded = datasets.load_dataset(str(path), name)  # a directory of data files
        except Exception as e:  # datasets raises many types; all mean "cannot load this directory"
            raise CorpusError(f"{path}: cannot load dataset directory ({_describe(e)})") from e
        if not isinstance(loaded, Mapping):
            raise CorpusError(f"{path}: a single saved Dataset has no splits; save a DatasetDict "
                              f"(columns: {', '.join(loaded.column_names)})")
        return loaded
    if path.exists():
        raise CorpusError(f"{path}: not a directory (data.source 'hf' needs a dataset directory or hub name)")
    if cfg.path.startswith(("/", ".", "~")) or cfg.path.count("/") > 1:
        raise CorpusError(f"{cfg.path}: dataset directory not found")
    offline = _hub_offline()
    try:
        with _hf_offline() if offline else contextlib.nullcontext():
            loaded = datasets.load_dataset(cfg.path, name)
    except Exception as e:  # as above: any failure to load is reported on one line
        if offline:
            raise CorpusError(f"{cfg.path}: not a local directory, the Hugging Face hub is unreachable, "
                              f"and the dataset is not in the local cache ({_describe(e)})") from e
        raise CorpusError(f"{cfg.path}: cannot load dataset from the hub ({_describe(e)})") from e
    return loaded


def read_hf(loaded: Mapping[str, Any], path: str, split: str, src_key: str, tgt_key: str) -> Read:
    """Pairs from one split: a ``translation`` column of dicts, or columns ``src_key``/``tgt_key``."""
    found = split if split in loaded else None
    if found is None and split in _SPLIT_ALIASES:
        found = next((a for a in _SPLIT_ALIASES if a in loaded), None)
    if found is None:
        raise CorpusError(f"{path}: no split {split!r} (splits: {', '.join(loaded)})")
    ds = loaded[found]
    where = f"{path} [{found}]"
    columns = ds.column_names
    if "translation" in columns:
        languages = list(getattr(ds.features["translation"], "languages", None) or ds.features["translation"])
        for key in (src_key, tgt_key):
            if key not in languages:
                raise CorpusError(f"{where}: column 'translation' has no key {key!r} "
                                  f"(keys: {', '.join(languages)})")
        rows = list(ds["translation"])
        src = [row.get(src_key) for row in rows]
        tgt = [row.get(tgt_key) for row in rows]
    elif src_key in columns and tgt_key in columns:
        src, tgt = list(ds[src_key]), list(ds[tgt_key])
    else:
        raise CorpusError(f"{where}: no column 'translation' and no columns {src_key!r} and {tgt_key!r} "
                          f"(columns: {', '.join(columns)})")
    for key, values in ((src_key, src), (tgt_key, tgt)):
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise CorpusError(f"{where}: row {i}: key {key!r}: expected a string, "
                                  f"got {type(value).__name__}")
    return Read(list(zip(src, tgt)), 0, where)


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def _hub_offline(timeout: float = 2.0) -> bool:
    """True if offline mode is set in the environment or the hub host cannot be reached."""
    if any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in _OFFLINE_ENV):
        return True
    return not _hub_reachable(timeout)


def _hub_reachable(timeout: float) -> bool:
    """A TCP connect to the hub within ``timeout`` seconds (DNS included, hence the thread)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    ok: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


@contextlib.contextmanager
def _hf_offline() -> Iterator[None]:
    """Offline mode for ``datasets`` and ``huggingface_hub``, even if they were imported already
    (both read the environment once, at import)."""
    import datasets.config
    import huggingface_hub.constants

    candidates = ((datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"),
                  (huggingface_hub.constants, "HF_HUB_OFFLINE"))
    flags = [(m, a) for m, a in candidates if hasattr(m, a)]
    saved_flags = [getattr(m, a) for m, a in flags]
    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    try:
        for m, a in flags:
            setattr(m, a, True)
        os.environ.update({k: "1" for k in _OFFLINE_ENV})
        yield
    finally:
        for (m, a), value in zip(flags, saved_flags):
            setattr(m, a, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
