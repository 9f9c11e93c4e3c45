"""Serve a checkpoint over HTTP: ``python -m seq2seq serve --checkpoint DIR``.

JSON in and out; every error is one line, ``{"error": "..."}``, with a 4xx status (the
request's fault), 503 (too many lines already wait) or 500 (a decoding failure; the server
keeps serving)::

    POST /v1/translate  {"text": ["line", ...], "beam": 5, "nbest": 1, "attention": false}
                        -> {"translations": [{"text", "score", "nbest": [{"text", "score"}, ...],
                                              "attention": {"source", "target", "weights"}}],
                            "beam": 5, "nbest": 1}
    GET  /v1/model      the languages, the resolved config, the checkpoint's name and weights' SHA-256
    GET  /health        {"status": "ok"}
    GET  /              the demo page (seq2seq/serve/static/; nothing is fetched from elsewhere)

``beam`` defaults to the checkpoint's ``decode.beam_size``; ``attention`` (attention models
only) adds each line's alignment: ``weights[t][s]``, output token ``t`` (the last is
``</s>``) over source piece ``s`` in reading order, as :meth:`Translator.alignment`.

Dynamic batching (:mod:`seq2seq.serve.batcher`): concurrent requests are gathered for up to
``--max-wait-ms`` after the oldest arrived, or until ``--max-batch`` lines, and requests
asking for the same beam, n-best and attention are decoded as one call of
:meth:`Translator.translate`, in a worker thread, so the event loop keeps answering. Search
gives a sentence the same result alone or in a batch, so each line's answer equals what
``translate.py`` prints for it with the same ``--beam`` and ``--nbest``.

A request is bounded (:class:`~seq2seq.serve.request.Limits`: lines, characters a line, body
bytes, beam) and checked before it is queued (:mod:`seq2seq.serve.request`); nothing in it names
a file. The server binds to 127.0.0.1 unless ``--host`` says otherwise. FastAPI and uvicorn are
the ``[serve]`` extra, imported only when an app is made.
"""

# no ``from __future__ import annotations``: FastAPI reads the handlers' annotations (``Request``,
# imported lazily where the routes are added) as objects
import argparse
import contextlib
import dataclasses
import hashlib
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cli.decoding import add_precision_options, precision_changes
from ..cli.errors import excerpt, run_command
from ..cli.usage import examples
from .batcher import Batcher, Batching, Busy
from .request import Limits, RequestError, Settings, parse_request, read_body

if TYPE_CHECKING:
    from ..translation.translator import Translator

log = logging.getLogger(__name__)

EXTRA_HINT = "the server needs the [serve] extra: pip install '.[serve]' (FastAPI and uvicorn)"


class ServeUnavailable(RuntimeError):
    """FastAPI or uvicorn is not installed (one line naming the extra)."""


# --- the model -------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(path: str | Path, device: str = "auto", **changes: Any) -> tuple["Translator", dict[str, Any]]:
    """A :class:`~seq2seq.translation.translator.Translator` for the checkpoint at ``path``, its
    decode section with ``changes`` (e.g. ``quantize="int8"``), and what ``/v1/model`` says of it."""
    from ..model import checkpoint
    from ..runtime.device import select_device
    from ..translation import precision
    from ..translation.translator import Translator

    dev = select_device(device, "--device")
    loaded = checkpoint.load(path, dev)
    cfg = loaded.config
    translator = Translator.from_loaded(loaded, dev, **changes)
    info = {
        "source_language": cfg.data.src_lang, "target_language": cfg.data.tgt_lang, "corpus": cfg.data.source,
        "attention": cfg.model.attention != "none", "beam_size": cfg.decode.beam_size,
        "precision": precision.resolve(translator.decode, dev),
        "checkpoint": {"name": f"{loaded.path.parent.name}/{loaded.path.name}",
                       "weights_sha256": _sha256(loaded.path / checkpoint.MODEL_FILE)},
        "config": cfg.to_dict(),
    }
    return translator, info


def translate_work(translator: "Translator") -> Callable[[list[str], Settings], list[dict[str, Any]]]:
    """The batcher's work: lines -> one answer per line, as ``/v1/translate`` gives it."""

    def work(lines: list[str], settings: Settings) -> list[dict[str, Any]]:
        nbests = translator.translate(lines, beam_size=settings.beam, nbest=settings.nbest)
        answers = []
        for line, nbest in zip(lines, nbests):
            answer: dict[str, Any] = {"text": nbest[0].text, "score": nbest[0].score,
                                      "nbest": [{"text": t.text, "score": t.score} for t in nbest]}
            if settings.attention:
                answer["attention"] = None  # an empty source: nothing to align
                if translator.encode_source([line])[0]:
                    a = translator.alignment(line, beam_size=settings.beam)
                    answer["attention"] = {"source": a.source, "target": a.target,
                                           "weights": [[round(w, 4) for w in row] for row in a.weights.tolist()]}
            answers.append(answer)
        return answers

    return work


# --- the app ---------------------------------------------------------------------------

PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/style.css": ("style.css", "text/css; charset=utf-8")}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def create_app(translator: "Translator", info: dict[str, Any], *, limits: Limits = Limits(),  # noqa: B008 (frozen)
               batching: Batching | None = None) -> Any:
    """The FastAPI app serving ``translator`` (``info``: what ``/v1/model`` answers, from :func:`load`)."""
    try:
        from fastapi import FastAPI
    except ImportError:
        raise ServeUnavailable(EXTRA_HINT) from None

    if info["beam_size"] > limits.max_beam:  # else every request without a beam would be refused
        raise ValueError(f"{info['checkpoint']['name']}: its decode.beam_size {info['beam_size']} is over "
                         f"--max-beam {limits.max_beam} (the beam of a request that names none); "
                         f"pass --max-beam {info['beam_size']} or more")
    batching = batching or Batching()
    batcher: Batcher[Settings, dict[str, Any]] = Batcher(translate_work(translator), batching)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="seq2seq", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher
    _add_error_handlers(app)
    _add_api(app, batcher, info, limits, batching)
    _add_pages(app)
    return app


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Any:
    """An error answer: ``{"error": message}`` with HTTP ``status``."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app: Any) -> None:
    """Every error answered as one line of JSON: a refused request (:class:`RequestError`), a
    body FastAPI cannot read, a 404 or 405, and any other failure (500)."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError) -> Any:
        return _error(e.status, e.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> Any:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Any:  # 404, 405 (its Allow header kept)
        return _error(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> Any:
        return _error(500, f"internal error: {_one_line(e)}")


def _add_api(app: Any, batcher: Batcher[Settings, dict[str, Any]], info: dict[str, Any], limits: Limits,
             batching: Batching) -> None:
    """The API's routes: ``/health``, ``/v1/model`` and ``/v1/translate`` (through ``batcher``)."""
    from fastapi import Request
    from fastapi.responses import Response
    from starlette.requests import ClientDisconnect

    # GET routes answer HEAD too (curl -I, monitors), as HTTP asks of a server
    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/v1/model", methods=["GET", "HEAD"])
    async def model() -> dict[str, Any]:
        return {**info, "limits": dataclasses.asdict(limits), "batching": dataclasses.asdict(batching)}

    @app.post("/v1/translate")
    async def translate(request: Request) -> Any:
        try:
            body = await read_body(request, limits.max_body_bytes)
        except ClientDisconnect:  # nobody to answer
            return Response(status_code=400)
        lines, settings = parse_request(body, limits, info["beam_size"], info["attention"])
        start = time.perf_counter()
        try:
            answers = await batcher.submit(lines, settings)
        except Busy as e:
            return _error(503, str(e))
        except Exception as e:
            return _error(500, f"translation failed: {_one_line(e)}")
        log.debug("%d lines in %.1f ms", len(lines), 1000 * (time.perf_counter() - start))
        return {"translations": answers, "beam": settings.beam, "nbest": settings.nbest}


def _add_pages(app: Any) -> None:
    """The demo page, its script and its style (:data:`PAGES`, from seq2seq/serve/static/)."""
    from fastapi.responses import Response

    static = resources.files("seq2seq.serve") / "static"
    pages = {route: (static.joinpath(name).read_bytes(), kind) for route, (name, kind) in PAGES.items()}

    def page(route: str) -> Callable[[], Any]:
        content, kind = pages[route]

        async def serve_page() -> Any:
            return Response(content, media_type=kind, headers=PAGE_HEADERS)

        return serve_page

    for route in PAGES:
        app.api_route(route, methods=["GET", "HEAD"], include_in_schema=False)(page(route))


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return excerpt(text.splitlines()[0]) if text else type(e).__name__


# --- the command -----------------------------------------------------------------------


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: any free port), for uvicorn to serve on; a
    ValueError in one line when the name does not resolve or the address is taken or not ours."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"--host {host}: cannot resolve it ({getattr(e, 'strerror', None) or e})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seq2seq serve",
                                description="Serve a checkpoint: an HTTP translation API and a demo page.",
        **examples(
            "python -m seq2seq serve --checkpoint runs/multi30k_de_en_attention --port 8000",
            "python -m seq2seq serve --checkpoint runs/multi30k_de_en_attention --quantize int8",
        ))
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory (or a run directory)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add_precision_options(p)
    helps = {"max_lines": "lines in one request, at most", "max_chars": "characters in one line, at most",
             "max_body_bytes": "bytes in a request's body, at most", "max_beam": "a request's beam size, at most",
             "max_batch": "lines decoded together, at most",
             "max_wait_ms": "how long a request waits for others to share its batch",
             "max_queue": "lines waiting to be decoded, at most; a request beyond is answered 503 (busy)"}
    for f in (*dataclasses.fields(Limits), *dataclasses.fields(Batching)):
        default = f.default
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default,
                       help=f"{helps[f.name]} (default {default})")
    args = p.parse_args(argv)

    def run() -> int:
        limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
        batching = Batching(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Batching)})
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be in [0, 65535], got {args.port}")
        try:  # before the checkpoint is loaded
            import fastapi
            import uvicorn
        except ImportError:
            raise ServeUnavailable(EXTRA_HINT) from None
        translator, info = load(args.checkpoint, args.device, **precision_changes(args))
        app = create_app(translator, info, limits=limits, batching=batching)
        sock = listen(args.host, args.port)  # a clear line, before uvicorn, if the address cannot be had
        host, port = sock.getsockname()[:2]
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # IPv6 in brackets
        print(f"serving {info['checkpoint']['name']} on {url} in {info['precision']} (FastAPI {fastapi.__version__}, "
              f"uvicorn {uvicorn.__version__}; Ctrl-C stops it)", file=sys.stderr, flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
        return 0

    return run_command(run, (ServeUnavailable,))


if __name__ == "__main__":
    raise SystemExit(main())
