"""An unprivileged Linux user for the tests that must run as a new user would (the Binder set-up,
a newcomer's fresh clone): made by root with ``useradd -m``, commands run through ``su -`` (a
login shell: the user's own HOME and the default PATH, so only Debian's ``/usr/bin/python3``;
root's pyenv under /root is mode 700). Root only: outside CI the tests that need it are
skipped when not root, in CI they fail. Not a test module."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import IO

import pytest

from .proc import alive, wait_for

#: the machine's network set-up a login shell would lose (a TLS proxy's CA for pip and for
#: Node.js, proxies), handed on to the user when set: a newcomer's machine has its own
NETWORK_ENV = (
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def require_root(what: str) -> None:
    """Skip (fail in CI) unless this process can create users."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs as root: {what} must run")
        pytest.skip(f"needs root ({what} creates an unprivileged user)")


class UnprivilegedUser:
    """A login user of the tests' own (every process it runs was started by a test)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def home(self) -> Path:
        return Path(pwd.getpwnam(self.name).pw_dir)

    def exists(self) -> bool:
        try:
            pwd.getpwnam(self.name)
        except KeyError:
            return False
        return True

    def create(self, *, fresh: bool = False) -> Path:
        """Make the user if missing (``fresh``: delete it and its home first, so the home holds
        only /etc/skel's files); returns the home."""
        if fresh and self.exists():
            self.kill_all()
            subprocess.run(["userdel", "-r", self.name], capture_output=True, check=False)
        if not self.exists():
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", self.name], check=True)
        return self.home

    def su(self, command: str) -> list[str]:
        """The ``su`` command line that runs ``command`` in the user's login shell."""
        keep = ",".join(v for v in NETWORK_ENV if v in os.environ)
        return ["su", *(["-w", keep] if keep else []), "-", self.name, "-c", command]

    def run(self, command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``command`` in the user's login shell; stdout and stderr captured."""
        return subprocess.run(self.su(command), capture_output=True, text=True, timeout=timeout)

    def start(self, command: str, output: IO[bytes]) -> subprocess.Popen[bytes]:
        """``command`` in the user's login shell, in the background (stop it with ``stop``)."""
        return subprocess.Popen(
            self.su(command),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """SIGTERM to ``su`` (it passes it on to the command), SIGKILL after ``timeout``."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def chown(self, path: Path) -> None:
        subprocess.run(["chown", "-R", f"{self.name}:{self.name}", str(path)], check=True)

    def kill_all(self) -> None:
        """End what is left of this test user's processes (kernels, servers, its Slurm):
        SIGTERM, then SIGKILL to those still there after 10 s."""
        subprocess.run(["pkill", "-u", self.name], capture_output=True, check=False)
        try:
            wait_for(lambda: not self.pids(), 10, f"the processes of {self.name} to end")
        except AssertionError:
            subprocess.run(["pkill", "-KILL", "-u", self.name], capture_output=True, check=False)
            wait_for(lambda: not self.pids(), 10, f"the processes of {self.name} to be killed")

    def pids(self) -> list[int]:
        """The user's live processes (zombies left out)."""
        if not self.exists():
            return []
        out = subprocess.run(
            ["pgrep", "-u", self.name], capture_output=True, text=True, check=False
        ).stdout
        return [p for p in map(int, out.split()) if alive(p)]
