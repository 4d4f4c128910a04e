"""Moving a transfer's bytes between the transport's event loop and the worker thread that
reads or writes the local files, without either thread freeing what the other allocated.

Fetching (:func:`pipe` + :func:`channel_to_pipe`): the loop reads the channel in pieces of
:data:`PIECE` bytes and writes them to an OS pipe (non-blocking, waiting for room: the worker's
pace holds the channel back, so the SSH window bounds what is buffered); the worker reads the
pipe with plain blocking reads. Handing the channel's pieces themselves to the worker (one call
per MiB) made the resident memory of a 1 GiB asyncssh fetch grow with the file (~350 MB; ~200
MB when the loop copied them into the worker's buffer instead); through the pipe it measured
77-205 MB over several runs here (not flat yet: see bench/README.md; the openssh client's stays
at ~49 MB). Either side ending early ends the other: the worker closes its end (the loop then reads
the rest and drops it, so the remote command ends); the loop closes its end after an error (the
worker reads EOF) and the error is the result of the pump's future.

Sending (:func:`send`): the worker gathers the tar stream in ONE reused buffer and lends it for
one call at a time (it waits for the call): the loop copies out the bytes it sends (the channel
frees them once sent). The worker waiting also leaves the interpreter to the loop while the
bytes move: a worker that kept running Python beside it (building tar headers for 10,000 small
files, writing them to a pipe) starved the loop (each of its many lock hand-overs waits for the
other thread's switch interval) and such a put took ~3.5x as long.

Coroutines run on the transport's loop; :func:`pipe` is called on the worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
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

async def send(stream: ByteStream, view: memoryview, drain: bool) -> None:
    """Send a copy of ``view`` (made here, freed here once sent) to the stream's stdin, in
    pieces of :data:`PIECE` bytes: below the C heap's mmap threshold, so the pieces freed once
    sent are reused by the next ones (whole-MiB copies moved that threshold up and the heap
    kept what they left)."""
    for at in range(0, len(view), PIECE):
        await stream.write(bytes(view[at : at + PIECE]), drain=False)
    if drain:
        await stream.write(b"", drain=True)

