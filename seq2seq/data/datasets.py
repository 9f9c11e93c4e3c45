"""The public corpora the toolkit can fetch (``python -m seq2seq download NAME``): where each
is, its languages, and its splits' sizes; and the command that fills a missing data folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Dataset:
    base_url: str
    langs: tuple[str, ...]
    lines: dict[str, int]  # split -> lines in each of its files
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> its SHA-256 (checked when known)


DATASETS = {
    "multi30k": Dataset(
        base_url="https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw",
        langs=("de", "en", "fr"),
        lines={"train": 29000, "val": 1014, "test_2016_flickr": 1000},
        # the files of base_url (the repository's master branch, commit a3d2e0d; unchanged since c9be912)
        sha256={
            "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
            "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
            "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
            "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
            "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
            "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
            "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
            "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
            "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
        },
    ),
}


def download_command(folder: Path) -> str | None:
    """The command that fills ``folder`` (named after a corpus in :data:`DATASETS`), or None."""
    if folder.name not in DATASETS:
        return None
    default = Path("data") / folder.name
    out = "" if folder == default else f" --out {folder}"
    return f"python -m seq2seq download {folder.name}{out}"
