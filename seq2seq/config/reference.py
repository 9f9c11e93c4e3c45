"""The configuration reference: every section, every field, its type, default and description.

The reference is read from the typed config itself, so it cannot fall behind it: the sections
are those of :data:`seq2seq.config.SECTIONS`, the fields, types and defaults those of each
section's dataclass, and the descriptions come from each class's source
(:func:`inspect.getsource`), wherever the class is defined. A field's description is, joined in
this order:

* the comment lines just above the field (no blank line between), e.g.::

      # how training batches are made: "source", each batch of one source length ...
      batch_by: Literal["source", "target"] = "target"

* the field's trailing comment, ``max_len: int = 100  # tokens per side; ...``;
* a string literal just below the field (an attribute docstring), if any.

A comment block between two fields that both have trailing comments continues the first one's
comment (a trailing comment too long for its line), so it describes the field above it. The
section's own description is its class docstring.

:func:`markdown` returns the page; the documentation site builds it with
``docs/hooks/config_reference.py`` (``mkdocs build``), so it is never stored and cannot drift.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
import typing
from dataclasses import dataclass
from typing import Any, Literal

from . import SECTIONS, Config


@dataclass(frozen=True)
class FieldDoc:
    """One field of a section: its dotted key, type and default as a config file writes them."""

    section: str
    name: str
    type: str
    default: str
    description: str

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


@dataclass(frozen=True)
class SectionDoc:
    name: str
    summary: str  # the class docstring, as Markdown
    fields: tuple[FieldDoc, ...]


def _comments(source: str) -> dict[int, str]:
    """Line number (1-based) -> the text of the comment on that line, ``#`` and spaces stripped."""
    found: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found[tok.start[0]] = tok.string.lstrip("#").strip()
    return found


def _descriptions(cls: type) -> dict[str, str]:
    """Field name -> its description, read from ``cls``'s source (see the module's docstring)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments = _comments(source)
    classdef = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef))

    def standalone(line: int) -> bool:  # a line holding only a comment
        return line in comments and lines[line - 1].lstrip().startswith("#")

    fields: list[tuple[str, int, int, str, str]] = []  # name, line before its comments, last line, above, trailing
    for i, node in enumerate(classdef.body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        end = node.end_lineno or node.lineno
        trailing = " ".join(comments[n] for n in range(node.lineno, end + 1) if n in comments and not standalone(n))
        block: list[str] = []
        line = node.lineno - 1
        while line >= 1 and standalone(line):
            block.insert(0, comments[line])
            line -= 1
        after = classdef.body[i + 1] if i + 1 < len(classdef.body) else None
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            trailing = " ".join(part for part in (trailing, inspect.cleandoc(after.value.value)) if part)
        fields.append((node.target.id, line, end, " ".join(block), trailing))

    out: dict[str, str] = {}
    for i, (name, before_block, _end, above, trailing) in enumerate(fields):
        if above and trailing and i > 0:
            prev_name, _, prev_end, _, prev_trailing = fields[i - 1]
            if prev_trailing and prev_end == before_block:  # the block continues the field above's comment
                out[prev_name] = f"{out[prev_name]} {above}"
                above = ""
        out[name] = " ".join(part for part in (above, trailing) if part)
    return out


def _value(v: Any) -> str:
    """A value as a YAML config file would write it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


def _type(tp: Any) -> str:
    """An annotation as a reader of a config file needs it: ``int``, ``list of str``, the choices."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " \\| ".join(f"`{_value(c).strip(chr(34))}`" for c in typing.get_args(tp))
    if origin in (tuple, list):
        (item, *_) = typing.get_args(tp)
        return f"list of `{_type(item).strip('`')}`"
    return f"`{getattr(tp, '__name__', str(tp))}`"


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return _value(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return _value(f.default_factory())
    return "(required)"


_CODE = re.compile(r"(`+)(.+?)\1")
_SPECIAL = re.compile(r"([\\*_\[\]{}<>|])")  # what Markdown would read as markup or a table's column break


def _escape(text: str) -> str:
    """Plain text safe in a Markdown table cell: code spans kept, the rest escaped."""
    out, pos = [], 0
    for m in _CODE.finditer(text):
        out.append(_SPECIAL.sub(r"\\\1", text[pos:m.start()]))
        out.append(m.group(0).replace("|", "\\|"))
        pos = m.end()
    out.append(_SPECIAL.sub(r"\\\1", text[pos:]))
    return "".join(out)


def _docstring(cls: type) -> str:
    """A class docstring (reStructuredText-ish) as Markdown: ``x`` -> `x`, bullet lists kept."""
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(f"{cls.__name__}("):  # the signature dataclasses supply when there is no docstring
        return ""
    doc = re.sub(r"``(.+?)``", r"`\1`", doc)
    doc = re.sub(r":(?:class|mod|func|data):`~?(.+?)`", r"`\1`", doc)
    out: list[str] = []
    in_list = False
    for raw in doc.splitlines():
        line = raw.strip()
        if line.startswith("* "):
            if not in_list and out and out[-1]:
                out.append("")
            out.append(line)
            in_list = True
        elif in_list and line and raw.startswith("  "):
            out.append("  " + line)  # a list item's continuation
        else:
            if in_list and line:
                out.append("")
            in_list = False
            out.append(line)
    return "\n".join(out).strip()


def sections() -> list[SectionDoc]:
    """Every section of :data:`SECTIONS`, in order, with its fields in declaration order."""
    docs = []
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        described = _descriptions(cls)
        fields = tuple(FieldDoc(name, f.name, _type(hints[f.name]), _default(f), described.get(f.name, ""))
                       for f in dataclasses.fields(cls))
        docs.append(SectionDoc(name, _docstring(cls), fields))
    return docs


def undescribed() -> list[str]:
    """The dotted keys of the fields that have no description."""
    return [f.key for s in sections() for f in s.fields if not f.description]


def markdown() -> str:
    """The reference page."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from the typed config (seq2seq/config/reference.py) when the site is built: "
        "edit the comments in the config's dataclasses, not this page. -->",
        "",
        _docstring(Config),
        "",
        "Every key below can be set in a config file (`section: {key: value}`) or on the command line "
        "(`section.key=value`); see [Configuration](configuration.md) for how files and overrides combine. "
        "Types are checked: an integer field refuses `1.5`, a choice field refuses anything not listed, and "
        "every number must be finite.",
        "",
        "Sections: " + ", ".join(f"[`{s.name}`](#{s.name})" for s in sections()) + ".",
    ]
    for s in sections():
        out += ["", f"## `{s.name}` {{#{s.name}}}", ""]
        if s.summary:
            out += [s.summary, ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for f in s.fields:
            description = _escape(f.description) if f.description else "*(no description yet)*"
            default = "`" + f.default.replace("|", "\\|") + "`"
            out.append(f"| `{f.key}` {{#{f.section}-{f.name}}} | {f.type} | {default} | {description} |")
    return "\n".join(out) + "\n"
