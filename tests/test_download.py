"""The corpus download helper, against an HTTP server on loopback that serves made-up files."""

from __future__ import annotations

import functools
import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from seq2seq.data.datasets import Dataset
from seq2seq.tools import download

pytestmark = pytest.mark.smoke  # every test here runs the download command's main([...])

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
