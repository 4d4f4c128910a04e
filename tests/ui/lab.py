"""A real ``jupyter lab`` in its own process for the browser tests: 127.0.0.1, a token,
temporary config/data/runtime/settings/workspaces directories, the news toast off, and
jupyter_stax serving an isolated store with the test's clusters file. Not a test module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..server.real_server import child_env, free_port
from ..waiting import wait_for

#: JupyterLab user settings that keep a test page quiet (no news or update toasts)
QUIET_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

#: the built JupyterLab extension the Lab loads: this checkout's (``jupyter_stax/labextension``,
#: ``cd labextension && jlpm build:prod``) or ``$STAX_UI_LABEXTENSION``; linked into the Lab's own
#: data directory, which JupyterLab searches first, so no global ``labextension develop`` decides
LABEXTENSION = Path(
    os.environ.get("STAX_UI_LABEXTENSION")
    or Path(__file__).resolve().parents[2] / "jupyter_stax" / "labextension"
)

#: a small StaX catalog: one variant fits an x86_64 machine, the other cannot
IMAGES = """\
stax:
  demo:
    description: a demo StaX
    variants:
      - name: demo-x86
        image: /images/demo-x86
        labels: {cpu: x86_64, gpu: none, mpi: none}
      - name: demo-arm
        image: /images/demo-arm
        labels: {cpu: aarch64, gpu: none, mpi: none}
"""


class LabServer:
    def __init__(
        self,
        home: Path,
        *,
        store: Path,
        work_dir: Path,
        clusters_file: Path,
        token: str = "stax-ui-token",
    ) -> None:
        self.home = home
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = home / "lab.log"
        home.mkdir(parents=True, exist_ok=True)
        catalog = home / "images.yaml"
        catalog.write_text(IMAGES)
        config = {
            "ServerApp": {"jpserver_extensions": {"jupyter_stax": True, "jupyterlab": True}},
            "StaxApp": {
                "store_path": str(store),
                "work_dir": str(work_dir),
                "clusters_file": str(clusters_file),
                "record_interval": 0.2,
                "image_catalogs": [str(catalog)],
            },
        }
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        for name, settings in QUIET_SETTINGS.items():
            plugin, file = name.rsplit("/", 1)
            d = home / "settings" / plugin
            d.mkdir(parents=True, exist_ok=True)
            (d / file).write_text(json.dumps(settings))
        (home / "workspaces").mkdir(exist_ok=True)
        link = home / "data" / "labextensions" / "jupyter-stax"
        if (LABEXTENSION / "package.json").exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(LABEXTENSION)
        (home / "root").mkdir(exist_ok=True)
        self.root_dir = home / "root"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90, **extra_env: str) -> None:
        env = child_env(
            JUPYTER_CONFIG_DIR=str(self.home / "config"),
            JUPYTER_DATA_DIR=str(self.home / "data"),
            JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.home / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.home / "workspaces"),
            **extra_env,
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyterlab",
                    "--no-browser",
                    f"--port={self.port}",
                    "--port-retries=0",
                    "--ip=127.0.0.1",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={self.root_dir}",
                    f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
                    f"--LabApp.user_settings_dir={self.home / 'settings'}",
                    "--allow-root",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab did not start:\n{self.log()}")
            try:
                code, info = self.call("GET", "stax/api/info", timeout=2)
                return code == 200 and bool(info.get("engine_id"))
            except (OSError, ValueError):
                return False

        try:
            wait_for(up, timeout, "jupyter lab's engine", interval=0.3)
        except AssertionError:
            raise RuntimeError(f"jupyter lab did not start:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 30
    ) -> tuple[int, Any]:
        """``method`` on ``<base>/<path>`` with the token: (status, decoded JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        code, data = self.call(method, f"stax/api/{path}", body)
        assert code < 400, (method, path, code, data)
        return data

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
