"""The remote side of each primitive: POSIX ``sh`` scripts built here, and parsers of their output.

Pure functions, no I/O. Every path and argument is quoted with :func:`shlex.quote` (data, never
code); a path that starts with ``~/`` is relative to the remote home (``"$HOME"/...``). A script
goes to ``/bin/sh -s`` on the channel's stdin (no argument-length limit, the same ``sh`` whatever
the account's login shell), and its output starts with a marker line, so whatever a chatty
``~/.bashrc`` prints before it is skipped. Only ``sh``, ``base64``, ``head``, ``tail``, ``mkdir``,
``chmod``, ``mv``, ``rm`` and ``tar`` are needed on the cluster (coreutils and tar: any Linux login
node).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shlex
import tarfile
from collections.abc import Mapping, Sequence

#: the command every script runs under (it reads the script on stdin)
SH = "exec /bin/sh -s"
START = b"@@stax-start\n"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProtocolError(ValueError):
    """A script's output is not what it prints when it completes (cut off, or corrupted)."""


def qpath(path: str) -> str:
    """``path`` quoted for sh; ``~`` and ``~/x`` are the remote home."""
    if not path:
        raise ValueError("empty remote path")
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"/'
    return shlex.quote(path)


def run_command(
    argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The command line for ``argv``: every word quoted, so it runs ``argv`` and nothing else."""
    if not argv:
        raise ValueError("empty command")
    words = shlex.join(argv)
    if env:
        bad = [k for k in env if not _ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"not environment variable names: {bad}")
        words = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " " + words
    if cwd:
        words = f"cd {qpath(cwd)} && {words}"
    return words


def _parent(path: str) -> str | None:
    head, sep, _ = path.rpartition("/")
    if not sep:
        return None
    return head or "/"


def write_files_script(files: Mapping[str, tuple[bytes, int]], *, parents: bool = True) -> bytes:
    """Write each ``path: (data, mode)`` atomically (a temporary file beside it, then ``mv``);
    creates missing parent directories when ``parents``. Prints nothing but the markers."""
    lines = ["set -e", "umask 077", "printf '@@stax-start\\n'"]
    lines += write_lines(files, parents=parents)
    lines.append("printf '@@stax-done\\n'")
    return ("\n".join(lines) + "\n").encode()


def write_lines(files: Mapping[str, tuple[bytes, int]], *, parents: bool = True) -> list[str]:
    """The lines of :func:`write_files_script` that write the files (under ``set -e``; the
    data in base64 here-documents: any byte, any name)."""
    lines = []
    if parents:
        dirs = sorted({d for p in files for d in [_parent(p)] if d and d not in ("/", "~")})
        if dirs:
            lines.append("mkdir -p -- " + " ".join(qpath(d) for d in dirs))
    for i, (path, (data, mode)) in enumerate(files.items()):
        q = qpath(path)
        lines.append(f"t={q}.stax-tmp.$$")
        lines.append(f"base64 -d > \"$t\" <<'STAX_EOF_{i}'")
        lines.append(base64.encodebytes(data).decode("ascii").rstrip("\n"))
        lines.append(f"STAX_EOF_{i}")
        lines.append(f'chmod {mode & 0o7777:o} "$t"')
        lines.append(f'mv -f "$t" {q}')
    return lines


def remove_lines(paths: Sequence[str]) -> list[str]:
    """Remove files that may wait (see ``Transport.remove_later``): never fails the script."""
    if not paths:
        return []
    return ["rm -f -- " + " ".join(qpath(p) for p in paths) + " 2>/dev/null || true"]


def tar_lines(files: Mapping[str, tuple[bytes, int]]) -> list[str]:
    """Lines that write every ``path: (data, mode)`` with ONE ``tar -x`` (a few processes
    whatever the number of files: forking ``base64``, ``chmod`` and ``mv`` per file costs
    seconds per hundred files on a busy node). Paths must be absolute (names in the tar
    stream: data, never code); parents are made. Each file is written in place (an existing one
    is replaced, not atomically): for files nobody reads while they are written (a new
    attempt's scripts, a new submit script)."""
    if not files:
        return []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, (data, mode) in files.items():
            if not path.startswith("/"):
                raise ValueError(f"not an absolute path: {path!r}")
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode & 0o7777
            tar.addfile(info, io.BytesIO(data))
    return [
        "base64 -d <<'STAX_TAR_EOF' | tar -xPpf - --no-same-owner -m",
        base64.encodebytes(buf.getvalue()).decode("ascii").rstrip("\n"),
        "STAX_TAR_EOF",
    ]


def write_steps_script(
    dirs: Sequence[str], moves: Sequence[tuple[str, str]],
    files: Mapping[str, tuple[bytes, int]], remove: Sequence[str] = (),
) -> bytes:
    """Make ``dirs``, rename ``moves`` (skipped: a missing source, an existing target), write
    ``files`` (absolute paths, :func:`tar_lines`: the files of many steps in one script).
    Removes ``remove`` first (never failing for them)."""
    lines = [*remove_lines(remove), "set -e", "printf '@@stax-start\\n'"]
    if dirs:
        lines.append("mkdir -p -- " + " ".join(qpath(d) for d in dirs))
    for src, dst in moves:
        qs, qd = qpath(src), qpath(dst)
        lines.append(
            f"if {{ [ -e {qs} ] || [ -L {qs} ]; }} && ! {{ [ -e {qd} ] || [ -L {qd} ]; }}; then "
            f"mv -f -- {qs} {qd}; fi"
        )
    lines.append("umask 077")
    lines += tar_lines(files)
    lines.append("printf '@@stax-done\\n'")
    return ("\n".join(lines) + "\n").encode()


def prelude_lines(
    files: Mapping[str, tuple[bytes, int]], links: Sequence[tuple[str, str]],
    remove: Sequence[str] = (),
) -> list[str]:
    """The lines that write ``files`` (absolute paths, :func:`tar_lines`) and make ``links``
    before the commands of a batch (``run_many``): under ``set -e`` (a failure ends the
    script before any command runs, before the batch's start marker), then ``set +e`` and
    the umask back."""
    lines = [*remove_lines(remove), "set -e", "m=$(umask)", "umask 077"]
    lines += tar_lines(files)
    for link, target in links:
        lines += _symlink_lines(link, target)
    lines += ['umask "$m"', "set +e"]
    return lines


def read_files_script(paths: Sequence[str], remove: Sequence[str] = ()) -> bytes:
    """Print which paths are readable regular files (``@@f I``) and which are not (``@@n I``),
    then ONE tar stream of the readable ones, in order: a fixed number of processes (``tar``)
    whatever the number of files (forking ``head`` per file costs seconds on a busy node).
    Removes ``remove`` first (files that may wait, see ``Transport.remove_later``).
    ``paths``: no duplicates."""
    lines = [*remove_lines(remove), "printf '@@stax-start\\n'", "set --"]
    for i, path in enumerate(paths):
        q = qpath(path)
        lines.append(
            f"if [ -f {q} ] && [ -r {q} ]; then set -- \"$@\" {q}; echo '@@f {i}'; "
            f"else echo '@@n {i}'; fi"
        )
    lines.append("printf '@@tar\\n'")
    lines.append('[ $# -eq 0 ] || exec tar -cPf - --no-recursion --hard-dereference -- "$@"')
    return ("\n".join(lines) + "\n").encode()


def _tar_suffix(path: str) -> str:
    """What the member name of ``path`` ends with (``~/`` is expanded remotely)."""
    if path.startswith("~/"):
        path = path[2:]
    return os.path.normpath(path).lstrip("/")


def _body(out: bytes) -> bytes:
    at = out.find(START)
    if at < 0:
        raise ProtocolError("no start marker in the remote output")
    return out[at + len(START):]


def parse_read_files(
    out: bytes, paths: Sequence[str], max_bytes: int
) -> dict[str, bytes | None]:
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate paths")
    body = _body(out)
    head, sep, stream = body.partition(b"@@tar\n")
    if not sep:
        raise ProtocolError("the remote output was cut off")
    result: dict[str, bytes | None] = {}
    present: list[int] = []
    for line in head.splitlines():
        kind, _, idx = line.partition(b" ")
        if kind == b"@@f":
            present.append(int(idx))
        elif kind == b"@@n":
            result[paths[int(idx)]] = None
    if present:
        try:
            with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
                members = [(m, tar.extractfile(m)) for m in tar if m.isfile()]
                datas = [(m.name, f.read(max_bytes) if f else b"") for m, f in members]
        except (tarfile.TarError, EOFError) as e:
            raise ProtocolError(f"the remote tar stream is broken: {e}") from None
        pending = list(present)
        for name, data in datas:
            for k, i in enumerate(pending):  # in order; a file that vanished is skipped by tar
                suffix = _tar_suffix(paths[i])
                name = os.path.normpath(name)
                if name.lstrip("/") == suffix or name.endswith("/" + suffix):
                    result[paths[i]] = data
                    del pending[k]
                    break
        for i in pending:  # removed between the test and tar
            result[paths[i]] = None
    missing = set(paths) - set(result)
    if missing:
        raise ProtocolError(f"{len(missing)} files missing in the remote output")
    return result


#: exit status of :func:`read_from_script` for a missing or unreadable file
MISSING = 3


def read_from_script(path: str, offset: int, limit: int) -> bytes:
    """Print the start marker, then at most ``limit`` bytes of ``path`` from byte ``offset``
    (raw); exit :data:`MISSING` when it is missing or unreadable."""
    q = qpath(path)
    return (
        f"if [ -f {q} ] && [ -r {q} ]; then printf '@@stax-start\\n'; "
        f"tail -c +{int(offset) + 1} < {q} | head -c {int(limit)}; else exit {MISSING}; fi\n"
    ).encode()


def parse_read_from(out: bytes) -> bytes:
    return _body(out)


def mkdirs_script(paths: Sequence[str], mode: int | None = None) -> bytes:
    qs = " ".join(qpath(p) for p in paths)
    lines = ["set -e", "printf '@@stax-start\\n'", f"mkdir -p -- {qs}"]
    if mode is not None:
        lines.append(f"chmod {mode & 0o7777:o} -- {qs}")
    lines.append("printf '@@stax-done\\n'")
    return ("\n".join(lines) + "\n").encode()


def remove_script(paths: Sequence[str], *, recursive: bool = False) -> bytes:
    flags = "-rf" if recursive else "-f"
    qs = " ".join(qpath(p) for p in paths)
    return (
        f"set -e\nprintf '@@stax-start\\n'\nrm {flags} -- {qs}\nprintf '@@stax-done\\n'\n"
    ).encode()


def completed(out: bytes) -> bool:
    """True when a script that ends with the done marker ran to its end."""
    try:
        return _body(out).endswith(b"@@stax-done\n")
    except ProtocolError:
        return False


def rename_script(moves: Sequence[tuple[str, str]]) -> bytes:
    """Rename each ``(source, target)`` in order (``mv -f``); a missing source is skipped."""
    lines = ["set -e", "printf '@@stax-start\\n'"]
    for src, dst in moves:
        qs, qd = qpath(src), qpath(dst)
        lines.append(f"if [ -e {qs} ] || [ -L {qs} ]; then mv -f -- {qs} {qd}; fi")
    lines.append("printf '@@stax-done\\n'")
    return ("\n".join(lines) + "\n").encode()


def symlink_script(link: str, target: str) -> bytes:
    """Make ``link`` point to ``target`` (parents made; a link pointing elsewhere replaced)."""
    lines = ["set -e", "printf '@@stax-start\\n'", *_symlink_lines(link, target)]
    lines.append("printf '@@stax-done\\n'")
    return ("\n".join(lines) + "\n").encode()


def _symlink_lines(link: str, target: str) -> list[str]:
    ql, qt = qpath(link), qpath(target)
    lines = []
    parent = _parent(link)
    if parent and parent not in ("/", "~"):
        lines.append(f"mkdir -p -- {qpath(parent)}")
    lines.append(
        f"if [ \"$(readlink {ql} 2>/dev/null || true)\" != {qt} ]; then "
        f"rm -f -- {ql}; ln -s -- {qt} {ql}; fi"
    )
    return lines


def read_tail_script(path: str, limit: int) -> bytes:
    """Print the start marker, then the last ``limit`` bytes of ``path``; exit :data:`MISSING`
    when it is missing or unreadable."""
    q = qpath(path)
    return (
        f"if [ -f {q} ] && [ -r {q} ]; then printf '@@stax-start\\n'; "
        f"tail -c {int(limit)} < {q}; else exit {MISSING}; fi\n"
    ).encode()


#: prints the remote account's home directory after the start marker
HOME_SCRIPT = b"printf '@@stax-start\\n%s\\n' \"$HOME\"\n"


def parse_home(out: bytes) -> str:
    """The home directory printed by :data:`HOME_SCRIPT` (an absolute path)."""
    home = _body(out).decode(errors="replace").rstrip("\n")
    if not home.startswith("/") or "\n" in home:
        raise ProtocolError(f"the remote $HOME is not an absolute path: {home!r}")
    return home.rstrip("/") or "/"
