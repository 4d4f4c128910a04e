"""The delay relay (scripts/ssh/delay_relay.py: WAN latency without netem) in front of the real
sshd: everything still works, a primitive still costs one round trip, and each round trip
really pays the delay."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_stax.engine.remote import SSHConnectionLost, SSHError, open_connection

from .conftest import run
from .sshd import REMOTE_USER, SCRIPTS, Client, Sshd, load_relay

pytestmark = pytest.mark.ssh
DELAY = 0.05  # each way: 100 ms round trip


def known_hosts_for(sshd: Sshd, port: int, tmp_path: Path) -> str:
    """The server's key recorded under the relay's port (known_hosts names host AND port)."""
    line = Path(sshd.env["STAX_SSHD_KNOWN_HOSTS"]).read_text().split(None, 1)[1]
    kh = tmp_path / "known_hosts_relay"
    kh.write_text(f"[127.0.0.1]:{port} {line}")
    return str(kh)


def test_through_the_delay_relay(
    own_sshd: Sshd, own_client: Client, variant: str, tmp_path: Path
) -> None:
    relay_mod = load_relay()
    with relay_mod.RelayThread("127.0.0.1", own_sshd.port, delay=DELAY) as relay:
        target = own_sshd.target(own_client, variant, port=relay.port,
                                 known_hosts=known_hosts_for(own_sshd, relay.port, tmp_path))
        paths = [f"relay/{i}/stax.start" for i in range(200)]

        async def body() -> None:
            c = open_connection(target)
            try:
                t0 = time.monotonic()
                assert (await c.run(["whoami"])).out == REMOTE_USER + "\n"
                connect = time.monotonic() - t0
                await c.write_files({p: (b"started\n", 0o644) for p in paths})
                execs = c.stats.execs
                t0 = time.monotonic()
                got = await c.read_files(paths)
                one = time.monotonic() - t0
                assert c.stats.execs == execs + 1
                assert set(got.values()) == {b"started\n"}
                # the relay is in the path: a round trip costs at least 2 x DELAY
                assert one >= 2 * DELAY
                t0 = time.monotonic()
                for _ in range(5):
                    await c.run(["true"])
                per_run = (time.monotonic() - t0) / 5
                print(f"\n[{variant}] 100 ms RTT: connect+first command {connect:.2f} s, "
                      f"200 records in one call {one:.3f} s, one command {per_run:.3f} s")
                await c.remove(["relay"], recursive=True)
                assert relay.connections == 1  # everything on one multiplexed connection
            finally:
                await c.close()

        run(body)


def test_relay_cut_is_a_lost_connection(
    own_sshd: Sshd, own_client: Client, tmp_path: Path
) -> None:
    relay_mod = load_relay()
    with relay_mod.RelayThread("127.0.0.1", own_sshd.port, delay=0.0) as relay:
        target = own_sshd.target(own_client, "asyncssh", port=relay.port,
                                 known_hosts=known_hosts_for(own_sshd, relay.port, tmp_path))

        async def body() -> None:
            c = open_connection(target, backoff=(0.1, 0.5))
            try:
                sleeper = asyncio.create_task(c.run(["sleep", "20"]))
                await asyncio.sleep(0.5)
                relay.break_connections()
                with pytest.raises(SSHConnectionLost) as e:
                    await sleeper
                assert e.value.transient
                deadline = time.monotonic() + 20
                while True:
                    try:
                        assert (await c.run(["true"])).rc == 0
                        break
                    except SSHError:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.1)
                assert relay.connections == 2
            finally:
                await c.close()

        run(body)


def test_relay_as_a_script(own_sshd: Sshd) -> None:
    p = subprocess.Popen([sys.executable, str(SCRIPTS / "delay_relay.py"), "--target",
                          f"127.0.0.1:{own_sshd.port}", "--delay-ms", "20"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith("RELAY_PORT=")
        port = line.strip().split("=")[1]
        r = subprocess.run(["ssh-keyscan", "-T", "5", "-p", port, "127.0.0.1"],
                           capture_output=True, text=True, timeout=30)
        assert "ssh-ed25519" in r.stdout
    finally:
        p.terminate()
        p.wait(10)
