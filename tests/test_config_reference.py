"""The configuration reference (seq2seq/config/reference.py), which the documentation site builds
from the typed config: every field of every section is on the page, and every field has a
description in the config's source."""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from seq2seq.config import SECTIONS
from seq2seq.config import reference as ref

ROW = re.compile(r"^\| `(?P<key>[a-z_]+\.[a-z_0-9]+)` ")


def rows(page: str) -> dict[str, str]:
    """Dotted key -> its table row."""
    return {m["key"]: line for line in page.splitlines() if (m := ROW.match(line))}


def test_every_field_of_every_section_is_on_the_page() -> None:
    page = ref.markdown()
    on_page = rows(page)
    expected = [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
    assert list(on_page) == expected  # every field, once, in the config's order
    for name in SECTIONS:
        assert f"## `{name}` {{#{name}}}" in page


def test_every_field_has_a_description() -> None:
    """Each field needs a comment in its section's source: on the lines just above it, or after it
    on its line (see seq2seq/config/reference.py)."""
    missing = ref.undescribed()
    assert not missing, f"{len(missing)} config fields have no description: {', '.join(missing)}"


def test_rows_are_well_formed() -> None:
    """Four cells a row whatever a description holds (a | or markup is escaped), and the types and
    defaults read as a config file writes them."""
    on_page = rows(ref.markdown())
    for key, line in on_page.items():
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        assert len(cells) == 4, (key, line)
    assert "`auto` \\| `true` \\| `false`" in on_page["train.bf16"]
    assert '`"auto"`' in on_page["train.bf16"]
    assert "| `int` | `128` |" in on_page["train.batch_size"]
    assert "| list of `str` | `[]` |" in on_page["tracking.tags"]
    assert "| `bool` | `true` |" in on_page["model.peeky"]


def test_the_reference_reads_the_sections_through_the_public_mapping() -> None:
    """It must keep working when the config's modules are split: it imports only the package's public names."""
    tree = ast.parse(Path(ref.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert imported == {None}, imported  # from . import SECTIONS, Config


# The comment conventions, on classes defined here (inspect.getsource reads this file).

@dataclass(frozen=True)
class _Example:
    """An example section."""

    plain: int = 1
    trailing: int = 2  # on its line
    # above it,
    # over two lines
    above: str = "x"
    both: float = 0.5  # a trailing comment that goes on
    # on the next line, so it continues the field above
    next_one: bool = True  # its own comment

    choice: Literal["a", "b"] = "a"  # after a blank line
    with_docstring: int = 3
    """An attribute docstring."""

    def method(self) -> int:  # not a field
        return self.plain


def test_comment_conventions() -> None:
    described = ref._descriptions(_Example)
    assert described == {
        "plain": "",
        "trailing": "on its line",
        "above": "above it, over two lines",
        "both": "a trailing comment that goes on on the next line, so it continues the field above",
        "next_one": "its own comment",
        "choice": "after a blank line",
        "with_docstring": "An attribute docstring.",
    }


def test_escaping_keeps_code_spans() -> None:
    assert ref._escape("a|b <out> `x|y` *z*") == "a\\|b \\<out\\> `x\\|y` \\*z\\*"
