"""MkDocs hook: the site's home page is the repository's README.md, generated at every build.

The README links into the documentation as ``docs/<page>.md``; on the site those pages sit beside
the home page, so the ``docs/`` prefix is dropped from link targets. Nothing is written to disk.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

PAGE = "index.md"
LINK = re.compile(r"(\]\()docs/")  # ](docs/page.md) -> ](page.md)


def on_files(files: Files, config: Any) -> Files:
    readme = Path(config.config_file_path).resolve().parent / "README.md"
    if files.get_file_from_path(PAGE) is not None:
        raise PluginError(f"readme_home: docs/{PAGE} exists; the home page is made from README.md, delete it")
    files.append(File.generated(config, PAGE, content=LINK.sub(r"\1", readme.read_text(encoding="utf-8"))))
    return files
