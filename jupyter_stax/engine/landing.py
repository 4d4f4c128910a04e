"""Writing transferred files on THIS machine safely, and hashing them as they stream.

The one place where a file that came from a cluster (or from a step directory) is written here:

* the target is ``root/<relative path>``; a path that is absolute, has a ``..`` component or
  passes through a symbolic link (placed in ``root`` by anyone) is refused: nothing is written
  outside ``root``;
* each file is written to a temporary name beside its target, hashed (sha256) while it is
  written, then renamed: a reader never sees half a file;
* an existing file is never overwritten silently: when its content is the same the new copy is
  dropped (``unchanged``); when it differs it is KEPT and the new copy is not written
  (``kept``), unless ``overwrite`` (then ``replaced``). Fetching again is therefore safe: it
  never destroys a local change, and it says which files it left alone.

Streams are read in :data:`CHUNK` pieces: memory stays flat whatever the file's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

CHUNK = 1 << 20

Status = Literal["new", "unchanged", "kept", "replaced"]


class UnsafePath(ValueError):
    """A relative path that would leave its root (refused before anything is written)."""


@dataclass(frozen=True)
class Landed:
    """A file written (or left alone) under a root: its path here, size, sha256, status."""

    path: Path
    size: int
    sha256: str
    status: Status


def check_relative(rel: str) -> list[str]:
    """The components of ``rel``, or UnsafePath when it is absolute, empty or has ``..``."""
    if not rel or rel.startswith("/") or "\0" in rel:
        raise UnsafePath(f"{rel!r} is not a relative path")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePath(f"{rel!r} leaves its directory")
    return parts


def target(root: Path, rel: str, *, make_parents: bool = True) -> Path:
    """``root/rel`` after checking that no component of it below ``root`` is a symbolic link
    (parents are made as real directories)."""
    parts = check_relative(rel)
    here = root
    for p in parts[:-1]:
        here = here / p
        try:
            st = here.lstat()
        except FileNotFoundError:
            if not make_parents:
                raise
            here.mkdir(parents=False, exist_ok=True)
            st = here.lstat()
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{rel!r}: {here} is not a directory (a link is never followed)")
    out = here / parts[-1]
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(out.lstat().st_mode):
            raise UnsafePath(f"{rel!r}: {out} is a symbolic link (never followed)")
    return out


def sha256_of(path: Path) -> tuple[int, str]:
    """Size and sha256 of a regular file (a symbolic link is refused: O_NOFOLLOW)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        h, n = hashlib.sha256(), 0
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading when it is a regular file and not a symbolic link."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise UnsafePath(f"{path} is not a regular file")
    return f


def land(
    root: Path, rel: str, chunks: Iterable[bytes | memoryview], *, overwrite: bool = False,
    mode: int = 0o644,
) -> Landed:
    """Write ``chunks`` as ``root/rel`` (see the module docstring for the rules)."""
    root.mkdir(parents=True, exist_ok=True)
    dest = target(root, rel)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:40]}.", suffix=".part")
    h, n = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                h.update(chunk)
                n += len(chunk)
                f.write(chunk)
        os.chmod(tmp, mode)
        digest = h.hexdigest()
        status: Status = "new"
        if dest.exists():
            if dest.is_file() and sha256_of(dest) == (n, digest):
                os.unlink(tmp)
                return Landed(dest, n, digest, "unchanged")
            if not overwrite or not dest.is_file():
                os.unlink(tmp)
                return Landed(dest, n, digest, "kept")
            status = "replaced"
        os.replace(tmp, dest)
        return Landed(dest, n, digest, status)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_chunks(
    f: BinaryIO, size: int | None = None, *, progress: Callable[[int], None] | None = None
) -> Iterable[bytes]:
    """The content of ``f`` in :data:`CHUNK` pieces (at most ``size`` bytes when given);
    ``progress(n)`` after each piece of ``n`` bytes."""
    left = size
    while left is None or left > 0:
        chunk = f.read(CHUNK if left is None else min(CHUNK, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        if progress is not None:
            progress(len(chunk))
        yield chunk
