"""Dynamic batching: texts from concurrent requests share forward passes.

Requests put their texts on one queue; a single worker thread takes the oldest texts
(first in, first out) while the padded batch stays within the token budget and the
row limit, waits at most ``max_wait`` seconds for a batch to fill, pads it to one of
the length buckets and batch sizes warmed at start-up, and runs the model. The
queue holds at most ``max_queue`` requests: beyond that :class:`QueueFull` (HTTP 429).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from bert4keras.serving.metrics import Metrics
from bert4keras.serving.model import ServedModel, batch_sizes


class QueueFull(Exception):
    """The queue already holds ``max_queue`` requests."""


class ShuttingDown(Exception):
    """The batcher has stopped taking requests."""


@dataclass
class _Request:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    results: list
    remaining: int


@dataclass
class _Job:
    ids: list[int]
    segments: list[int]
    pooling: str | None
    normalize: bool
    request: _Request
    index: int
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Collects texts into padded batches and runs them on one worker thread."""

    def __init__(self, model: ServedModel, metrics: Metrics, buckets: list[int], max_batch_tokens: int,
                 max_batch_size: int, max_wait: float, max_queue: int):
        self.model, self.metrics, self.buckets = model, metrics, buckets
        self.sizes = {length: batch_sizes(length, max_batch_size, max_batch_tokens) for length in buckets}
        self.max_wait, self.max_queue = max_wait, max_queue
        self._jobs: collections.deque[_Job] = collections.deque()
        self._queued_requests = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="bert4keras-batcher", daemon=True)

    def shapes(self) -> list[tuple[int, int]]:
        """Every (batch size, length) the worker can produce: the shapes to warm up."""
        return [(rows, length) for length in self.buckets for rows in self.sizes[length]]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Take no more requests, finish the queued ones, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    async def submit(self, encoded: list[list[int]], segments: list[list[int]],
                     pooling: str | None = None, normalize: bool = False) -> list[np.ndarray]:
        """One result per text (a pooled vector, or label probabilities), in order."""
        loop = asyncio.get_running_loop()
        request = _Request(loop, loop.create_future(), [None] * len(encoded), len(encoded))
        with self._cond:
            if self._stopping:
                raise ShuttingDown()
            if self._queued_requests >= self.max_queue:
                raise QueueFull()
            self._queued_requests += 1
            self.metrics.queue_depth.set(self._queued_requests)
            for i, (ids, segs) in enumerate(zip(encoded, segments)):
                self._jobs.append(_Job(ids, segs, pooling, normalize, request, i))
            self._cond.notify()
        return await request.future

    # -- worker ---------------------------------------------------------------------------

    def _bucket(self, length: int) -> int:
        return self.buckets[bisect.bisect_left(self.buckets, length)]

    def _take(self) -> tuple[list[_Job], bool]:
        """The oldest jobs that fit one batch, and whether the batch is full (must hold the lock)."""
        taken, longest = [], 0
        for job in self._jobs:
            length = self._bucket(max(longest, len(job.ids)))
            if len(taken) + 1 > self.sizes[length][-1]:
                return taken, True
            taken.append(job)
            longest = max(longest, len(job.ids))
        return taken, False

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._jobs:
                        if self._stopping:
                            return
                        self._cond.wait()
                        continue
                    batch, full = self._take()
                    waited = time.monotonic() - self._jobs[0].arrived
                    if full or waited >= self.max_wait or self._stopping:
                        break
                    self._cond.wait(self.max_wait - waited)
                for _ in batch:
                    self._jobs.popleft()
            self._execute(batch)

    def _execute(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        length = self._bucket(max(len(job.ids) for job in batch))
        rows = next(size for size in self.sizes[length] if size >= len(batch))
        ids = np.zeros((rows, length), np.int32)
        segments = np.zeros((rows, length), np.int32)
        for i, job in enumerate(batch):
            ids[i, : len(job.ids)] = job.ids
            segments[i, : len(job.segments)] = job.segments
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_tokens.observe(rows * length)
        try:
            output = self.model.forward(ids, segments)
            results = [self._result(output[i], len(job.ids), job) for i, job in enumerate(batch)]
        except Exception as error:  # a model failure answers every request in the batch
            for job in batch:
                self._finish(job.request, error=error)
            return
        self.metrics.forward_seconds.observe(time.perf_counter() - started)
        for job, result in zip(batch, results):
            job.request.results[job.index] = result
            job.request.remaining -= 1
            if job.request.remaining == 0:
                self._finish(job.request)

    @staticmethod
    def _result(row: np.ndarray, n_tokens: int, job: _Job) -> np.ndarray:
        if job.pooling is None:
            return row
        vector = row[:n_tokens].mean(axis=0) if job.pooling == "mean" else row[0]
        if job.normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector

    def _finish(self, request: _Request, error: Exception | None = None) -> None:
        with self._cond:
            if request.remaining < 0:  # already answered (an earlier failed batch)
                return
            request.remaining = -1
            self._queued_requests -= 1
            self.metrics.queue_depth.set(self._queued_requests)

        def resolve() -> None:
            if request.future.done():  # the client went away
                return
            if error is None:
                request.future.set_result(request.results)
            else:
                request.future.set_exception(error)

        request.loop.call_soon_threadsafe(resolve)
