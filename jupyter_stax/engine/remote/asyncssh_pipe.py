"""An asyncssh exec channel whose stdout goes straight into an OS pipe (the ``raw="stdout"``
stream of :class:`.asyncssh_client.AsyncSSHConnection`): a fetch's worker thread reads the
pipe with blocking reads, as it reads the ``ssh`` process's stdout with the openssh client.

Why not the process's ``stdout.read`` (asyncssh's stream session): with a consumer slower than
the wire, that session pauses the channel when it holds a window's worth (2 MiB), and each
small read resumes it for ONE packet; asyncssh sends a window adjust on every delivery computed
from the bytes *arrived* (the ones the paused channel buffers count as consumed), so each
resume lets the server send up to another window while only 32-64 KiB left. The channel's
buffer then grew with the transfer (25 and 58 MB measured during 1 GiB fetches, 136 MB peak
RSS for 4 GiB; bench/README.md). Here a resume takes ALL the channel buffered (the pause is
asked only after the deliveries of that turn of the loop), so the server is never granted more
than one window beyond what the pipe took, and nothing is joined or sliced: each packet's bytes
go to the pipe as they came (32 KiB, below the C heap's mmap threshold).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from typing import Any

import asyncssh

from . import pump

#: the pipe's writer pauses the channel above this many bytes held here, resumes below LOW
HIGH = 1 << 20
LOW = 1 << 18
#: stderr kept (the first bytes: the cluster's reason for a failure)
ERR_KEPT = 1 << 16


class PipeSession(asyncssh.SSHClientSession[bytes]):
    """Stdout into the pipe's write end ``fd`` (owned: closed at the end, always), stderr kept
    (its first :data:`ERR_KEPT` bytes), the exit status recorded. When the reader closed its
    end first, the rest is read and dropped (the command ends and its status can be read).

    The pipe only ever gets the stream's bytes in order, without a gap: when the connection
    drops, what is held here still goes to the pipe, then it ends; nothing delivered after the
    drop is taken (asyncssh hands the session what a paused channel buffered if it is resumed
    while it says the connection is lost). So a fetch cut by a dropped connection keeps the
    file's first bytes, which the next try continues. (Dropping the held bytes and resuming
    the channel there put its buffer into the pipe after a hole: the kept copy failed its
    check and the whole file came again.)"""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        os.set_blocking(fd, False)
        self.loop = asyncio.get_running_loop()
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self.held: collections.deque[memoryview] = collections.deque()
        self.held_bytes = 0
        self.waiting = False  # a writer callback is registered for fd
        self.paused = False
        self.pause_asked = False
        self.eof = False
        self.reader_gone = False
        self.lost = False  # the connection dropped: no byte is taken any more
        self.err = bytearray()
        self.exc: Exception | None = None
        self.closed = asyncio.Event()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.received = 0

    # -- asyncssh callbacks
    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            if len(self.err) < ERR_KEPT:
                self.err += data
            return
        self.received += len(data)
        if self.reader_gone or self.lost or self.fd is None:
            return
        view = memoryview(data)
        if not self.held:
            view = self._write(view)
        if view:
            self.held.append(view)
            self.held_bytes += len(view)
            self._wait_writable()
            if self.held_bytes > HIGH and not self.paused and not self.pause_asked:
                # not now: a resume's flush delivers the channel's whole buffer first
                self.pause_asked = True
                self.loop.call_soon(self._pause)

    def eof_received(self) -> bool:
        self.eof = True
        self._close_when_written()
        return True

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.exc = exc
        self.eof = True
        if exc is not None:  # dropped: the reader gets what is held, then the end (early)
            self.lost = True
        self._close_when_written()
        self.can_write.set()
        self.closed.set()

    # -- the pipe
    def _write(self, view: memoryview) -> memoryview:
        """Write what the pipe takes now; the rest of ``view``."""
        assert self.fd is not None
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self.reader_gone = True
                self._drop_held()
                return view[:0]
            view = view[n:]
        return view

    def _wait_writable(self) -> None:
        if not self.waiting and self.fd is not None:
            self.waiting = True
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        while self.held and self.fd is not None:
            first = self.held[0]
            rest = self._write(first)
            if not self.held:  # the reader went away
                break
            self.held_bytes -= len(first) - len(rest)
            if rest:
                self.held[0] = rest
                break
            self.held.popleft()
        if not self.held:
            self._stop_waiting()
            self._close_when_written()
        if self.paused and self.held_bytes < LOW:
            self.paused = False
            if self.chan is not None and not self.lost:
                self.chan.resume_reading()  # delivers what the channel buffered (may pause)

    def _pause(self) -> None:
        self.pause_asked = False
        if self.held_bytes > HIGH and not self.paused and self.chan is not None:
            self.paused = True
            self.chan.pause_reading()

    def _drop_held(self) -> None:
        """The reader went away: drop what is held, read the rest (to drop it too)."""
        self.held.clear()
        self.held_bytes = 0
        if self.paused and self.chan is not None and not self.lost:
            self.paused = False
            self.chan.resume_reading()

    def _stop_waiting(self) -> None:
        if self.waiting and self.fd is not None:
            self.waiting = False
            self.loop.remove_writer(self.fd)

    def _close_when_written(self) -> None:
        if self.eof and not self.held:
            self.close_fd()

    def close_fd(self) -> None:
        """Close the pipe's write end (idempotent): the reader sees the end of the stream."""
        self._stop_waiting()
        fd, self.fd = self.fd, None
        self.held.clear()
        self.held_bytes = 0
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


async def open_pipe_session(
    conn: asyncssh.SSHClientConnection, command: str
) -> tuple[Any, PipeSession, int]:
    """Run ``command`` on ``conn`` with its stdout into a new pipe: (channel, session, the
    pipe's read end for the caller)."""
    r, w = pump.pipe()
    made: list[PipeSession] = []

    def factory() -> PipeSession:
        made.append(PipeSession(w))
        return made[-1]

    try:
        chan, _ = await conn.create_session(factory, command, encoding=None)
    except BaseException:
        os.close(r)
        if made:
            made[0].close_fd()
        else:
            os.close(w)
        raise
    return chan, made[0], r
