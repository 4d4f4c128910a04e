"""Work that many tasks ask for in one turn of the event loop, done in batches.

The engine submits every step that became ready as a task of its own (its retries, its failure,
its cancel are its own), yet on a remote cluster each call to the cluster is a round trip. A
:class:`Batcher` joins them again: the items asked for in one turn of the loop (every step of
one ``_schedule`` call reaches its first ``await`` in the same turn) go to ONE blocking call, in
chunks of at most ``limit()`` items, each chunk on a worker thread; each asker gets its own
item's result or exception. ``limit() == 1`` is one call per item (several at once: the
caller's worker slots). A local cluster's chunks are small (``engine.LOCAL_BATCH``): a call
costs no round trip there, but each one is a thread hand-off and a few loop turns.

Threading: :meth:`Batcher.__call__` and :meth:`Batcher.close` run on the event-loop thread;
``run`` runs on a worker thread (through ``call``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

#: runs a blocking ``fn(items)`` on a worker thread and returns its result
Call = Callable[[Callable[[list[Any]], Any], list[Any]], Awaitable[Any]]


class Batcher(Generic[I, R]):
    """Coalesces the items of one loop turn into calls of ``run`` (see the module docstring).

    ``run(items)`` returns one entry per item, in order: its result, or the exception that
    item's asker gets. An exception that ``run`` raises goes to every asker of that chunk."""

    def __init__(
        self, run: Callable[[list[I]], Sequence[R | BaseException]], limit: Callable[[], int],
        call: Call,
    ) -> None:
        self.run = run
        self.limit = limit
        self.call = call
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._flush: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: sizes of the chunks run so far (for tests and benchmarks)
        self.chunks: list[int] = []

    async def __call__(self, item: I) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, fut))
        if self._flush is None:
            self._flush = loop.call_soon(self._start)
        return await fut

    def _start(self) -> None:
        self._flush = None
        waiting, self._waiting = self._waiting, []
        waiting = [(item, fut) for item, fut in waiting if not fut.done()]  # asker canceled
        n = max(1, self.limit())
        loop = asyncio.get_running_loop()
        for k in range(0, len(waiting), n):
            t = loop.create_task(self._run(waiting[k:k + n]), name="stax-batch")
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _run(self, chunk: list[tuple[I, asyncio.Future[R]]]) -> None:
        self.chunks.append(len(chunk))
        try:
            got: Sequence[R | BaseException] = await self.call(
                self.run, [item for item, _ in chunk]
            )
            if len(got) != len(chunk):
                raise RuntimeError(f"a batch of {len(chunk)} items gave {len(got)} results")
        except BaseException as e:
            for _, fut in chunk:
                if fut.done():
                    continue
                if isinstance(e, Exception):
                    fut.set_exception(e)
                else:  # the engine stops
                    fut.cancel()
            if not isinstance(e, Exception):
                raise
            return
        for (_, fut), r in zip(chunk, got, strict=True):
            if fut.done():
                continue
            if isinstance(r, BaseException):
                fut.set_exception(r)
            else:
                fut.set_result(r)

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for t in self._tasks:
            t.cancel()
