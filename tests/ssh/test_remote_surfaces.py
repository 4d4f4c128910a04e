"""A remote step's log and a remote cluster's live detail, from every surface, over the real
sshd (``stax-remote@127.0.0.1``) and the real Slurm behind it.

- The log reader on the cluster is as strict as the local one (links out, FIFOs, directories,
  unreadable files refused) and takes hostile directory names as data: one SSH command a read.
- Through a real Jupyter server (REST, ``jupyter stax logs``, ``logs --follow``, ``clusters
  NAME``) and without it (``--no-server``: the service's own SSH transport)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from jupyter_stax.core.errors import Forbidden, StaxError
from jupyter_stax.engine.remote.transport import SSHTransport
from jupyter_stax.operations.logs import read_chunk
from jupyter_stax.operations.remote_logs import read_remote_chunk

from ..cli.test_cli import JUPYTER, Stax
from ..server.real_server import RealServer
from ..waiting import wait_for
from .remote_config import add_clusters, remote_entry
from .sshd import REMOTE_USER, Client, Sshd
from .test_remote_slurm import HOME, WAIT_FOR_GO, cluster

pytestmark = pytest.mark.ssh

#: a directory name that would run code if it were ever interpolated into a command
HOSTILE = "we'ird $(touch PWNED) `touch PWNED2` \"q\" ;|&"
TEXT = "héllo wörld €\n𝄞 end".encode() + b"\xff\xfe tail\n"


def chown_tree(root: Path) -> None:
    pw = pwd.getpwnam(REMOTE_USER)
    for p in [root, *root.rglob("*")]:
        os.lchown(p, pw.pw_uid, pw.pw_gid)


@pytest.fixture
def remote_dir(sshd: Sshd) -> Iterator[Path]:
    top = HOME / f"stax-logtest-{os.getpid()}"
    d = top / HOSTILE / "step"
    d.mkdir(parents=True)
    (d / "stax.out").write_bytes(TEXT)
    (d / "stax.err").symlink_to("/etc/passwd")
    os.mkfifo(d / "stax.out.1")
    (d / "stax.out.2").mkdir()
    (d / "stax.out.3").symlink_to(d / "stax.out")
    (d / "stax.err.1").symlink_to(d.parent)
    chown_tree(top)
    (d / "stax.err.2").write_text("root's secret\n")  # owned by root, mode 600: unreadable
    os.chmod(d / "stax.err.2", 0o600)
    try:
        yield d
    finally:
        shutil.rmtree(top, ignore_errors=True)


def outcome(fn: object) -> object:
    try:
        return fn()  # type: ignore[operator]
    except StaxError as e:
        return (type(e).__name__, str(e))


def test_the_remote_log_reader_is_as_strict_as_the_local_one(
    sshd: Sshd, client: Client, remote_dir: Path, variant: str, tmp_path: Path
) -> None:
    tr = SSHTransport(cluster(sshd, client, ssh=variant), tmp_path / "state")
    try:
        for name in ("stax.out", "stax.err", "stax.out.1", "stax.out.2", "stax.out.3",
                     "stax.err.1", "stax.out.7"):
            for offset, limit, final in ((0, 1 << 20, True), (1, 1, False), (16, 2, False),
                                         (len(TEXT), 9, True), (3, 4, True)):
                kw = {"offset": offset, "limit": limit, "final": final, "label": name}
                before = tr.connection.stats.execs
                local = outcome(lambda: read_chunk(str(remote_dir), name, **kw))  # noqa: B023
                remote = outcome(
                    lambda: read_remote_chunk(tr, str(remote_dir), name, **kw)  # noqa: B023
                )
                assert remote == local, (name, offset, limit, final)
                assert tr.connection.stats.execs - before == 1  # one round trip a read
        # root can read it here; the remote account cannot, there: refused, not leaked
        with pytest.raises(Forbidden, match=r"stax\.err\.2 cannot be read"):
            read_remote_chunk(tr, str(remote_dir), "stax.err.2", offset=0, limit=100,
                              final=True, label="stax.err.2")
        assert not list(HOME.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    finally:
        tr.close()


# ----------------------------------------------------------------------------- every surface
WORKFLOW = {
    "name": "remote-logs",
    "steps": [
        {"name": "a", "run": WAIT_FOR_GO + "; printf 'h\\303\\251llo\\n'; seq 1 3000"},
        {"name": "b", "run": "echo bad >&2; exit 3", "after": ["a"]},
    ],
}
EXPECTED_A = "released\nhéllo\n" + "".join(f"{i}\n" for i in range(1, 3001))


@pytest.fixture
def far_server(
    stax_env: Path, sshd: Sshd, client: Client, slurm: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RealServer, Stax]]:
    clusters = stax_env / "clusters.yaml"
    add_clusters(clusters, far=remote_entry(sshd, client))
    srv = RealServer(stax_env / "jupyter", store=stax_env / "state" / "stax.sqlite",
                     work_dir=stax_env / "runs", clusters_file=clusters)
    srv.start()
    for name in ("JUPYTER_STAX_SERVER_URL", "JUPYTER_STAX_TOKEN", "JUPYTER_STAX_NO_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(srv.runtime_dir))
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    try:
        yield srv, Stax(stax_env, stax_env / "state" / "stax.sqlite")
    finally:
        srv.stop()


def release(step_dir: str) -> None:
    go = Path(step_dir, "go")
    go.write_text("")
    pw = pwd.getpwnam(REMOTE_USER)
    os.chown(go, pw.pw_uid, pw.pw_gid)


def test_every_surface_reads_a_remote_log_and_the_live_detail(
    far_server: tuple[RealServer, Stax], slurm: str
) -> None:
    srv, cli = far_server
    cli.write("wf.yaml", yaml.safe_dump(WORKFLOW))
    eid = cli.submit("wf.yaml", "--cluster", "far")
    st = wait_for(lambda: (s := cli.status(eid))["steps"][0]["state"] == "running" and s, 180,
                  "step a to run on the remote Slurm")
    step_a = st["steps"][0]["directory"]
    assert step_a.startswith(str(HOME) + "/")  # on the cluster, in the remote account's home

    # logs --follow through the server: everything the step writes, then it ends with the step
    follower = subprocess.Popen([*JUPYTER.split(), "stax", "logs", eid, "a", "--follow"],
                                cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    release(step_a)
    out, err = follower.communicate(timeout=240)
    assert follower.returncode == 0, err
    assert out.decode() == EXPECTED_A
    done = cli.wait_final(eid, 180)
    assert [(s["name"], s["state"]) for s in done["steps"]] == [("a", "completed"),
                                                               ("b", "failed")]

    # REST: paged in small chunks, the same bytes, eof at the end
    got, offset = "", 0
    while True:
        code, chunk = srv.call("GET", f"executions/{eid}/steps/a/log?offset={offset}&limit=4000")
        assert code == 200, chunk
        got += chunk["data"]
        assert chunk["offset"] == offset
        offset = chunk["next_offset"]
        if chunk["eof"]:
            break
    assert got == EXPECTED_A and chunk["size"] == len(EXPECTED_A.encode())
    code, err_chunk = srv.call("GET", f"executions/{eid}/steps/b/log?stream=stderr")
    assert code == 200 and err_chunk["data"] == "bad\n" and err_chunk["eof"]

    # the CLI through the server, and on the store directly (its own SSH connection)
    assert cli.ok("logs", eid, "a") == EXPECTED_A
    assert cli.ok("--no-server", "logs", eid, "b", "--stderr") == "bad\n"
    assert cli.ok("--no-server", "logs", eid, "a") == EXPECTED_A

    # a step name that is not one of the execution's: not found, nothing runs anywhere
    code, body = srv.call("GET", f"executions/{eid}/steps/%24(touch%20PWNED)/log")
    assert code == 404 and "has no step" in body["message"], body
    r = cli("--no-server", "logs", eid, "../../a; touch PWNED")
    assert r.returncode != 0 and "has no step" in r.stderr
    assert not list(HOME.rglob("PWNED*")) and not list(cli.cwd.rglob("PWNED*"))

    # a step file that became a link out of the step directory is refused, on every surface
    b_dir = Path(done["steps"][1]["directory"])
    (b_dir / "stax.out").unlink(missing_ok=True)
    (b_dir / "stax.out").symlink_to("/etc/passwd")
    code, body = srv.call("GET", f"executions/{eid}/steps/b/log")
    assert code == 403 and "outside the step directory" in body["message"], body
    r = cli("--no-server", "logs", eid, "b")
    assert r.returncode != 0 and "outside the step directory" in r.stderr
    assert "root:" not in r.stdout

    # the live detail: the remote Slurm's numbers (asked over SSH) and the connection state
    code, detail = srv.call("GET", "clusters/far")
    assert code == 200, detail
    nodes = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%D"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert detail["summary"]["scheduler"] == "slurm"
    assert detail["summary"]["nodes"]["total"] == sum(int(n) for n in nodes)
    assert detail["connection"]["state"] == "connected"
    assert detail["connection"]["destination"] == f"{REMOTE_USER}@127.0.0.1"
    text = cli.ok("clusters", "far")
    assert f"connected to {REMOTE_USER}@127.0.0.1" in text and "nodes" in text
    local = json.loads(cli.ok("--no-server", "clusters", "far", "--json"))
    assert local["connection"]["state"] == "connected" and local["summary"]["nodes"]["total"]
