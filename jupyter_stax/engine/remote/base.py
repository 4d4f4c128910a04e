"""The connection to one remote login node, and the primitives the transport builds on.

:class:`SSHConnection` owns what both clients share: ONE connection per target, opened lazily
and shared by every caller; a semaphore that keeps the channels open at once below sshd's
MaxSessions; exponential backoff between connection attempts after a failure (so a poll loop
never hammers a login node that is down, or one that refuses our key); and the primitives, each
ONE exec channel (one round trip): :meth:`run`, :meth:`write_files`, :meth:`read_files`,
:meth:`read_from`, :meth:`mkdirs`, :meth:`remove`. A subclass supplies ``_open``, ``_close``,
``_is_open`` and ``_exec`` (asyncssh in :mod:`.asyncssh_client`, the system ssh with a
ControlMaster in :mod:`.openssh_client`).

Retries: a primitive that is idempotent (reads, mkdir, rm, atomic writes) is retried ONCE on a
fresh connection when the connection turns out to be dropped; :meth:`run` is not (``sbatch``
twice is two jobs): it raises :class:`SSHConnectionLost` and the caller decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from . import shell
from .errors import SSHConnectionLost, SSHError, SSHRemoteError
from .target import SSHTarget


class ChannelRefused(Exception):
    """The server refused to open one more channel (over MaxSessions): nothing ran, so the call
    can be tried again on the same connection, even a non-idempotent one."""


@dataclass(frozen=True)
class RunResult:
    """What a remote command left: exit status (-1 when killed by a signal), stdout, stderr."""

    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")


@dataclass
class Stats:
    """Counters for tests and benchmarks: ``execs`` is the number of exec channels (= round
    trips) opened, ``connects`` the connections made, ``failures`` the failed attempts."""

    execs: int = 0
    connects: int = 0
    failures: int = 0
    #: channels the server refused at once (over MaxSessions) and that were opened again
    refused: int = 0
    last_error: str | None = None
    down_since: float | None = field(default=None)


#: what of a stream's command a worker thread may reach through a plain pipe (see ByteStream)
Raw = Literal["stdin", "stdout"] | None


class ByteStream(ABC):
    """One exec channel kept open to stream data both ways (big files: never whole in memory).
    Holds one session slot until :meth:`finish` or :meth:`abort` (call one of them).

    ``stdin_fd`` / ``stdout_fd``: when the client can (the openssh one, asked with ``raw``), the
    command's stdin or stdout is a plain pipe whose other end a worker thread writes or reads
    with blocking calls, the bytes never passing through the event loop (the ``ssh`` process
    moves them itself). The worker owns that fd and closes it (closing stdin's is the EOF);
    :meth:`finish` and :meth:`abort` close what is left."""

    def __init__(self) -> None:
        self._release: Callable[[], None] | None = None
        self.stdin_fd: int | None = None
        self.stdout_fd: int | None = None

    def close_raw(self) -> None:
        """Close the raw fds not closed yet (idempotent)."""
        for attr in ("stdin_fd", "stdout_fd"):
            fd = getattr(self, attr)
            setattr(self, attr, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    @abstractmethod
    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the command's stdout (b"" at its end)."""

    @abstractmethod
    async def write(self, data: bytes, *, drain: bool = True) -> None:
        """Send ``data`` to the command's stdin (``drain``: wait until it was taken)."""

    @abstractmethod
    async def write_eof(self) -> None: ...

    @abstractmethod
    async def _finish(self, timeout: float | None) -> tuple[int, bytes]: ...

    @abstractmethod
    async def _abort(self) -> None: ...

    async def finish(self, timeout: float | None = None) -> tuple[int, bytes]:
        """The command's exit status (-1: killed, or the connection dropped) and stderr."""
        try:
            return await self._finish(timeout)
        finally:
            self.close_raw()
            self._released()

    async def abort(self) -> None:
        self.close_raw()
        try:
            await self._abort()
        finally:
            self._released()

    def _released(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class SSHConnection(ABC):
    """One shared connection to ``target`` (see the module docstring). Coroutine methods must be
    awaited from one event loop (the engine's)."""

    def __init__(
        self, target: SSHTarget, *, backoff: tuple[float, float] = (1.0, 30.0),
        keepalive: float = 15.0, timeout: float = 120.0,
    ) -> None:
        self.target = target
        self.stats = Stats()
        self.keepalive = keepalive
        self.timeout = timeout
        self._backoff_first, self._backoff_max = backoff
        self._delay = 0.0
        self._retry_at = 0.0
        self._last: SSHError | None = None
        self._lock = asyncio.Lock()
        self._sessions = asyncio.Semaphore(target.max_sessions)

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    async def _open(self) -> None:
        """Connect and authenticate; raise an :class:`SSHError`."""

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    def _is_open(self) -> bool: ...

    @abstractmethod
    async def _exec(
        self, command: str, stdin: bytes | None, timeout: float | None
    ) -> RunResult:
        """Run ``command`` on one channel; raise :class:`SSHConnectionLost` when the connection
        is gone (then ``_is_open`` is False), :class:`SSHTimeout` after ``timeout``."""

    async def _open_stream(self, command: str, raw: Raw = None) -> ByteStream:
        """Start ``command`` on one channel and return its stream (raise an :class:`SSHError`);
        ``raw``: that end as a plain pipe when the client can (see :class:`ByteStream`)."""
        raise SSHError(f"{self.target.destination}: this client cannot stream files",
                       host=self.target.destination)

    # ------------------------------------------------------------------ connection state
    @property
    def connected(self) -> bool:
        return self._is_open()

    async def connect(self) -> None:
        """Open the connection unless it is open; honours the backoff after a failure (raises
        the last error at once while it lasts)."""
        if self._is_open():
            return
        async with self._lock:
            if self._is_open():
                return
            now = time.monotonic()
            if self._last is not None and now < self._retry_at:
                raise type(self._last)(
                    f"{self._last.message} (next attempt in {self._retry_at - now:.0f} s)",
                    host=self._last.host, transient=self._last.transient,
                )
            try:
                await self._open()
            except SSHError as e:
                self.stats.failures += 1
                self.stats.last_error = e.message
                if self.stats.down_since is None:
                    self.stats.down_since = time.time()
                self._delay = (
                    min(self._delay * 2, self._backoff_max) if self._delay
                    else self._backoff_first
                )
                self._retry_at = time.monotonic() + self._delay
                self._last = e
                raise
            self.stats.connects += 1
            self.stats.down_since = None
            self._delay = 0.0
            self._last = None

    def reset_backoff(self) -> None:
        """Let the next call try at once (a user fixed known_hosts, or asked to retry)."""
        self._retry_at = 0.0

    async def close(self) -> None:
        async with self._lock:
            await self._close()

    # ------------------------------------------------------------------ exec
    async def exec(
        self, command: str, stdin: bytes | None = None, *, timeout: float | None = None,
        retry: bool = False,
    ) -> RunResult:
        """Run one command line on one channel (the primitives' building block)."""
        reconnected = False
        refused = 0
        while True:
            await self.connect()
            try:
                async with self._sessions:
                    self.stats.execs += 1
                    return await self._exec(command, stdin, timeout or self.timeout)
            except ChannelRefused:
                # sshd frees a session slot a moment after the channel closed: wait and retry
                refused += 1
                self.stats.refused += 1
                if refused > 50:
                    raise SSHConnectionLost(
                        f"{self.target.destination} refuses to open channels (MaxSessions "
                        f"below max_sessions={self.target.max_sessions}?)",
                        host=self.target.destination,
                    ) from None
                await asyncio.sleep(min(0.02 * refused, 0.5))
            except SSHConnectionLost:
                if reconnected or not retry:
                    raise
                reconnected = True

    async def open_stream(self, command: str, raw: Raw = None) -> ByteStream:
        """``command`` on a channel of its own, kept open for streaming (one round trip). The
        caller must ``finish`` or ``abort`` it (that gives its session slot back). ``raw``: the
        command's stdin or stdout as a plain pipe when the client can (``stream.stdin_fd`` /
        ``stdout_fd`` then set; see :class:`ByteStream`)."""
        refused = 0
        while True:
            await self.connect()
            await self._sessions.acquire()
            try:
                self.stats.execs += 1
                stream = await self._open_stream(command, raw)
            except ChannelRefused:
                self._sessions.release()
                refused += 1
                self.stats.refused += 1
                if refused > 50:
                    raise SSHConnectionLost(
                        f"{self.target.destination} refuses to open channels",
                        host=self.target.destination,
                    ) from None
                await asyncio.sleep(min(0.02 * refused, 0.5))
                continue
            except BaseException:
                self._sessions.release()
                raise
            stream._release = self._sessions.release
            return stream

    async def run(
        self, argv: Sequence[str], stdin: bytes | None = None, *, timeout: float | None = None,
        cwd: str | None = None, env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run ``argv`` (each word quoted: data, never code) in the account's login shell, so
        the site's environment (PATH, SLURM_CONF, modules) applies. Not retried."""
        return await self.exec(shell.run_command(argv, cwd=cwd, env=env), stdin, timeout=timeout)

    async def _script(
        self, script: bytes, what: str, *, missing_ok: bool = False, tar_ok: bool = False
    ) -> RunResult:
        res = await self.exec(shell.SH, script, retry=True)
        if res.rc == -1:  # killed by a signal: the session was cut (sshd's killed), not an answer
            raise SSHConnectionLost(f"{self.target.destination}: {what} was cut off (the remote "
                                    "shell was killed)", host=self.target.destination)
        if tar_ok and res.rc in (1, 2):  # GNU tar: a file changed or vanished while read
            return res
        if res.rc != 0 and not (missing_ok and res.rc == shell.MISSING):
            raise SSHRemoteError(
                f"{self.target.destination}: {what} failed (exit {res.rc}): "
                f"{res.err.strip()[-500:] or 'no message'}", host=self.target.destination,
            )
        return res

    async def write_files(
        self, files: Mapping[str, tuple[bytes, int]], *, parents: bool = True
    ) -> None:
        """Write every ``path: (data, mode)`` (atomically each, parents made) in one command."""
        if not files:
            return
        res = await self._script(shell.write_files_script(files, parents=parents),
                                 f"writing {len(files)} files")
        if not shell.completed(res.stdout):
            raise SSHConnectionLost(f"{self.target.destination}: writing files was cut off",
                                    host=self.target.destination)

    async def read_files(
        self, paths: Sequence[str], max_bytes: int = 65536, *, remove: Sequence[str] = ()
    ) -> dict[str, bytes | None]:
        """The first ``max_bytes`` of each file, None for a missing or unreadable one: MANY small
        files (the records of every running step) in one command. The remote sends whole files
        (one tar stream); ``max_bytes`` is applied here, so point it at small files only.
        ``remove``: files removed first, in the same command (failures ignored)."""
        paths = list(dict.fromkeys(paths))
        if not paths:
            return {}
        res = await self._script(shell.read_files_script(paths, remove),
                                 f"reading {len(paths)} files", tar_ok=True)
        try:
            return shell.parse_read_files(res.stdout, paths, max_bytes)
        except shell.ProtocolError as e:
            raise SSHConnectionLost(f"{self.target.destination}: reading files: {e}",
                                    host=self.target.destination) from None

    async def write_steps(
        self, dirs: Sequence[str], moves: Sequence[tuple[str, str]],
        files: Mapping[str, tuple[bytes, int]], *, remove: Sequence[str] = (),
    ) -> None:
        """Make ``dirs``, rename ``moves`` (a missing source or an existing target: skipped),
        write ``files`` (as :meth:`write_files`): the files of many steps in one command."""
        if not (dirs or moves or files or remove):
            return
        what = f"writing the files of {len(dirs)} step directories" if dirs else (
            f"writing {len(files)} files")
        if dirs:
            what += " (mkdir " + " ".join(dirs[:3]) + (" ..." if len(dirs) > 3 else "") + ")"
        res = await self._script(shell.write_steps_script(dirs, moves, files, remove), what)
        if not shell.completed(res.stdout):
            raise SSHConnectionLost(f"{self.target.destination}: writing files was cut off",
                                    host=self.target.destination)

    async def read_from(self, path: str, offset: int = 0, limit: int = 1 << 20) -> bytes | None:
        """At most ``limit`` bytes of ``path`` from byte ``offset`` (a log tail); None when the
        file is missing or unreadable."""
        res = await self._script(
            shell.read_from_script(path, offset, limit), f"reading {path}", missing_ok=True
        )
        if res.rc == shell.MISSING:
            return None
        try:
            return shell.parse_read_from(res.stdout)
        except shell.ProtocolError as e:
            raise SSHConnectionLost(f"{self.target.destination}: reading {path}: {e}",
                                    host=self.target.destination) from None

    async def read_tail(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """The last ``limit`` bytes of ``path``; None when it is missing or unreadable."""
        res = await self._script(
            shell.read_tail_script(path, limit), f"reading {path}", missing_ok=True
        )
        if res.rc == shell.MISSING:
            return None
        try:
            return shell.parse_read_from(res.stdout)
        except shell.ProtocolError as e:
            raise SSHConnectionLost(f"{self.target.destination}: reading {path}: {e}",
                                    host=self.target.destination) from None

    async def home(self) -> str:
        """The remote account's home directory (absolute)."""
        res = await self._script(shell.HOME_SCRIPT, "reading $HOME")
        try:
            return shell.parse_home(res.stdout)
        except shell.ProtocolError as e:
            raise SSHRemoteError(f"{self.target.destination}: {e}",
                                 host=self.target.destination) from None

    async def rename(self, moves: Sequence[tuple[str, str]]) -> None:
        """Rename ``(source, target)`` pairs in order; a missing source is skipped."""
        if moves:
            res = await self._script(shell.rename_script(moves), f"renaming {len(moves)} files")
            if not shell.completed(res.stdout):
                raise SSHConnectionLost(f"{self.target.destination}: renaming was cut off",
                                        host=self.target.destination)

    async def symlink(self, link: str, target: str) -> None:
        """Make ``link`` point to ``target``."""
        await self._script(shell.symlink_script(link, target), f"ln -s {target} {link}")

    async def mkdirs(self, paths: Sequence[str], mode: int | None = None) -> None:
        if paths:
            await self._script(shell.mkdirs_script(paths, mode), "mkdir " + " ".join(paths))

    async def remove(self, paths: Sequence[str], *, recursive: bool = False) -> None:
        if paths:
            await self._script(shell.remove_script(paths, recursive=recursive),
                               "rm " + " ".join(paths))
