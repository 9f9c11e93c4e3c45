"""MkDocs hook: the configuration reference page, generated from the typed config at every build.

``configuration-reference.md`` is never written to disk or committed: each build makes it from
``seq2seq.config.reference`` (the sections of ``seq2seq.config.SECTIONS`` and their fields'
comments), so the page cannot fall behind the config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

PAGE = "configuration-reference.md"


def on_files(files: Files, config: Any) -> Files:
    root = Path(config.config_file_path).resolve().parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # this checkout's package, not another installed copy
    from seq2seq.config import reference

    where = Path(reference.__file__).resolve()
    if root not in where.parents:
        raise PluginError(f"config_reference: imported seq2seq from {where}, not from {root}")
    if files.get_file_from_path(PAGE) is not None:
        raise PluginError(f"config_reference: docs/{PAGE} exists; it is generated, delete it")
    files.append(File.generated(config, PAGE, content=reference.markdown()))
    return files
