"""MicroBatcher: batch bounds, back-pressure, errors, graceful close."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stgnn.serving.batching import BatchSettings, MicroBatcher, Overloaded


def _run(coro):
    return asyncio.run(coro)


def test_batches_respect_max_batch_and_keep_each_result_with_its_request():
    sizes: list[int] = []

    def double(items):
        sizes.append(len(items))
        return [2 * i for i in items]

    async def main():
        b = MicroBatcher(double, BatchSettings(max_batch=4, max_wait_ms=50))
        b.start()
        out = await asyncio.gather(*(b.submit(i) for i in range(10)))
        await b.close()
        return out

    assert _run(main()) == [2 * i for i in range(10)]
    assert max(sizes) == 4 and sum(sizes) == 10


def test_max_batch_one_runs_each_request_alone():
    sizes: list[int] = []

    async def main():
        b = MicroBatcher(lambda items: sizes.append(len(items)) or list(items), BatchSettings(max_batch=1))
        b.start()
        await asyncio.gather(*(b.submit(i) for i in range(5)))
        await b.close()

    _run(main())
    assert sizes == [1] * 5


def test_a_full_queue_refuses_and_close_finishes_the_queued_requests():
    gate = threading.Event()

    def slow(items):
        gate.wait(5)
        return list(items)

    async def main():
        b = MicroBatcher(slow, BatchSettings(max_batch=1, max_queue=2))
        b.start()
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.05)  # the worker holds request 0 in its forward pass
        queued = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="2 requests are already waiting"):
            await b.submit(3)
        closing = asyncio.ensure_future(b.close())
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded, match="shutting down"):
            await b.submit(4)
        gate.set()
        await closing
        return await first, [await q for q in queued]

    assert _run(main()) == (0, [1, 2])


def test_an_error_reaches_every_request_of_its_batch_and_the_worker_goes_on():
    calls = []

    def flaky(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return list(items)

    async def main():
        b = MicroBatcher(flaky, BatchSettings(max_batch=2, max_wait_ms=50))
        b.start()
        results = await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
        again = await b.submit(3)
        await b.close()
        return results, again

    results, again = _run(main())
    assert all(isinstance(r, RuntimeError) for r in results) and again == 3


@pytest.mark.parametrize("kw", [{"max_batch": 0}, {"max_wait_ms": -1}, {"max_queue": 0}])
def test_bad_settings(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        BatchSettings(**kw)
