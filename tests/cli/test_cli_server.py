"""``jupyter stax`` through a real Jupyter server that serves the same store.

The server is a real ``jupyter server`` process (``tests/server/real_server.py``); the commands
find it through its runtime file (``jpserver-<pid>.json``), or through
``$JUPYTER_STAX_SERVER_URL``/``$JUPYTER_STAX_TOKEN`` like a kernel of that server. Every
execution is then driven by the server's engine (its id is the execution's ``owner``) and no
background engine is ever started; ``--no-server`` still works beside it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.client import RestService, ServerUnreachable, find_server
from jupyter_stax.core.errors import (
    BadRequest,
    Conflict,
    InvalidWorkflow,
    NotFound,
    UnknownCluster,
)
from jupyter_stax.service import LocalService, StaxService

from ..proc import kill, pgrep
from ..server.real_server import RealServer, free_port
from ..waiting import gate, wait_for
from .test_cli import CHAIN, DEMO, FAILING, JUPYTER, Stax


@pytest.fixture
def server(real_server: RealServer) -> RealServer:
    return real_server


@pytest.fixture
def cli(stax_env: Path, server: RealServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stax]:
    """``jupyter stax`` that finds the server through its runtime file."""
    for name in ("JUPYTER_STAX_SERVER_URL", "JUPYTER_STAX_TOKEN", "JUPYTER_STAX_NO_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    monkeypatch.delenv("COLUMNS", raising=False)
    stax = Stax(stax_env, stax_env / "state" / "stax.sqlite")
    yield stax
    kill(stax.daemon_pids())


def owner(store: Path, eid: str) -> str | None:
    db = sqlite3.connect(store)
    try:
        row = db.execute("SELECT owner FROM executions WHERE id=?", (eid,)).fetchone()
    finally:
        db.close()
    return None if row is None else row[0]


def engine_id(server: RealServer) -> str:
    code, info = server.call("GET", "info")
    assert code == 200, info
    return str(info["engine_id"])


def test_run_wait_list_status_logs_go_through_the_server(cli: Stax, server: RealServer) -> None:
    using = f"using the Jupyter server {server.url}"
    cli.write("demo.yaml", DEMO)
    r = cli("run", "demo.yaml", "--cluster", "local", "--wait")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == using
    eid = r.stdout.split()[1]
    assert r.stdout.startswith(f"submitted {eid} (demo, 2 steps on local)")
    assert "total  completed" in r.stdout and "make completed" in r.stderr
    assert owner(cli.store, eid) == engine_id(server)  # driven by the server's engine
    assert cli.ok("logs", eid, "total") == "6\n"

    r = cli("run", "demo.yaml", "--param", "n=10", "--wait")  # the server's default cluster
    assert r.returncode == 0, r.stderr
    eid10 = r.stdout.split()[1]
    assert cli.ok("logs", eid10, "total") == "55\n"

    rows = [line.split() for line in cli.ok("list").splitlines()]
    assert rows[0] == ["ID", "NAME", "CLUSTER", "STATE", "DONE", "CREATED"]
    assert [eid, "demo", "local", "completed", "2/2"] in [row[:5] for row in rows]
    listed = json.loads(cli.ok("list", "--json", "--limit", "1"))
    assert [x["id"] for x in listed] == [eid10] and listed[0]["steps"][1]["name"] == "total"
    assert cli.ok("list", "--state", "failed") == "no executions in state failed\n"
    st = cli.status(eid)
    assert [(s["name"], s["state"], s["exit_code"]) for s in st["steps"]] == [
        ("make", "completed", 0),
        ("total", "completed", 0),
    ]
    prefix = next(eid[:n] for n in range(1, 9) if not eid10.startswith(eid[:n]))
    out = cli.ok("status", prefix)
    assert out.startswith(f"execution  {eid}\nworkflow   demo\ncluster    local\n")
    # the same answers from the store directly, beside the server
    r = cli("--no-server", "status", eid)
    assert r.returncode == 0 and using not in r.stderr
    assert r.stdout.splitlines()[:3] == out.splitlines()[:3]
    assert not cli.daemon_pids()  # nothing but the server's engine ever ran


def test_no_server_submissions_are_driven_by_the_server_engine(
    cli: Stax, server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's engine lock is the server's: a --no-server run starts no background engine,
    the server's engine adopts the execution."""
    cli.write("demo.yaml", DEMO)
    r = cli("--no-server", "run", "demo.yaml", "--wait")
    assert r.returncode == 0, r.stderr
    assert "using the Jupyter server" not in r.stderr
    eid = r.stdout.split()[1]
    assert owner(cli.store, eid) == engine_id(server)
    monkeypatch.setenv("JUPYTER_STAX_NO_SERVER", "1")
    r = cli("logs", eid, "total")
    assert (r.returncode, r.stdout, r.stderr) == (0, "6\n", "")
    assert not cli.daemon_pids()


def test_failure_retry_cancel_and_errors_through_the_server(cli: Stax, server: RealServer) -> None:
    cli.write("fail.yaml", FAILING)
    r = cli("run", "fail.yaml", "--wait")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "bad failed (exit code 3: oops)" in r.stderr
    eid = r.stdout.split()[1]
    assert cli.ok("logs", eid, "bad", "--stderr") == "oops\n"
    assert cli.ok("logs", eid, "after", "--follow") == ""
    r = cli("retry", eid, "--wait")
    assert r.returncode == 1, r.stderr
    assert "retrying 2 step(s)" in r.stdout and "bad  (attempt 2)" in r.stdout
    steps = {s["name"]: s for s in cli.status(eid)["steps"]}
    assert steps["bad"]["attempt"] == 2 and steps["bad"]["history"][0]["exit_code"] == 3
    assert cli.ok("logs", eid, "bad", "--stderr", "--attempt", "1") == "oops\n"
    r = cli("logs", eid, "bad", "--attempt", "3")
    assert r.returncode == 1 and r.stderr.endswith("attempts: 1..2\n")
    r = cli("logs", eid, "nope")
    assert r.returncode == 1 and "steps: bad, after" in r.stderr
    r = cli("status", "nope")
    assert r.returncode == 1
    assert r.stderr.endswith("error: no execution 'nope'; see `jupyter stax list`\n")

    # bad input is still exit status 2, with the server's message (and its "did you mean")
    cli.write("demo.yaml", DEMO)
    r = cli("run", "demo.yaml", "--cluster", "slurmm")
    assert r.returncode == 2 and "did you mean 'slurm'?" in r.stderr, r.stderr
    cli.write(
        "cyc.yaml",
        "name: c\nsteps:\n  - {name: a, after: [b], run: 'true'}\n"
        "  - {name: b, after: [a], run: 'true'}\n",
    )
    r = cli("run", "cyc.yaml")
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert "the steps form a cycle: a -> b -> a" in r.stderr and "Traceback" not in r.stderr

    marker = f"sleep {random.randint(600000, 699999)}"
    cli.write("slow.yaml", f"name: slow\nsteps:\n  - {{name: nap, run: '{marker}'}}\n")
    sid = cli.submit("slow.yaml")
    try:
        wait_for(lambda: cli.status(sid)["steps"][0]["state"] == "running", 30, "running")
        r = cli("cancel", sid)
        assert r.returncode == 0, r.stderr
        assert "state      canceled" in r.stdout
        wait_for(lambda: not pgrep(marker), 10, "the sleep process to be killed")
        r = cli("cancel", sid)
        assert r.returncode == 1
        assert r.stderr.endswith(f"error: execution {sid} is already canceled; nothing to cancel\n")
    finally:
        kill(pgrep(marker))
    assert not cli.daemon_pids()


@pytest.mark.parametrize("how", ["server", "--no-server"])
def test_logs_follow_across_a_retry(cli: Stax, how: str) -> None:
    """Through the server (log endpoint offsets) and from the store, while the server's engine
    drives the execution.

    Attempt 1 goes on past its first line only once the follower has shown that line: a
    follower that starts late (a loaded machine) would otherwise meet attempt 2 first, and
    following starts at the attempt that runs when it starts."""
    opt = ["--no-server"] if how == "--no-server" else []
    go = cli.cwd / "go"
    cli.write(
        "flaky.yaml",
        "name: flaky\nsteps:\n"
        "  - name: tick\n"
        "    retries: 1\n"
        "    run: 'for i in 1 2 3; do echo try$STAX_ATTEMPT.$i; "
        f"{gate(go)}; sleep 0.3; done; "
        '[ "$STAX_ATTEMPT" = 2 ]\'\n',
    )
    eid = cli.submit("flaky.yaml")
    out, err = cli.cwd / "follow.out", cli.cwd / "follow.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        follower = subprocess.Popen(
            [*JUPYTER.split(), "stax", *opt, "logs", eid, "tick", "--follow"],
            cwd=cli.cwd,
            stdout=o,
            stderr=e,
        )
    try:
        wait_for(
            lambda: out.read_text() or follower.poll() is not None,
            60,
            "the follower to show attempt 1's first line",
        )
        assert out.read_text() == "try1.1\n", err.read_text()
        go.touch()
        returncode = follower.wait(timeout=120)
    finally:
        go.touch()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert returncode == 0, err.read_text()
    assert out.read_text() == "".join(f"try{a}.{i}\n" for a in (1, 2) for i in (1, 2, 3))
    assert "--- attempt 2 ---" in err.read_text()
    assert cli.wait_final(eid)["state"] == "completed"
    assert cli.ok(*opt, "logs", eid, "tick", "--attempt", "1") == "try1.1\ntry1.2\ntry1.3\n"


def test_logs_bytes_that_are_not_utf8(cli: Stax) -> None:
    """The store gives the file's bytes as they are; the REST API speaks UTF-8 text, so there
    an undecodable byte becomes U+FFFD."""
    cli.write("bin.yaml", "name: bin\nsteps:\n  - {name: a, run: printf 'x\\377\\303\\251\\n'}\n")
    eid = cli.submit("bin.yaml")
    assert cli.wait_final(eid)["state"] == "completed"
    args = [*JUPYTER.split(), "stax", "logs", eid, "a"]
    local = subprocess.run([*args, "--no-server"], cwd=cli.cwd, capture_output=True, check=True)
    assert local.stdout == b"x\xff\xc3\xa9\n"
    remote = subprocess.run(args, cwd=cli.cwd, capture_output=True, check=True)
    assert remote.stdout == "x\ufffd\u00e9\n".encode()


def test_kernel_environment_finds_the_server_without_runtime_files(
    cli: Stax, server: RealServer, stax_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a kernel started by the server has: the URL and token in its environment."""
    empty = stax_env / "no-runtime"
    empty.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(empty))
    monkeypatch.setenv("JUPYTER_STAX_SERVER_URL", server.url)
    monkeypatch.setenv("JUPYTER_STAX_TOKEN", server.token)
    svc = find_server(cli.store)
    assert isinstance(svc, RestService) and svc.url == server.url
    assert svc.describe() == f"server {server.url}"
    r = cli("list")
    assert r.returncode == 0 and r.stderr == f"using the Jupyter server {server.url}\n"
    # a wrong token: not used (and no runtime file to fall back on)
    monkeypatch.setenv("JUPYTER_STAX_TOKEN", "wrong")
    assert find_server(cli.store) is None
    r = cli("list")
    assert r.returncode == 0 and r.stderr == ""


def test_find_server_checks_store_liveness_and_answers(
    server: RealServer, stax_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JUPYTER_STAX_SERVER_URL", "JUPYTER_STAX_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    store = stax_env / "state" / "stax.sqlite"
    files = list(server.runtime_dir.glob("jpserver-*.json"))
    assert len(files) == 1
    svc = find_server(store, runtime_dir=server.runtime_dir)
    assert svc is not None and svc.url == server.url and svc.token == server.token
    assert find_server(None, runtime_dir=server.runtime_dir) is not None  # any store
    assert find_server(stax_env / "other.sqlite", runtime_dir=server.runtime_dir) is None
    # a runtime file of a dead process (newer than the live one) is skipped
    info = json.loads(files[0].read_text())
    dead = server.runtime_dir / "jpserver-999999999.json"
    dead.write_text(json.dumps({**info, "pid": 999999999, "port": free_port()}))
    assert find_server(store, runtime_dir=server.runtime_dir) is not None
    # a live process whose port accepts connections but never answers: skipped after ~1 s
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        url = f"http://127.0.0.1:{mute.getsockname()[1]}/"
        (server.runtime_dir / f"jpserver-{os.getpid()}.json").write_text(
            json.dumps({**info, "pid": os.getpid(), "url": url})
        )
        t = time.monotonic()
        svc = find_server(store, runtime_dir=server.runtime_dir)
        took = time.monotonic() - t
    assert svc is not None and svc.url == server.url
    assert 0.9 < took < 3


def test_rest_service_maps_errors_back_to_their_classes(server: RealServer) -> None:
    svc: StaxService = RestService(server.url, server.token)
    with pytest.raises(NotFound, match="no execution 'nope'"):
        svc.get("nope")
    with pytest.raises(UnknownCluster, match="did you mean 'slurm'"):
        svc.submit({"name": "x", "steps": [{"name": "a", "run": "true"}]}, cluster="slurmm")
    with pytest.raises(InvalidWorkflow) as e:
        svc.submit({"name": "x", "steps": [{"name": "a", "run": "true", "afer": []}]})
    assert any("afer" in d for d in e.value.details)
    with pytest.raises(BadRequest, match="cursor"):
        svc.list(cursor="!!")
    ex = svc.submit("name: y\nsteps:\n  - {name: a, run: echo hi}\n")
    ex = wait_for(
        lambda: (x := svc.get(ex.id[:6])).state.final and x, 30, f"{ex.id} to end", interval=0.2
    )
    assert svc.read_log(ex.id, "a").data == "hi\n"
    with pytest.raises(Conflict, match="completed; there is nothing to retry"):
        svc.retry(ex.id)
    items, cursor = svc.list(limit=1)
    assert [x.id for x in items] == [ex.id] and cursor is None
    assert [c.name for c in svc.clusters()] == ["local", "slurm"]
    assert svc.cluster("local").summary is not None
    gone = RestService(f"http://127.0.0.1:{free_port()}/", "t")
    with pytest.raises(ServerUnreachable, match=r"127\.0\.0\.1.*connection refused"):
        gone.get("x")
    # the local service gives the same models
    local = LocalService(server.store)
    assert local.get(ex.id[:6]).id == ex.id
    assert local.read_log(ex.id, "a").data == "hi\n"
    assert isinstance(local, StaxService) and isinstance(svc, StaxService)


@pytest.mark.slurm
def test_slurm_detach_through_the_server(cli: Stax, slurm: str, server: RealServer) -> None:
    cli.write("chain.yaml", CHAIN)
    r = cli("run", "chain.yaml", "--cluster", "slurm", "--detach")
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"using the Jupyter server {server.url}\n"
    eid = r.stdout.split()[1]
    native = [line.split()[2] for line in r.stdout.splitlines()[1:6]]
    assert all(n.isdigit() for n in native) and len(set(native)) == 5
    st = cli.wait_final(eid, timeout=120)
    assert st["options"]["detached"] is True
    assert [(s["state"], s["native_id"]) for s in st["steps"]] == [("completed", n) for n in native]
    assert (cli.cwd / "runs" / eid / "log.txt").read_text().split() == [
        "s1",
        "s2",
        "s3",
        "s4",
        "s5",
    ]
    assert not cli.daemon_pids()
