"""The corpus download helper, against an HTTP server on loopback that serves made-up files."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seq2seq.data.datasets import DATASETS, Dataset
from seq2seq.tools import download

pytestmark = pytest.mark.smoke  # every test here runs the download command's main([...])

MULTI30K = DATASETS["multi30k"]  # the registry's own (the tests below swap in SMALL)
SMALL = Dataset(base_url="unused", langs=("de", "en"), lines={"train": 30, "val": 5, "test_2016_flickr": 4})


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/raw", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve(root: Path, lines: dict[str, int] = SMALL.lines) -> None:
    (root / "raw").mkdir(exist_ok=True)
    for split, n in lines.items():
        for lang in SMALL.langs:
            text = "".join(f"{split} {lang} Satz {i} – ü\n" for i in range(n))
            (root / "raw" / f"{split}.{lang}.gz").write_bytes(gzip.compress(text.encode()))


@pytest.fixture(autouse=True)
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(download.DATASETS, "multi30k", SMALL)


def test_downloads_checks_and_keeps(server: tuple[str, Path], tmp_path: Path, capsys) -> None:
    url, root = server
    serve(root)
    out = tmp_path / "data" / "multi30k"
    assert download.main(["multi30k", "--out", str(out), "--base-url", url]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{s}.{lang}.gz" for s in SMALL.lines for lang in ("de", "en"))
    assert download.count_lines(out / "val.de.gz") == 5
    assert gzip.decompress((out / "train.en.gz").read_bytes()).decode().splitlines()[3] == "train en Satz 3 – ü"
    # a second run finds every file valid and fetches nothing (the server is empty now)
    for f in (root / "raw").iterdir():
        f.unlink()
    assert download.main(["multi30k", "--out", str(out), "--base-url", url]) == 0
    assert "present, 30 lines" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["missing", "truncated", "short", "not-gzip"])
def test_a_broken_download_fails_in_one_line_and_leaves_nothing(damage: str, server: tuple[str, Path],
                                                                 tmp_path: Path, capsys) -> None:
    url, root = server
    serve(root)
    bad = root / "raw" / "val.en.gz"
    if damage == "missing":
        bad.unlink()
    elif damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:-12])
    elif damage == "short":
        bad.write_bytes(gzip.compress(b"one line\n"))
    else:
        bad.write_bytes(b"<html>not found</html>")
    out = tmp_path / "m30k"
    assert download.main(["multi30k", "--out", str(out), "--base-url", url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "val.en.gz" in err[0]
    expected = {"missing": "HTTP 404", "truncated": "not a complete gzip file", "short": "1 lines, expected 5",
                "not-gzip": "not a complete gzip file"}[damage]
    assert expected in err[0]
    assert not (out / "val.en.gz").exists()
    assert not list(out.glob("*.part"))  # nothing half-written
    assert (out / "val.de.gz").exists()  # what passed before the failure is kept


def test_an_invalid_file_already_there_is_fetched_again(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    serve(root)
    out = tmp_path / "m30k"
    out.mkdir()
    (out / "train.de.gz").write_bytes(b"junk")
    assert download.main(["multi30k", "--out", str(out), "--base-url", url]) == 0
    assert download.count_lines(out / "train.de.gz") == 30


def test_unreachable_server_and_unknown_language(tmp_path: Path, capsys) -> None:
    assert download.main(["multi30k", "--out", str(tmp_path / "x"), "--base-url", "http://127.0.0.1:9/raw"]) == 1
    assert "cannot download" in capsys.readouterr().err
    assert download.main(["multi30k", "--out", str(tmp_path / "x"), "--langs", "de", "xx"]) == 1
    assert "--langs: multi30k has no xx" in capsys.readouterr().err


class Drip(http.server.BaseHTTPRequestHandler):
    """Sends a file's headers, then one byte every 0.2 s (for at most 30 s): alive, never done."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def drip() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/raw"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_server_that_never_finishes_is_given_up_at_the_deadline(drip: str, tmp_path: Path, capsys) -> None:
    """A byte now and then keeps every read alive; the per-file --timeout ends it all the same."""
    out = tmp_path / "m30k"
    start = time.monotonic()
    assert download.main(["multi30k", "--out", str(out), "--base-url", drip, "--timeout", "1.5"]) == 1
    assert time.monotonic() - start < 6
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {drip}/train.de.gz: not downloaded within --timeout 1.5 s")
    assert not list(out.iterdir())  # nothing half-written
    for bad in ("0", "-1", "nan", "inf"):
        assert download.main(["multi30k", "--out", str(out), "--base-url", drip, "--timeout", bad]) == 1
        assert "--timeout must be a positive number of seconds" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "short", "not-gzip", "not-utf8"])
def test_errors_name_the_url_not_a_temporary(damage: str, server: tuple[str, Path], tmp_path: Path, capsys) -> None:
    url, root = server
    serve(root)
    bad = root / "raw" / "val.en.gz"
    bad.write_bytes({"truncated": bad.read_bytes()[:-12], "short": gzip.compress(b"one line\n"),
                     "not-gzip": b"<html>not found</html>", "not-utf8": gzip.compress(b"\xff\xfe\n" * 5)}[damage])
    assert download.main(["multi30k", "--out", str(tmp_path / "m30k"), "--base-url", url]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {url}/val.en.gz: ") and ".part" not in err, err


def test_the_saved_file_is_the_servers_bytes_and_its_sha256_is_printed(server: tuple[str, Path], tmp_path: Path,
                                                                        capsys) -> None:
    url, root = server
    serve(root)
    out = tmp_path / "m30k"
    assert download.main(["multi30k", "--out", str(out), "--base-url", url]) == 0
    printed = capsys.readouterr().out
    for f in (root / "raw").iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()
        assert f"{out / f.name}: " in printed and f"sha256 {hashlib.sha256(f.read_bytes()).hexdigest()}" in printed
    assert download.main(["multi30k", "--out", str(out), "--base-url", url]) == 0  # present: printed too
    digest = hashlib.sha256((out / "val.de.gz").read_bytes()).hexdigest()
    assert f"{out / 'val.de.gz'}: present, 5 lines, sha256 {digest}" in capsys.readouterr().out


def test_a_known_checksum_is_checked(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys) -> None:
    """Where the registry knows a file's SHA-256, a download that differs is refused (and not kept),
    and a present file that differs is fetched again."""
    url, root = server
    serve(root)
    sums = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (root / "raw").iterdir()}
    wrong = {**sums, "val.en.gz": "0" * 64}
    monkeypatch.setitem(download.DATASETS, "multi30k", dataclasses.replace(SMALL, sha256=wrong))
    out = tmp_path / "m30k"
    assert download.main(["multi30k", "--out", str(out), "--base-url", url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == (f"error: {url}/val.en.gz: SHA-256 {sums['val.en.gz']}, expected {'0' * 64} "
                                        "(not the file the registry knows)")
    assert not (out / "val.en.gz").exists() and not list(out.glob("*.part"))
    monkeypatch.setitem(download.DATASETS, "multi30k", dataclasses.replace(SMALL, sha256=sums))
    (out / "val.de.gz").write_bytes(gzip.compress("".join(f"other {i}\n" for i in range(5)).encode()))
    assert download.main(["multi30k", "--out", str(out), "--base-url", url]) == 0
    assert "val.de.gz: present but not the expected file" in capsys.readouterr().out
    assert (out / "val.de.gz").read_bytes() == (root / "raw" / "val.de.gz").read_bytes()


def test_the_registry_knows_multi30k_checksums() -> None:
    ds = MULTI30K
    assert set(ds.sha256) == {f"{s}.{lang}.gz" for s in ds.lines for lang in ds.langs}
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in ds.sha256.values())
    shared = Path("/work/shared/data/multi30k")
    for name, digest in ds.sha256.items():
        if (shared / name).exists():  # the raw files where this machine keeps a copy
            assert hashlib.sha256((shared / name).read_bytes()).hexdigest() == digest, name
