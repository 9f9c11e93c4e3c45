"""The server's dynamic batcher on a fake decoder: grouping, batch limits, failures, cancellation.

Pure asyncio; needs neither FastAPI nor a model.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from seq2seq.serve.batcher import Batcher, Batching, Busy
from seq2seq.serve.request import Settings

A, B = Settings(beam=1, nbest=1, attention=False), Settings(beam=5, nbest=2, attention=False)


class Fake:
    """``work``: each line -> (line, beam); remembers each call; fails on a line 'boom'."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Settings]] = []
        self.threads: set[str] = set()

    def __call__(self, lines: list[str], settings: Settings) -> list[tuple[str, int]]:
        self.calls.append((list(lines), settings))
        self.threads.add(threading.current_thread().name)
        if "boom" in lines:
            raise RuntimeError("the decoder broke\nsecond line")
        return [(line, settings.beam) for line in lines]


async def _with(batcher: Batcher[Settings, tuple[str, int]], *jobs: tuple[list[str], Settings]) -> list[object]:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(lines, s) for lines, s in jobs), return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_requests_share_a_call_per_setting_and_get_their_own_results() -> None:
    work = Fake()
    jobs = [(["a", "b"], A), (["c"], B), (["d"], A), (["e", "f"], B), (["g"], A)]
    results = asyncio.run(_with(Batcher(work, Batching(max_batch=64, max_wait_ms=50)), *jobs))
    assert results == [[(x, s.beam) for x in lines] for lines, s in jobs]
    assert sorted((tuple(lines), s.beam) for lines, s in work.calls) == [(("a", "b", "d", "g"), 1),
                                                                           (("c", "e", "f"), 5)]
    assert work.threads and all(t.startswith("seq2seq-decode") for t in work.threads)  # not the event loop


def test_a_round_takes_at_most_max_batch_lines_and_never_splits_a_request() -> None:
    work = Fake()
    jobs = [([f"{i}a", f"{i}b", f"{i}c"], A) for i in range(5)]  # 15 lines, 3 a request
    results = asyncio.run(_with(Batcher(work, Batching(max_batch=7, max_wait_ms=20)), *jobs))
    assert results == [[(x, 1) for x in lines] for lines, _ in jobs]
    assert [len(lines) for lines, _ in work.calls] == [6, 6, 3]
    # a request larger than max_batch still goes, alone
    work = Fake()
    assert asyncio.run(_with(Batcher(work, Batching(max_batch=2, max_wait_ms=0)), (["x", "y", "z"], A))) == [
        [("x", 1), ("y", 1), ("z", 1)]]


def test_a_failing_call_fails_only_the_request_that_fails_alone_and_the_next_round_is_served() -> None:
    work = Fake()

    async def scenario() -> tuple[list[object], list[tuple[str, int]]]:
        batcher: Batcher[Settings, tuple[str, int]] = Batcher(work, Batching(max_batch=64, max_wait_ms=30))
        batcher.start()
        try:
            first = await asyncio.gather(batcher.submit(["boom"], A), batcher.submit(["ok"], A),
                                         batcher.submit(["fine"], B), return_exceptions=True)
            after = await batcher.submit(["later"], A)
        finally:
            await batcher.stop()
        return first, after

    first, after = asyncio.run(scenario())
    assert isinstance(first[0], RuntimeError)
    assert first[1] == [("ok", 1)]  # shared the failing call, then decoded alone
    assert first[2] == [("fine", 5)]
    assert after == [("later", 1)]
    assert [lines for lines, _ in work.calls if _ == A] == [["boom", "ok"], ["boom"], ["ok"], ["later"]]


def test_a_request_whose_client_left_is_not_decoded() -> None:
    work = Fake()

    async def scenario() -> list[tuple[str, int]]:
        batcher: Batcher[Settings, tuple[str, int]] = Batcher(work, Batching(max_batch=64, max_wait_ms=100))
        batcher.start()
        try:
            gone = asyncio.ensure_future(batcher.submit(["gone"], A))
            await asyncio.sleep(0.01)
            gone.cancel()  # what the server does when a client disconnects while waiting
            return await batcher.submit(["stay"], A)
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [("stay", 1)]
    assert [lines for lines, _ in work.calls] == [["stay"]]


def test_no_lines_no_call_and_bad_settings_refused() -> None:
    work = Fake()
    assert asyncio.run(_with(Batcher(work), ([], A))) == [[]]
    assert work.calls == []
    with pytest.raises(ValueError, match="--max-batch and --max-queue must be >= 1"):
        Batching(max_batch=0)
    with pytest.raises(ValueError, match="--max-wait-ms must be in"):
        Batching(max_wait_ms=-1)


def test_past_max_queue_a_request_is_refused_at_once_and_the_rest_served() -> None:
    work = Fake()
    jobs = [(["a", "b"], A), (["c", "d"], A), (["e"], A)]  # 5 lines; 4 may wait
    results = asyncio.run(_with(Batcher(work, Batching(max_wait_ms=50, max_queue=4)), *jobs))
    assert results[:2] == [[("a", 1), ("b", 1)], [("c", 1), ("d", 1)]]
    assert isinstance(results[2], Busy)
    assert str(results[2]) == "the server is busy (4 lines wait to be decoded); try again later"
