"""A ``/v1/translate`` request: its limits (:class:`Limits`), what it asks of search
(:class:`Settings`), and its body read and checked (:func:`read_body`, :func:`parse_request`)
before it is queued. A request refused is a :class:`RequestError`: an HTTP status and one line.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ..cli.errors import excerpt


@dataclass(frozen=True)
class Limits:
    """What one request may ask; anything over is refused with a 4xx naming the limit."""

    max_lines: int = 64  # lines in one request
    max_chars: int = 1000  # characters in one line
    max_body_bytes: int = 1 << 20  # request body
    max_beam: int = 16

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"--{f.name.replace('_', '-')} must be >= 1, got {getattr(self, f.name)}")


@dataclass(frozen=True)
class Settings:
    """What a request asks of search; requests with equal settings share a batch (the batcher's key)."""

    beam: int
    nbest: int
    attention: bool


class RequestError(Exception):
    """A request refused: HTTP ``status`` and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


FIELDS = ("text", "beam", "nbest", "attention")


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _int_field(obj: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = obj.get(name, default)
    if value is None:
        value = default
    if type(value) is not int:
        raise RequestError(422, f"{name}: must be an integer, got {_json_type(value)}")
    if not low <= value <= high:  # a number of 4,000 digits is JSON too: its middle cut
        raise RequestError(422, f"{name}: must be in [{low}, {high}], got {excerpt(str(value), 20, 6)}")
    return value


def parse_request(body: bytes, limits: Limits, default_beam: int, has_attention: bool
                  ) -> tuple[list[str], Settings]:
    """A ``/v1/translate`` body -> its lines and settings, or :class:`RequestError`: 400 for a
    body that is not UTF-8 JSON, 422 for a field of the wrong type or over a limit."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the body is not valid UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise RequestError(400, f"the body is not JSON: {excerpt(str(e), 120, 40)}") from None
    if not isinstance(obj, dict):
        raise RequestError(422, f"the body must be a JSON object, got {_json_type(obj)}")
    unknown = [k for k in obj if k not in FIELDS]
    if unknown:
        raise RequestError(422, f"unknown field {excerpt(unknown[0], 40, 10)!r}; the fields: {', '.join(FIELDS)}")
    if "text" not in obj:
        raise RequestError(422, "text: required, a list of lines (strings)")
    lines = obj["text"]
    if not isinstance(lines, list):
        raise RequestError(422, f"text: must be a list of lines (strings), got {_json_type(lines)}")
    if len(lines) > limits.max_lines:
        raise RequestError(422, f"text: {len(lines)} lines, over the limit of {limits.max_lines}")
    for i, line in enumerate(lines):
        if not isinstance(line, str):
            raise RequestError(422, f"text[{i}]: must be a string, got {_json_type(line)}")
        if len(line) > limits.max_chars:
            raise RequestError(422, f"text[{i}]: {len(line)} characters, over the limit of {limits.max_chars}")
        if "\n" in line or "\r" in line:
            raise RequestError(422, f"text[{i}]: holds a line break; send one line per item")
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(422, f"text[{i}]: not valid Unicode (an unpaired surrogate)") from None
    beam = _int_field(obj, "beam", default_beam, 1, limits.max_beam)
    nbest = _int_field(obj, "nbest", 1, 1, beam)
    attention = obj.get("attention", False)
    if type(attention) is not bool:
        raise RequestError(422, f"attention: must be true or false, got {_json_type(attention)}")
    if attention and not has_attention:
        raise RequestError(422, "attention: this model has no attention (model.attention: none)")
    return lines, Settings(beam, nbest, attention)


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes before it is all read."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestError(413, f"the body is {int(length)} bytes, over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
