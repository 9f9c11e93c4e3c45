"""The HTTP API in process (FastAPI's TestClient): the three endpoints, answers equal to
translate.py's, attention, and every kind of bad input answered with one line.

The live server (uvicorn, load, disconnects, the browser) is tests/test_serve_live.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from serve_support import ROOT, missing_or_skip

missing_or_skip(("fastapi", "uvicorn", "httpx"), what="the server's tests")

from fastapi.testclient import TestClient  # noqa: E402

from seq2seq.serve import server as serve  # noqa: E402
from seq2seq.serve.request import Limits  # noqa: E402
from seq2seq.serve.server import Batching, create_app, load  # noqa: E402
from seq2seq.translation.translator import Translator  # noqa: E402

SENTENCES = ["march 3, 2011", "TUESDAY, SEPTEMBER 27, 1994", "5/17/1953", "x", "17.05.1953",
             "Wed, Jan 1, 2020", "12 nov 2040", "", "1994/09/27 1994/09/27 1994/09/27"]


@pytest.fixture(scope="module")
def attention_checkpoint(tiny_attention_checkpoint: Path) -> Path:
    return tiny_attention_checkpoint


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path) -> Iterator[TestClient]:
    with TestClient(create_app(*load(tiny_checkpoint, "cpu"), batching=Batching(max_wait_ms=100))) as c:
        yield c


@pytest.fixture(scope="module")
def attention_client(attention_checkpoint: Path) -> Iterator[TestClient]:
    with TestClient(create_app(*load(attention_checkpoint, "cpu"), batching=Batching(max_wait_ms=2))) as c:
        yield c


def post(client: TestClient, body: Any) -> Any:
    r = client.post("/v1/translate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def run_translate(ckpt: Path, *args: str, lines: list[str]) -> list[str]:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    r = subprocess.run([sys.executable, "translate.py", "--checkpoint", str(ckpt), *args], cwd=ROOT, env=env,
                       input="".join(s + "\n" for s in lines).encode(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode("utf-8").split("\n")[:-1]


# --- the endpoints ------------------------------------------------------------------------


def test_health_model_and_the_page(client: TestClient, tiny_checkpoint: Path) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    config = yaml.safe_load((tiny_checkpoint / "config.yaml").read_text())
    assert info["config"] == config
    assert (info["source_language"], info["target_language"]) == (config["data"]["src_lang"],
                                                                  config["data"]["tgt_lang"])
    assert info["attention"] is False and info["beam_size"] == config["decode"]["beam_size"]
    digest = hashlib.sha256((tiny_checkpoint / "model.safetensors").read_bytes()).hexdigest()
    assert info["checkpoint"] == {"name": f"{tiny_checkpoint.parent.name}/best", "weights_sha256": digest}
    assert info["limits"] == {"max_lines": 64, "max_chars": 1000, "max_body_bytes": 1 << 20, "max_beam": 16}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/app.js", "/style.css"):
        assert asset in page.text and client.get(asset).status_code == 200
    assert "http://" not in page.text + client.get("/app.js").text  # nothing from another origin
    assert "https://" not in page.text + client.get("/app.js").text
    for gone in ("/docs", "/openapi.json", "/static/../serve.py", "/index.html"):  # no CDN-backed docs, no files
        r = client.get(gone)
        assert r.status_code == 404 and r.json() == {"error": "Not Found"}


@pytest.mark.smoke
def test_answers_equal_translate_py_under_concurrent_requests(client: TestClient, tiny_checkpoint: Path) -> None:
    """Each line in its own request, all at once (the batcher gathers them): the n-best lists
    are what translate.py prints for the same lines."""
    def ask(line: str) -> Any:
        return post(client, {"text": [line], "beam": 3, "nbest": 2})["translations"][0]

    before = len(client.app.state.batcher.calls)  # type: ignore[attr-defined]
    with ThreadPoolExecutor(len(SENTENCES)) as pool:
        answers = list(pool.map(ask, SENTENCES))
    calls = list(client.app.state.batcher.calls)[before:]  # type: ignore[attr-defined]
    assert sum(calls) == len(SENTENCES) and max(calls) > 1  # requests shared a batch
    printed = run_translate(tiny_checkpoint, "--beam", "3", "--nbest", "2", lines=SENTENCES)
    served = [f"{i} ||| {h['text']} ||| {h['score']:.4f}" for i, a in enumerate(answers) for h in a["nbest"]]
    assert served == printed
    assert all(a["text"] == a["nbest"][0]["text"] and a["score"] == a["nbest"][0]["score"] for a in answers)
    # one request of many lines, the checkpoint's beam: translate.py's best lines
    whole = post(client, {"text": SENTENCES})
    assert whole["beam"] == 5 and whole["nbest"] == 1
    assert [a["text"] for a in whole["translations"]] == run_translate(tiny_checkpoint, lines=SENTENCES)


def test_greedy_and_beam_equal_the_translator_in_process(client: TestClient, tiny_checkpoint: Path) -> None:
    translator = Translator.from_checkpoint(tiny_checkpoint)
    for beam in (1, 4):
        got = post(client, {"text": SENTENCES, "beam": beam, "nbest": 1})["translations"]
        want = translator.translate(SENTENCES, beam_size=beam)
        assert [(a["text"], a["score"]) for a in got] == [(nb[0].text, nb[0].score) for nb in want]
    assert post(client, {"text": []}) == {"translations": [], "beam": 5, "nbest": 1}


@pytest.mark.smoke  # its own training run (the attention checkpoint)
def test_attention_weights_on_request(attention_client: TestClient, attention_checkpoint: Path) -> None:
    translator = Translator.from_checkpoint(attention_checkpoint)
    answer = post(attention_client, {"text": ["Sep 27 1994", ""], "beam": 2, "attention": True})["translations"]
    a = translator.alignment("Sep 27 1994", beam_size=2)
    got = answer[0]["attention"]
    assert answer[0]["text"] == a.text
    assert (got["source"], got["target"]) == (a.source, a.target)
    assert [[round(w, 4) for w in row] for row in a.weights.tolist()] == got["weights"]
    assert all(abs(sum(row) - 1) < 1e-3 for row in got["weights"])
    assert answer[1]["attention"] is None  # an empty line: nothing to align
    assert "attention" not in post(attention_client, {"text": ["Sep 27 1994"]})["translations"][0]
    assert attention_client.get("/v1/model").json()["attention"] is True


# --- bad input: one line, a 4xx, and the server keeps serving ----------------------------

BAD = [
    (b"", 400, "not JSON"),
    (b"{text: 1}", 400, "not JSON"),
    (b'{"text": ["caf\xe9"]}', 400, "not valid UTF-8 (byte 14)"),
    (b"[" * 100_000, 400, "not JSON"),
    (b'{"text": [' + b"1" * 5000 + b"]}", 400, "not JSON"),  # Python's limit on integer digits
    (b'["a"]', 422, "must be a JSON object, got a list"),
    (b"{}", 422, "text: required"),
    (b'{"text": "a line"}', 422, "text: must be a list of lines (strings), got a string"),
    (b'{"text": ["a", 3]}', 422, "text[1]: must be a string, got an integer"),
    (b'{"text": ["a", null]}', 422, "text[1]: must be a string, got null"),
    (b'{"text": ["a\\nb"]}', 422, "text[0]: holds a line break"),
    (b'{"text": ["\\ud800"]}', 422, "text[0]: not valid Unicode (an unpaired surrogate)"),
    (b'{"text": ["a"], "beam": "5"}', 422, "beam: must be an integer, got a string"),
    (b'{"text": ["a"], "beam": 2.0}', 422, "beam: must be an integer, got a number"),
    (b'{"text": ["a"], "beam": true}', 422, "beam: must be an integer, got a boolean"),
    (b'{"text": ["a"], "beam": 0}', 422, "beam: must be in [1, 16], got 0"),
    (b'{"text": ["a"], "beam": 17}', 422, "beam: must be in [1, 16], got 17"),
    (b'{"text": ["a"], "beam": 1' + b"0" * 4000 + b"}", 422, "beam: must be in [1, 16], got 10000000000000"),
    (b'{"text": ["a"], "nbest": -' + b"9" * 1000 + b"}", 422, "nbest: must be in [1, 5], got -9999999999999"),
    (b'{"text": ["a"], "beam": 2, "nbest": 3}', 422, "nbest: must be in [1, 2], got 3"),
    (b'{"text": ["a"], "attention": "yes"}', 422, "attention: must be true or false, got a string"),
    (b'{"text": ["a"], "attention": true}', 422, "this model has no attention"),
    (b'{"text": ["a"], "checkpoint": "/etc/passwd"}', 422, "unknown field 'checkpoint'"),
    (json.dumps({"text": ["a"] * 65}).encode(), 422, "text: 65 lines, over the limit of 64"),
    (json.dumps({"text": ["a" * 1001]}).encode(), 422, "text[0]: 1001 characters, over the limit of 1000"),
    (json.dumps({"text": ["a" * 1000] * 64, "pad": " " * (1 << 20)}).encode(), 413, "over the limit of 1048576"),
]


@pytest.mark.parametrize(("body", "status", "reason"), BAD, ids=[f"{i}-{s}" for i, (_, s, _) in enumerate(BAD)])
def test_bad_input_gets_a_4xx_with_one_line(client: TestClient, body: bytes, status: int, reason: str) -> None:
    r = client.post("/v1/translate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert reason in error and "\n" not in error and len(error) < 300
    assert post(client, {"text": ["march 3, 2011"], "beam": 1})["translations"][0]["text"] is not None


def test_limits_are_configurable_and_other_methods_answer_one_line(tiny_checkpoint: Path) -> None:
    limits = Limits(max_lines=2, max_chars=10, max_body_bytes=200, max_beam=5)  # the checkpoint's beam: 5
    with TestClient(create_app(*load(tiny_checkpoint, "cpu"), limits=limits)) as c:
        assert c.get("/v1/model").json()["limits"] == {"max_lines": 2, "max_chars": 10, "max_body_bytes": 200,
                                                       "max_beam": 5}
        cases = [({"text": ["a", "b", "c"]}, 422, "3 lines, over the limit of 2"),
                 ({"text": ["a" * 11]}, 422, "11 characters, over the limit of 10"),
                 ({"text": ["a"], "beam": 6}, 422, "beam: must be in [1, 5], got 6"),
                 ({"text": ["a" * 10, "b"], "x": "y" * 200}, 413, "over the limit of 200")]
        for body, status, reason in cases:
            r = c.post("/v1/translate", json=body)
            assert r.status_code == status and reason in r.json()["error"], r.text
        assert c.post("/v1/translate", json={"text": ["a" * 10, "b"], "beam": 3}).status_code == 200
        r = c.get("/v1/translate")
        assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
        assert r.headers["allow"] == "POST"  # as HTTP asks of a 405
        for route in ("/", "/health", "/v1/model", "/app.js", "/style.css"):  # HEAD where GET (curl -I, monitors)
            r = c.head(route)
            assert r.status_code == 200 and r.headers["content-type"] == c.get(route).headers["content-type"]
        r = c.delete("/health")
        assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
        assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}  # in either order
    with pytest.raises(ValueError, match="--max-lines must be >= 1"):
        Limits(max_lines=0)
    with TestClient(create_app(*load(tiny_checkpoint, "cpu"), batching=Batching(max_queue=1))) as c:
        assert c.get("/v1/model").json()["batching"] == {"max_batch": 64, "max_wait_ms": 5.0, "max_queue": 1}
        r = c.post("/v1/translate", json={"text": ["a", "b"]})  # more lines than may wait: busy, not queued
        assert r.status_code == 503 and r.json() == {"error": "the server is busy (0 lines wait to be decoded); "
                                                              "try again later"}
        assert c.post("/v1/translate", json={"text": ["a"]}).status_code == 200


def test_a_decoding_failure_answers_500_in_one_line_and_the_server_goes_on(tiny_checkpoint: Path) -> None:
    translator, info = load(tiny_checkpoint, "cpu")
    real = translator.translate

    def flaky(lines: list[str], **kw: Any) -> Any:
        if "boom" in lines:
            raise RuntimeError("CUDA out of memory (pretend)\nTraceback lines")
        return real(lines, **kw)

    translator.translate = flaky
    with TestClient(create_app(translator, info, batching=Batching(max_wait_ms=0))) as c:
        r = c.post("/v1/translate", json={"text": ["boom"]})
        assert r.status_code == 500
        assert r.json() == {"error": "translation failed: CUDA out of memory (pretend)"}
        assert post(c, {"text": ["march 3, 2011"]})["translations"][0]["text"] == real(["march 3, 2011"])[0][0].text
    # in one batch with others: only the request holding the failing line fails
    with TestClient(create_app(translator, info, batching=Batching(max_wait_ms=1000))) as c:
        bodies = [{"text": ["5/17/1953"]}, {"text": ["x", "boom"]}, {"text": ["march 3, 2011", "12 nov 2040"]}]
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda body: c.post("/v1/translate", json=body), bodies))
        assert list(c.app.state.batcher.calls)[0] == 5  # type: ignore[attr-defined]  # they shared a batch
        assert [r.status_code for r in answers] == [200, 500, 200]
        for body, r in zip(bodies, answers):
            if r.status_code == 200:
                assert [a["text"] for a in r.json()["translations"]] == [nb[0].text for nb in real(body["text"])]


# --- the command ---------------------------------------------------------------------------


@pytest.mark.smoke
def test_serve_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for module in ("uvicorn", "fastapi"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)  # import MODULE raises ImportError
            assert serve.main(["--checkpoint", "nowhere"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pip install '.[serve]'" in err[0]
    assert serve.main(["--checkpoint", "nowhere", "--max-lines", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: --max-lines must be >= 1, got 0"


@pytest.mark.smoke
def test_serve_binds_to_loopback_unless_told(monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path) -> None:
    seen: list[tuple[str, int]] = []
    served: list[Any] = []
    import uvicorn

    real_listen = serve.listen

    def fake_listen(host: str, port: int) -> Any:
        seen.append((host, port))
        return real_listen("127.0.0.1", 0)

    monkeypatch.setattr(serve, "listen", fake_listen)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.extend(sockets))
    assert serve.main(["--checkpoint", str(tiny_checkpoint), "--device", "cpu"]) == 0
    assert seen[-1] == ("127.0.0.1", 8000)
    assert serve.main(["--checkpoint", str(tiny_checkpoint), "--host", "0.0.0.0", "--port", "9"]) == 0
    assert seen[-1] == ("0.0.0.0", 9)
    assert len(served) == 2
    for sock in served:
        sock.close()


def test_a_checkpoint_beam_over_the_limit_is_refused_at_start(tiny_checkpoint: Path) -> None:
    translator, info = load(tiny_checkpoint, "cpu")
    with pytest.raises(ValueError, match=rf"decode.beam_size {info['beam_size']} is over --max-beam 1 .*"
                                         rf"pass --max-beam {info['beam_size']} or more"):
        create_app(translator, info, limits=Limits(max_beam=1))


@pytest.mark.smoke
def test_serve_address_taken_or_unknown_is_one_line(tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    taken = serve.listen("127.0.0.1", 0)
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        assert serve.main(["--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--port", str(port)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: --host 127.0.0.1 --port {port}: cannot listen there (")
        assert not any(line.startswith(("INFO", "ERROR", "Traceback")) for line in err)
    finally:
        taken.close()
    assert serve.main(["--checkpoint", str(tiny_checkpoint), "--host", "no-such-host.invalid"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --host no-such-host.invalid: cannot")


