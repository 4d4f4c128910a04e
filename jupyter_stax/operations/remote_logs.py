"""Reading a step's stdout/stderr on a cluster through its transport, as strictly as :mod:`.logs`.

A remote step's log lives on the cluster: it is read with ONE command per chunk through the
cluster's :class:`~jupyter_stax.engine.transport.Transport` (one SSH round trip for a remote
cluster). The command is a constant ``sh`` snippet (:data:`SNIPPET`); the step directory, the
file name, the offset and the byte count are its positional arguments: data, never code, so a
directory with quotes, ``$(...)`` or newlines in its name is only ever a name.

The snippet applies the rules of the local reader (:func:`.logs.read_chunk`), on the cluster:

- the file's real path (``readlink -f``) must be inside the real path of the step directory:
  a ``stax.out`` that is a link to ``/etc/passwd`` is refused (``Forbidden``);
- only a regular file is opened (a FIFO would block the reader, a device would never end);
- after it is opened, the open file (``/proc/$$/fd/3`` where there is one) must still be a
  regular file inside the step directory;
- at most ``limit`` bytes (capped by the caller at ``LOG_LIMIT_MAX``) are sent, base64-encoded
  (the transport's command output is text), plus 3 bytes to complete a UTF-8 character that
  ``limit`` cut (the local reader reads those with a second ``pread``).

What is sent back becomes a :class:`~jupyter_stax.core.api.LogChunk` by the same rules as the
local reader's (:func:`chunk_of`): same offsets, same UTF-8 boundaries, same ``eof``.
Only ``sh`` and coreutils (``readlink``, ``stat``, ``tail``, ``head``, ``base64``) are needed.
"""

from __future__ import annotations

import base64
import binascii

from ..core.api import LogChunk
from ..core.errors import BadRequest, Forbidden, StaxError
from ..engine.transport import Transport, TransportError
from .logs import Undecodable, _sequence_length, utf8_boundary

#: seconds one remote log read may take (a FIFO swapped in after the checks blocks until then)
READ_TIMEOUT = 30.0
#: extra bytes read beyond ``limit`` to complete a UTF-8 character cut by it
_SLACK = 3

#: exit statuses of :data:`SNIPPET`
MISSING, OUTSIDE, NOT_REGULAR, UNREADABLE, MOVED = 3, 4, 5, 6, 7

#: the remote reader: ``sh -c SNIPPET stax-log STEP_DIR NAME OFFSET COUNT``. Prints a start
#: marker, the file's size on one line, then at most COUNT bytes from OFFSET in base64.
SNIPPET = r"""
d=$1 n=$2 off=$3 cnt=$4
case $d in "~") d=$HOME ;; "~/"*) d=$HOME/${d#"~/"} ;; esac
[ -d "$d" ] || exit 3
root=$(cd -P -- "$d" 2>/dev/null && pwd -P) || exit 6
f=$root/$n
[ -e "$f" ] || [ -L "$f" ] || exit 3
real=$(readlink -f -- "$f") || exit 4
case $real in "$root"/*) ;; *) exit 4 ;; esac
[ -e "$real" ] || exit 3
[ -f "$real" ] && [ ! -L "$real" ] || exit 5
[ -r "$real" ] || exit 6
exec 3< "$real" || exit 6
if [ -e "/proc/$$/fd/3" ]; then
  now=$(readlink "/proc/$$/fd/3") || exit 7
  case $now in "$root"/*) ;; *) exit 7 ;; esac
  [ -f "/proc/$$/fd/3" ] || exit 5
  size=$(stat -L -c %s "/proc/$$/fd/3") || exit 6
else
  size=$(stat -L -c %s -- "$real") || exit 6
fi
printf '@@stax-start\n%s\n' "$size"
if [ "$cnt" -gt 0 ] && [ "$off" -lt "$size" ]; then
  tail -c +"$((off + 1))" <&3 | head -c "$cnt" | base64
fi
exit 0
"""

_START = "@@stax-start\n"


def remote_command(step_dir: str, name: str, offset: int, count: int) -> list[str]:
    """The argv of one read (the snippet is constant; everything else is an argument)."""
    return ["sh", "-c", SNIPPET, "stax-log", step_dir, name, str(int(offset)), str(int(count))]


def parse_output(stdout: str) -> tuple[int, bytes]:
    """(size, bytes) from the snippet's output (ValueError when it is not that)."""
    at = stdout.find(_START)
    if at < 0:
        raise ValueError("no start marker")
    body = stdout[at + len(_START):]
    size_line, _, data = body.partition("\n")
    size = int(size_line.strip())
    if size < 0:
        raise ValueError("negative size")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except binascii.Error as e:
        raise ValueError(f"broken base64: {e}") from None
    return size, raw


def chunk_of(
    got: bytes, size: int, offset: int, limit: int, final: bool, errors: Undecodable
) -> LogChunk:
    """The chunk the local reader gives for the same file: ``got`` is what was read from
    ``offset`` (up to ``limit`` bytes plus up to 3 more that complete a cut character)."""
    buf = got[: min(limit, max(0, size - offset))]  # what the local reader's fstat allowed
    cut = utf8_boundary(buf)
    at_end = offset + len(buf) >= size
    if cut < len(buf):
        if final and at_end:
            cut = len(buf)
        elif cut == 0:
            need = _sequence_length(buf[0])
            if len(got) >= need:
                buf, cut = got[:need], need
                size = max(size, offset + need)
    next_offset = offset + cut
    return LogChunk(
        data=buf[:cut].decode("utf-8", errors),
        offset=offset,
        next_offset=next_offset,
        size=size,
        eof=final and next_offset >= size,
    )


def read_remote_chunk(
    transport: Transport,
    step_dir: str,
    name: str,
    *,
    offset: int,
    limit: int,
    final: bool,
    label: str,
    errors: Undecodable = "replace",
) -> LogChunk:
    """Up to ``limit`` bytes of ``step_dir/name`` on the cluster, from ``offset``: ONE command
    through ``transport``. Blocking. Forbidden for what the local reader refuses;
    TransportError (HTTP 503) when the cluster does not answer."""
    if offset < 0 or limit < 0:
        raise BadRequest("offset and limit must be 0 or more")
    count = limit + _SLACK if limit else 0
    res = transport.run(remote_command(step_dir, name, offset, count), timeout=READ_TIMEOUT)
    rc = res.returncode
    if rc == MISSING:
        return LogChunk(data="", offset=0, next_offset=0, size=0, eof=final)
    if rc == OUTSIDE:
        raise Forbidden(
            f"{label} is a link to a file outside the step directory; jupyter_stax serves only "
            "the step's own files"
        )
    if rc == NOT_REGULAR:
        raise Forbidden(f"{label} is not a regular file; refused")
    if rc == UNREADABLE:
        raise Forbidden(f"{label} cannot be read on {transport.where} (permission denied)")
    if rc == MOVED:
        raise Forbidden(f"{label} moved out of the step directory while it was opened")
    if rc != 0:
        msg = " ".join(res.stderr.split())[-300:] or "no message"
        raise StaxError(f"reading {label} on {transport.where} failed (exit {rc}): {msg}")
    try:
        size, got = parse_output(res.stdout)
    except ValueError as e:
        raise TransportError(
            f"reading {label} on {transport.where}: the answer was cut off ({e}); try again"
        ) from None
    return chunk_of(got, size, offset, limit, final, errors)
