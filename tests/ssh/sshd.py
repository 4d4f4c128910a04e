"""The test login node: a real OpenSSH server started by scripts/ssh/start-sshd.sh, plus helpers
that break it (kill its connections, stop it, change its host key) and the delay relay."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..proc import alive, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "ssh"
REMOTE_USER = "stax-remote"
#: the unprivileged Jupyter-side user of the "nothing goes around SSH" test
LOCAL_USER = "stax-jupyter"


def _exports(out: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)=(.*)$", out, re.M))


def sshd_problem() -> str | None:
    """Why the SSH tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "the SSH tests need root (they create the remote account and start sshd)"
    if shutil.which("apt-get") is None and not Path("/usr/sbin/sshd").exists():
        return "no /usr/sbin/sshd and no apt-get to install openssh-server"
    return None


@dataclass
class Client:
    """A local user's key pair authorised for the remote account, and its known_hosts."""

    user: str
    identity: str
    known_hosts: str


class Sshd:
    """One sshd of start-sshd.sh (its own base directory, port and host key)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.env: dict[str, str] = {}

    def _script(self, name: str, *args: str) -> str:
        env = {**os.environ, "SSHD_BASE": self.base, "STAX_SSH_USER": REMOTE_USER}
        r = subprocess.run(["bash", str(SCRIPTS / name), *args], env=env, capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"{name} failed: {r.stderr[-2000:]}")
        return r.stdout

    def start(self) -> Sshd:
        self.env = _exports(self._script("start-sshd.sh"))
        return self

    def stop(self) -> None:
        self._script("stop-sshd.sh")

    @property
    def port(self) -> int:
        return int(self.env["STAX_SSHD_PORT"])

    @property
    def pid(self) -> int:
        return int(Path(self.base, "run", "sshd.pid").read_text())

    @property
    def log(self) -> Path:
        return Path(self.env["STAX_SSHD_LOG"])

    @property
    def fingerprint(self) -> str:
        return self.env["STAX_SSHD_FINGERPRINT"]

    def client(self, user: str = "root") -> Client:
        e = _exports(self._script("client-key.sh", user))
        return Client(user, e["STAX_SSH_IDENTITY"], e["STAX_SSH_KNOWN_HOSTS"])

    def target(self, client: Client, ssh: str = "asyncssh", **kw: Any) -> Any:
        from jupyter_stax.engine.remote import SSHTarget

        fields: dict[str, Any] = {"port": self.port, "identity_file": client.identity,
                                  "known_hosts": client.known_hosts, "ssh": ssh,
                                  "connect_timeout": 10, **kw}
        return SSHTarget.parse(f"{REMOTE_USER}@127.0.0.1", **fields)

    def authorize(self, public_key: Path) -> None:
        """Let the key in (append it to the remote account's authorized_keys)."""
        home = pwd.getpwnam(REMOTE_USER).pw_dir
        with open(Path(home, ".ssh", "authorized_keys"), "a") as f:
            f.write(" ".join(public_key.read_text().split()[:2]) + " test-key\n")

    def sessions_started(self) -> int:
        """How many exec requests ("Starting session: command") this sshd has logged."""
        return self.log.read_text(errors="replace").count("Starting session: command for")

    def connection_pids(self) -> list[int]:
        """The per-connection sshd processes: the listener's children ("sshd: USER [priv]")
        and theirs ("sshd: USER", which holds the socket)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                text = stat.read_text()
                fields = text.rsplit(")", 1)[-1].split()
                if fields[0] != "Z" and text.split("(", 1)[1].startswith("sshd)"):
                    children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        pids, todo = [], list(children.get(self.pid, []))
        while todo:
            p = todo.pop()
            pids.append(p)
            todo += children.get(p, [])
        return pids

    def kill_connections(self) -> list[int]:
        """Kill every open connection from the server side (its sshd processes)."""
        pids = self.connection_pids()
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        wait_for(lambda: not any(alive(p) for p in pids), 10, "killed sshd connections to end")
        return pids

    def _keyscan(self) -> str:
        r = subprocess.run(["ssh-keyscan", "-T", "3", "-p", str(self.port), "127.0.0.1"],
                           capture_output=True, text=True)
        return r.stdout

    @contextlib.contextmanager
    def other_host_key(self) -> Iterator[str]:
        """The server gets a NEW host key (as a re-installed login node); the old one is put
        back afterwards. Yields the new key's public line."""
        key = Path(self.base, "etc", "ssh_host_ed25519_key")
        saved = {p: p.read_bytes() for p in (key, key.with_suffix(".pub"))}
        old = self._keyscan()
        key.unlink()
        key.with_suffix(".pub").unlink()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        new = key.with_suffix(".pub").read_text().split()[1]
        os.kill(self.pid, signal.SIGHUP)  # sshd re-execs itself and re-reads its host keys
        wait_for(lambda: new in self._keyscan(), 20, "sshd to offer the new host key")
        try:
            yield new
        finally:
            for p, data in saved.items():
                p.write_bytes(data)
            os.kill(self.pid, signal.SIGHUP)
            wait_for(lambda: self._keyscan() == old, 20, "sshd to offer its old host key")


def ensure_local_user(name: str = LOCAL_USER) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        for _ in range(50):  # another test may hold the lock of /etc/passwd for a moment
            if subprocess.run(["useradd", "-m", "-s", "/bin/bash", name]).returncode == 0:
                break
            wait_for(lambda: not Path("/etc/passwd.lock").exists(), 10, "/etc/passwd's lock")
        return pwd.getpwnam(name)


def load_relay() -> Any:
    """scripts/ssh/delay_relay.py as a module (the package does not depend on it)."""
    name = "stax_delay_relay"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / "delay_relay.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
