"""The warm worker's children run many tasks one after the other (core/taskworker.py): a real
worker in a private directory, real jobs (bash running the step script). Reuse happens (the
same child's pid for sequential tasks); what a task leaves that a later task would see either
is undone (its directory, environment, ``__main__``, ``sys.stdout``) or makes its child end
after it (a thread, a signal handler, a process, a file descriptor left open); module state
persists (documented) unless the job asks for a fresh process (``STAX_TASK_FRESH=1``); each
task's output lands in its own job's files (a tail not flushed by the task too); a cancelled
task is killed and the next one runs normally; a signal the worker is told for a job whose
task has ended never reaches the later task its child runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jupyter_stax.core.functask import TASK_MARK, render_task_step

from ..proc import alive
from ..waiting import wait_for

BODY = TASK_MARK + r"""
import json, os, signal, string, subprocess, sys, threading, time
import __main__
act = os.environ.get("ACT", "")
user = __import__("stax_user_mod").VALUE if act == "import" else None
print(json.dumps(dict(user=user,
    pid=os.getpid(), ppid=os.getppid(), cwd=os.getcwd(), left=os.environ.get("LEFT"),
    usr1=signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
    module=getattr(string, "stax_left", None), main=getattr(__main__, "stax_left", None),
    stdout=sys.stdout is sys.__stdout__)), flush=True)
if act == "thread":
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
elif act == "signal":
    signal.signal(signal.SIGUSR1, lambda *a: None)
elif act == "chdir":
    os.chdir("/")
elif act == "env":
    os.environ["LEFT"] = "1"
elif act == "module":
    string.stax_left = os.getpid()
    __main__.stax_left = 1
elif act == "process":
    p = subprocess.Popen(["sleep", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    open(os.environ["MARK"], "w").write(str(p.pid))
elif act == "fd":
    string.stax_fd = open(os.devnull)
elif act == "fork":  # the forked process goes on to the task's end, silently
    if os.fork() == 0:
        sys.stdout = open(os.devnull, "w")
    else:
        time.sleep(0.5)
        open(os.environ["MARK"], "w").write("done")
elif act == "stdout":
    sys.stdout = open(os.devnull, "w")
elif act == "sleep":
    time.sleep(float(os.environ["SECONDS_"]))
elif act == "hang":
    open(os.environ["MARK"] + ".tmp", "w").write(str(os.getpid()))
    os.replace(os.environ["MARK"] + ".tmp", os.environ["MARK"])
    time.sleep(120)
(sys.__stdout__ if act == "stdout" else sys.stdout).write("tail-" + os.environ["JOB"])  # no flush
"""


def gone(pid: int) -> bool:
    """Ended or a zombie (reading /proc of a process that is ending can fail: tests.proc)."""
    return not alive(pid)


class Jobs:
    """Jobs of one step directory handed to this test's own worker."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path / "t"
        self.tmp.mkdir()
        self.step = tmp_path / "step"
        self.step.mkdir()
        (self.step / "stax.step.sh").write_text(render_task_step(BODY))
        self.env = {  # stdout buffered: a task's tail not flushed stays in its buffer
            **{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
            "TMPDIR": str(self.tmp), "STAX_TASK_WORKER": "1",
            "STAX_TASK_WORKER_IDLE": "3", "STAX_PYTHON": sys.executable,
        }
        self.argv = ["bash", "-c", ". ./stax.step.sh"]
        self.wdir = self.tmp / f"stax-taskworker-{os.getuid()}"
        self.n = 0
        self.last_job = -1

    def run(self, **kw: str) -> tuple[dict[str, object], subprocess.CompletedProcess[str]]:
        """A job to its end: what its task saw, and the job."""
        self.n += 1
        job = f"j{self.n}"
        proc = subprocess.Popen(self.argv, cwd=self.step, env={**self.env, "JOB": job, **kw},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=60)
        p = subprocess.CompletedProcess(self.argv, proc.returncode, out, err)
        self.last_job = proc.pid
        first, _, rest = p.stdout.partition("\n")
        assert (p.returncode, rest) == (0, f"tail-{job}"), (p.returncode, p.stdout, p.stderr)
        return json.loads(first), p

    def start(self) -> int:
        """The first job starts the worker (its task runs in the job's own Python)."""
        seen, _ = self.run()
        assert seen["ppid"] != self.worker_pid(wait=False)
        return self.worker_pid()

    def worker_pid(self, wait: bool = True) -> int:
        if not wait:
            return -1
        pid_file: Path = wait_for(lambda: next(iter(self.wdir.glob("*.pid")), None), 30,
                                  "the worker's pid")
        return int(pid_file.read_text())

    def fifo(self) -> Path:
        return next(iter(self.wdir.glob("*.fifo")))

    def end(self, worker: int, pids: set[int]) -> None:
        """The idle worker exits, its children with it, nothing left behind."""
        wait_for(lambda: gone(worker) and all(gone(p) for p in pids), 30,
                 "the idle worker and its children to exit (3 s idle)")
        assert sorted(p.name for p in self.wdir.iterdir()) == []


def test_children_reused_and_what_a_task_leaves(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    worker = jobs.start()
    first, _ = jobs.run()
    assert first["ppid"] == worker  # a child of the worker
    again, _ = jobs.run()
    assert again["pid"] == first["pid"]  # reused: no fork for this task
    pids = {int(str(first["pid"]))}

    def next_task(act: str, **kw: str) -> tuple[dict[str, object], dict[str, object]]:
        before, _ = jobs.run(ACT=act, **kw)
        after, _ = jobs.run()
        pids.update(int(str(x["pid"])) for x in (before, after))
        return before, after

    # undone: the next task runs in the same child and does not see it
    for act, key, clean in (("chdir", "cwd", str(jobs.step)), ("env", "left", None),
                            ("stdout", "stdout", True)):
        before, after = next_task(act)
        assert after["pid"] == before["pid"], act
        assert after[key] == clean, act
    # module state persists in a child (documented), __main__ is fresh for each task
    before, after = next_task("module")
    assert after["pid"] == before["pid"]
    assert (after["module"], after["main"]) == (before["pid"], None)
    # ... and a job that asks for a fresh process gets one (which then ends)
    fresh, _ = jobs.run(STAX_TASK_FRESH="1")
    assert fresh["pid"] != before["pid"] and fresh["module"] is None
    assert fresh["ppid"] == worker
    pids.add(int(str(fresh["pid"])))
    wait_for(lambda: gone(int(str(fresh["pid"]))), 30, "the fresh process to end")
    # left behind: the child ends after the task, the next task runs in another one
    mark = tmp_path / "process"
    for act in ("thread", "signal", "process", "fd"):
        before, after = next_task(act, MARK=str(mark))
        assert after["pid"] != before["pid"], act
        assert after["usr1"] is True and after["ppid"] == worker, act
        left = int(str(before["pid"]))
        wait_for(lambda: gone(left), 30, f"the child left dirty ({act})")  # noqa: B023
    os.kill(int(mark.read_text()), signal.SIGKILL)  # the task's orphan ("process")
    # a process the task forked that returns from it ends there (it never reports to the
    # worker nor waits for tasks), whichever child the next task then runs in
    forked = tmp_path / "forked"
    for i in range(3):
        with open(tmp_path / "fork.out", "w") as out:  # not a pipe: its end is not awaited
            job = subprocess.run(jobs.argv, cwd=jobs.step, stdout=out, timeout=60,
                                 env={**jobs.env, "JOB": f"f{i}", "ACT": "fork",
                                      "MARK": str(forked)})
        assert (job.returncode, forked.exists()) == (0, True)  # it ended with its task
        forked.unlink()
        after, _ = jobs.run()
        assert after["ppid"] == worker
        pids.add(int(str(after["pid"])))
    jobs.end(worker, pids)


def test_an_edited_module_is_read_again(tmp_path: Path) -> None:
    """A module imported from outside the Python installation (here: the job's directory)
    and edited after a task imported it: the next task gets a child that reads it again
    (the reused child would run it with the old module); unedited, the child is reused."""
    jobs = Jobs(tmp_path)
    worker = jobs.start()
    mod = jobs.step / "stax_user_mod.py"
    mod.write_text("VALUE = 1\n")
    first, _ = jobs.run(ACT="import")
    assert (first["user"], first["ppid"]) == (1, worker)
    again, _ = jobs.run(ACT="import")
    assert (again["user"], again["pid"]) == (1, first["pid"])  # reused: nothing changed
    mod.write_text("VALUE = 22\n")
    edited, _ = jobs.run(ACT="import")
    assert edited["user"] == 22 and edited["pid"] != first["pid"]
    wait_for(lambda: gone(int(str(first["pid"]))), 30, "the child with the old module to end")
    after, _ = jobs.run(ACT="import")
    assert (after["user"], after["pid"]) == (22, edited["pid"])
    jobs.end(worker, {int(str(x["pid"])) for x in (first, edited)})


def test_a_bursts_children_serve_the_next_burst_then_go(tmp_path: Path) -> None:
    """Tasks that run at once get children of their own; after the burst they stay idle (for
    STAX_TASK_WORKER_BURST_IDLE seconds, here 2) and the next burst runs in them, no fork;
    then all but max(2, CPUs) of them end."""
    jobs = Jobs(tmp_path)
    jobs.env["STAX_TASK_WORKER_BURST_IDLE"] = "2"
    jobs.env["STAX_TASK_WORKER_IDLE"] = "6"  # it serves on meanwhile
    worker = jobs.start()
    spare = max(2, os.cpu_count() or 1)
    n = spare + 3

    def burst() -> set[int]:
        procs = [subprocess.Popen(jobs.argv, cwd=jobs.step, text=True, stdout=subprocess.PIPE,
                                  env={**jobs.env, "JOB": f"b{i}", "ACT": "sleep",
                                       "SECONDS_": "1"}) for i in range(n)]
        pids = set()
        for p in procs:
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0, out
            pids.add(int(json.loads(out.partition("\n")[0])["pid"]))
        return pids

    def children() -> set[int]:
        text = Path(f"/proc/{worker}/task/{worker}/children").read_text()
        return {int(x) for x in text.split()}

    first = burst()
    assert len(first) == n  # at once: a child each
    second = burst()
    assert second <= first, "the next burst forked children again"
    wait_for(lambda: len(children()) <= spare, 5, f"the idle children to go down to {spare}")
    assert alive(worker)
    jobs.end(worker, first)


def test_output_goes_to_each_jobs_own_files(tmp_path: Path) -> None:
    """Two jobs at once and one after the other: each one's stdout (a tail the task did not
    flush included) and stderr in its own files, never in another job's."""
    jobs = Jobs(tmp_path)
    worker = jobs.start()
    out = [tmp_path / f"o{i}" for i in range(3)]
    err = [tmp_path / f"e{i}" for i in range(3)]
    procs = []
    for i in range(3):
        with open(out[i], "w") as o, open(err[i], "w") as e:
            procs.append(subprocess.Popen(
                ["bash", "-c", ". ./stax.step.sh; echo never"], cwd=jobs.step, stdout=o,
                stderr=e, env={**jobs.env, "JOB": f"p{i}", "ACT": "sleep",
                               "SECONDS_": str(0.3 * i)}))
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    seen = []
    for i in range(3):
        first, _, rest = out[i].read_text().partition("\n")
        assert rest == f"tail-p{i}"
        assert err[i].read_text() == ""
        seen.append(json.loads(first))
    assert all(s["ppid"] == worker for s in seen)
    for _ in range(3):  # the children they ran in, reused one after the other
        a, p = jobs.run()
        assert p.stderr == ""
    jobs.end(worker, {int(str(s["pid"])) for s in seen} | {int(str(a["pid"]))})


def test_cancel_and_a_late_signal_never_reach_a_later_task(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    worker = jobs.start()
    pids: set[int] = set()

    def hang(mark: Path) -> tuple[subprocess.Popen[str], int]:
        p = subprocess.Popen(jobs.argv, cwd=jobs.step, stdout=subprocess.PIPE, text=True,
                             env={**jobs.env, "JOB": "h", "ACT": "hang", "MARK": str(mark)})
        task = int(wait_for(lambda: mark.exists() and mark.read_text(), 30, "the task"))
        pids.add(task)
        return p, task

    # a cancel (the job's SIGTERM, forwarded by the worker) ends the task, the job the same
    job, task = hang(tmp_path / "h1")
    job.send_signal(signal.SIGTERM)
    assert job.wait(30) == -signal.SIGTERM
    wait_for(lambda: gone(task), 30, "the cancelled task to end")
    after, _ = jobs.run()  # the next task runs normally (in another child)
    assert after["pid"] != task and after["ppid"] == worker
    # the job killed outright: the worker kills the task, the next task runs normally
    job, task = hang(tmp_path / "h2")
    job.kill()
    job.wait(30)
    wait_for(lambda: gone(task), 30, "the task of the killed job to end")
    after, _ = jobs.run()
    assert after["pid"] != task
    # a job's signal that reaches the worker after its task ended (the job dying while its
    # child took a later task) goes nowhere: the later task, in the same child, lives
    first, _ = jobs.run()
    ended = jobs.last_job  # its job's pid (the job has ended)
    later = subprocess.Popen(jobs.argv, cwd=jobs.step, stdout=subprocess.PIPE, text=True,
                             env={**jobs.env, "JOB": "late", "ACT": "sleep", "SECONDS_": "2"})
    line = later.stdout.readline()  # type: ignore[union-attr]
    assert json.loads(line)["pid"] == first["pid"]  # the same child as the ended task's
    with open(jobs.fifo(), "w") as f:  # what that job's trap writes (its task has ended)
        f.write(f"S{ended} TERM\nS{ended} KILL\n")
    assert later.wait(30) == 0
    assert later.stdout.read() == "tail-late"  # type: ignore[union-attr]
    pids.update({int(str(first["pid"])), int(str(after["pid"]))})
    jobs.end(worker, pids)



def test_an_answer_cut_by_the_jobs_read_timeout(tmp_path: Path) -> None:
    """The job's bash reads the worker's answers byte by byte with a 1 s timeout: an answer
    the timeout cuts ("X" before it, "7" after) is the task's status, never a decline (which
    would run the task a second time, here). A stand-in worker (this test) answers."""
    from jupyter_stax.core.functask import _worker_source
    from jupyter_stax.core.taskworker import Request, identity, worker_name

    tmp = tmp_path / "t"
    wdir = tmp / f"stax-taskworker-{os.getuid()}"
    wdir.mkdir(parents=True, mode=0o700)
    step = tmp_path / "step"
    step.mkdir()
    (step / "stax.step.sh").write_text(render_task_step(
        TASK_MARK + "print('ran in the job', flush=True)\nraise SystemExit(3)\n"))
    env = {**os.environ, "TMPDIR": str(tmp), "STAX_TASK_WORKER": "1",
           "STAX_PYTHON": sys.executable}
    base = wdir / worker_name(_worker_source()[1], identity(env))
    os.mkfifo(f"{base}.fifo", 0o600)
    base.with_suffix(".id").write_text("".join(x + "\n" for x in identity(env)))
    Path(f"{base}.pid").write_text(f"{os.getpid()}\n")
    fifo = os.open(f"{base}.fifo", os.O_RDWR)
    job = subprocess.Popen(["bash", "-c", ". ./stax.step.sh"], cwd=step, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert int(os.read(fifo, 100).decode()) == job.pid
        req = Path(f"{base}.{job.pid}.req")
        r = Request(req.read_bytes())
        req.unlink()  # taken
        reply = os.open(f"/proc/{job.pid}/fd/{r.pipe_fd}", os.O_WRONLY)
        os.write(reply, b"P%d\n" % os.getpid())
        os.write(reply, b"X")
        time.sleep(1.3)  # the job's read times out after the "X"
        os.write(reply, b"7\n")
        os.close(reply)
        out, err = job.communicate(timeout=30)
    finally:
        job.kill()
        os.close(fifo)
    assert (job.returncode, out, err) == (7, "", "")


def test_the_pipe_where_a_here_string_is_a_file(tmp_path: Path) -> None:
    """Bash 5.0 makes a here-string a temporary file, not a pipe: the job then takes a
    process substitution's pipe (the script's own test for it made false here)."""
    jobs = Jobs(tmp_path)
    script = jobs.step / "stax.step.sh"
    text = script.read_text()
    test = '[ -p "/proc/$BASHPID/fd/$_stax_tw_r" ]'
    assert text.count(test) == 1
    script.write_text(text.replace(test, "false"))
    worker = jobs.start()
    seen, _ = jobs.run()
    assert seen["ppid"] == worker
    jobs.end(worker, {int(str(seen["pid"]))})
