"""Load on ``python -m seq2seq serve`` over loopback: latency and throughput, dynamic batching
against one request at a time. Bounded: it sends a fixed number of requests and stops.

Three runs, each against a fresh server on a free 127.0.0.1 port, each request one line:

    sequential  1 client, --baseline-requests requests, one at a time (the default batcher)
    unbatched   --clients clients x --requests requests, the server run with --max-batch 1
    batched     --clients clients x --requests requests, the default batcher (--max-wait-ms 5)

Every answer is checked against the offline translation (``Translator.translate``, same beam
and precision): in fp32 a run with a wrong or missing answer fails; in bf16 or int8 (``--bf16``,
``--quantize``, passed to the server too), where a sentence's arithmetic depends slightly on its
batch, the answers that differ are counted and reported. Prints a Markdown table; ``--json``
keeps it all.

    python docs/bench/serve_load.py --checkpoint runs/m30k/best --source data/multi30k/test_2016_flickr.de.gz
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m seq2seq serve`` in a subprocess, up once /health answers."""

    def __init__(self, checkpoint: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "seq2seq", "serve", "--checkpoint", str(checkpoint),
                                      "--port", str(self.port), "--device", "cpu", *args],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)


async def load(url: str, lines: list[str], clients: int, requests: int, beam: int) -> dict[str, Any]:
    """``clients`` concurrent clients x ``requests`` one-line requests; -> latencies and answers."""
    latencies: list[float] = []
    answers: list[tuple[str, str]] = []

    async def client(c: int, http: httpx.AsyncClient) -> None:
        for r in range(requests):
            line = lines[(c * requests + r) % len(lines)]
            start = time.perf_counter()
            response = await http.post(f"{url}/v1/translate", json={"text": [line], "beam": beam})
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
            answers.append((line, response.json()["translations"][0]["text"]))

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients), timeout=300) as http:
        await http.get(f"{url}/health")
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(c, http) for c in range(clients))), 1800)
        seconds = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"clients": clients, "requests": clients * requests, "seconds": round(seconds, 2),
            "requests_per_s": round(clients * requests / seconds, 1), "p50_ms": round(1000 * q[49], 1),
            "p99_ms": round(1000 * q[98], 1), "answers": answers}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--source", type=Path, required=True, help="source sentences, one a line (.gz read as gzip)")
    p.add_argument("--sentences", type=int, default=200, help="distinct sentences sent (the first N)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=50, help="requests per client")
    p.add_argument("--baseline-requests", type=int, default=200)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--bf16", choices=("auto", "true", "false"), default=None, help="the server's and offline --bf16")
    p.add_argument("--quantize", choices=("none", "int8"), default=None, help="the server's and offline --quantize")
    args = p.parse_args()

    sys.path.insert(0, str(ROOT))
    from seq2seq.translation.translator import Translator

    opener = gzip.open if args.source.suffix == ".gz" else open
    with opener(args.source, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for _, line in zip(range(args.sentences), f)]
    flags = [*(("--bf16", args.bf16) if args.bf16 else ()), *(("--quantize", args.quantize) if args.quantize else ())]
    from seq2seq.cli.decoding import precision_changes
    from seq2seq.translation import precision

    translator = Translator.from_checkpoint(args.checkpoint, "cpu", **precision_changes(args))
    how = precision.resolve(translator.decode, translator.device)
    offline = dict(zip(lines, translator.translate_best(lines, beam_size=args.beam)))

    runs = {}
    plan = [("sequential", (), 1, args.baseline_requests), ("unbatched", ("--max-batch", "1"), args.clients,
            args.requests), ("batched", (), args.clients, args.requests)]
    load_before = os.getloadavg()
    for name, server_args, clients, requests in plan:
        server = Server(args.checkpoint, *server_args, *flags)
        try:
            result = asyncio.run(load(server.url, lines, clients, requests, args.beam))
        finally:
            server.stop()
        answers = result.pop("answers")
        wrong = [(line, got) for line, got in answers if got != offline[line]]
        if wrong and how == "fp32":
            print(f"{name}: {len(wrong)} answers differ from the offline translation, e.g. {wrong[0]}")
            return 1
        result["differ_from_offline"] = len(wrong)
        runs[name] = result
        print(f"{name}: {result}", file=sys.stderr)

    print("| run | clients | requests | p50 latency | p99 latency | throughput |")
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {r['clients']} | {r['requests']} | {r['p50_ms']} ms | {r['p99_ms']} ms "
              f"| {r['requests_per_s']} req/s |")
    ratio = runs["batched"]["requests_per_s"] / runs["sequential"]["requests_per_s"]
    same = "every answer equal to" if not any(r["differ_from_offline"] for r in runs.values()) else \
        ", ".join(f"{n}: {r['differ_from_offline']} of {r['requests']} answers differ from" for n, r in runs.items())
    print(f"batched / sequential throughput: {ratio:.1f}x; {same} the offline translation "
          f"(beam {args.beam}, {how})")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(["python", *sys.argv]), "runs": runs, "beam": args.beam, "precision": how,
            "sentences": len(lines), "checkpoint": str(args.checkpoint),
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
