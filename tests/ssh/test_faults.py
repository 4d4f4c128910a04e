"""What goes wrong on the way to a login node, on a real sshd of this module alone: each cause
is its own error class with a clear message and the right ``transient`` flag; a connection
killed by the server or an sshd that is down for a while costs failed calls, never the next
working one."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.engine.remote import (
    SSHAuthRefused,
    SSHConnectionRefused,
    SSHError,
    SSHHostKeyChanged,
    SSHHostKeyUnknown,
    SSHTarget,
    SSHTimeout,
    SSHUnknownHost,
    open_connection,
)

from .conftest import run
from .sshd import REMOTE_USER, Client, Sshd

pytestmark = pytest.mark.ssh


def first_error(target: SSHTarget) -> SSHError:
    async def body() -> SSHError:
        c = open_connection(target)
        try:
            await c.run(["true"])
        except SSHError as e:
            return e
        finally:
            await c.close()
        raise AssertionError("the call worked")

    return run(body)


def test_unknown_host_key_is_refused(
    own_sshd: Sshd, own_client: Client, variant: str, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    e = first_error(own_sshd.target(own_client, variant, known_hosts=str(empty)))
    assert type(e) is SSHHostKeyUnknown and not e.transient
    assert f"[127.0.0.1]:{own_sshd.port}" in str(e)
    assert f"ssh-keyscan -p {own_sshd.port} 127.0.0.1 >> ~/.ssh/known_hosts" in str(e)
    if variant == "asyncssh":  # the fingerprint to check with the admins
        assert own_sshd.fingerprint in str(e)


def test_changed_host_key_is_refused(own_sshd: Sshd, own_client: Client, variant: str) -> None:
    target = own_sshd.target(own_client, variant)
    assert run(lambda: open_connection(target).run(["true"])).rc == 0  # the recorded key works
    with own_sshd.other_host_key():
        e = first_error(target)
        assert type(e) is SSHHostKeyChanged and not e.transient
        assert "CHANGED" in str(e) and f"ssh-keygen -R '[127.0.0.1]:{own_sshd.port}'" in str(e)
        new_fp = subprocess.run(["ssh-keygen", "-lf", f"{own_sshd.base}/etc/ssh_host_ed25519_key"
                                 ".pub"], capture_output=True, text=True).stdout.split()[1]
        assert new_fp in str(e)  # the key it offers now, to compare with what the admins say


def test_key_not_authorised(
    own_sshd: Sshd, own_client: Client, variant: str, tmp_path: Path
) -> None:
    key = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    e = first_error(own_sshd.target(own_client, variant, identity_file=str(key)))
    assert type(e) is SSHAuthRefused and not e.transient
    assert f"{REMOTE_USER}@127.0.0.1" in str(e) and "authorized_keys" in str(e)


def test_encrypted_key_without_agent_says_so(own_sshd: Sshd, own_client: Client,
                                             tmp_path: Path) -> None:
    key = tmp_path / "id_locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)],
                   check=True)
    e = first_error(own_sshd.target(own_client, "asyncssh", identity_file=str(key)))
    assert type(e) is SSHAuthRefused and "is encrypted and no ssh-agent offered it" in str(e)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_connection_refused(own_sshd: Sshd, own_client: Client, variant: str) -> None:
    e = first_error(own_sshd.target(own_client, variant, port=free_port()))
    assert type(e) is SSHConnectionRefused and e.transient
    assert "refused" in str(e)


def test_unknown_host_name(own_client: Client, variant: str) -> None:
    e = first_error(SSHTarget.parse("nobody@no-such-host.invalid", ssh=variant,
                                    identity_file=own_client.identity,
                                    known_hosts=own_client.known_hosts))
    assert type(e) is SSHUnknownHost and not e.transient
    assert "no-such-host.invalid" in str(e)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung login node)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def test_connect_timeout(own_sshd: Sshd, own_client: Client, variant: str,
                         silent_port: int) -> None:
    e = first_error(own_sshd.target(own_client, variant, port=silent_port, connect_timeout=1))
    assert type(e) is SSHTimeout and e.transient


def test_connection_killed_by_the_server_then_next_call_reconnects(
    own_sshd: Sshd, own_client: Client, variant: str
) -> None:
    async def body() -> None:
        c = open_connection(own_sshd.target(own_client, variant))
        try:
            assert (await c.run(["whoami"])).rc == 0
            killed = await asyncio.to_thread(own_sshd.kill_connections)
            assert killed
            deadline = time.monotonic() + 20
            while c.connected and time.monotonic() < deadline:  # the client notices the drop
                await asyncio.sleep(0.05)
            assert not c.connected
            r = await c.run(["whoami"])
            assert r.out == REMOTE_USER + "\n"
            assert c.stats.connects == 2
            # killed again, and read at once: an idempotent read retries on a new connection
            await asyncio.to_thread(own_sshd.kill_connections)
            got = await c.read_files([".profile", "nope"])
            assert got["nope"] is None and got[".profile"]
        finally:
            await c.close()

    run(body)


def test_sshd_down_for_a_while_then_back(own_sshd: Sshd, own_client: Client, variant: str) -> None:
    async def body() -> None:
        c = open_connection(own_sshd.target(own_client, variant), backoff=(0.2, 1.0))
        try:
            assert (await c.run(["true"])).rc == 0
            await asyncio.to_thread(own_sshd.stop)
            errors: list[SSHError] = []
            for _ in range(3):
                try:
                    await c.read_files(["x"])
                except SSHError as e:
                    errors.append(e)
                await asyncio.sleep(0.3)
            assert len(errors) == 3 and all(e.transient for e in errors), errors
            assert c.stats.down_since is not None
            await asyncio.to_thread(own_sshd.start)
            deadline = time.monotonic() + 30
            while True:
                try:
                    r = await c.run(["whoami"])
                    break
                except SSHError as e:
                    assert e.transient, e
                    assert time.monotonic() < deadline, f"still failing: {e}"
                    await asyncio.sleep(0.2)
            assert r.out == REMOTE_USER + "\n"
            assert c.stats.down_since is None and c.stats.connects >= 2
        finally:
            await c.close()

    run(body)


def test_backoff_spares_a_login_node_that_is_down(
    own_sshd: Sshd, own_client: Client, variant: str
) -> None:
    """After a failed attempt, calls during the backoff fail at once with the same (transient)
    error and no new connection attempt; reset_backoff() lets the next call try again."""
    target = own_sshd.target(own_client, variant, port=free_port())

    async def body() -> None:
        c = open_connection(target, backoff=(30.0, 60.0))
        errors = []
        for _ in range(5):
            with pytest.raises(SSHConnectionRefused) as e:
                await c.run(["true"])
            errors.append(e.value)
        assert c.stats.failures == 1  # one attempt for five calls
        assert all(e.transient for e in errors)
        assert "next attempt in" in str(errors[-1])
        c.reset_backoff()
        with pytest.raises(SSHConnectionRefused):
            await c.run(["true"])
        assert c.stats.failures == 2
        await c.close()

    run(body)
