"""Nothing goes around SSH: the Jupyter side runs as ANOTHER unprivileged user (stax-jupyter),
with Debian's python3 and a copy of the connection layer. It cannot read the remote account's
home (mode 700) through the file system, yet reads and writes it through SSH, as the remote
account, with both clients. Root only (it creates the user); required in CI."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .sshd import LOCAL_USER, REMOTE_USER, ROOT, Client, Sshd, ensure_local_user

pytestmark = [pytest.mark.ssh, pytest.mark.slow, pytest.mark.timeout(900)]

PROBE = r"""
import asyncio, json, os, sys
from pathlib import Path
from jupyter_stax.engine.remote import SSHTarget, open_connection

home, secret = sys.argv[1], sys.argv[2]
out = {"uid": os.getuid()}
try:
    Path(home, secret).read_bytes()
    out["direct"] = "READ"
except PermissionError:
    out["direct"] = "denied"
try:
    os.listdir(home)
    out["listdir"] = "READ"
except PermissionError:
    out["listdir"] = "denied"

async def main():
    c = open_connection(SSHTarget.parse(sys.argv[3], **json.loads(sys.argv[4])))
    try:
        out["whoami"] = (await c.run(["whoami"])).out.strip()
        out["secret"] = (await c.read_files([secret]))[secret].decode()
        await c.write_files({"from-jupyter/hello": (b"hi", 0o600)})
        out["back"] = (await c.read_from("from-jupyter/hello")).decode()
        await c.remove(["from-jupyter"], recursive=True)
    finally:
        await c.close()

asyncio.run(main())
print(json.dumps(out))
"""


def as_user(user: str, argv: list[str], env: dict[str, str],
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")
    assert runuser, "runuser (util-linux) is missing"
    home = pwd.getpwnam(user).pw_dir
    base_env = {"HOME": home, "USER": user, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([runuser, "-u", user, "--", "env", "-i",
                           *(f"{k}={v}" for k, v in {**base_env, **env}.items()), *argv],
                          capture_output=True, text=True, timeout=timeout, cwd="/")


@pytest.fixture(scope="module")
def jupyter_user(own_sshd: Sshd) -> Iterator[tuple[Client, str, str]]:
    """The unprivileged user, its key for the remote account, a copy of the connection layer it
    can read, and a venv of Debian's python3 with asyncssh (cached in /var/tmp)."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no Debian python3")
    pw = ensure_local_user(LOCAL_USER)
    client = own_sshd.client(LOCAL_USER)
    src = tempfile.mkdtemp(prefix="stax-ssh-src-")
    os.chmod(src, 0o755)
    pkg = ROOT / "jupyter_stax"
    for rel in ["__init__.py", "_version.py", "core/__init__.py", "core/errors.py",
                "engine/__init__.py", *(f"engine/remote/{p.name}" for p in
                                        (pkg / "engine" / "remote").glob("*.py"))]:
        dst = Path(src, "jupyter_stax", rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pkg / rel, dst)
    subprocess.run(["chmod", "-R", "a+rX", src], check=True)
    venv = f"/var/tmp/stax-ssh-venv-{LOCAL_USER}"
    py = f"{venv}/bin/python"
    if as_user(LOCAL_USER, [py, "-c", "import asyncssh"], {}).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        Path(venv).mkdir(mode=0o755)
        os.chown(venv, pw.pw_uid, pw.pw_gid)
        r = as_user(LOCAL_USER, ["/usr/bin/python3", "-m", "venv", venv], {})
        if r.returncode != 0:
            pytest.fail(f"python3 -m venv failed (python3-venv missing?): {r.stderr}")
        r = as_user(LOCAL_USER, [f"{venv}/bin/pip", "install", "-q", "asyncssh>=2.24.1,<2.25"],
                    {})
        assert r.returncode == 0, r.stderr
    try:
        yield client, src, py
    finally:
        shutil.rmtree(src, ignore_errors=True)


def test_the_jupyter_user_reaches_the_remote_home_only_through_ssh(
    own_sshd: Sshd, jupyter_user: tuple[Client, str, str], variant: str
) -> None:
    client, src, py = jupyter_user
    remote = pwd.getpwnam(REMOTE_USER)
    assert Path(remote.pw_dir).stat().st_mode & 0o777 == 0o700
    secret = Path(remote.pw_dir, "secret.txt")
    secret.write_text(f"only {REMOTE_USER} reads this")
    os.chown(secret, remote.pw_uid, remote.pw_gid)
    secret.chmod(0o600)
    fields = {"port": own_sshd.port, "identity_file": client.identity,
              "known_hosts": client.known_hosts, "ssh": variant}
    # the openssh client needs no asyncssh: Debian's python3 alone runs it
    python = py if variant == "asyncssh" else "/usr/bin/python3"
    r = as_user(LOCAL_USER, [python, "-c", PROBE, remote.pw_dir, "secret.txt",
                             f"{REMOTE_USER}@127.0.0.1", json.dumps(fields)],
                {"PYTHONPATH": src})
    secret.unlink()
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["uid"] == pwd.getpwnam(LOCAL_USER).pw_uid != 0
    assert (out["direct"], out["listdir"]) == ("denied", "denied")
    assert out["whoami"] == REMOTE_USER
    assert out["secret"] == f"only {REMOTE_USER} reads this"
    assert out["back"] == "hi"


#: the engine's dependencies beside asyncssh (the versions of the project's tested set)
ENGINE_DEPS = ["psij-python==0.9.11", "pydantic>=2.5,<3", "pyyaml>=6", "typeguard>=4",
               "psutil", "jupyter_core>=5"]

RUN_PROBE = r"""
import asyncio, json, os, sys
from pathlib import Path
from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import Cluster
from jupyter_stax.engine.engine import Engine

fields = json.loads(sys.argv[1])
far = Cluster.model_validate({"name": "far", "scheduler": "slurm", "queue": "debug",
                              "walltime": "00:05:00", "poll_interval": 1, **fields})
box = Cluster.model_validate({"name": "box", "scheduler": "local", **fields})
wf = {"name": "unpriv", "steps": [
    {"name": "a", "cluster": "far", "run": "id -un > who.txt; cat who.txt"},
    {"name": "b", "cluster": "box", "after": ["a"], "run": "cat \"$STAX_EXECUTION_DIR/a/who.txt\""},
]}
out = {"uid": os.getuid()}

async def main():
    home = Path.home()
    async with Engine(store=home / "stax-state" / "stax.sqlite",
                      clusters=ClusterRegistry([far, box], work_dir=home / "runs")) as e:
        ex = await e.submit(wf, "far")
        done = await e.wait(ex.id, 300)
        out["states"] = {s.name: [s.state.value, s.exit_code, s.reason] for s in done.steps}
        out["native"] = {s.name: s.native_id for s in done.steps}
        out["logs"] = {s.name: e._transports[s.cluster].read_chunk(s.stdout, 0, 4096).decode()
                       for s in done.steps}
        d = done.steps[0].directory
        out["dir"] = d
        try:
            Path(d, "who.txt").read_text()
            out["direct"] = "READ"
        except PermissionError:
            out["direct"] = "denied"

asyncio.run(main())
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def engine_user(jupyter_user: tuple[Client, str, str]) -> Iterator[tuple[Client, str, str]]:
    """The unprivileged user's venv with the engine's dependencies too, and a copy of the whole
    package it can read."""
    client, _, py = jupyter_user
    pip = str(Path(py).parent / "pip")
    probe = "import psij, pydantic, yaml, typeguard, psutil, jupyter_core"
    if as_user(LOCAL_USER, [py, "-c", probe], {}).returncode != 0:
        r = as_user(LOCAL_USER, [pip, "install", "-q", *ENGINE_DEPS], {}, timeout=900)
        assert r.returncode == 0, r.stderr
    src = tempfile.mkdtemp(prefix="stax-engine-src-")
    os.chmod(src, 0o755)
    shutil.copytree(ROOT / "jupyter_stax", Path(src, "jupyter_stax"),
                    ignore=shutil.ignore_patterns("labextension", "__pycache__", "static"))
    subprocess.run(["chmod", "-R", "a+rX", src], check=True)
    try:
        yield client, src, py
    finally:
        shutil.rmtree(src, ignore_errors=True)


def test_a_whole_run_by_the_unprivileged_user_goes_through_ssh_only(
    own_sshd: Sshd, engine_user: tuple[Client, str, str], slurm: str
) -> None:
    """The engine itself runs as stax-jupyter: a remote Slurm step, then a remote workstation
    step that reads the first one's output, both as the remote account; the step directories are
    in the remote home, which stax-jupyter cannot read: every byte went through SSH."""
    client, src, py = engine_user
    fields = {"host": f"{REMOTE_USER}@127.0.0.1", "port": own_sshd.port,
              "identity_file": client.identity, "known_hosts": client.known_hosts}
    r = as_user(LOCAL_USER, [py, "-c", RUN_PROBE, json.dumps(fields)], {"PYTHONPATH": src})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["uid"] == pwd.getpwnam(LOCAL_USER).pw_uid != 0
    assert out["states"] == {"a": ["completed", 0, None], "b": ["completed", 0, None]}, out
    assert out["logs"] == {"a": f"{REMOTE_USER}\n", "b": f"{REMOTE_USER}\n"}
    assert out["dir"].startswith(pwd.getpwnam(REMOTE_USER).pw_dir + "/")
    assert out["direct"] == "denied"  # the step directory is not readable from here
    job = subprocess.run(["squeue", "-h", "-t", "all", "-j", out["native"]["a"], "-o", "%u"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    assert job == [REMOTE_USER]  # the Slurm job is the remote account's
