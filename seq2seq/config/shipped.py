"""The configs that ship with the toolkit, found by name: ``--config multi30k_de_en_attention``.

In a checkout they are the repository's ``configs/`` folder; an installed wheel carries the
same files inside the package (``seq2seq/configs/``, mapped from ``configs/`` in
``pyproject.toml``). A config path that names an existing file is that file; otherwise a bare
name (``dates``, ``dates.yaml``, ``sweeps/dates``) is looked up among the shipped ones
(:func:`resolve`, which :func:`seq2seq.config.load_config` applies to every path it is given).
"""

from __future__ import annotations

from pathlib import Path

from .sections import ConfigError

_PACKAGE = Path(__file__).resolve().parents[1]
FOLDERS = (_PACKAGE / "configs", _PACKAGE.parent / "configs")  # an installed wheel; a checkout


def shipped_folder() -> Path | None:
    """Where the shipped configs are (the first of :data:`FOLDERS` that holds ``dates.yaml``), or None."""
    return next((f for f in FOLDERS if (f / "dates.yaml").is_file()), None)


def shipped_names() -> list[str]:
    """The shipped configs' names (``dates``, ``sweeps/dates``, ...), sorted."""
    folder = shipped_folder()
    if folder is None:
        return []
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def top_level_names() -> list[str]:
    """The shipped configs outside sweeps/: those a run can train (``dates``, ``multi30k_de_en``, ...)."""
    return [n for n in shipped_names() if "/" not in n]


def shipped(name: str | Path) -> Path | None:
    """The shipped config named ``name`` (with or without ``.yaml``), or None."""
    path, folder = Path(name), shipped_folder()
    if folder is None or path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    relative = path if path.suffix in (".yaml", ".yml") else path.with_name(path.name + ".yaml")
    return folder / relative if (folder / relative).is_file() else None


def resolve(name: str | Path) -> Path:
    """``name`` if it exists (or is not a shipped name: the caller's error then names it), else the
    shipped config of that name."""
    path = Path(name)
    return path if path.exists() else (shipped(path) or path)


def find_config(name: str | Path) -> Path:
    """The config file ``name`` names (:func:`resolve`); a ConfigError naming both places and the
    shipped names if neither has it."""
    path = resolve(name)
    if path.is_file():
        return path
    names = ", ".join(top_level_names()) or "none found"
    raise ConfigError(f"--config {name}: no such file, and no shipped config of that name (shipped: {names})")


def default_config() -> Path:
    """The config of a run given none: the shipped ``dates.yaml`` (about a minute on a CPU)."""
    return find_config("dates")
