"""The real server (uvicorn in a subprocess, on a loopback port): load, disconnects, bodies
over the limit, and what it logs. Bounded in count and time; every test stops the server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_support import missing_or_skip, running_server

missing_or_skip(("fastapi", "uvicorn", "httpx"), what="the live server's tests")

import httpx  # noqa: E402

from seq2seq.translation.translator import Translator  # noqa: E402

pytestmark = pytest.mark.smoke

LINES = ["march 3, 2011", "TUESDAY, SEPTEMBER 27, 1994", "5/17/1953", "x", "17.05.1953", "Wed, Jan 1, 2020",
         "12 nov 2040", "", "1994/09/27", "1 1 1", "sat 3 june 1911", "Dec 31, 1999"]
CLIENTS, REQUESTS, BEAM = 32, 50, 3


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("serve_live") / "server.log"
    with running_server(tiny_checkpoint, log, "--max-wait-ms", "5") as (url, _):
        yield url, log


async def _load(url: str, clients: int, requests: int) -> list[tuple[int, str, dict[str, Any]]]:
    """``clients`` concurrent clients, each sending ``requests`` one-line requests in turn."""
    async def client(c: int, http: httpx.AsyncClient) -> list[tuple[int, str, dict[str, Any]]]:
        out = []
        for r in range(requests):
            line = LINES[(c * requests + r) % len(LINES)]
            response = await http.post(f"{url}/v1/translate", json={"text": [line], "beam": BEAM})
            out.append((response.status_code, line, response.json()))
        return out

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        per_client = await asyncio.wait_for(asyncio.gather(*(client(c, http) for c in range(clients))), 300)
    return [answer for answers in per_client for answer in answers]


def test_load_every_request_answered_as_offline(server: tuple[str, Path], tiny_checkpoint: Path) -> None:
    url, _ = server
    offline = dict(zip(LINES, Translator.from_checkpoint(tiny_checkpoint).translate_best(LINES, beam_size=BEAM)))
    start = time.perf_counter()
    answers = asyncio.run(_load(url, CLIENTS, REQUESTS))
    seconds = time.perf_counter() - start
    assert len(answers) == CLIENTS * REQUESTS
    assert all(status == 200 for status, _, _ in answers), [a for a in answers if a[0] != 200][:3]
    assert [a["translations"][0]["text"] for _, _, a in answers] == [offline[line] for _, line, _ in answers]
    print(f"{CLIENTS} clients x {REQUESTS} requests: {seconds:.1f} s")


def _raw(url: str, data: bytes, *, read: bool = True) -> bytes:
    """Send ``data`` on a fresh connection; -> what came back until the server closed (or b"")."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        if not read:
            return b""
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _status_and_body(reply: bytes) -> tuple[int, Any]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else None


def _still_serving(url: str) -> None:
    assert httpx.get(f"{url}/health", timeout=30).json() == {"status": "ok"}
    r = httpx.post(f"{url}/v1/translate", json={"text": ["march 3, 2011"], "beam": 1}, timeout=30)
    assert r.status_code == 200 and r.json()["translations"][0]["text"]


def test_clients_that_leave_mid_request_have_no_effect(server: tuple[str, Path]) -> None:
    url, _ = server
    body = json.dumps({"text": LINES, "beam": 5}).encode()
    head = ("POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    _raw(url, head.encode() + body[:10], read=False)  # gone halfway through the body
    _raw(url, head.encode() + body, read=False)  # gone before the answer
    _raw(url, head.encode()[:20], read=False)  # gone halfway through the headers
    time.sleep(0.5)
    _still_serving(url)


def test_bodies_over_the_limit_and_broken_http(server: tuple[str, Path]) -> None:
    url, _ = server
    # a declared length over the limit: refused before the body is read
    status, answer = _status_and_body(_raw(url, b"POST /v1/translate HTTP/1.1\r\nHost: x\r\n"
                                               b"Content-Length: 99999999\r\nConnection: close\r\n\r\n"))
    assert status == 413 and answer == {"error": "the body is 99999999 bytes, over the limit of 1048576"}
    # a chunked body that grows past the limit: refused once it does
    chunk = b"x" * 65536
    chunked = (b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 17 + b"0\r\n\r\n")
    status, answer = _status_and_body(_raw(url, chunked))
    assert status == 413 and answer == {"error": "the body is over the limit of 1048576 bytes"}
    # invalid UTF-8 over the wire
    body = b'{"text": ["\xff"]}'
    status, answer = _status_and_body(_raw(url, b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                               + f"Content-Length: {len(body)}\r\n\r\n".encode() + body))
    assert status == 400 and "not valid UTF-8" in answer["error"]
    assert _raw(url, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")  # uvicorn's own answer
    _still_serving(url)


def test_the_server_logs_where_it_listens_on_loopback(server: tuple[str, Path]) -> None:
    url, log = server
    assert f"serving run/best on {url} in fp32 (" in log.read_text()  # the tiny checkpoint decodes in fp32
