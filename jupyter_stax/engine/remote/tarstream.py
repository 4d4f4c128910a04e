"""Tar streams at the pace of the wire: headers written and members read without the
:mod:`tarfile` module's per-member cost and buffering.

* :func:`file_header`: the header of one regular file, byte for byte what
  ``tarfile.TarInfo.tobuf(PAX_FORMAT)`` writes (a template filled in: ~10x cheaper per file,
  which is what 10,000 small files cost); a name that needs an extended header (not ASCII,
  longer than 100 bytes) or a number too large goes through :mod:`tarfile` itself.
* :class:`TarReader`: the members of a tar stream read from a file descriptor into ONE reused
  buffer of :data:`~jupyter_stax.engine.landing.CHUNK` bytes; a member's content is lent as views
  of that buffer (hashed and written by the caller before the next piece is read). ``tarfile``'s
  stream mode joined and sliced a new MiB-sized ``bytes`` per read, and the C heap of a 1 GiB
  fetch grew to 77-231 MB; with the reused buffer nothing is allocated per piece. Names come from
  GNU long-name members, PAX ``path`` records or the ustar name and prefix, as tar wrote them
  (``surrogateescape`` for bytes that are not UTF-8): any name is data.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from typing import NamedTuple

from ..landing import CHUNK

BLOCK = tarfile.BLOCKSIZE
_ZERO = bytes(BLOCK)
#: a header's extended data (long name, PAX records) larger than this is refused
MAX_META = 1 << 20
_NUMBER_LIMIT = 8**11  # what 11 octal digits hold (size, mtime)


def _template() -> bytes:
    info = tarfile.TarInfo("x")
    info.size, info.mode, info.mtime = 0, 0o644, 0
    buf = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    assert len(buf) == BLOCK
    return buf


_TEMPLATE = _template()


def file_header(name: str, size: int, mode: int, mtime: int) -> bytes:
    """The tar header of a regular file ``name`` (mode bits ``mode & 0o7777``)."""
    if not (name.isascii() and 0 < len(name) <= 100 and 0 <= size < _NUMBER_LIMIT
            and 0 <= mtime < _NUMBER_LIMIT):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, mtime
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    h = bytearray(_TEMPLATE)
    h[0:100] = name.encode("ascii").ljust(100, b"\0")
    h[100:108] = b"%07o\0" % (mode & 0o7777)
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % mtime
    h[148:156] = b"        "
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


class Entry(NamedTuple):
    """One member: its name as written, whether it is a regular file, its content's size."""

    name: str
    regular: bool
    size: int


def parse_pax(data: bytes) -> dict[str, str]:
    """The records of a PAX extended header (``"%d %s=%s\\n"``); values decoded as UTF-8
    (``surrogateescape``). A malformed record is a :class:`tarfile.ReadError`."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        sp = data.find(b" ", pos)
        if sp < 0:
            raise tarfile.ReadError("bad PAX record")
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise tarfile.ReadError("bad PAX record length") from None
        if length <= sp - pos + 1 or pos + length > len(data):
            raise tarfile.ReadError("bad PAX record")
        key, eq, value = data[sp + 1 : pos + length - 1].partition(b"=")
        if not eq or data[pos + length - 1] != 0x0A:
            raise tarfile.ReadError("bad PAX record")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


_POSIX_MAGIC = b"ustar\x0000"
_GNU_MAGIC = b"ustar  \x00"


def _plain_file(block: bytes) -> tuple[str, int] | None:
    """Name and size of a regular file's header in the common case (ustar or GNU magic, octal
    numbers, the checksum right), without :mod:`tarfile`'s full parse; None otherwise (then
    :meth:`tarfile.TarInfo.frombuf` reads it, or says what is wrong)."""
    if block[156:157] not in (b"0", b"\0"):
        return None
    magic = block[257:265]
    if magic != _POSIX_MAGIC and magic != _GNU_MAGIC:
        return None
    try:
        size = int(block[124:136].rstrip(b" \0") or b"0", 8)
        chksum = int(block[148:156].rstrip(b" \0"), 8)
    except ValueError:
        return None
    if chksum != sum(block) - sum(block[148:156]) + 256:
        return None
    name = block[:100].split(b"\0", 1)[0]
    if magic == _POSIX_MAGIC and block[345] != 0:
        name = block[345:500].split(b"\0", 1)[0] + b"/" + name
    if not name or name.endswith(b"/"):
        return None  # an old-style directory entry: tarfile's reading
    return name.decode("utf-8", "surrogateescape"), size


class TarReader:
    """The members of the tar stream on ``fd`` (blocking reads; the caller owns ``fd``).

    ``for e in reader: ...`` yields each :class:`Entry`; :meth:`content` lends its bytes (what
    the caller does not read is skipped). A stream that ends before tar's end blocks is an
    :class:`EOFError`; a corrupt header a :class:`tarfile.ReadError`."""

    def __init__(self, fd: int, bufsize: int = CHUNK) -> None:
        self.fd = fd
        self._buf = memoryview(bytearray(bufsize))
        self._start = self._end = 0
        self._left = 0  # content of the current member not read yet
        self._pad = 0
        #: bytes read from ``fd`` so far
        self.received = 0

    def _fill(self) -> None:
        """Read more (at least one byte) after what is buffered; EOFError at the end."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf):  # keep the few buffered bytes, at the front
            rest = bytes(self._buf[self._start : self._end])
            self._buf[: len(rest)] = rest
            self._start, self._end = 0, len(rest)
        n = os.readv(self.fd, [self._buf[self._end :]])
        if n == 0:
            raise EOFError("the tar stream ended early")
        self._end += n
        self.received += n

    def _exact(self, n: int) -> bytes:
        if n > len(self._buf):
            raise tarfile.ReadError(f"a tar header of {n} bytes (at most {len(self._buf)})")
        while self._end - self._start < n:
            self._fill()
        out = bytes(self._buf[self._start : self._start + n])
        self._start += n
        return out

    def _skip(self, n: int) -> None:
        while n > 0:
            if self._start == self._end:
                self._fill()
            k = min(n, self._end - self._start)
            self._start += k
            n -= k

    def pieces(self, progress: Callable[[int], None] | None = None) -> Iterator[memoryview]:
        """The current member's content, as views of the reused buffer: each is valid until the
        next is asked for (hash it, write it, then ask)."""
        while self._left > 0:
            if self._start == self._end:
                self._fill()
            k = min(self._left, self._end - self._start)
            view = self._buf[self._start : self._start + k]
            self._start += k
            self._left -= k
            if progress is not None:
                progress(k)
            yield view

    def _meta(self, size: int) -> bytes:
        if size > MAX_META:
            raise tarfile.ReadError(f"a tar header of {size} bytes (at most {MAX_META})")
        data = self._exact(size + (-size) % BLOCK)
        return data[:size]

    def __iter__(self) -> Iterator[Entry]:
        long_name: str | None = None
        pax: dict[str, str] = {}
        while True:
            block = self._exact(BLOCK)
            if block == _ZERO:
                return  # the end blocks (what follows is padding: the caller drains it)
            plain = _plain_file(block) if not pax else None
            if plain is not None:
                name, size = plain
                self._left, self._pad = size, (-size) % BLOCK
                yield Entry(long_name or name, True, size)
                long_name = None
                self._skip(self._left + self._pad)
                self._left = self._pad = 0
                continue
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise tarfile.ReadError(f"a corrupt tar header ({e})") from None
            kind = info.type
            if kind in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                data = self._meta(info.size)
                if kind == tarfile.GNUTYPE_LONGNAME:
                    long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                continue
            if kind in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.XGLTYPE):
                records = parse_pax(self._meta(info.size))
                if kind != tarfile.XGLTYPE:
                    pax = records
                continue
            name = pax.get("path") or long_name or info.name
            size = info.size
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise tarfile.ReadError("bad PAX size") from None
            long_name, pax = None, {}
            has_data = info.isreg() or kind not in tarfile.SUPPORTED_TYPES
            self._left = size if has_data else 0
            self._pad = (-size) % BLOCK if has_data else 0
            yield Entry(name, info.isreg(), self._left)
            self._skip(self._left + self._pad)
            self._left = self._pad = 0

    def drain(self) -> None:
        """Read and drop the rest of the stream (tar pads it to its record size), so the
        command that writes it ends by itself."""
        self._start = self._end = 0
        while os.readv(self.fd, [self._buf]):
            pass
