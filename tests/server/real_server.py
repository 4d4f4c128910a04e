"""A real ``jupyter server`` in its own process, with jupyter_stax enabled on a given store.

Used by the tests that need a server other processes can reach (the CLI through a server, a
``kill -9`` of the server, schemathesis) and by ``bench/server_load.py``. Not a test module:
no pytest imports here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
#: variables a child server must not inherit from the test process (an in-process test server
#: may have exported them)
_DROP = ("JUPYTER_STAX_SERVER_URL", "JUPYTER_STAX_TOKEN", "JUPYTER_STAX_NO_SERVER")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that imports THIS checkout."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    return {**env, "PYTHONPATH": path, **extra}


class RealServer:
    """``python -m jupyter_server`` on 127.0.0.1, a free port and a token, with its config,
    data and runtime directories under ``home``; jupyter_stax serves ``store``."""

    def __init__(
        self,
        home: Path,
        *,
        store: Path,
        work_dir: Path,
        clusters_file: Path | None = None,
        token: str = "stax-test-token",
        stax: dict[str, Any] | None = None,
    ) -> None:
        self.home = home
        self.store = store
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.runtime_dir = home / "runtime"
        self.log_path = home / "server.log"
        config: dict[str, Any] = {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_stax": True},
                "ip": "127.0.0.1",
                "open_browser": False,
            },
            "StaxApp": {
                "store_path": str(store),
                "work_dir": str(work_dir),
                "record_interval": 0.2,
                **({"clusters_file": str(clusters_file)} if clusters_file else {}),
                **(stax or {}),
            },
        }
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        #: more environment for the next start (e.g. a PATH with a scheduler shim)
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return child_env(
            JUPYTER_CONFIG_DIR=str(self.home / "config"),
            JUPYTER_DATA_DIR=str(self.home / "data"),
            JUPYTER_RUNTIME_DIR=str(self.runtime_dir),
            **self.extra_env,
        )

    def start(self, timeout: float = 60) -> dict[str, Any]:
        """Start it (again, on the same port) and wait until its engine runs; its info."""
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyter_server",
                    f"--port={self.port}",
                    "--port-retries=0",
                    "--ip=127.0.0.1",
                    "--ServerApp.open_browser=False",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={self.home}",
                    "--allow-root",
                ],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> dict[str, Any] | None:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"the server did not start:\n{self.log()}")
            try:
                code, info = self.call("GET", "info", timeout=2)
                if code == 200 and info.get("engine_id"):
                    return dict(info)
            except (OSError, ValueError):
                pass
            return None

        try:
            return wait_for(up, timeout, "the server's engine", interval=0.2)
        except AssertionError:
            raise RuntimeError(f"the server did not start:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, timeout=30.0
    ) -> tuple[int, Any]:
        """``method`` on ``stax/api/<path>``: (status, decoded JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        req = urllib.request.Request(
            f"{self.url}stax/api/{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"token {self.token if token is None else token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def kill(self) -> None:
        """``kill -9``: no clean-up at all (its runtime file stays behind)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it does not stop."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
