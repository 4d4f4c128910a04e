"""Moving a transfer's bytes between the transport's event loop and the worker thread that
reads or writes the local files, through an OS pipe.

Why a pipe and not the bytes themselves: each thread frees what it allocates. Handing the
channel's buffers to the worker thread (and the worker's to the loop) made the allocator of this
process keep the freed memory of the other thread's arena: the resident memory of a 1 GiB fetch
grew with the file (~350 MB). Through a pipe, the loop reads the channel in pieces of
:data:`PIECE` bytes and writes them to the pipe (non-blocking, waiting for room: the worker's
pace holds the channel back, so the SSH window bounds what is buffered), and the worker reads
them with plain blocking reads; each side's buffers stay on its side. Memory: the pipe (1 MiB
where the kernel allows), the channel's window, and the worker's fixed buffers, whatever the
size of the file.

Either side ending early ends the other: the worker closes its end (the loop's next write gets
EPIPE); the loop closes its end after an error (the worker reads EOF, or its write gets EPIPE),
and the error is the result of the pump's future.

Coroutines run on the transport's loop; :func:`pipe` is called on the worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os

from .base import ByteStream

#: bytes read from the channel (or the pipe) at a time on the loop
PIECE = 1 << 16
#: the pipe's capacity asked from the kernel (Linux: F_SETPIPE_SZ, at most pipe-max-size)
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def pipe() -> tuple[int, int]:
    """A pipe (read end, write end) as large as the kernel allows up to :data:`PIPE_SIZE`."""
    r, w = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


async def _ready(fd: int, writer: bool) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def done() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if writer else loop.add_reader)(fd, done)
    try:
        await fut
    finally:
        (loop.remove_writer if writer else loop.remove_reader)(fd)


async def channel_to_pipe(stream: ByteStream, fd: int) -> int:
    """Copy the stream's stdout into the pipe's write end ``fd`` (closed at the end, always)
    until the stream ends; the number of bytes copied. When the reader closed its end first
    (it read all it wanted: tar's end blocks, the rest is padding), the rest is read and
    dropped, so the remote command ends and its exit status can be read."""
    os.set_blocking(fd, False)
    total = 0
    reader_gone = False
    try:
        while chunk := await stream.read(PIECE):
            view = memoryview(chunk)
            while view and not reader_gone:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    await _ready(fd, writer=True)
                    continue
                except BrokenPipeError:
                    reader_gone = True
                    break
                view = view[n:]
                total += n
    finally:
        os.close(fd)
    return total


async def pipe_to_channel(fd: int, stream: ByteStream) -> int:
    """Copy what the worker writes into the pipe's read end ``fd`` to the stream's stdin until
    EOF (then the stream's stdin is closed); ``fd`` is closed at the end, always."""
    os.set_blocking(fd, False)
    total = 0
    try:
        while True:
            try:
                data = os.read(fd, PIECE)
            except BlockingIOError:
                await _ready(fd, writer=False)
                continue
            except OSError as e:  # pragma: no cover (a pipe's read end does not fail)
                if e.errno == errno.EINTR:
                    continue
                raise
            if not data:
                break
            # wait for the channel every time: the SSH window, not this loop, holds the bytes
            await stream.write(data, drain=True)
            total += len(data)
        await stream.write_eof()
    finally:
        os.close(fd)
    return total
