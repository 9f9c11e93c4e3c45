"""Dynamic batching of requests: gather what arrives within a few milliseconds, decode it as one.

The server (:mod:`seq2seq.serve.server`) hands each request's lines to :meth:`Batcher.submit` with a
key (its beam, n-best and attention); requests with equal keys that wait together are decoded
by one call of ``work`` in a worker thread, and each request gets its own results back. This
batches requests; :mod:`seq2seq.data.batching` batches token ids for training and search.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)  # what requests must share to share a call of work
R = TypeVar("R")  # one line's result


@dataclass(frozen=True)
class Batching:
    """How the batcher gathers requests (:class:`Batcher`)."""

    max_batch: int = 64  # lines decoded together, at most
    max_wait_ms: float = 5.0  # how long a request waits for others to share its batch
    max_queue: int = 4096  # lines waiting to be decoded, at most; a request beyond is answered 503

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1:
            raise ValueError(f"--max-batch and --max-queue must be >= 1, got {self.max_batch}, {self.max_queue}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ValueError(f"--max-wait-ms must be in [0, 10000], got {self.max_wait_ms}")


class Busy(RuntimeError):
    """More lines wait to be decoded than the batcher takes (``max_queue``); answered 503."""


@dataclass
class _Job(Generic[K, R]):
    lines: list[str]
    key: K
    arrived: float  # loop time
    future: asyncio.Future[list[R]]


class Batcher(Generic[K, R]):
    """Gathers concurrent requests and decodes them together.

    ``work(lines, key)`` gives one result per line, in order; it runs in one worker thread,
    one call at a time. A round starts when a request arrives and waits until
    ``max_wait_ms`` after the oldest waiting request, or until ``max_batch`` lines wait;
    then the waiting requests (up to ``max_batch`` lines, at least one request) are split
    by key and each group is one call of ``work``. When that call raises, each of the
    group's requests is decoded alone, so the exception fails only the requests that
    raise it alone. At most ``max_queue`` lines wait: a request beyond that
    is refused at once (:class:`Busy`) rather than queued without bound.
    """

    def __init__(self, work: Callable[[list[str], K], list[R]], batching: Batching = Batching()) -> None:
        self.work = work
        self.max_batch = batching.max_batch
        self.max_wait = batching.max_wait_ms / 1000
        self.max_queue = batching.max_queue
        self.calls: deque[int] = deque(maxlen=1000)  # lines in each recent call of work (tests, logs)
        self._waiting: list[_Job[K, R]] = []
        self._decoding: list[_Job[K, R]] = []
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq2seq-decode")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="seq2seq-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in [*self._waiting, *self._decoding]:
            job.future.cancel()
        self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, lines: list[str], key: K) -> list[R]:
        """The results for ``lines``, decoded in the next round."""
        if not lines:
            return []
        waiting = self._lines_waiting()
        if waiting + len(lines) > self.max_queue:
            raise Busy(f"the server is busy ({waiting} lines wait to be decoded); try again later")
        loop = asyncio.get_running_loop()
        job = _Job(lines, key, loop.time(), loop.create_future())
        self._waiting.append(job)
        self._arrived.set()
        return await job.future

    def _lines_waiting(self) -> int:
        return sum(len(j.lines) for j in self._waiting)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            self._waiting = [j for j in self._waiting if not j.future.done()]  # a client gone
            while self._waiting and self._lines_waiting() < self.max_batch:
                left = self._waiting[0].arrived + self.max_wait - loop.time()
                if left <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), left)
            jobs: list[_Job[K, R]] = []
            n = 0
            while self._waiting and (not jobs or n + len(self._waiting[0].lines) <= self.max_batch):
                jobs.append(self._waiting.pop(0))
                n += len(jobs[-1].lines)
            if not self._waiting:
                self._arrived.clear()
            groups: dict[K, list[_Job[K, R]]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                await self._decode(loop, key, [j for j in group if not j.future.done()])

    async def _decode(self, loop: asyncio.AbstractEventLoop, key: K, group: list[_Job[K, R]]) -> None:
        if not group:
            return
        lines = [line for job in group for line in job.lines]
        self.calls.append(len(lines))
        self._decoding = group
        try:
            results = await loop.run_in_executor(self._executor, self.work, lines, key)
            if len(results) != len(lines):
                raise RuntimeError(f"{len(lines)} lines in, {len(results)} results out")
        except Exception as e:  # the next round goes on
            self._decoding = []
            alive = [job for job in group if not job.future.done()]
            if len(alive) > 1:  # one request's lines may be the cause: each alone, so only it fails
                log.warning("decoding %d requests together failed (%s); decoding each alone",
                            len(alive), str(e).strip().split("\n")[0])
                for job in alive:
                    await self._decode(loop, key, [job])
                return
            log.exception("decoding %d lines failed", len(lines))
            for job in alive:
                job.future.set_exception(e)
            return
        start = 0
        for job in group:
            if not job.future.done():
                job.future.set_result(results[start: start + len(job.lines)])
            start += len(job.lines)
        self._decoding = []
