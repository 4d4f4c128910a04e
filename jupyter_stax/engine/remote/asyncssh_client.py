"""The built-in client: asyncssh (asyncio native), one multiplexed connection per target.

asyncssh resolves the target as OpenSSH would: ``~/.ssh/config`` (Host aliases, HostName, User,
Port, IdentityFile, CertificateFile, ProxyJump, UserKnownHostsFile), the agent
(``SSH_AUTH_SOCK``) for encrypted keys, default keys. We never pass a password or passphrase.
Host keys are ALWAYS checked: known_hosts is passed explicitly (the target's, else the config's,
else ``~/.ssh/known_hosts``; an empty one when none exists, so nothing is trusted), and a key
that does not match is refused with a message that says whether the host is unknown or its key
changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import asyncssh

from .asyncssh_pipe import PipeSession, open_pipe_session
from .base import ByteStream, ChannelRefused, Raw, RunResult, SSHConnection
from .errors import (
    AUTH_FIX,
    SSHAuthRefused,
    SSHConfigError,
    SSHConnectionLost,
    SSHConnectionRefused,
    SSHError,
    SSHHostKeyChanged,
    SSHHostKeyUnknown,
    SSHTimeout,
    SSHUnknownHost,
    host_key_fix,
    known_hosts_name,
)

_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
_LOST = (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError,
         ConnectionError, BrokenPipeError, EOFError)


#: ciphers asked first (unless the ssh config names its own): AES-GCM runs in OpenSSL with
#: the CPU's AES instructions; asyncssh's default first choice, chacha20-poly1305, is built
#: from two calls per packet and moved data ~1.7x slower here (bench/staging_ssh.py)
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")

#: a stream's channel buffers this much before a writer waits (asyncssh's default: 64 KiB)
STREAM_HIGH_WATER = 1 << 20


def preferred_ciphers() -> list[str]:
    """:data:`PREFERRED_CIPHERS`, then asyncssh's defaults (the server picks the first it has)."""
    from asyncssh.encryption import get_default_encryption_algs

    rest = [a.decode() for a in get_default_encryption_algs()]
    return [*PREFERRED_CIPHERS, *(a for a in rest if a not in PREFERRED_CIPHERS)]


class _Client(asyncssh.SSHClient):
    """Records why a host key was refused (unknown vs changed) and when the connection drops."""

    def __init__(self, known_hosts: list[str] | bytes) -> None:
        self.known_hosts = known_hosts
        self.refused: tuple[str, int, str, bool] | None = None
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        # asyncssh calls this only for a key that known_hosts does not trust
        known = asyncssh.match_known_hosts(
            self.known_hosts, host, addr, port if port != 22 else None
        )
        changed = bool(known[0] or known[1])
        self.refused = (host, port, key.get_fingerprint(), changed)
        return False


class AsyncSSHConnection(SSHConnection):
    """:class:`SSHConnection` over asyncssh."""

    _conn: asyncssh.SSHClientConnection | None = None
    _client: _Client | None = None

    def _is_open(self) -> bool:
        return self._conn is not None and self._client is not None and not self._client.lost

    async def _close(self) -> None:
        conn, self._conn, self._client = self._conn, None, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()

    async def _options(self) -> tuple[dict[str, Any], list[str] | bytes]:
        t = self.target
        kw: dict[str, Any] = {
            "keepalive_interval": self.keepalive,
            "keepalive_count_max": 3,
            "connect_timeout": t.connect_timeout,
        }
        if t.user:
            kw["username"] = t.user
        if t.port:
            kw["port"] = t.port
        if t.identity_file:
            # explicit key; an encrypted one is skipped here and used through the agent
            kw["client_keys"] = [t.identity_file]
            kw["ignore_encrypted"] = True
        if t.ssh_config:
            kw["config"] = [t.ssh_config]
        try:
            opts = await asyncssh.SSHClientConnectionOptions.construct(host=t.host, **kw)
        except (asyncssh.KeyImportError, asyncssh.ConfigParseError, OSError, ValueError) as e:
            raise SSHConfigError(f"{t.destination}: {e}", host=t.destination) from None
        if not opts.config.get("Ciphers", ()):
            kw["encryption_algs"] = preferred_ciphers()
        if t.known_hosts:
            files = [t.known_hosts]
        else:  # as OpenSSH: the config's files (never none), else the user's, and the system's
            files = list(opts.known_hosts or []) or list(_USER_KNOWN_HOSTS)
            files += [f for f in _GLOBAL_KNOWN_HOSTS if f not in files]
        files = [os.path.expanduser(f) for f in files]
        readable = list(dict.fromkeys(f for f in files if os.access(f, os.R_OK)))
        known: list[str] | bytes = readable or b""
        return {**kw, "options": opts, "known_hosts": known}, known

    async def _open(self) -> None:
        t = self.target
        kw, known = await self._options()
        client = _Client(known)
        await self._close()
        try:
            conn = await asyncssh.connect(t.host, client_factory=lambda: client, **kw)
        except asyncssh.HostKeyNotVerifiable as e:
            raise self._host_key_error(client, str(e)) from None
        except asyncssh.PermissionDenied:
            raise SSHAuthRefused(
                f"authentication refused by {t.destination}: " + self._auth_hint() + AUTH_FIX,
                host=t.destination,
            ) from None
        except socket.gaierror as e:
            raise SSHUnknownHost(
                f"unknown host {t.host}: {e.strerror}; check the cluster's `host` (or its Host "
                "entry in ~/.ssh/config)", host=t.destination,
                transient=e.errno == socket.EAI_AGAIN,
            ) from None
        except ConnectionRefusedError:
            raise SSHConnectionRefused(
                f"connection refused by {t.destination}{self._port_text()}: is sshd running "
                "there? retrying", host=t.destination,
            ) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise SSHTimeout(
                f"no answer from {t.destination}{self._port_text()} within "
                f"{t.connect_timeout:.0f} s; retrying", host=t.destination,
            ) from None
        except (*_LOST, OSError) as e:
            raise SSHConnectionLost(
                f"cannot connect to {t.destination}: {e}; retrying", host=t.destination
            ) from None
        except asyncssh.Error as e:
            raise SSHError(f"{t.destination}: {e.reason}", host=t.destination) from None
        self._conn, self._client = conn, client

    def _port_text(self) -> str:
        return f" port {self.target.port}" if self.target.port else ""

    def _auth_hint(self) -> str:
        f = self.target.identity_file
        if f and os.path.exists(f):
            try:
                asyncssh.read_private_key(f)
            except asyncssh.KeyImportError:
                return f"{f} is encrypted and no ssh-agent offered it; "
            except OSError as e:
                return f"{f} cannot be read ({e.strerror}); "
        elif f:
            return f"{f} does not exist; "
        return ""

    def _host_key_error(self, client: _Client, text: str) -> SSHError:
        t = self.target
        if client.refused is None:
            return SSHHostKeyUnknown(f"{t.destination}: {text}", host=t.destination)
        host, port, fp, changed = client.refused
        name = known_hosts_name(host, port)
        if changed:
            return SSHHostKeyChanged(
                f"the host key of {name} has CHANGED since it was recorded in known_hosts (it now "
                f"offers {fp}): if the change is expected, remove the old key with "
                f"`ssh-keygen -R '{name}'`, then " + host_key_fix(host, port),
                host=t.destination,
            )
        return SSHHostKeyUnknown(
            f"the host key of {name} is not in known_hosts (it offers {fp}): "
            + host_key_fix(host, port), host=t.destination,
        )

    async def _exec(self, command: str, stdin: bytes | None, timeout: float | None) -> RunResult:
        conn = self._conn
        if conn is None or not self._is_open():
            raise SSHConnectionLost(f"the connection to {self.target.destination} was lost",
                                    host=self.target.destination)
        proc: asyncssh.SSHClientProcess[bytes] | None = None
        try:
            proc = await conn.create_process(command, input=stdin or b"", encoding=None)
            res = await proc.wait(check=False, timeout=timeout)
        except asyncssh.ChannelOpenError as e:
            if self._client is not None and not self._client.lost:
                raise ChannelRefused(e.reason) from None
            await self._drop()
            raise SSHConnectionLost(
                f"the connection to {self.target.destination} was lost ({e.reason}); retrying",
                host=self.target.destination,
            ) from None
        except asyncssh.TimeoutError:
            # give the session back (sshd counts it against MaxSessions until the channel closes)
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.terminate()
                proc.close()
            raise SSHTimeout(
                f"{self.target.destination}: the remote command did not finish within "
                f"{timeout:.0f} s", host=self.target.destination,
            ) from None
        except _LOST as e:
            await self._drop()
            raise SSHConnectionLost(
                f"the connection to {self.target.destination} was lost ({e}); retrying",
                host=self.target.destination,
            ) from None
        if res.exit_status is None and self._client is not None and self._client.lost:
            await self._drop()
            raise SSHConnectionLost(
                f"the connection to {self.target.destination} was lost during a command",
                host=self.target.destination,
            )
        rc = res.exit_status if res.exit_status is not None else -1
        out, err = res.stdout or b"", res.stderr or b""
        return RunResult(rc, bytes(out), bytes(err))  # type: ignore[arg-type]

    async def _open_stream(self, command: str, raw: Raw = None) -> ByteStream:
        """``raw="stdout"``: the command's stdout goes into a pipe that the caller reads
        (:mod:`.asyncssh_pipe`); ``raw="stdin"`` is not possible here (the bytes a worker
        sends are lent to the loop, see :mod:`.pump`)."""
        conn = self._conn
        if conn is None or not self._is_open():
            raise SSHConnectionLost(f"the connection to {self.target.destination} was lost",
                                    host=self.target.destination)
        try:
            if raw == "stdout":
                chan, session, r = await open_pipe_session(conn, command)
                stream: ByteStream = _PipeStream(self, chan, session)
                stream.stdout_fd = r
                return stream
            proc = await conn.create_process(command, encoding=None)
        except asyncssh.ChannelOpenError as e:
            if self._client is not None and not self._client.lost:
                raise ChannelRefused(e.reason) from None
            await self._drop()
            raise SSHConnectionLost(
                f"the connection to {self.target.destination} was lost ({e.reason})",
                host=self.target.destination,
            ) from None
        except _LOST as e:
            await self._drop()
            raise SSHConnectionLost(
                f"the connection to {self.target.destination} was lost ({e})",
                host=self.target.destination,
            ) from None
        with contextlib.suppress(Exception):
            proc.channel.set_write_buffer_limits(high=STREAM_HIGH_WATER)
        return _Stream(self, proc)

    async def _drop(self) -> None:
        conn, self._conn, self._client = self._conn, None, None
        if conn is not None:
            conn.abort()


class _Stream(ByteStream):
    """A process of an asyncssh connection as a :class:`ByteStream`; stderr is drained as it
    comes (a chatty command never stalls the channel), its first 64 KiB kept."""

    def __init__(self, owner: AsyncSSHConnection, proc: Any) -> None:
        super().__init__()
        self.owner, self.proc = owner, proc
        self._err = bytearray()
        self._err_task = asyncio.get_running_loop().create_task(self._drain_err())

    async def _drain_err(self) -> None:
        with contextlib.suppress(*_LOST, asyncssh.Error):
            while chunk := await self.proc.stderr.read(65536):
                if len(self._err) < 65536:
                    self._err += chunk

    def _lost(self, e: BaseException) -> SSHConnectionLost:
        d = self.owner.target.destination
        return SSHConnectionLost(f"the connection to {d} was lost during a transfer ({e})", host=d)

    async def read(self, n: int) -> bytes:
        try:
            return bytes(await self.proc.stdout.read(n))
        except (*_LOST, asyncssh.Error) as e:
            raise self._lost(e) from None

    async def write(self, data: bytes, *, drain: bool = True) -> None:
        try:
            self.proc.stdin.write(data)
            if drain:
                await self.proc.stdin.drain()
        except (*_LOST, asyncssh.Error) as e:
            raise self._lost(e) from None

    async def write_eof(self) -> None:
        try:
            self.proc.stdin.write_eof()
        except (*_LOST, asyncssh.Error) as e:
            raise self._lost(e) from None

    async def _finish(self, timeout: float | None) -> tuple[int, bytes]:
        try:
            res = await self.proc.wait(check=False, timeout=timeout)
        except asyncssh.TimeoutError:
            await self._abort()
            d = self.owner.target.destination
            raise SSHTimeout(
                f"{d}: a transfer did not finish within {timeout:.0f} s", host=d
            ) from None
        except (*_LOST, asyncssh.Error) as e:
            raise self._lost(e) from None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._err_task, 5)
        if res.exit_status is None and self.owner._client is not None and self.owner._client.lost:
            raise self._lost(EOFError("no exit status"))
        return (res.exit_status if res.exit_status is not None else -1), bytes(self._err)

    async def _abort(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.terminate()
        self.proc.close()
        self._err_task.cancel()


def _remote_ended(owner: AsyncSSHConnection, e: BaseException) -> bool:
    """A write refused because the remote command already ended and closed its channel (a
    ``tar`` that could not start), the connection still up: not a lost connection. What it
    would not read is dropped, and its exit status and stderr (``finish``) say how it went, as
    with the OpenSSH client (seen in CI under load: a get from a missing directory reported
    "the connection ... was lost (Channel not open for sending)" instead of tar's reason)."""
    client = owner._client
    return isinstance(e, BrokenPipeError) and client is not None and not client.lost


class _PipeStream(ByteStream):
    """A command whose stdout goes into :attr:`stdout_fd` (a pipe, see :mod:`.asyncssh_pipe`);
    its stdin is written here, its stderr kept by the session."""

    def __init__(self, owner: AsyncSSHConnection, chan: Any, session: PipeSession) -> None:
        super().__init__()
        self.owner, self.chan, self.session = owner, chan, session

    def _lost(self, e: BaseException) -> SSHConnectionLost:
        d = self.owner.target.destination
        return SSHConnectionLost(f"the connection to {d} was lost during a transfer ({e})", host=d)

    async def read(self, n: int) -> bytes:
        raise RuntimeError("this stream's stdout is raw: read stdout_fd")

    async def write(self, data: bytes, *, drain: bool = True) -> None:
        try:
            if data:
                self.chan.write(data)
            if drain:
                await self.session.can_write.wait()
        except (*_LOST, asyncssh.Error) as e:
            if _remote_ended(self.owner, e):
                return
            raise self._lost(e) from None
        if self.session.exc is not None:
            raise self._lost(self.session.exc)

    async def write_eof(self) -> None:
        try:
            self.chan.write_eof()
        except (*_LOST, asyncssh.Error) as e:
            if _remote_ended(self.owner, e):
                return
            raise self._lost(e) from None

    async def _finish(self, timeout: float | None) -> tuple[int, bytes]:
        try:
            await asyncio.wait_for(self.session.closed.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            await self._abort()
            d = self.owner.target.destination
            raise SSHTimeout(
                f"{d}: a transfer did not finish within {timeout:.0f} s", host=d
            ) from None
        status = self.chan.get_exit_status()
        lost = self.owner._client is not None and self.owner._client.lost
        if self.session.exc is not None or (status is None and lost):
            raise self._lost(self.session.exc or EOFError("no exit status"))
        return (status if status is not None else -1), bytes(self.session.err)

    async def _abort(self) -> None:
        self.session.close_fd()
        with contextlib.suppress(Exception):
            self.chan.close()
