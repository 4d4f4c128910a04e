"""The hidden sibling directory a fetch lands a destination that does not exist yet in
(:class:`~jupyter_stax.engine.landing.Lander` with ``stage=True``): its name, taking it (one
fetch at a time: ``flock``), and removing the ones nobody will continue.

Everything works relative to directory descriptors and never follows a link: a link or a file
planted under a hidden directory's name is never used (the fetch lands file by file instead),
and removal (:func:`rmtree`) walks descriptors and never follows a link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
import zlib

#: a hidden landing directory left this long (seconds) by a cut fetch is removed by the next
#: fetch beside it (the next fetch into the same destination reuses it sooner)
ABANDONED_AFTER = 7 * 24 * 3600

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HIDDEN = re.compile(r"\..*\.[0-9a-f]{8}\.landing", re.DOTALL)


def staging_name(name: str) -> str:
    """The hidden sibling directory a destination ``name`` that does not exist yet is landed
    in (the same for the same name, so the next try of a cut fetch finds it; at most ~60
    bytes)."""
    tag = zlib.crc32(name.encode("utf-8", "surrogateescape"))
    return f".{name[:40]}.{tag:08x}.landing"


def take(parent: int, name: str, make: bool) -> tuple[int, bool] | None:
    """The hidden directory ``name`` in ``parent``, opened and locked (``flock``, released
    when its descriptor is closed) and whether it was there before (a cut fetch's, to be
    reused); None when it is missing and not ``make``, is not a directory (a link is never
    followed), or another fetch holds it."""
    reused = True
    try:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not make:
                return None
            os.mkdir(name, 0o777, dir_fd=parent)
            fd, reused = os.open(name, _DIR_FLAGS, dir_fd=parent), False
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST, errno.ENOENT):
            return None
        raise
    if not _lock(fd, parent, name):
        return None
    return fd, reused


def _lock(fd: int, parent: int, name: str) -> bool:
    """Lock ``fd`` (closed when that fails) and check that ``name`` still names it: a fetch
    that held it may have renamed it into place meanwhile."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st, now = os.fstat(fd), os.stat(name, dir_fd=parent, follow_symlinks=False)
        if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
            return True
    except OSError:
        pass
    os.close(fd)
    return False


def remove(parent: int, name: str, older_than: float | None = None) -> bool:
    """Remove the hidden directory ``name`` of ``parent`` with all it holds, unless a fetch
    holds it, or (``older_than``: seconds) it changed more recently. Whether it was removed."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError:
        return False
    try:
        if not _lock(fd, parent, name):
            return False
        if older_than is not None and time.time() - os.fstat(fd).st_mtime < older_than:
            return False
        rmtree(parent, name)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def rmtree(parent: int, name: str) -> None:
    """Remove the directory ``name`` of ``parent`` and all below it (a link is removed, never
    followed)."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        for _, dirs, names, dfd in os.fwalk(".", topdown=False, dir_fd=fd):
            for n in names:
                os.unlink(n, dir_fd=dfd)
            for d in dirs:
                try:
                    os.rmdir(d, dir_fd=dfd)
                except NotADirectoryError:  # a link to a directory
                    os.unlink(d, dir_fd=dfd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def sweep(parent: int, mine: str) -> None:
    """Remove the hidden landing directories in ``parent`` (but ``mine``) that nobody has
    touched for :data:`ABANDONED_AFTER` seconds (cut fetches never tried again)."""
    with os.scandir(parent) as entries:
        old = [e.name for e in entries
               if e.name != mine and _HIDDEN.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    for name in old:
        remove(parent, name, ABANDONED_AFTER)


def prune(parent: int, name: str, fd: int) -> None:
    """Remove the directories below ``fd`` (the hidden directory ``name`` of ``parent``) that
    hold no file, then the hidden directory itself when it is empty: a fetch cut before it
    landed anything leaves nothing behind."""
    for _, dirs, _, dfd in os.fwalk(".", topdown=False, dir_fd=fd):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d, dir_fd=dfd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=parent)


def remove_but(fd: int, keep: set[str]) -> None:
    """Remove every entry below ``fd`` that is not a directory and whose relative path is not
    in ``keep`` (what an earlier, cut fetch left that this one did not land)."""
    for top, dirs, names, dfd in os.fwalk(".", dir_fd=fd):
        for n in names:
            rel = n if top == "." else os.path.join(top[2:], n)
            if rel not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(n, dir_fd=dfd)
        for d in dirs:  # a link to a directory (never made by a fetch) is listed here
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.stat(d, dir_fd=dfd, follow_symlinks=False).st_mode):
                    os.unlink(d, dir_fd=dfd)
