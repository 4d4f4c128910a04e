"""The connection layer on a real OpenSSH server, both clients: commands run as the remote
account, files go and come back in ONE exec channel each (counted by us AND in sshd's log),
awkward paths are data, ~/.ssh/config aliases work, channels stay below MaxSessions."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.engine.remote import SSHConnection, SSHRemoteError, SSHTimeout, open_connection

from ..proc import wait_for
from .conftest import run
from .sshd import REMOTE_USER, Client, Sshd

pytestmark = pytest.mark.ssh

NASTY = ["with space", "quote'single", 'quote"double', "$(touch PWNED)", "semi;colon",
         "back`tick`", "-dash"]


def conn(own_sshd: Sshd, own_client: Client, variant: str, **kw: object) -> SSHConnection:
    return open_connection(own_sshd.target(own_client, variant, **kw))


def test_runs_as_the_remote_account(own_sshd: Sshd, own_client: Client, variant: str) -> None:
    async def body() -> None:
        c = conn(own_sshd, own_client, variant)
        try:
            r = await c.run(["whoami"])
            assert (r.rc, r.out) == (0, REMOTE_USER + "\n")
            r = await c.run(["sh", "-c", 'printf "%s" "$1"; cat; echo err >&2; exit 7', "-",
                             "$(id); x"], stdin=b"from stdin")
            assert (r.rc, r.out, r.err) == (7, "$(id); xfrom stdin", "err\n")
            r = await c.run(["pwd"], cwd="~")
            assert r.out.strip() == f"/home/{REMOTE_USER}"
            r = await c.run(["sh", "-c", 'echo "$A"'], env={"A": "x y;$(z)"})
            assert r.out == "x y;$(z)\n"
            assert c.stats.connects == 1 and c.stats.execs == 4
        finally:
            await c.close()

    run(body)


def test_200_records_in_one_round_trip(own_sshd: Sshd, own_client: Client, variant: str) -> None:
    d = f"~/records-{variant}"
    paths = [f"{d}/step {i}/stax.exit" for i in range(200)]

    async def body() -> None:
        c = conn(own_sshd, own_client, variant)
        try:
            await c.write_files({p: (f"{i} 0\n".encode(), 0o644) for i, p in
                                 enumerate(paths[:150])})
            execs, logged = c.stats.execs, own_sshd.sessions_started()
            got = await c.read_files(paths)
            assert c.stats.execs == execs + 1  # our counter ...
            assert own_sshd.sessions_started() == logged + 1  # ... and sshd's own log
            assert got == {p: (f"{i} 0\n".encode() if i < 150 else None)
                           for i, p in enumerate(paths)}
            await c.remove([d], recursive=True)
        finally:
            await c.close()

    run(body)


def test_write_files_with_modes_and_awkward_paths(
    own_sshd: Sshd, own_client: Client, variant: str
) -> None:
    base = f"~/w {variant}"
    files = {f"{base}/{n}/{n}.sh": (f"#!/bin/sh\necho {i}\n".encode(), 0o750 if i % 2 else 0o600)
             for i, n in enumerate(NASTY)}

    async def body() -> None:
        c = conn(own_sshd, own_client, variant)
        try:
            before = c.stats.execs
            await c.write_files(files)
            assert c.stats.execs == before + 1
            for path, (data, mode) in files.items():
                rel = path[2:]
                r = await c.run(["stat", "-c", "%a %U %s", rel])
                assert r.out.split() == [f"{mode:o}", REMOTE_USER, str(len(data))], path
                assert await c.read_from(path) == data
                assert await c.read_from(path, 10, 3) == data[10:13]
            r = await c.run(["find", ".", "-name", "PWNED"])
            assert r.out == ""
            assert await c.read_from(f"{base}/missing") is None
            await c.mkdirs([f"{base}/a;b/c d"], mode=0o700)
            r = await c.run(["stat", "-c", "%a", f"{base[2:]}/a;b/c d"])
            assert r.out.strip() == "700"
            await c.remove([base], recursive=True)
            r = await c.run(["ls", "-A"])
            assert base[2:] not in r.out
            with pytest.raises(SSHRemoteError, match="mkdir"):
                await c.mkdirs(["/root/not-yours"])
        finally:
            await c.close()

    run(body)


def test_ssh_config_host_alias(
    own_sshd: Sshd, own_client: Client, variant: str, tmp_path: Path
) -> None:
    """`host: faraway` resolved through an ssh config file: HostName, Port, User, IdentityFile,
    UserKnownHostsFile all come from it."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host faraway\n  HostName 127.0.0.1\n  Port {own_sshd.port}\n  User {REMOTE_USER}\n"
        f"  IdentityFile {own_client.identity}\n  UserKnownHostsFile {own_client.known_hosts}\n"
        "  IdentitiesOnly yes\n"
    )
    from jupyter_stax.engine.remote import SSHTarget

    async def body() -> None:
        c = open_connection(SSHTarget.parse("faraway", ssh=variant, ssh_config=str(cfg)))
        try:
            assert (await c.run(["whoami"])).out == REMOTE_USER + "\n"
        finally:
            await c.close()

    run(body)


def test_many_concurrent_calls_share_one_connection(
    own_sshd: Sshd, own_client: Client, variant: str
) -> None:
    """40 calls at once on one connection: the semaphore keeps open channels below sshd's
    MaxSessions (10), so none is refused."""

    async def body() -> None:
        c = conn(own_sshd, own_client, variant)
        try:
            results = await asyncio.gather(*(c.run(["sh", "-c", f"sleep 0.2; echo {i}"])
                                              for i in range(40)))
            assert [r.out.strip() for r in results] == [str(i) for i in range(40)]
            assert c.stats.connects == 1
        finally:
            await c.close()

    run(body)


def test_command_timeout(own_sshd: Sshd, own_client: Client, variant: str) -> None:
    async def body() -> None:
        c = conn(own_sshd, own_client, variant)
        try:
            # more timed-out commands than sshd has sessions: each gives its channel back
            for _ in range(12):
                with pytest.raises(SSHTimeout) as e:
                    await c.run(["sleep", "30"], timeout=0.3)
                assert e.value.transient
            assert (await c.run(["echo", "still fine"])).out == "still fine\n"
            assert c.stats.connects == 1
        finally:
            await c.close()

    run(body)


@pytest.mark.slurm
def test_sbatch_over_ssh_runs_as_the_remote_account(
    slurm: str, sshd: Sshd, client: Client, variant: str
) -> None:
    """The shared login node hands SLURM_CONF to every session (SetEnv, as a login node's
    /etc/slurm would): sbatch over SSH reaches the test Slurm and the job is the remote
    account's."""
    assert f"SetEnv SLURM_CONF={slurm}" in Path(sshd.base, "etc", "sshd_config").read_text()

    async def body() -> None:
        c = open_connection(sshd.target(client, variant))
        try:
            r = await c.run(["sh", "-c", 'echo "$SLURM_CONF"'])
            assert r.out.strip() == slurm
            r = await c.run(["sbatch", "--parsable", "--output=/dev/null", "--wrap", "sleep 30"])
            assert r.rc == 0, r.err
            job = r.out.strip().split(";")[0]
            try:
                r = await c.run(["squeue", "-h", "-u", REMOTE_USER, "-o", "%i"])
                assert job in r.out.split()
            finally:
                await c.run(["scancel", job])
        finally:
            await c.close()

    run(body)


def test_proxyjump_through_a_bastion(
    own_sshd: Sshd, own_client: Client, variant: str, tmp_path: Path
) -> None:
    """`ProxyJump bastion` in the ssh config: the connection to `inside` is tunnelled through a
    first SSH connection (here the same login node plays both parts)."""
    common = (f"  HostName 127.0.0.1\n  Port {own_sshd.port}\n  User {REMOTE_USER}\n"
              f"  IdentityFile {own_client.identity}\n"
              f"  UserKnownHostsFile {own_client.known_hosts}\n  IdentitiesOnly yes\n")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host bastion\n{common}\nHost inside\n{common}  ProxyJump bastion\n")
    from jupyter_stax.engine.remote import SSHTarget

    before = own_sshd.log.read_text(errors="replace").count("Accepted publickey for")

    async def body() -> None:
        c = open_connection(SSHTarget.parse("inside", ssh=variant, ssh_config=str(cfg)))
        try:
            assert (await c.run(["whoami"])).out == REMOTE_USER + "\n"
        finally:
            await c.close()

    run(body)
    # two logins: the bastion's, then the inside one's through the tunnel
    after = own_sshd.log.read_text(errors="replace").count("Accepted publickey for")
    assert after - before == 2
    assert "direct-tcpip" in own_sshd.log.read_text(errors="replace")


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A real ssh-agent holding an ENCRYPTED key (added with its passphrase through
    SSH_ASKPASS); SSH_AUTH_SOCK points at it. Yields the key's path and the socket."""
    key = tmp_path / "id_locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-f", str(key)],
                   check=True)
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: Path(sock).exists(), 10, "ssh-agent's socket")
        askpass = tmp_path / "askpass.sh"
        askpass.write_text("#!/bin/sh\necho s3cret\n")
        askpass.chmod(0o700)
        env = {**os.environ, "SSH_AUTH_SOCK": sock, "SSH_ASKPASS": str(askpass),
               "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
        r = subprocess.run(["ssh-add", str(key)], env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        assert r.returncode == 0, r.stderr
        monkeypatch.setenv("SSH_AUTH_SOCK", sock)
        yield key, sock
    finally:
        proc.terminate()
        proc.wait(10)


def test_encrypted_key_through_the_agent(
    own_sshd: Sshd, own_client: Client, variant: str, agent: tuple[Path, str]
) -> None:
    """identity_file names an encrypted key: it is used through the agent, and no passphrase
    is asked for or stored anywhere."""
    key, _ = agent
    own_sshd.authorize(key.with_suffix(".pub"))

    async def body() -> None:
        c = open_connection(own_sshd.target(own_client, variant, identity_file=str(key)))
        try:
            assert (await c.run(["whoami"])).out == REMOTE_USER + "\n"
        finally:
            await c.close()

    run(body)
