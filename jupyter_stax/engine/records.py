"""Reading the steps' start/exit records of one cluster in batches.

Every read the engine asks for in one turn of its event loop (the periodic check of all running
steps, the outcomes of the jobs one status poll reported ended, ...) becomes ONE
:meth:`~.transport.Transport.read_records` call on a worker thread: one round trip per cluster,
whatever the number of steps. A remote cluster's reader waits ``window`` seconds (a small
fraction of a round trip) before it reads, so that the reads the updates of one status poll
start (they reach the loop one by one, from the poll's thread) are one round trip too.

Threading: :meth:`RecordReader.read_many` is called on the event-loop thread only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .transport import StepRecords, Transport

NONE = StepRecords(None, None)


class RecordReader:
    """Coalesces the record reads of one cluster (see the module docstring)."""

    def __init__(
        self, transport: Transport, io: Callable[..., Awaitable[Any]], window: float = 0.0
    ) -> None:
        self.transport = transport
        self._io = io  # runs a blocking call on a worker thread
        self.window = window
        # one entry per read_many call (a sweep asks for thousands of directories at once:
        # one future per call, not per directory)
        self._waiting: list[tuple[Sequence[str], asyncio.Future[dict[str, StepRecords]]]] = []
        self._flush: asyncio.Handle | asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, step_dir: str) -> StepRecords:
        return (await self.read_many([step_dir]))[step_dir]

    async def read_many(self, step_dirs: Sequence[str]) -> dict[str, StepRecords]:
        """The records of ``step_dirs``. Raises TransportError when the cluster did not
        answer (every caller of that batch gets it)."""
        if not step_dirs:
            return {}
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, StepRecords]] = loop.create_future()
        self._waiting.append((step_dirs, fut))
        if self._flush is None:
            self._flush = (
                loop.call_later(self.window, self._start) if self.window > 0
                else loop.call_soon(self._start)
            )
        return await fut

    def _start(self) -> None:
        self._flush = None
        waiting, self._waiting = self._waiting, []
        t = asyncio.get_running_loop().create_task(self._read(waiting), name="stax-records")
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _read(
        self, waiting: list[tuple[Sequence[str], asyncio.Future[dict[str, StepRecords]]]]
    ) -> None:
        dirs = (
            list(waiting[0][0]) if len(waiting) == 1
            else list(dict.fromkeys(d for ds, _ in waiting for d in ds))
        )
        try:
            got: dict[str, StepRecords] = await self._io(self.transport.read_records, dirs)
        except BaseException as e:
            for _, f in waiting:
                if not f.done():
                    f.set_exception(e if isinstance(e, Exception) else RuntimeError(e))
            if not isinstance(e, Exception):
                raise
            return
        for ds, f in waiting:
            if not f.done():
                f.set_result({d: got.get(d, NONE) for d in ds})

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        for t in self._tasks:
            t.cancel()
