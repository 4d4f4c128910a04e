"""Moving a transfer's bytes between the transport's event loop and the worker thread that
reads or writes the local files, without either thread freeing what the other allocated.

Fetching: the command's stdout is a pipe the worker reads with blocking reads (:func:`pipe`;
with asyncssh the channel's session writes it, see :mod:`.asyncssh_pipe`).

Sending (:func:`send`): the worker gathers the tar stream in ONE reused buffer and lends it for
one call at a time (it waits for the call): the loop copies out the bytes it sends (the channel
frees them once sent). The worker waiting also leaves the interpreter to the loop while the
bytes move: a worker that kept running Python beside it (building tar headers for 10,000 small
files, writing them to a pipe) starved the loop (each of its many lock hand-overs waits for the
other thread's switch interval) and such a put took ~3.5x as long.

Coroutines run on the transport's loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from .base import ByteStream

#: bytes handed to the channel at a time on the loop when sending
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

async def send(stream: ByteStream, view: memoryview, drain: bool) -> None:
    """Send a copy of ``view`` (made here, freed here once sent) to the stream's stdin, in
    pieces of :data:`PIECE` bytes: below the C heap's mmap threshold, so the pieces freed once
    sent are reused by the next ones (whole-MiB copies moved that threshold up and the heap
    kept what they left)."""
    for at in range(0, len(view), PIECE):
        await stream.write(bytes(view[at : at + PIECE]), drain=False)
    if drain:
        await stream.write(b"", drain=True)

