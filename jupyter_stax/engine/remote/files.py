"""Files in and out of a remote cluster over the ONE connection: tar streams on an exec
channel (no SFTP needed, one round trip per batch whatever the number of files).

* :func:`list_tree_script` / :func:`parse_list_tree`: ``find -P`` (links never followed) prints
  kind, size and path of every entry, NUL-separated: any name is data;
* :func:`write_tar`: the tar stream of files of this machine, written through one reused
  buffer of :data:`~jupyter_stax.engine.landing.CHUNK` bytes (a 1 GB file is never in
  memory), hashing each file as it is sent; PAX headers carry any name (quotes, newlines,
  ``$(...)``, a leading ``-``); the remote ``tar -x`` writes them under the destination;
* :func:`pack_command` / :func:`unpack_command`: the remote ends. Names sent to the remote
  ``tar -T`` are ``./``-prefixed and NUL-separated, so none is read as an option.

Pure functions (no I/O but reading the local files being sent).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ...core.staging import TreeEntry
from ..landing import CHUNK
from .shell import ProtocolError, qpath
from .tarstream import BLOCK as BLOCKSIZE
from .tarstream import file_header

DONE = b"@@stax-done\n"
_PAD = bytes(BLOCKSIZE)


class _Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...

_KINDS = {"f": "f", "d": "d", "l": "l"}


def sh_c(script: str) -> str:
    """A command line that runs ``script`` with ``/bin/sh`` whatever the login shell."""
    return "exec /bin/sh -c " + shlex.quote(script)


def list_tree_script(root: str) -> bytes:
    q = qpath(root)
    return (
        "printf '@@stax-start\\n'\n"
        f"if [ -d {q} ] && [ ! -L {q} ]; then find -P {q} -mindepth 1 -printf '%y %s %P\\0' "
        "2>/dev/null; fi\n"
        "printf '\\0@@stax-done\\n'\n"
    ).encode()


def parse_list_tree(out: bytes) -> list[TreeEntry]:
    at = out.find(b"@@stax-start\n")
    if at < 0 or not out.endswith(b"\0" + DONE):
        raise ProtocolError("the listing was cut off")
    body = out[at + len(b"@@stax-start\n") : -len(DONE) - 1]
    entries = []
    for rec in body.split(b"\0"):
        if not rec:
            continue
        kind, _, rest = rec.partition(b" ")
        size, _, path = rest.partition(b" ")
        if not path:
            continue
        name = path.decode("utf-8", "surrogateescape")
        k = _KINDS.get(kind.decode(), "o")
        entries.append(TreeEntry(name, int(size) if k == "f" else 0, k))
    return entries


def names_input(names: Sequence[str]) -> bytes:
    """The NUL-separated ``./``-prefixed list a remote ``tar --null -T`` reads."""
    return b"".join(b"./" + n.encode("utf-8", "surrogateescape") + b"\0" for n in names)


def pack_command(src_dir: str) -> str:
    """Remote: the tar stream of the files named on stdin, in ``src_dir``."""
    return sh_c(f"cd {qpath(src_dir)} && exec tar --null --no-recursion -T - -cf -")


def unpack_command(dest_dir: str) -> str:
    """Remote: extract the tar stream on stdin under ``dest_dir`` (made)."""
    q = qpath(dest_dir)
    return sh_c(f"mkdir -p -- {q} && cd {q} && exec tar -xf - --no-same-owner -m")


def prefix_sums_script(src_dir: str, items: Sequence[tuple[str, int]]) -> bytes:
    """Remote (a ``sh`` script): for each ``(name, n)`` in ``src_dir``, one line ``SIZE SHA``:
    the file's size and the sha256 of its first ``n`` bytes (``- -`` when it is not a regular
    file: a link is never read; for every file when ``src_dir`` is not there). Checks the
    bytes a cut transfer left before it is continued (either way)."""
    lines = ["printf '@@stax-start\\n'", f"if cd {qpath(src_dir)} 2>/dev/null; then"]
    for name, n in items:
        q = shlex.quote("./" + name)
        lines.append(
            f"if [ -f {q} ] && [ ! -L {q} ]; then "
            f"printf '%s ' \"$(stat -c %s -- {q})\" && head -c {int(n)} -- {q} | sha256sum"
            " | cut -c1-64; else printf -- '- -\\n'; fi"
        )
    lines += ["else", f"for _ in {' '.join(['x'] * len(items))}; do printf -- '- -\\n'; done",
              "fi", "printf '@@stax-done\\n'"]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def parse_prefix_sums(out: bytes, count: int) -> list[tuple[int, str] | None]:
    """The ``count`` answers of :func:`prefix_sums_script`: ``(size, sha256 of the prefix)``
    per file, None for one that is not there (or not a regular file)."""
    at = out.find(b"@@stax-start\n")
    if at < 0 or not out.endswith(DONE):
        raise ProtocolError("the check of kept bytes was cut off")
    lines = out[at + len(b"@@stax-start\n") : -len(DONE)].decode("ascii", "replace").splitlines()
    if len(lines) != count:
        raise ProtocolError(f"the check of kept bytes answered {len(lines)} of {count} files")
    got: list[tuple[int, str] | None] = []
    for line in lines:
        size, _, digest = line.partition(" ")
        if size.isdigit() and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            got.append((int(size), digest))
        elif line == "- -":
            got.append(None)
        else:
            raise ProtocolError(f"the check of kept bytes answered {line!r}")
    return got


def tail_command(src_dir: str, offset: int) -> str:
    """Remote: the bytes after the first ``offset`` of the ONE file named on stdin
    (:func:`names_input`) in ``src_dir``; nothing (exit 1) when it is not a regular file."""
    return sh_c(
        f"cd {qpath(src_dir)} && exec xargs -0 sh -c "
        + shlex.quote(f'[ -f "$1" ] && [ ! -L "$1" ] && exec tail -c +{int(offset) + 1} -- "$1"')
        + " sh"
    )


def append_command(dest_dir: str, name: str, offset: int) -> str:
    """Remote: ``dest_dir/name`` cut to its first ``offset`` bytes, then what comes on stdin
    appended (a file a cut put left: its first bytes checked already)."""
    q = shlex.quote("./" + name)
    return sh_c(f"cd {qpath(dest_dir)} && [ -f {q} ] && [ ! -L {q} ] && "
                f"truncate -s {int(offset)} -- {q} && exec cat >> {q}")


def copy_script(src_dir: str, dest_dir: str) -> str:
    """Remote: copy the files named on stdin (NUL-separated, ``./``-prefixed) from ``src_dir``
    to ``dest_dir`` on the cluster, then print ``size name`` and ``sha256  name`` of each."""
    s, d = qpath(src_dir), qpath(dest_dir)
    return sh_c(
        "set -e; t=$(mktemp); trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; "
        f"mkdir -p -- {d}; "
        f"(cd {s} && tar --null --no-recursion -T \"$t\" -cf -) | (cd {d} && tar -xf - -m); "
        f"cd {d}; printf '@@stax-start\\n'; "
        "xargs -0 stat --printf '%s %n\\0' -- < \"$t\"; printf '@@stax-sums\\0'; "
        "xargs -0 sha256sum -z -- < \"$t\"; printf '@@stax-done\\n'"
    )


def sums_command(src_dir: str) -> str:
    """Remote: size and sha256 of each file named on stdin (:func:`names_input`) in
    ``src_dir`` that is a regular file (``find -P -type f``: a link is never read), in the
    report :func:`parse_copy` reads (an empty one when ``src_dir`` is not there). Checks the
    files a cut fetch landed whole before they are kept instead of fetched again."""
    return sh_c(
        "t=$(mktemp) && u=$(mktemp) || exit 1; trap 'rm -f \"$t\" \"$u\"' EXIT; cat > \"$t\"; "
        "printf '@@stax-start\\n'; "
        f"if cd {qpath(src_dir)} 2>/dev/null; then "
        "xargs -0 -r sh -c 'exec find -P \"$@\" -maxdepth 0 -type f -printf \"%s %p\\0\"' sh "
        "< \"$t\" > \"$u\" 2>/dev/null; cat \"$u\"; fi; printf '@@stax-sums\\0'; "
        "if [ -s \"$u\" ]; then sed -z 's/^[0-9]* //' \"$u\" | xargs -0 -r sha256sum -z -- "
        "2>/dev/null; fi; printf '@@stax-done\\n'"
    )


def parse_copy(out: bytes) -> dict[str, tuple[int, str]]:
    at = out.find(b"@@stax-start\n")
    if at < 0 or not out.endswith(DONE):
        raise ProtocolError("the copy's report was cut off")
    body = out[at + len(b"@@stax-start\n") : -len(DONE)]
    sizes_part, sep, sums_part = body.partition(b"@@stax-sums\0")
    if not sep:
        raise ProtocolError("the copy's report has no checksums")
    sizes: dict[str, int] = {}
    for rec in sizes_part.split(b"\0"):
        if rec:
            size, _, name = rec.partition(b" ")
            sizes[_plain(name)] = int(size)
    out_: dict[str, tuple[int, str]] = {}
    for rec in sums_part.split(b"\0"):
        if rec:
            digest, _, name = rec.partition(b"  ")
            n = _plain(name)
            if n in sizes:
                out_[n] = (sizes[n], digest.decode())
    return out_


def _plain(name: bytes) -> str:
    text = name.decode("utf-8", "surrogateescape")
    return text[2:] if text.startswith("./") else text


def member_name(name: str) -> str:
    """A tar member's name as the relative name it was asked for."""
    while name.startswith("./"):
        name = name[2:]
    return name


def send_fd(
    fd: int, left: int, out: _Writable, h: hashlib._Hash, view: memoryview, src: object,
    progress: Callable[[int], None] | None,
) -> None:
    """The next ``left`` bytes of ``fd`` written to ``out`` through ``view`` (a reused buffer)
    and added to the sha256 object ``h``; ``progress(bytes)`` after each piece. A file that
    ends early (``src`` names it) is an OSError: the stream would be corrupt."""
    while left > 0:
        n = os.readv(fd, [view[: min(len(view), left)]])
        if not n:
            raise OSError(f"{src} shrank while it was sent")
        h.update(view[:n])
        out.write(view[:n])
        left -= n
        if progress is not None:
            progress(n)


def write_tar(
    out: _Writable,
    files: Sequence[tuple[Path, str]],
    done: Callable[[str, int, str], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write the tar stream of ``(path here, name)`` to ``out``, each file read into ONE
    reused buffer of :data:`CHUNK` bytes (a 1 GB file is never in memory) and hashed as it
    goes; ``done(name, size, sha256)`` after each file, ``progress(bytes)`` after each piece.
    A file whose size changes while it is sent is an OSError (the stream would be corrupt).
    Headers: :func:`.tarstream.file_header` (PAX headers for names that need them)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    for src, name in files:
        fd = os.open(src, flags)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(f"{src} is not a regular file")
            size = st.st_size
            out.write(file_header(name, size, 0o755 if st.st_mode & 0o100 else 0o644,
                                  int(st.st_mtime)))
            h = hashlib.sha256()
            send_fd(fd, size, out, h, view, src, progress)
            if size % BLOCKSIZE:
                out.write(_PAD[: BLOCKSIZE - size % BLOCKSIZE])
        finally:
            os.close(fd)
        done(name, size, h.hexdigest())
    out.write(b"\0" * (2 * BLOCKSIZE))
