"""The real ``jupyter stax`` command, run in subprocesses against an isolated store.

The engine daemon the commands start is a real background process: every test that may start
one uses the ``cli`` fixture, which gives daemons a short idle timeout and kills leftovers.
"""

from __future__ import annotations

import json
import os
import pty
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core import text
from jupyter_stax.core.models import UNVERIFIED_WARNING, Execution, StepRun, Workflow
from jupyter_stax.core.states import StepState, execution_state

from ..conftest import DEMO_WORKFLOW
from ..proc import alive, kill, pgrep
from ..waiting import gate, wait_for

DEMO = DEMO_WORKFLOW

FAILING = """\
name: fails
steps:
  - name: bad
    run: echo oops >&2; exit 3
  - name: after
    after: [bad]
    run: echo never
"""

CHAIN = "name: chain\nsteps:\n" + "".join(
    f"  - name: s{i}\n"
    + (f"    after: [s{i - 1}]\n" if i > 1 else "")
    + '    run: "sleep 1; echo $STAX_STEP >> ../log.txt"\n'
    for i in range(1, 6)
)

JUPYTER = shutil.which("jupyter") or f"{sys.executable} -m jupyter"


class Stax:
    """Runs ``jupyter stax ...`` in ``cwd`` with the test's environment."""

    def __init__(self, cwd: Path, store: Path) -> None:
        self.cwd = cwd
        self.store = store

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JUPYTER.split(), "stax", *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str, timeout: float = 120) -> str:
        r = self(*args, timeout=timeout)
        assert r.returncode == 0, f"jupyter stax {' '.join(args)}: {r.returncode}\n{r.stderr}"
        assert "Traceback" not in r.stderr
        return r.stdout

    def submit(self, *args: str) -> str:
        return self.ok("run", *args, "-q").strip()

    def status(self, eid: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.ok("status", eid, "--json"))
        return data

    def wait_final(self, eid: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (st := self.status(eid))["state"] in ("completed", "failed", "canceled") and st,
            timeout,
            f"execution {eid} to end",
        )

    def write(self, name: str, body: str) -> str:
        (self.cwd / name).write_text(body)
        return name

    def daemon_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-f", f"jupyter_stax.engine.daemon --store {self.store}"],
            capture_output=True,
            text=True,
        ).stdout
        return [int(p) for p in out.split()]


@pytest.fixture
def cli(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stax]:
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    monkeypatch.delenv("COLUMNS", raising=False)
    stax = Stax(stax_env, stax_env / "state" / "stax.sqlite")
    yield stax
    kill(stax.daemon_pids())


def test_run_wait_logs_list_status(cli: Stax) -> None:
    cli.write("demo.yaml", DEMO)
    r = cli("run", "demo.yaml", "--cluster", "local", "--wait")
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    assert r.stdout.startswith(f"submitted {eid} (demo, 2 steps on local)")
    assert "total  completed" in r.stdout  # the final status table
    assert "make completed" in r.stderr  # non-TTY progress: one line per change
    assert cli.ok("logs", eid, "total") == "6\n"

    r = cli("run", "demo.yaml", "--param", "n=10", "--wait")
    assert r.returncode == 0, r.stderr
    eid10 = r.stdout.split()[1]
    assert cli.ok("logs", eid10, "total") == "55\n"

    rows = [line.split() for line in cli.ok("list").splitlines()]
    assert rows[0] == ["ID", "NAME", "CLUSTER", "STATE", "DONE", "CREATED"]
    assert [eid, "demo", "local", "completed", "2/2"] in [row[:5] for row in rows]
    listed = json.loads(cli.ok("list", "--json", "--limit", "1"))
    assert [x["id"] for x in listed] == [eid10]

    st = cli.status(eid)
    assert st["state"] == "completed"
    assert [(s["name"], s["state"], s["exit_code"]) for s in st["steps"]] == [
        ("make", "completed", 0),
        ("total", "completed", 0),
    ]
    prefix = next(eid[:n] for n in range(1, 9) if not eid10.startswith(eid[:n]))
    out = cli.ok("status", prefix)
    assert out.startswith(f"execution  {eid}\nworkflow   demo\ncluster    local\n")
    assert "STEP   STATE      TRY  JOB" in out


def test_failure_stderr_and_retry(cli: Stax) -> None:
    cli.write("fail.yaml", FAILING)
    r = cli("run", "fail.yaml", "--wait")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    eid = r.stdout.split()[1]
    assert "bad failed (exit code 3: oops)" in r.stderr
    steps = {s["name"]: s for s in cli.status(eid)["steps"]}
    assert (steps["bad"]["state"], steps["bad"]["exit_code"]) == ("failed", 3)
    assert steps["after"]["state"] == "skipped"
    assert "upstream step 'bad' failed" in steps["after"]["reason"]
    assert cli.ok("logs", eid, "bad", "--stderr") == "oops\n"
    assert cli.ok("logs", eid, "bad") == ""
    assert cli.ok("logs", eid, "after", "--follow") == ""  # final without output: returns

    r = cli("retry", eid, "--wait")
    assert r.returncode == 1, r.stderr
    assert "retrying 2 step(s)" in r.stdout and "bad  (attempt 2)" in r.stdout
    steps = {s["name"]: s for s in cli.status(eid)["steps"]}
    assert steps["bad"]["attempt"] == 2 and steps["bad"]["history"][0]["exit_code"] == 3
    assert cli.ok("logs", eid, "bad", "--stderr", "--attempt", "1") == "oops\n"
    r = cli("logs", eid, "bad", "--attempt", "3")
    assert r.returncode == 1 and "attempts: 1..2" in r.stderr
    r = cli("logs", eid, "nope")
    assert r.returncode == 1 and "steps: bad, after" in r.stderr
    r = cli("retry", eid[:6])
    assert r.returncode == 0  # failed again: can be retried again
    assert cli.wait_final(eid)["state"] == "failed"


def test_run_returns_at_once_and_the_daemon_drives_then_exits(cli: Stax) -> None:
    # the step goes on only when the test says so: it is not over before the checks below
    go = cli.cwd / "go"
    cli.write("short.yaml", f"name: short\nsteps:\n  - {{name: a, run: '{gate(go)}; echo done'}}\n")
    # returns at once: while its step is held (up to 120 s), not after it (no wall-clock
    # bound: a loaded machine takes seconds just to start the command)
    r = cli("run", "short.yaml", timeout=60)
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    assert f"jupyter stax status {eid}" in r.stdout
    assert f"jupyter stax logs {eid} STEP --follow" in r.stdout
    pids = wait_for(cli.daemon_pids, 30, "the daemon")
    assert len(pids) == 1
    lock = Path(f"{cli.store}.engine.lock")
    wait_for(
        lambda: lock.exists() and lock.read_text().strip() == str(pids[0]), 30, "the daemon's lock"
    )
    # a second daemon on the same store exits at once (while the step is still held)
    second = subprocess.run(
        [sys.executable, "-m", "jupyter_stax.engine.daemon", "--store", str(cli.store)],
        timeout=60,
    )
    assert second.returncode == 0
    assert cli.status(eid)["state"] in ("pending", "running")
    go.touch()
    assert cli.wait_final(eid)["state"] == "completed"
    assert cli.ok("logs", eid, "a") == "done\n"
    wait_for(lambda: not alive(pids[0]), 15, "the idle daemon to exit")
    assert (cli.store.parent / "engine.log").read_text().count("idle for 2 s; exiting") == 1


def test_cancel_running_step_kills_it(cli: Stax) -> None:
    marker = f"sleep {random.randint(300000, 399999)}"
    cli.write("slow.yaml", f"name: slow\nsteps:\n  - {{name: nap, run: '{marker}'}}\n")
    eid = cli.submit("slow.yaml")
    try:
        wait_for(lambda: cli.status(eid)["steps"][0]["state"] == "running", 30, "running")
        wait_for(lambda: pgrep(marker), 10, "the sleep process")
        r = cli("cancel", eid)
        assert r.returncode == 0, r.stderr
        assert "state      canceled" in r.stdout
        assert cli.status(eid)["state"] == "canceled"
        wait_for(lambda: not pgrep(marker), 10, "the sleep process to be killed")
        r = cli("cancel", eid)
        assert r.returncode == 1
        assert r.stderr == f"error: execution {eid} is already canceled; nothing to cancel\n"
    finally:
        kill(pgrep(marker))


def test_wait_on_a_terminal_redraws_and_ctrl_c_stops_only_following(cli: Stax) -> None:
    marker = f"sleep {random.randint(400000, 499999)}"
    cli.write("nap.yaml", f"name: nap\nsteps:\n  - {{name: nap, run: '{marker}'}}\n")
    pid, fd = pty.fork()
    if pid == 0:  # child: the command on a terminal
        os.chdir(cli.cwd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execvp(JUPYTER.split()[0], [*JUPYTER.split(), "stax", "run", "nap.yaml", "--wait"])
    out = b""

    def read_until(needle: bytes, timeout: float) -> None:
        nonlocal out
        deadline = time.monotonic() + timeout
        while needle not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    return

    try:
        read_until(b"1 running", 30)
        assert b"\r[..........] 0/1 done \xc2\xb7 1 running \xc2\xb7 0 failed \xc2\xb7 0:0" in out
        os.write(fd, b"\x03")  # Ctrl-C
        read_until(b"jupyter stax wait", 10)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 130
    finally:
        os.close(fd)
    text_out = out.decode()
    eid = text_out.split()[1]
    assert f"stopped following; execution {eid} goes on. Re-attach: jupyter stax wait {eid}" in (
        text_out
    )
    assert "Traceback" not in text_out
    try:
        assert cli.status(eid)["state"] == "running"
        assert pgrep(marker)
        assert cli("cancel", eid).returncode == 0
    finally:
        kill(pgrep(marker))


def test_cancel_after_daemon_restart_kills_adopted_step(cli: Stax) -> None:
    marker = f"sleep {random.randint(500000, 599999)}"
    cli.write("slow.yaml", f"name: slow\nsteps:\n  - {{name: nap, run: '{marker}'}}\n")
    eid = cli.submit("slow.yaml")
    try:
        wait_for(lambda: pgrep(marker), 30, "the sleep process")
        first = cli.daemon_pids()
        kill(first)  # SIGTERM: the daemon lets go, the job runs on
        assert pgrep(marker)
        r = cli("status", eid, "--json")  # starts a new daemon, which adopts the running job
        assert "started the engine" in r.stderr
        assert json.loads(r.stdout)["state"] == "running"
        wait_for(lambda: cli.status(eid)["owner"], 10, "the new daemon to adopt it")
        assert cli("cancel", eid).returncode == 0
        assert cli.status(eid)["state"] == "canceled"
        wait_for(lambda: not pgrep(marker), 5, "the adopted sleep process to be killed")
    finally:
        kill(pgrep(marker))


def test_logs_follow(cli: Stax) -> None:
    go = cli.cwd / "go"
    cli.write(
        "tick.yaml",
        "name: tick\nsteps:\n"
        f"  - {{name: tick, run: '{gate(go)}; for i in 1 2 3 4 5; do echo line$i; sleep 0.4; "
        "done'}\n"
        "  - {name: late, after: [tick], run: 'echo late; echo err >&2'}\n",
    )
    eid = cli.submit("tick.yaml")
    assert cli.ok("logs", eid, "late") == ""  # not started yet: nothing
    go.touch()  # tick starts its lines only now, whenever the commands above got to run
    t = time.monotonic()
    out = cli.ok("logs", eid, "tick", "--follow")
    assert out == "".join(f"line{i}\n" for i in range(1, 6))
    assert time.monotonic() - t > 0.5
    assert cli.ok("logs", eid, "late", "--follow") == "late\n"  # waits for it to run
    assert cli.ok("logs", eid, "late", "-e") == "err\n"


ERRORS = {
    "unknown cluster": (
        DEMO,
        ["--cluster", "slurmm"],
        ["unknown cluster 'slurmm'", "did you mean 'slurm'?", "known clusters: local, slurm"],
    ),
    "cycle": (
        "name: cyc\nsteps:\n  - {name: a, after: [b], run: 'true'}\n"
        "  - {name: b, after: [a], run: 'true'}\n",
        [],
        ["the steps form a cycle: a -> b -> a"],
    ),
    "missing param": (
        "name: mp\nsteps:\n  - {name: a, run: 'echo {{m}}'}\n",
        [],
        ["step 'a' uses {{m}} but no value is given", "--param m=VALUE"],
    ),
    "yaml syntax": (
        "name: y\nsteps:\n  - name: a\n    run: 'x'\n   bad: [\n",
        [],
        ["is not valid YAML at line 5"],
    ),
    "unknown field": (
        "name: u\nsteps:\n  - {name: a, run: 'true'}\n  - {name: b, afer: [a], run: 'true'}\n",
        [],
        ["steps['b'].afer: unknown field"],
    ),
    "param without =": (DEMO, ["--param", "n"], ["argument --param/-p", "NAME=VALUE", "'n'"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_invalid_input_exits_2_without_traceback(cli: Stax, case: str) -> None:
    body, extra, expected = ERRORS[case]
    cli.write("wf.yaml", body)
    r = cli("run", "wf.yaml", *extra)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    for part in expected:
        assert part in r.stderr
    if not extra:
        assert r.stderr.startswith("error: ")
        v = cli("validate", "wf.yaml")
        assert v.returncode == 2 and v.stderr == r.stderr
    assert not cli.store.exists() or json.loads(cli.ok("list", "--json")) == []


def test_other_errors_exit_1(cli: Stax) -> None:
    r = cli("status", "nope")
    assert (r.returncode, r.stderr) == (1, "error: no execution 'nope'; see `jupyter stax list`\n")
    r = cli("cancel", "nope")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    cli.write("demo.yaml", DEMO)
    r = cli("run", "demo.yaml", "--detach")  # detached needs Slurm: refused before submission
    assert r.returncode == 2 and "detached mode queues steps with Slurm" in r.stderr
    r = cli("--clusters", "missing.yaml", "clusters")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_clusters_schema_validate(cli: Stax) -> None:
    rows = [line.split() for line in cli.ok("clusters").splitlines()]
    assert rows[0] == [
        "NAME",
        "SCHEDULER",
        "QUEUE",
        "ACCOUNT",
        "WALLTIME",
        "LAUNCHER",
        "WORK",
        "DIR",
    ]
    work = str(cli.cwd / "runs")
    assert rows[1] == ["local", "local", "-", "-", "01:00:00", "single", work]
    assert rows[2] == ["slurm", "slurm", "debug", "-", "00:10:00", "single", work]
    data = json.loads(cli.ok("clusters", "--json"))
    assert [c["name"] for c in data] == ["local", "slurm"] and data[1]["queue"] == "debug"
    schema = json.loads(cli.ok("schema"))
    assert "steps" in schema["properties"] and "Step" in schema["$defs"]
    cli.write("demo.yaml", DEMO)
    assert cli.ok("validate", "demo.yaml", "-p", "n=4") == "ok: 2 steps (make -> total)\n"
    assert not cli.daemon_pids()


@pytest.mark.slurm
def test_slurm_run_wait(cli: Stax, slurm: str) -> None:
    cli.write("demo.yaml", DEMO)
    r = cli("run", "demo.yaml", "--cluster", "slurm", "--wait")
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    st = cli.status(eid)
    assert st["cluster"] == "slurm"
    assert all(s["state"] == "completed" and s["native_id"] for s in st["steps"])
    assert st["steps"][0]["native_id"] != st["steps"][1]["native_id"]
    assert cli.ok("logs", eid, "total") == "6\n"


@pytest.mark.slurm
def test_slurm_detach_runs_without_engine(cli: Stax, slurm: str) -> None:
    # s1 waits for the test: the chain cannot be over when the command returns, however slow
    # the submissions were
    go = cli.cwd / "go"
    cli.write("chain.yaml", CHAIN.replace('run: "sleep 1;', f'run: "{gate(go)}; sleep 1;', 1))
    r = cli("run", "chain.yaml", "--cluster", "slurm", "--detach")
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    log = cli.cwd / "runs" / eid / "log.txt"
    lines = log.read_text().split() if log.exists() else []
    assert len(lines) < 5  # returned before the chain finished
    assert not cli.daemon_pids()  # and started no daemon
    go.touch()
    native = [line.split()[2] for line in r.stdout.splitlines()[1:6]]
    assert all(n.isdigit() for n in native) and len(set(native)) == 5
    r = cli("status", eid)  # reconciles: starts a daemon, which adopts the execution
    assert r.returncode == 0
    assert "started the engine" in r.stderr
    st = cli.wait_final(eid, timeout=120)
    assert [(s["state"], s["native_id"]) for s in st["steps"]] == [("completed", n) for n in native]
    assert log.read_text().split() == ["s1", "s2", "s3", "s4", "s5"]


@pytest.mark.slurm
def test_slurm_cancel_detached_takes_over(cli: Stax, slurm: str) -> None:
    """Nobody drives a detached execution: cancel takes it over and scancels its jobs."""
    cli.write(
        "long.yaml",
        "name: long\nsteps:\n  - {name: a, run: 'sleep 120'}\n"
        "  - {name: b, after: [a], run: 'sleep 120'}\n",
    )
    out = cli.ok("run", "long.yaml", "--cluster", "slurm", "--detach")
    eid = out.split()[1]
    native = [line.split()[2] for line in out.splitlines()[1:3]]
    assert not cli.daemon_pids()
    r = cli("cancel", eid)
    assert r.returncode == 0, r.stderr
    steps = cli.status(eid)["steps"]
    assert [s["state"] for s in steps] == ["canceled", "canceled"]

    def gone() -> bool:
        out = subprocess.run(
            ["squeue", "-h", "-j", ",".join(native), "-t", "PD,R,CG", "-o", "%i"],
            capture_output=True,
            text=True,
        ).stdout
        return not out.split()

    wait_for(gone, 20, "Slurm to drop the jobs")


# ---------------------------------------------------------------------- text rendering (pure)
def _execution(states: list[StepState]) -> Execution:
    t0 = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    wf = Workflow.model_validate(
        {"name": "w", "steps": [{"name": f"s{i}", "run": "true"} for i in range(len(states))]}
    )
    steps = [
        StepRun(
            name=f"s{i}",
            state=st,
            cluster="local",
            directory="/d",
            script="/d/x",
            stdout="/d/o",
            stderr="/d/e",
            attempt=0 if st is StepState.PENDING else 1,
            native_id=None if st is StepState.PENDING else str(100 + i),
            started_at=t0 if st is not StepState.PENDING else None,
            finished_at=t0 + timedelta(seconds=5) if st.final else None,
            reason="exit code 3: " + "x" * 200 if st is StepState.FAILED else None,
            exit_code=3 if st is StepState.FAILED else None,
        )
        for i, st in enumerate(states)
    ]
    return Execution(
        id="abcd1234",
        workflow=wf,
        cluster="local",
        created_at=t0,
        state=execution_state(states),
        work_dir="/d",
        steps=steps,
    )


def test_text_rendering() -> None:
    now = datetime(2024, 1, 1, 12, 0, 12, tzinfo=timezone.utc)
    S = StepState
    ex = _execution([S.COMPLETED] * 4 + [S.FAILED, S.RUNNING, S.RUNNING] + [S.PENDING] * 3)
    assert text.progress_line(ex, now) == ("[#####.....] 5/10 done · 2 running · 1 failed · 0:12")
    assert text.format_elapsed(3725) == "1:02:05" and text.format_elapsed(None) == "-"
    assert text.format_elapsed(90000) == "1d 01:00:00"
    assert text.relative_age(now - timedelta(minutes=3, seconds=5), now) == "3m ago"
    assert text.relative_age(now, now) == "just now"
    table = text.status_table(ex, now, width=80)
    assert all(len(line) <= 80 for line in table.splitlines())
    assert "s4    failed     1    104  3     0:05     exit code 3: xxx" in table
    assert table.splitlines()[5].endswith("…")
    assert "s5    running    1    105  -     0:12" in table
    line = text.step_change_line(ex.steps[5], now)
    assert line.endswith(" s5 running (job 105)")
    assert text.list_rows([ex], now) == [["abcd1234", "w", "local", "running", "5/10", "12s ago"]]
    ex.warnings.append(UNVERIFIED_WARNING)  # no engine has reconciled the stored states yet
    row = ["abcd1234", "w", "local", "running (being checked)", "5/10", "12s ago"]
    assert text.list_rows([ex], now) == [row]
    assert f"warning    {UNVERIFIED_WARNING}" in text.status_header(ex, now)


FAILING_CHAIN = (
    "name: failing\nsteps:\n  - {name: s1, run: 'true'}\n"
    "  - {name: s2, after: [s1], run: 'exit 3'}\n  - {name: s3, after: [s2], run: 'true'}\n"
)


def _detached_chain_ended(cli: Stax) -> str:
    """A detached chain with a failing middle step, all its jobs gone from ``squeue`` and no
    engine alive: its stored states are the ones of the submission."""
    cli.write("failing.yaml", FAILING_CHAIN)
    out = cli.ok("run", "failing.yaml", "--cluster", "slurm", "--detach")
    eid = out.split()[1]
    native = {line.split()[2] for line in out.splitlines()[1:4]}
    assert len(native) == 3 and all(n.isdigit() for n in native)
    kill(cli.daemon_pids())

    def ended() -> bool:
        q = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
        return q.returncode == 0 and not native & set(q.stdout.split()) and not cli.daemon_pids()

    wait_for(ended, 120, "its jobs to leave squeue, with no engine alive")
    return eid


FINAL = [("s1", "completed"), ("s2", "failed"), ("s3", "skipped")]


@pytest.mark.slurm
def test_slurm_first_status_after_detach_is_the_true_one(cli: Stax, slurm: str) -> None:
    eid = _detached_chain_ended(cli)
    st = cli.status(eid)  # the FIRST read: the engine reconciles before the answer
    assert st["state"] == "failed"
    assert [(s["name"], s["state"]) for s in st["steps"]] == FINAL
    assert UNVERIFIED_WARNING not in st["warnings"]


@pytest.mark.slurm
def test_slurm_first_list_after_detach_is_the_true_one(cli: Stax, slurm: str) -> None:
    eid = _detached_chain_ended(cli)
    (item,) = [x for x in json.loads(cli.ok("list", "--json")) if x["id"] == eid]
    assert item["state"] == "failed"
    assert [(s["name"], s["state"]) for s in item["steps"]] == FINAL


@pytest.mark.slurm
def test_slurm_status_without_scheduler_says_unverified(
    cli: Stax, slurm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detached job scancelled from outside leaves no exit record: only the scheduler can
    tell. When it does not answer (a conf whose controller port is wrong, for this call and the
    engine it starts), the answer says its states are being checked instead of a lie."""
    # a cluster whose jobs may begin only in an hour: the job cannot start, so it can never
    # leave an exit record (a started job's wrapper writes one when scancel kills it, and the
    # engine then rightly settles the step without asking the scheduler)
    clusters = cli.cwd / "clusters.yaml"
    clusters.write_text(
        clusters.read_text() + "  later:\n"
        "    scheduler: slurm\n"
        "    queue: debug\n"
        '    walltime: "00:10:00"\n'
        "    poll_interval: 1\n"
        "    custom_attributes: {slurm.begin: now+3600}\n"
    )
    cli.write("long.yaml", "name: long\nsteps:\n  - {name: a, run: 'sleep 300'}\n")
    out = cli.ok("run", "long.yaml", "--cluster", "later", "--detach")
    eid, native = out.split()[1], out.splitlines()[1].split()[2]
    assert native.isdigit()
    kill(cli.daemon_pids())

    def held() -> bool:
        q = subprocess.run(["squeue", "-h", "-j", native, "-o", "%T %r"], capture_output=True,
                           text=True)
        return q.stdout.strip() == "PENDING BeginTime"

    wait_for(held, 30, f"Slurm to hold job {native} back until its begin time")
    subprocess.run(["scancel", native], check=True)

    def gone() -> bool:
        q = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
        return q.returncode == 0 and native not in q.stdout.split() and not cli.daemon_pids()

    wait_for(gone, 120, f"job {native} to leave squeue, with no engine alive")
    conf = cli.cwd / "unreachable.conf"
    good = os.environ["SLURM_CONF"]
    conf.write_text(Path(good).read_text().replace("SlurmctldPort=6817", "SlurmctldPort=6"))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    st = cli.status(eid)  # waits its bound for the engine's pass, which cannot end
    assert st["state"] != "canceled" and UNVERIFIED_WARNING in st["warnings"], st
    # the table and the list, each a process of its own that waits its own bound: side by side
    with ThreadPoolExecutor(2) as pool:
        table, listed = pool.map(lambda args: cli.ok(*args), [("status", eid), ("list",)])
    assert UNVERIFIED_WARNING in table  # the table says it too
    assert f"{eid[:8]}" in listed and "running (being checked)" in listed, listed
    kill(cli.daemon_pids())  # the engine that cannot reach the scheduler
    monkeypatch.setenv("SLURM_CONF", good)
    st = cli.wait_final(eid, timeout=120)  # a reachable scheduler settles it
    assert not Path(st["steps"][0]["directory"], "stax.exit").exists()  # it never started
    assert st["steps"][0]["state"] in ("canceled", "lost", "failed"), st
    assert UNVERIFIED_WARNING not in st["warnings"]


def test_the_daemon_does_not_import_the_working_directorys_modules(cli: Stax) -> None:
    """A notebook folder holding a module with a standard name (here ``queue.py``, which asyncio
    imports) is where users run ``jupyter stax``: the engine daemon started from it must import
    the real one (``python -P -m``; on 3.10 ``runpy`` from a ``-c`` that drops the
    working directory), not the folder's."""
    cli.write("queue.py", "raise SystemExit('the working directory\\'s queue.py was imported')\n")
    cli.write("demo.yaml", DEMO)
    r = cli("run", "demo.yaml", "--cluster", "local", "--wait", timeout=120)
    assert r.returncode == 0, r.stderr
    assert cli.ok("logs", r.stdout.split()[1], "total") == "6\n"
    # the daemon ran the steps, started from this folder (it may have exited since: it leaves
    # after 2 s idle here, so its log says it ran, not a pgrep)
    log = (cli.store.parent / "engine.log").read_text()
    assert "serving" in log, log
    assert "queue.py was imported" not in log, log
