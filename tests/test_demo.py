"""The README's first command works: ``scripts/demo.sh`` runs the demo workflows on ``local``,
and ``scripts/demo.sh --lab`` serves JupyterLab on 127.0.0.1 with the quickstart notebook and
jupyter_stax's API. Where this checkout is the one installed (CI: ``scripts/test.sh``) demo.sh uses
that install; elsewhere (e.g. a second worktree) it installs into the project venv ``.venv/``
first, hence the long deadlines. tests/newcomer runs the same as a new user on a fresh clone."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .server.real_server import child_env, free_port
from .waiting import NotYet, wait_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_demo_workflows_on_local(stax_env: Path) -> None:
    done = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=child_env(JUPYTER_STAX_NO_SERVER="1"),
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "completed" in done.stdout
    assert "== all executions" in done.stderr


def test_demo_lab(stax_env: Path, tmp_path: Path) -> None:
    port, token = free_port(), "demo-test-token"
    env = child_env(
        PORT=str(port),
        JUPYTER_TOKEN=token,
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_STAX_NO_SERVER="1",
    )
    proc = subprocess.Popen(
        ["bash", "scripts/demo.sh", "--lab"],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "lab.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/"
    try:

        def up() -> bool | NotYet:
            try:
                with urllib.request.urlopen(f"{base}api/status?token={token}", timeout=5):
                    return True
            except OSError:
                assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
                return NotYet((tmp_path / "lab.log").read_text()[-3000:])

        wait_for(up, 900, "JupyterLab to answer", interval=0.5)
        url = f"{base}lab/tree/notebooks/01_quickstart.ipynb?token={token}"
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
        with urllib.request.urlopen(f"{base}stax/api/info?token={token}", timeout=30) as r:
            assert r.status == 200
        with urllib.request.urlopen(
            f"{base}api/contents/notebooks/01_quickstart.ipynb?token={token}", timeout=30
        ) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
