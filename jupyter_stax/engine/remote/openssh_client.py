"""The ``ssh: openssh`` client: the system ``ssh`` with a ControlMaster, for sites whose login
needs the user's own OpenSSH (a master opened after MFA, Kerberos/GSSAPI, hardware tokens).

``connect`` starts ONE master (``ssh -M -N -f``, ControlPersist=10m: it ends by itself 10
minutes after its last use, so an engine killed with -9 leaves nothing behind for long) whose
socket lives in a private directory (mode 700), or, with ``control_path``, re-uses the user's own
master. Each primitive is one ``ssh -S SOCKET`` through it (one channel, one round trip; no new
TCP connection or authentication). Every call has ``BatchMode=yes`` (never a prompt) and
``StrictHostKeyChecking=yes`` (never a silent accept). ssh's exit status 255 with a known message
on stderr is mapped onto the same error classes as asyncssh (:func:`~.errors.classify_openssh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
from typing import Any

from .base import ByteStream, ChannelRefused, Raw, RunResult, SSHConnection
from .errors import SSHConfigError, SSHConnectionLost, SSHError, SSHTimeout, classify_openssh
from .pump import pipe

#: the master is up but sshd refused one more session (MaxSessions)
_REFUSED = re.compile(rb"session request failed|Session open refused|open failed")


def _alive(pid: int) -> bool:
    """The master runs (a zombie does not count); /proc where there is one (Linux), else a
    signal 0 (macOS laptops)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False
    except OSError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OpenSSHConnection(SSHConnection):
    """:class:`SSHConnection` over the system ``ssh`` client and a ControlMaster."""

    _dir: str | None = None
    _master_pid: int | None = None

    @property
    def control_path(self) -> str:
        if self.target.control_path:
            return self.target.control_path
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="stax-ssh-")  # mode 700
        return os.path.join(self._dir, "cm")

    def _base_args(self) -> list[str]:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise SSHConfigError(
                f"{self.target.destination}: `ssh: openssh` needs the `ssh` client on PATH "
                "(install openssh-client), or use `ssh: asyncssh`", host=self.target.destination
            )
        t = self.target
        args = [ssh, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={max(1, int(t.connect_timeout))}",
                "-o", f"ServerAliveInterval={max(1, int(self.keepalive))}",
                "-o", "ServerAliveCountMax=3", "-S", self.control_path]
        if t.ssh_config:
            args += ["-F", t.ssh_config]
        if t.port:
            args += ["-p", str(t.port)]
        if t.user:
            args += ["-l", t.user]
        if t.identity_file:
            args += ["-i", t.identity_file]
        if t.known_hosts:
            args += ["-o", f"UserKnownHostsFile={t.known_hosts}"]
        return args

    def _is_open(self) -> bool:
        return self._master_pid is not None and _alive(self._master_pid)

    async def _ssh(
        self, args: list[str], stdin: bytes | None, timeout: float | None
    ) -> tuple[int, bytes, bytes]:
        # stderr to a file, not a pipe: a master that forks into the background keeps it open
        with tempfile.TemporaryFile() as errf:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=errf, start_new_session=True,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(stdin or b""), timeout)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                raise SSHTimeout(
                    f"{self.target.destination}: no answer within {timeout:.0f} s",
                    host=self.target.destination,
                ) from None
            errf.seek(0)
            err = errf.read()
        return proc.returncode if proc.returncode is not None else -1, out, err

    def _error(self, err: bytes) -> SSHError | None:
        return classify_openssh(
            err.decode(errors="replace"), self.target.host, self.target.port,
            self.target.destination,
        )

    async def _check(self) -> int | None:
        """The pid of the master behind the socket, or None."""
        if not os.path.exists(self.control_path):
            return None
        rc, _, err = await self._ssh([*self._base_args(), "-O", "check", "--", self.target.host],
                                     None, 10)
        m = re.search(rb"pid=(\d+)", err)
        return int(m.group(1)) if rc == 0 and m else None

    async def _open(self) -> None:
        pid = await self._check()
        if pid is None:
            if os.path.exists(self.control_path):
                with contextlib.suppress(OSError):
                    os.unlink(self.control_path)  # a stale socket of a dead master
            args = [*self._base_args(), "-o", "ControlMaster=yes", "-o", "ControlPersist=10m",
                    "-N", "-f", "--", self.target.host]
            rc, _, err = await self._ssh(args, None, self.target.connect_timeout + 10)
            if rc != 0:
                raise self._error(err) or SSHError(
                    f"{self.target.destination}: ssh failed (exit {rc}): "
                    f"{err.decode(errors='replace').strip()}", host=self.target.destination,
                )
            pid = await self._check()
            if pid is None:
                raise SSHConnectionLost(
                    f"{self.target.destination}: the ssh master did not come up; retrying",
                    host=self.target.destination,
                )
        self._master_pid = pid

    async def _close(self) -> None:
        if self._master_pid is not None and not self.target.control_path:
            # only a master we started (a user's own master is theirs)
            await self._ssh([*self._base_args(), "-O", "exit", "--", self.target.host], None, 10)
        self._master_pid = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> RunResult:
        if not self._is_open():
            self._master_pid = None
            raise SSHConnectionLost(f"the connection to {self.target.destination} was lost",
                                    host=self.target.destination)
        args = [*self._base_args(), "-o", "ControlMaster=no", "--", self.target.host, command]
        rc, out, err = await self._ssh(args, stdin, timeout)
        if rc == 255 and _REFUSED.search(err) and self._is_open():
            raise ChannelRefused(err.decode(errors="replace"))
        if rc == 255:
            e = self._error(err)
            if e is not None:
                if e.transient:
                    self._master_pid = None if not self._is_open() else self._master_pid
                    raise SSHConnectionLost(e.message, host=e.host) from None
                raise e
        return RunResult(rc, out, err)

    async def _open_stream(self, command: str, raw: Raw = None) -> ByteStream:
        """``raw``: that end of ``ssh`` is a plain pipe (the master reads or writes it itself,
        as it got the fd from ``ssh``): a worker thread moves the bytes with blocking calls and
        the event loop never sees them. Through the loop, a worker that kept running Python
        (tar headers of many small files) held the loop's pipe callbacks back, 64 KiB per
        wake-up, and a put of 10,000 small files ran at 1/4 of ``tar | ssh``'s pace."""
        if not self._is_open():
            self._master_pid = None
            raise SSHConnectionLost(f"the connection to {self.target.destination} was lost",
                                    host=self.target.destination)
        args = [*self._base_args(), "-o", "ControlMaster=no", "--", self.target.host, command]
        errf = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the stream)
        ours = theirs = None
        stdin: int = asyncio.subprocess.PIPE
        stdout: int = asyncio.subprocess.PIPE
        if raw == "stdin":
            theirs, ours = pipe()
            stdin = theirs
        elif raw == "stdout":
            ours, theirs = pipe()
            stdout = theirs
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=stdin, stdout=stdout,
                stderr=errf, start_new_session=True, limit=1 << 20,
            )
        except BaseException:
            for fd in (ours, theirs):
                if fd is not None:
                    os.close(fd)
            errf.close()
            raise
        finally:
            if theirs is not None:
                with contextlib.suppress(OSError):
                    os.close(theirs)
        stream = _Stream(self, proc, errf)
        if raw == "stdin":
            stream.stdin_fd = ours
        elif raw == "stdout":
            stream.stdout_fd = ours
        return stream


class _Stream(ByteStream):
    """An ``ssh`` process through the master as a :class:`ByteStream` (stderr to a file)."""

    def __init__(self, owner: OpenSSHConnection, proc: asyncio.subprocess.Process,
                 errf: Any) -> None:
        super().__init__()
        self.owner, self.proc, self.errf = owner, proc, errf

    def _lost(self, e: BaseException) -> SSHConnectionLost:
        d = self.owner.target.destination
        return SSHConnectionLost(f"the connection to {d} was lost during a transfer ({e})", host=d)

    async def read(self, n: int) -> bytes:
        if self.proc.stdout is None:
            raise RuntimeError("this stream's stdout is raw: read stdout_fd")
        return await self.proc.stdout.read(n)

    async def write(self, data: bytes, *, drain: bool = True) -> None:
        if self.proc.stdin is None:
            raise RuntimeError("this stream's stdin is raw: write to stdin_fd")
        try:
            self.proc.stdin.write(data)
            if drain:
                await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as e:
            raise self._lost(e) from None

    async def write_eof(self) -> None:
        if self.proc.stdin is None:  # raw: closing our end is the EOF
            fd, self.stdin_fd = self.stdin_fd, None
            if fd is not None:
                os.close(fd)
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.proc.stdin.close()

    async def _finish(self, timeout: float | None) -> tuple[int, bytes]:
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            await self._abort()
            d = self.owner.target.destination
            raise SSHTimeout(
                f"{d}: a transfer did not finish within {timeout:.0f} s", host=d
            ) from None
        self.errf.seek(0)
        err = self.errf.read(65536)
        self.errf.close()
        if rc == 255:
            e = self.owner._error(err)
            if e is not None:
                raise SSHConnectionLost(e.message, host=e.host) if e.transient else e
        return rc, err

    async def _abort(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.errf.close()
