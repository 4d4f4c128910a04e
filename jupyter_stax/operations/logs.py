"""Reading a step's stdout/stderr in chunks, safely: the ONE log reader of every surface (the
REST API and the local service both call :func:`read_chunk`).

Only the fixed file names of a step (``stax.out``, ``stax.err``, ``stax.out.N`` for an earlier
attempt N) inside the step directory recorded in the store are ever opened, and only when their
real path is inside the real path of that directory: a ``stax.out`` that is a link to
``/etc/passwd`` is refused (``Forbidden``), and so is anything but a regular file (a FIFO would
block the reader). The same holds on every surface: there is no lenient reader beside this one.

Bytes that are not UTF-8 become U+FFFD (``errors="replace"``, what JSON can carry), or surrogate
escapes (``errors="surrogateescape"``: ``data.encode("utf-8", "surrogateescape")`` gives back
the file's bytes exactly, which the local service offers to Python callers).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Literal

from ..core.api import LogChunk
from ..core.errors import BadRequest, Forbidden, NotFound
from ..core.jobscript import STDERR, STDOUT

STREAMS = {"stdout": STDOUT, "stderr": STDERR}
#: how bytes that are not UTF-8 come back (see the module's docstring)
Undecodable = Literal["replace", "surrogateescape"]


def log_file_name(stream: str, attempt: int | None, current: int, step: str) -> str:
    """The file name of ``stream`` for ``attempt`` (None: the current one)."""
    try:
        base = STREAMS[stream]
    except KeyError:
        raise BadRequest(f"stream must be one of {', '.join(STREAMS)}, not {stream!r}") from None
    if attempt is None or attempt == current:
        return base
    if 1 <= attempt < current:
        return f"{base}.{attempt}"
    have = (
        f"attempts 1 to {current}"
        if current > 1
        else f"attempt {current}"
        if current
        else ("no attempt yet")
    )
    raise NotFound(f"step {step!r} has no attempt {attempt} ({have})")


def utf8_boundary(buf: bytes) -> int:
    """Length of the longest prefix of ``buf`` that does not end inside a UTF-8 character.

    Only an incomplete character at the very end is cut; bytes that are not UTF-8 at all are
    left in place (they decode as U+FFFD)."""
    n = len(buf)
    for back in range(1, min(4, n) + 1):
        c = buf[n - back]
        if c & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        need = _sequence_length(c)  # 1 for ASCII and for bytes that cannot start a character
        return n if back >= need else n - back
    return n


def _inside(path: str, root: str) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


def _empty(final: bool) -> LogChunk:
    return LogChunk(data="", offset=0, next_offset=0, size=0, eof=final)


def open_step_file(step_dir: str, name: str, label: str) -> int | None:
    """A read-only descriptor of the regular file ``step_dir/name`` (None: there is none), or
    Forbidden when it is a link out of the step directory, not a regular file, or moved out
    while it was opened. The ONE rule for every reader of a step's files (logs, the RO-Crate
    export); the caller closes the descriptor."""
    root = os.path.realpath(step_dir)
    real = os.path.realpath(os.path.join(step_dir, name))
    if not _inside(real, root):
        raise Forbidden(
            f"{label} is a link to a file outside the step directory; jupyter_stax serves only "
            "the step's own files"
        )
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Forbidden(f"{label} became a link while it was opened; refused") from None
        raise Forbidden(f"{label} cannot be read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Forbidden(f"{label} is not a regular file; refused")
        opened = f"/proc/self/fd/{fd}"
        if os.path.exists(opened) and not _inside(os.path.realpath(opened), root):
            raise Forbidden(f"{label} moved out of the step directory while it was opened")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_chunk(
    step_dir: str,
    name: str,
    *,
    offset: int,
    limit: int,
    final: bool,
    label: str,
    errors: Undecodable = "replace",
) -> LogChunk:
    """Up to ``limit`` bytes of ``step_dir/name`` from ``offset``. Blocking (file IO): call it
    on a worker thread. ``final``: the step is final (no more output will come). ``label``
    names the file in messages (``stax.out of step 'b'``). ``errors``: see the module."""
    if offset < 0 or limit < 0:
        raise BadRequest("offset and limit must be 0 or more")
    fd = open_step_file(step_dir, name, label)
    if fd is None:
        return _empty(final)
    try:
        size = os.fstat(fd).st_size
        want = min(limit, max(0, size - offset))
        buf = os.pread(fd, want, offset) if want else b""
        cut = utf8_boundary(buf)
        at_end = offset + len(buf) >= size
        if cut < len(buf):
            if final and at_end:
                cut = len(buf)  # a finished step's output ends mid-character: send it as is
            elif cut == 0:
                # ``limit`` is smaller than one character: send that one character whole
                need = _sequence_length(buf[0])
                more = os.pread(fd, need, offset)
                if len(more) == need:
                    buf, cut = more, need
                    size = max(size, offset + need)
        next_offset = offset + cut
        return LogChunk(
            data=buf[:cut].decode("utf-8", errors),
            offset=offset,
            next_offset=next_offset,
            size=size,
            eof=final and next_offset >= size,
        )
    finally:
        os.close(fd)


def _sequence_length(lead: int) -> int:
    """Bytes in the UTF-8 sequence that ``lead`` starts (1 for ASCII and invalid bytes)."""
    if lead >> 5 == 0b110:
        return 2
    if lead >> 4 == 0b1110:
        return 3
    if lead >> 3 == 0b11110:
        return 4
    return 1
