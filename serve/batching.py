"""Opportunistic batching: the next batch is formed when the model is free, not before.

Ray Serve's `@serve.batch` (Ray 2.60) forms batches in a loop that does not wait for the
running batch: with `max_concurrent_batches=1`, each batch is cut after
`batch_wait_timeout_s` and then queues behind the running one. For a CPU model whose
batch takes hundreds of milliseconds, the requests that arrive meanwhile are cut into
many batches of one or two, each paying the per-call cost of the model. Measured on the
2-core machine at 16 concurrent requests: batches of 1-3 images that waited about 1 s in
that queue (docs/experiments.md). Here one loop takes everything that queued while the model
ran (up to `max_batch_size`) and runs the model on it; only when that is fewer requests
than the last batch had does it wait, at most `wait_s`, for the rest: under load the
callers of the last batch come back, and a lone request (last batch of one) never waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


class Batcher:
    """`await batcher(item)` -> that item's result from `run(items)`, called on a
    worker thread with up to `max_batch_size` items at a time, one call at a time."""

    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], max_batch_size: int,
                 wait_s: float):
        self.run, self.max_batch_size, self.wait_s = run, max_batch_size, wait_s
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self._last_size = 1

    async def __call__(self, item: Any) -> Any:
        if self._worker is None or self._worker.done():  # started on the serving loop
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._serve_batches())
        assert self._queue is not None
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _serve_batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = await self._next_batch(self._queue)
            live = [(item, future) for item, future in batch if not future.done()]
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self.run, [item for item, _ in live])
            except Exception as exc:  # every caller hears of it; the loop keeps serving
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _next_batch(self, queue: asyncio.Queue) -> list[tuple[Any, asyncio.Future]]:
        """Whatever queued while the model ran; if that is fewer than the last batch had,
        wait up to wait_s for them: the callers of the last batch tend to come back."""
        batch = [await queue.get()]
        target = min(self.max_batch_size, self._last_size)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if len(batch) >= target or remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except asyncio.TimeoutError:  # not TimeoutError before Python 3.11
                break
        self._last_size = len(batch)
        return batch
