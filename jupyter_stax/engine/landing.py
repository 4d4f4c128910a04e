"""Writing transferred files on THIS machine safely, and hashing them as they stream.

The one place where a file that came from a cluster (or from a step directory) is written here:

* the target is ``root/<relative path>``; a path that is absolute, has a ``..`` component or
  passes through a symbolic link (placed in ``root`` by anyone) is refused: nothing is written
  outside ``root``;
* each file is written to a hidden partial name beside its target (:func:`partial_name`),
  hashed (sha256) while it is written, then renamed: a reader never sees half a file;
* an existing file is never overwritten silently: when its content is the same the new copy is
  dropped (``unchanged``); when it differs it is KEPT and the new copy is not written
  (``kept``), unless ``overwrite`` (then ``replaced``). Fetching again is therefore safe: it
  never destroys a local change, and it says which files it left alone.

:class:`Lander` writes the many files of one fetch with few system calls each: directories are
opened once (``O_DIRECTORY|O_NOFOLLOW``, each below the one before: a link is never followed)
and every file is made relative to its directory's descriptor: ``openat(O_CREAT|O_EXCL|
O_NOFOLLOW)``, ``write``, ``close`` and ONE ``renameat2(RENAME_NOREPLACE)`` (an existing target
is never replaced by it: only then is the target looked at). ``tar -x`` makes ~4 calls per
file; the path-based way (a temporary name, ``lstat`` of each component, ``chmod``, ``stat``,
``rename``) took ~9.

With ``stage=True`` (the SSH transport's fetches), a destination that does not exist yet is
landed as ONE tree: the files go into a hidden sibling directory
(:func:`.landing_tree.staging_name`, locked with ``flock`` while a fetch uses it) under their
final names, made ``O_CREAT|O_EXCL|O_NOFOLLOW`` with no rename per file, and
:meth:`Lander.commit` renames that directory onto the destination once
(``RENAME_NOREPLACE``): a reader never sees half a tree, and nothing is replaced. When the
destination appeared meanwhile, the files are moved into it one by one under the rules above.
A destination that exists already is landed file by file, as before. A fetch cut while landing
into the hidden directory leaves it (the files landed whole, and the cut file's partial copy)
for the next try, which reuses it: :meth:`Lander.landed_before` gives the files landed whole,
which the caller checks against the source (sizes and sums) and does not fetch again. An
abandoned hidden directory is reused by the next fetch into the same destination, removed when
that destination exists by then, removed at once when nothing was landed in it, and removed
when older than :data:`.landing_tree.ABANDONED_AFTER` by the next fetch beside it.

A stream cut in the middle of a file of at least :data:`RESUME_MIN` bytes leaves its partial
file (hidden name, never the target's): the next fetch may continue it after checking the kept
bytes against the source (:meth:`Lander.partials`, :meth:`Lander.prefix_hash`,
:meth:`Lander.land_rest`); a partial is never trusted blindly.

Streams are read in :data:`CHUNK` pieces: memory stays flat whatever the file's size.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import secrets
import stat
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal

from . import landing_tree

CHUNK = 1 << 20
#: a file cut after at least this many bytes keeps its partial copy for the next try
RESUME_MIN = 1 << 20
#: directory descriptors a Lander keeps open at most (then it closes them and starts again)
MAX_DIRS = 128

Status = Literal["new", "unchanged", "kept", "replaced"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_ONLY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


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


def partial_name(name: str) -> str:
    """The hidden name a file ``name`` is written under until it is whole (the same for the
    same name, so a later fetch finds what a cut one left; at most ~180 bytes whatever the
    name's length). Two names may share one (a CRC of the name): the second is then written
    under a random name (:meth:`Lander.land`), and kept bytes are always checked before they
    are continued, so a shared name costs a resume, never a wrong file."""
    tag = zlib.crc32(name.encode("utf-8", "surrogateescape"))
    return f".{name[:40]}.{tag:08x}.part"


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


def hash_fd(fd: int, limit: int | None = None) -> tuple[int, Any]:
    """Bytes read and the sha256 object of ``fd``'s content (its first ``limit`` bytes)."""
    h, n = hashlib.sha256(), 0
    buf = memoryview(bytearray(CHUNK))
    while limit is None or n < limit:
        k = os.readv(fd, [buf if limit is None else buf[: min(CHUNK, limit - n)]])
        if not k:
            break
        h.update(buf[:k])
        n += k
    return n, h


def sha256_of(path: Path, *, dir_fd: int | None = None) -> tuple[int, str]:
    """Size and sha256 of a regular file (a symbolic link is refused: O_NOFOLLOW)."""
    fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        n, h = hash_fd(fd)
    finally:
        os.close(fd)
    return n, h.hexdigest()


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading when it is a regular file and not a symbolic link."""
    fd = os.open(path, _READ_FLAGS)
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise UnsafePath(f"{path} is not a regular file")
    return f


def _process_umask() -> int | None:
    """This process's umask, read without changing it (None when it cannot be read)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _renameat2() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    out: Callable[..., int] = fn
    return out


_RENAMEAT2 = _renameat2()
_umask: int | None = None
_umask_read = False


def _needs_chmod(mode: int) -> bool:
    """Whether a file created with ``mode`` would not have exactly ``mode`` (the umask)."""
    global _umask, _umask_read
    if not _umask_read:
        _umask, _umask_read = _process_umask(), True
    return _umask is None or bool(mode & _umask)


def rename_noreplace(src: str, dest: str, dir_fd: int, src_dir_fd: int | None = None) -> None:
    """Rename ``src`` (in ``src_dir_fd``, default ``dir_fd``) to ``dest`` in the directory
    ``dir_fd``; FileExistsError when ``dest`` exists (whatever it is: a link too), nothing
    replaced. ``renameat2(RENAME_NOREPLACE)`` where the kernel and file system have it, else a
    check (``lstat``) then a rename."""
    global _RENAMEAT2
    sfd = dir_fd if src_dir_fd is None else src_dir_fd
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(sfd, os.fsencode(src), dir_fd, os.fsencode(dest),
                      _RENAME_NOREPLACE) == 0:
            return
        e = ctypes.get_errno()
        if e == errno.EEXIST:
            raise FileExistsError(e, os.strerror(e), dest)
        if e not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(e, os.strerror(e), dest)
        if e == errno.ENOSYS:
            _RENAMEAT2 = None
    try:
        os.stat(dest, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dest, src_dir_fd=sfd, dst_dir_fd=dir_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dest)


def _open_below(fd: int, parts: Sequence[str]) -> int:
    """The directory ``parts`` below the directory ``fd``, opened (``fd`` itself when
    ``parts`` is empty); no link followed."""
    here = fd
    for p in parts:
        nxt = os.open(p, _DIR_FLAGS, dir_fd=here)
        if here != fd:
            os.close(here)
        here = nxt
    return here


def _by_dir(names: Iterable[str]) -> dict[tuple[str, ...], list[tuple[str, str]]]:
    """``names`` (those that are safe) by their directory: ``(name, last component)``."""
    by_dir: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for rel in names:
        try:
            parts = check_relative(rel)
        except UnsafePath:
            continue
        by_dir.setdefault(tuple(parts[:-1]), []).append((rel, parts[-1]))
    return by_dir


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Lander:
    """The files of one fetch written under ``root`` (made with the first file): see the
    module docstring. Not thread-safe (one per fetch); close it (``with``) to give its
    directory descriptors back. With ``stage``, a ``root`` that does not exist yet is landed in
    a hidden sibling directory: call :meth:`commit` once every file is there (closing without
    it leaves that directory for the next try)."""

    def __init__(self, root: Path, *, keep_partials: bool = True, stage: bool = False) -> None:
        self.root = root
        #: whether a file cut after :data:`RESUME_MIN` bytes keeps its partial copy (only
        #: where something continues it: the SSH transport's ``get_files``)
        self.keep_partials = keep_partials
        self.stage = stage
        self._root_fd = -1  # opened (and the root made) when first needed
        self._dirs: dict[tuple[str, ...], int] = {}
        self._paths: dict[tuple[str, ...], Path] = {}  # the directories' paths (for Landed)
        #: while landing into the hidden directory: its name, and its parent's descriptor
        self._hidden: str | None = None
        self._parent_fd = -1
        self._reused = False  # the hidden directory was left by an earlier, cut fetch

    @property
    def staged(self) -> bool:
        """Whether the files land in the hidden directory (decided with the first file)."""
        return self._hidden is not None

    def __enter__(self) -> Lander:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Give the descriptors back. A hidden directory not committed stays for the next try
        (unless nothing was landed in it) and is unlocked."""
        self._close_dirs()
        if self._hidden is not None and self._root_fd >= 0:
            with contextlib.suppress(OSError):
                landing_tree.prune(self._parent_fd, self._hidden, self._root_fd)
        self._hidden = None
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1
        if self._parent_fd >= 0:
            os.close(self._parent_fd)
            self._parent_fd = -1

    def _close_dirs(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _open_root(self, make: bool) -> None:
        """Decide where the files go (the first time a directory is needed): with ``stage``
        and no ``root`` yet, its hidden sibling directory; else ``root`` (made when ``make``)."""
        name = self.root.name
        if self.stage and name not in ("", ".", ".."):
            if make:
                self.root.parent.mkdir(parents=True, exist_ok=True)
            try:
                parent = os.open(self.root.parent, _DIR_ONLY)
            except FileNotFoundError:
                if make:
                    raise
                parent = -1
            if parent >= 0:
                try:
                    self._choose(parent, name, make)
                finally:
                    if self._hidden is None:
                        os.close(parent)
                if self._hidden is not None:
                    return
        if make:
            self.root.mkdir(parents=True, exist_ok=True)
        self._root_fd = os.open(self.root, _DIR_ONLY)

    def _choose(self, parent: int, name: str, make: bool) -> None:
        hidden = landing_tree.staging_name(name)
        try:
            os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:  # there already: file by file; a hidden directory left beside it is stale
            landing_tree.remove(parent, hidden)
            return
        got = landing_tree.take(parent, hidden, make)
        if got is None:
            return  # another fetch's, or not ours to use: file by file
        self._root_fd, self._reused = got
        self._hidden, self._parent_fd = hidden, parent
        with contextlib.suppress(OSError):
            landing_tree.sweep(parent, hidden)

    def _dir(self, rel: str, parts: list[str], make: bool) -> int:
        """The descriptor of the directory ``parts`` below the root (made when ``make``);
        UnsafePath when one of them is a link or not a directory; FileNotFoundError when one is
        missing and not ``make``."""
        if not parts:
            if self._root_fd < 0:
                self._open_root(make)
            return self._root_fd
        key = tuple(parts)
        fd = self._dirs.get(key)
        if fd is not None:
            return fd
        parent = self._dir(rel, parts[:-1], make)
        name = parts[-1]
        try:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not make:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=parent)
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(
                    f"{rel!r}: {self.root.joinpath(*parts)} is not a directory (a link is "
                    "never followed)"
                ) from None
            raise
        if len(self._dirs) >= MAX_DIRS:
            self._close_dirs()
        self._dirs[key] = fd
        return fd

    def path_of(self, rel: str) -> Path:
        """Where ``rel`` is (or will be, once committed) here."""
        return self.root.joinpath(*check_relative(rel))

    def land(
        self, rel: str, chunks: Iterable[bytes | memoryview], *, overwrite: bool = False,
        mode: int = 0o644,
    ) -> Landed:
        """Write ``chunks`` as ``root/rel``, hashed as they are written (the rules: the module
        docstring). When ``chunks`` raises after :data:`RESUME_MIN` bytes, the partial file
        is kept (see :meth:`land_rest`); otherwise nothing is left."""
        parts = check_relative(rel)
        d = self._dir(rel, parts[:-1], True)
        name = parts[-1]
        if self._hidden is not None:  # a directory of our own: the final name at once
            try:
                fd = os.open(name, _NEW_FLAGS, mode, dir_fd=d)
            except FileExistsError:
                pass  # left there (not asked for, or planted): written aside, then replaced
            else:
                return self._write(d, rel, parts, name, fd, hashlib.sha256(), 0, chunks,
                                   overwrite, mode, True, final=True)
        tmp = partial_name(name)
        keepable = True
        try:
            fd = os.open(tmp, _NEW_FLAGS, mode, dir_fd=d)
        except FileExistsError:  # another fetch's, or a cut one's too small to resume
            tmp, keepable = f".{name[:40]}.{secrets.token_hex(8)}.tmp", False
            fd = os.open(tmp, _NEW_FLAGS, mode, dir_fd=d)
        return self._write(d, rel, parts, tmp, fd, hashlib.sha256(), 0, chunks, overwrite,
                           mode, keepable)

    def _write(
        self, d: int, rel: str, parts: list[str], tmp: str, fd: int, h: Any, n: int,
        chunks: Iterable[bytes | memoryview], overwrite: bool, mode: int, keepable: bool,
        *, final: bool = False,
    ) -> Landed:
        """``chunks`` written to ``fd`` (``tmp`` in ``d``; ``final``: the file's own name in
        the hidden directory), then landed."""
        keep = False
        try:
            try:
                it = iter(chunks)
                while True:
                    try:
                        chunk = next(it)
                    except StopIteration:
                        break
                    except BaseException:
                        keep = keepable and self.keep_partials and n >= RESUME_MIN
                        raise
                    h.update(chunk)
                    n += len(chunk)
                    _write_all(fd, chunk)
                if _needs_chmod(mode):
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)
            if final:  # written under its own name in the hidden directory: nothing to rename
                return Landed(self._dest(parts), n, h.hexdigest(), "new")
            return self._finish(d, rel, parts, tmp, n, h.hexdigest(), overwrite)
        except BaseException:
            with contextlib.suppress(OSError):
                if keep and final:  # under its partial name: found by the next try
                    os.rename(tmp, partial_name(tmp), src_dir_fd=d, dst_dir_fd=d)
                elif not keep:
                    os.unlink(tmp, dir_fd=d)
            raise

    def _dest(self, parts: list[str]) -> Path:
        key = tuple(parts[:-1])
        parent = self._paths.get(key)
        if parent is None:
            parent = self._paths[key] = self.root.joinpath(*key)
        return parent / parts[-1]

    def _finish(
        self, d: int, rel: str, parts: list[str], tmp: str, n: int, digest: str,
        overwrite: bool, src: int | None = None,
    ) -> Landed:
        """``tmp`` (in ``src``, default ``d``) renamed to its final name in ``d`` unless that
        exists; then the rules: unchanged, kept or replaced."""
        s = d if src is None else src
        name = parts[-1]
        dest = self._dest(parts)
        if self._hidden is not None and d == s:  # in our own directory: it is ours to replace
            os.rename(tmp, name, src_dir_fd=s, dst_dir_fd=d)
            return Landed(dest, n, digest, "new")
        try:
            rename_noreplace(tmp, name, d, s)
            return Landed(dest, n, digest, "new")
        except FileExistsError:
            pass
        st = os.stat(name, dir_fd=d, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            os.unlink(tmp, dir_fd=s)
            raise UnsafePath(f"{rel!r}: {dest} is a symbolic link (never followed)")
        regular = stat.S_ISREG(st.st_mode)
        if regular and st.st_size == n and sha256_of(Path(name), dir_fd=d) == (n, digest):
            os.unlink(tmp, dir_fd=s)
            return Landed(dest, n, digest, "unchanged")
        if not overwrite or not regular:
            os.unlink(tmp, dir_fd=s)
            return Landed(dest, n, digest, "kept")
        os.rename(tmp, name, src_dir_fd=s, dst_dir_fd=d)
        return Landed(dest, n, digest, "replaced")

    # ------------------------------------------------------------------ the hidden directory
    def commit(
        self, landed: Mapping[str, Landed], *, overwrite: bool = False
    ) -> dict[str, Landed]:
        """Put what landed in the hidden directory in place (nothing to do when the files
        landed in ``root`` itself): what an earlier cut fetch left there and this one did not
        land (``landed``) is removed, then ONE ``renameat2(RENAME_NOREPLACE)`` of the directory
        onto ``root``. When ``root`` appeared meanwhile, each file is moved into it under the
        rules (an existing different file kept unless ``overwrite``): the statuses returned
        say so."""
        out = dict(landed)
        if self._hidden is None:
            return out
        hidden, sfd, parent = self._hidden, self._root_fd, self._parent_fd
        if self._reused:
            landing_tree.remove_but(sfd, {"/".join(check_relative(r)) for r in landed})
        self._close_dirs()
        try:
            rename_noreplace(hidden, self.root.name, parent)
        except FileExistsError:
            pass
        else:
            self._hidden = None  # the root now (the descriptor follows the directory)
            return out
        # the root appeared meanwhile: file by file into it, then the hidden directory goes
        self._hidden, self._root_fd = None, -1
        self.stage = False
        try:
            moved: dict[str, Landed] = {}
            for rel, x in sorted(landed.items()):
                parts = check_relative(rel)
                src = _open_below(sfd, parts[:-1])
                try:
                    d = self._dir(rel, parts[:-1], True)
                    moved[rel] = self._finish(d, rel, parts, parts[-1], x.size, x.sha256,
                                              overwrite, src)
                finally:
                    if src != sfd:
                        os.close(src)
            out.update(moved)
        finally:
            os.close(sfd)
            with contextlib.suppress(OSError):
                landing_tree.rmtree(parent, hidden)
        return out

    def landed_before(self, names: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Of ``names``, those an earlier cut fetch landed whole in the hidden directory this
        one reuses: size and sha256 (hashed now). They are not trusted blindly: the caller
        compares them with the source's, keeps those (``landed`` of :meth:`commit`) and
        :meth:`drop` s the others. Empty unless landing in a reused hidden directory."""
        if self._root_fd < 0:
            with contextlib.suppress(OSError):
                self._dir("", [], False)
        if self._hidden is None or not self._reused:
            return {}
        out: dict[str, tuple[int, str]] = {}
        for key, items in _by_dir(names).items():
            try:
                d = self._dir("/".join(key), list(key), False)
            except (OSError, UnsafePath):
                continue
            with os.scandir(d) as entries:
                there = {e.name for e in entries if e.is_file(follow_symlinks=False)}
            for rel, name in items:
                if name in there:
                    with contextlib.suppress(OSError, UnsafePath):
                        out[rel] = sha256_of(Path(name), dir_fd=d)
        return out

    def present(self, names: Iterable[str]) -> dict[str, int]:
        """Of ``names``, those already at their place in an existing ``root`` (landing file
        by file: a re-fetch, a cut one's next try, a missing subtree of it) as regular files:
        their size (nothing is read or made; a link is never followed, unsafe names are left
        out). The caller asks the source for its sizes and sums and skips the files that match
        (:meth:`same`), as rsync does. Empty when landing in the hidden directory."""
        if self._root_fd < 0:
            with contextlib.suppress(OSError):
                self._dir("", [], False)
        if self._hidden is not None or self._root_fd < 0:
            return {}
        out: dict[str, int] = {}
        for key, items in _by_dir(names).items():
            try:
                d = self._dir("/".join(key), list(key), False)
            except (OSError, UnsafePath):
                continue
            for rel, name in items:
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=d, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        out[rel] = st.st_size
        return out

    def same(self, rel: str, size: int, digest: str) -> Landed | None:
        """``rel`` as it is at its place here, when it has ``size`` bytes and sha256
        ``digest`` (hashed now, never through a link): ``unchanged``; else None."""
        parts = check_relative(rel)
        try:
            d = self._dir(rel, parts[:-1], False)
            st = os.stat(parts[-1], dir_fd=d, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return None
            if sha256_of(Path(parts[-1]), dir_fd=d) != (size, digest):
                return None
        except (OSError, UnsafePath):
            return None
        return Landed(self._dest(parts), size, digest, "unchanged")

    def drop(self, rel: str) -> None:
        """Remove ``rel`` from the hidden directory (it differs from the source now)."""
        if self._hidden is None:
            return
        parts = check_relative(rel)
        with contextlib.suppress(OSError, UnsafePath):
            os.unlink(parts[-1], dir_fd=self._dir(rel, parts[:-1], False))

    # ------------------------------------------------------------------ resuming
    def partials(self, names: Iterable[str]) -> dict[str, int]:
        """Of ``names``, those whose partial file an earlier cut fetch left (at least
        :data:`RESUME_MIN` bytes): its size. One directory listing per directory that has
        such names and exists (nothing is made); names that are not safe are left out."""
        out: dict[str, int] = {}
        for key, items in _by_dir(names).items():
            try:
                d = self._dir("/".join(key), list(key), False)
            except (OSError, UnsafePath):
                continue
            found: dict[str, int] = {}
            with os.scandir(d) as entries:
                for e in entries:
                    if e.name.startswith(".") and e.name.endswith(".part"):
                        with contextlib.suppress(OSError):
                            if e.is_file(follow_symlinks=False):
                                found[e.name] = e.stat(follow_symlinks=False).st_size
            if not found:
                continue
            for rel, name in items:
                size = found.get(partial_name(name), 0)
                if size >= RESUME_MIN:
                    out[rel] = size
        return out

    def prefix_hash(self, rel: str, size: int) -> Any | None:
        """The sha256 object of the first ``size`` bytes of ``rel``'s partial file (None when
        it is gone, is not a regular file or is shorter): compare its digest with the source's
        before :meth:`land_rest` continues it."""
        parts = check_relative(rel)
        try:
            d = self._dir(rel, parts[:-1], False)
            fd = os.open(partial_name(parts[-1]), _READ_FLAGS, dir_fd=d)
        except (OSError, UnsafePath):
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            n, h = hash_fd(fd, size)
        finally:
            os.close(fd)
        return h if n == size else None

    def drop_partial(self, rel: str) -> None:
        """Remove ``rel``'s partial file (its kept bytes did not match the source's)."""
        parts = check_relative(rel)
        with contextlib.suppress(OSError, UnsafePath):
            os.unlink(partial_name(parts[-1]), dir_fd=self._dir(rel, parts[:-1], False))

    def land_rest(
        self, rel: str, prefix: Any, size: int, chunks: Iterable[bytes | memoryview], *,
        overwrite: bool = False, mode: int = 0o644,
    ) -> Landed:
        """Continue ``rel``'s partial file after its first ``size`` bytes (whose sha256 object
        :meth:`prefix_hash` gave and the caller checked) with ``chunks``, then land it as
        :meth:`land` does. Cut again, the partial is kept (longer) for the next try."""
        parts = check_relative(rel)
        d = self._dir(rel, parts[:-1], False)
        tmp = partial_name(parts[-1])
        fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnsafePath(f"{rel!r}: its partial file is not a regular file")
            os.ftruncate(fd, size)
            os.lseek(fd, size, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return self._write(d, rel, parts, tmp, fd, prefix, size, chunks, overwrite, mode,
                           True)


def land(
    root: Path, rel: str, chunks: Iterable[bytes | memoryview], *, overwrite: bool = False,
    mode: int = 0o644,
) -> Landed:
    """Write ``chunks`` as ``root/rel`` (see the module docstring for the rules; nothing is
    kept when ``chunks`` fails); many files under one root: :class:`Lander`."""
    with Lander(root, keep_partials=False) as lander:
        return lander.land(rel, chunks, overwrite=overwrite, mode=mode)


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
