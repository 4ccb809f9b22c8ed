"""Micro-batching of concurrent forecast requests, off the event loop.

Requests wait in a bounded :class:`asyncio.Queue`.  One worker task takes the first waiting
request, then collects more until ``max_batch`` windows are gathered or ``max_wait_ms`` has
passed since the first, and runs one forward pass for all of them in a thread pool, so the
event loop keeps answering (``/health``, new requests) while the model computes.  With
``max_batch = 1`` every request gets its own forward pass (no batching), through the same queue.

Back-pressure: a full queue refuses a request at once (:class:`Overloaded`, HTTP 503) instead of
letting latency grow without bound.  :meth:`MicroBatcher.close` stops taking requests and
finishes the ones already queued (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BatchSettings", "MicroBatcher", "Overloaded"]

In = TypeVar("In")
Out = TypeVar("Out")


class Overloaded(RuntimeError):
    """The request queue is full, or the batcher is shutting down."""


@dataclass(frozen=True)
class BatchSettings:
    """How requests are batched.

    Attributes:
        max_batch: Most windows in one forward pass (1: no batching).
        max_wait_ms: Longest a request waits for others to join its batch.
        max_queue: Most requests waiting; more are refused with HTTP 503.
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")


class MicroBatcher(Generic[In, Out]):
    """Runs ``run(items) -> results`` (one result per item, same order) on batches of concurrent requests.

    Args:
        run: The batched function; it runs in a worker thread, never on the event loop.
        settings: Batch size, wait and queue bounds.

    Use it inside a running event loop: :meth:`start`, then ``await submit(item)`` from request
    handlers, then :meth:`close`.
    """

    def __init__(self, run: Callable[[Sequence[In]], Sequence[Out]], settings: BatchSettings) -> None:
        self.run = run
        self.settings = settings
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] = asyncio.Queue(settings.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stgnn-forward")
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self.batches_run = 0
        self.items_run = 0

    @property
    def queued(self) -> int:
        """Requests waiting for a forward pass."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the worker task (inside the running event loop)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, item: In) -> Out:
        """The result for ``item``, computed in a batch with whatever else is waiting.

        Raises:
            Overloaded: The queue is full or the batcher is closing.
        """
        if self._closing or self._worker is None:
            raise Overloaded("the server is shutting down" if self._closing else "the batcher is not running")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Overloaded(f"{self.settings.max_queue} requests are already waiting; retry later") from None
        return await future

    async def _collect(self) -> list[tuple[In, asyncio.Future[Out]]]:
        first = await self._queue.get()
        pending = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_wait_ms / 1000
        while len(pending) < self.settings.max_batch:
            if not self._queue.empty():
                pending.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                pending.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return pending

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._collect()
            live = [(item, fut) for item, fut in pending if not fut.cancelled()]  # a client went away
            if live:
                try:
                    results = await loop.run_in_executor(self._executor, self.run, [item for item, _ in live])
                    if len(results) != len(live):
                        raise RuntimeError(f"batched function returned {len(results)} results for {len(live)} items")
                except Exception as exc:  # handed to each waiting request; the worker keeps running
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for (_, fut), result in zip(live, results, strict=True):
                        if not fut.done():
                            fut.set_result(result)
                    self.batches_run += 1
                    self.items_run += len(live)
            for _ in pending:
                self._queue.task_done()

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, stop the worker and its thread."""
        self._closing = True
        if self._worker is not None:
            await self._queue.join()
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._executor.shutdown(wait=True)
