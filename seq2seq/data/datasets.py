"""The public corpora the toolkit can fetch (``python -m seq2seq download NAME``): where each
is, its languages, and its splits' sizes; and the command that fills a missing data folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dataset:
    base_url: str
    langs: tuple[str, ...]
    lines: dict[str, int]  # split -> lines in each of its files


DATASETS = {
    "multi30k": Dataset(
        base_url="https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw",
        langs=("de", "en", "fr"),
        lines={"train": 29000, "val": 1014, "test_2016_flickr": 1000},
    ),
}


def download_command(folder: Path) -> str | None:
    """The command that fills ``folder`` (named after a corpus in :data:`DATASETS`), or None."""
    if folder.name not in DATASETS:
        return None
    default = Path("data") / folder.name
    out = "" if folder == default else f" --out {folder}"
    return f"python -m seq2seq download {folder.name}{out}"
