#!/usr/bin/env python3
"""A TCP relay on 127.0.0.1 that holds every chunk ``delay`` seconds each way: WAN latency for
tests and benchmarks on a kernel without ``netem`` (50 ms each way = 100 ms round trip).

Chunks are delivered in order, each ``delay`` after it was read, without serialising the delays
(a stream of chunks arrives as a stream, shifted by ``delay``), so the relay adds latency, not
a bandwidth limit. Standard library only; the package does not depend on it.

As a script::

    python3 scripts/ssh/delay_relay.py --target 127.0.0.1:2222 [--listen-port 0] [--delay-ms 50]

prints ``RELAY_PORT=N`` once listening and runs until killed. Imported (tests, bench)::

    with RelayThread("127.0.0.1", 2222, delay=0.05) as relay:
        ... connect to 127.0.0.1:relay.port ...
        relay.connections        # how many TCP connections went through it
        relay.break_connections()  # drop every open connection (a network cut)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from types import TracebackType


class DelayRelay:
    """The asyncio relay (runs in the caller's event loop)."""

    def __init__(self, target_host: str, target_port: int, delay: float = 0.05) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.port = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.break_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def break_connections(self) -> None:
        """Drop every open connection at once (both sides see a reset/EOF)."""
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except OSError:
            cw.transport.abort()
            return
        self._writers.update((cw, sw))
        try:
            await asyncio.gather(self._pipe(cr, sw), self._pipe(sr, cw))
        finally:
            for w in (cw, sw):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await sender


class RelayThread:
    """A :class:`DelayRelay` in a thread of its own (for synchronous tests and benchmarks)."""

    def __init__(self, target_host: str, target_port: int, delay: float = 0.05) -> None:
        self.relay = DelayRelay(target_host, target_port, delay)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.relay.port

    @property
    def connections(self) -> int:
        return self.relay.connections

    def break_connections(self) -> None:
        self._loop.call_soon_threadsafe(self.relay.break_connections)

    def start(self, port: int = 0) -> RelayThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.relay.start(port), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.relay.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> RelayThread:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="HOST:PORT to relay to")
    ap.add_argument("--listen-port", type=int, default=0, help="port on 127.0.0.1 (0: free)")
    ap.add_argument("--delay-ms", type=float, default=50.0, help="delay each way (ms)")
    a = ap.parse_args()
    host, _, port = a.target.rpartition(":")

    async def run() -> None:
        relay = DelayRelay(host or "127.0.0.1", int(port), a.delay_ms / 1000)
        print(f"RELAY_PORT={await relay.start(a.listen_port)}", flush=True)
        started = time.monotonic()
        try:
            await asyncio.Event().wait()
        finally:
            print(f"relayed {relay.connections} connections in {time.monotonic() - started:.0f} s")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
