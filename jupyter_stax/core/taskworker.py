"""The fast start of function tasks: on ``local`` the task's job script (bash, no Python)
hands the task to a warm per-user worker that has cloudpickle loaded already; elsewhere, and
when there is no worker, the step's Python starts without ``site`` (``-S``) and runs it.

Starting Python with ``site`` and importing cloudpickle costs tens of milliseconds of CPU per
task, most of a trivial task's cost; even a bare ``python3 -S`` start costs ~14 ms, ten times a
bash step. This file runs in three roles, always from its own source text (it travels in each
task's step script, see :func:`jupyter_stax.core.functask.render_task_step`, so it needs
nothing of jupyter_stax where the task runs: the standard library only):

* the hand-over, in the step script's bash part (rendered by ``render_task_step``, no
  process started, no ``fork``: its pipe is a here-string's, a pipe in bash >= 5.1; in 5.0 a
  process substitution's, one fork): when the job allows it
  (``STAX_TASK_WORKER=1``: function tasks on a cluster whose scheduler is ``local``, without
  an image) and this user's worker of this source runs, the job writes a request file into
  the worker's private directory (the job's directory, umask, script and exported
  environment, NUL-separated), writes its pid to the worker's FIFO, and waits on a pipe of its
  own that the worker opens through ``/proc``: ``P<pid>`` once the task runs (the job's
  termination signals then go to the worker, see below), ``X<code>`` when it ended, ``R``
  when the worker declines (the job then runs the task itself). The job exits with the
  task's status. (Its reads time out each second to check the worker is alive; what a timed
  out read got of an answer is kept: a cut ``X``/``0`` read as a decline ran a task twice.)
* the task's entry (:func:`task_entry`), in the job's Python started with ``-S`` when bash
  did not hand the task over. When the job allows the worker and none runs, it starts one for
  the next tasks (one per source: a lock), then runs the task itself: ``site`` first (as a
  normal start would), then the runner.
* the worker (:func:`serve`), a detached process (its own session) whose children run the
  tasks, many one after the other (:func:`child_loop`): an idle child is reused, a new one is
  forked when all are busy (so tasks run as concurrently as with a fork per task), and up to
  max(2, CPUs) idle ones are kept (after a burst up to :data:`BURST_CHILDREN` for
  :data:`BURST_IDLE` seconds). For each task the child takes the job's environment (by
  difference), directory and umask, writes to the job's stdout and stderr (opened by the
  worker through ``/proc/<job>/fd`` and passed over the child's socket), and runs the task's
  body in a fresh ``__main__`` (holding the names of a module in which the runner, the same
  in every task, ran once; the call's text goes straight to the runner's entry). Afterwards
  (:func:`run_task`, :class:`_Clean`) it flushes the output, lets go of the job's files,
  restores what can be restored (``sys.stdout``/``stderr``/``stdin``, ``sys.path``,
  ``sys.argv``, hooks, recursion limit, ``warnings`` filters), and ends instead of taking
  another task when the task left what a later task would see: a thread, a changed signal
  handler, mask or timer, a process (the child is a subreaper: orphans count), a file
  descriptor, an exit function (run then, as at an exit), a trace function, a changed
  priority or affinity, 256 MB of growth, an error while restoring, 500 tasks served, or a
  job asking for a process of its own (``STAX_TASK_FRESH=1``). Imported modules and their
  state persist between the tasks of one child (of one user and interpreter identity), as in
  Parsl's workers; a child whose tasks imported a module from outside the Python
  installation (:func:`installed_roots`) tells the worker its file's mtime and size, and the
  worker does not give that child another task once the file changed (:func:`stale_module`:
  a new child reads the edited module). A signal the job gets is written by its trap to the
  worker's FIFO
  (``S<job pid> <name>``) and the worker sends it to the task's process group only while that
  child still runs that job's task: the worker alone knows, so a dying job's signal never
  reaches a later task of the same child. When the job ends first (killed outright), the
  worker kills the child's process group (it watches the job's pidfd). It exits after
  ``STAX_TASK_WORKER_IDLE`` seconds (default 120) without tasks, its children with it,
  removing every file it made.

Why children that are reused (measured, bench/README.md "function_tasks"): a fork per task
cost the worker ~2 ms (the page tables of a 17 MB interpreter) and the child ~4 ms (~600
copy-on-write faults; the task's own Python was 21% of it); a reused child costs ~1 ms and
no faults, the worker ~0.5 ms. The price is the isolation above (module state persists;
anything else a task leaves ends its child), with ``STAX_TASK_FRESH=1`` for the old one. The
bash hand-over's pipe came from a process substitution (``<(:)``, a fork: +0.46-0.76 ms CPU
and ~85 page faults a job over ``bash -c true``); a here-string's pipe costs +0.0-0.1 ms and
1 fault. A hand-over over ``/dev/tcp`` (a listening socket, a token) was measured too
(+0.2-0.4 ms) and not built: it would not save more than the here-string does. The
worker's directory is in ``/dev/shm`` when ``TMPDIR`` is unset: the request and
``compgen``'s list written to ``/tmp`` on a disk cost the job's bash ~0.3-0.5 ms more.

The engine's direct requests (``D<token>`` in the FIFO, :data:`DIRECT_MAGIC`; see
``jupyter_stax/engine/taskdirect.py``): on ``local`` the engine itself writes the request of a
function task whose worker runs, and no job process exists. The worker then opens the step's
stdout and stderr by path, writes the step's start record (the native id ``tw:<worker
pid>:<token>`` as its job id) when a child takes the task and its exit record (with the status
a job's bash would give: 128 + signal for a killed task) before it answers ``X``; it does not
watch the engine (the task outlives an engine restart, which settles the step from the
records); ``K<token> <signal>`` signals the task's process group while its child still runs
it (a cancel). Every child of the worker ends with it (``PR_SET_PDEATHSIG``): a task whose
worker died has nobody to report its end to.

The task stays a real step: its job runs (the job's bash waits for it), writes its records and
exits with the task's status. A worker serves only its own user (a private directory, owner and
mode of each file checked) and only jobs whose Python (``STAX_PYTHON``), ``PYTHON*`` and
``LD_*`` environment (what shapes an interpreter's start) are the ones it started with; another
is declined and runs in its own Python. A request is taken by the worker, or withdrawn by the
job, by unlinking its file (one of the two wins), so a task never runs twice. Anything
unexpected falls back to running the task in the job's own Python.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

#: the job's environment variable that allows the worker ("1")
WORKER_ENV = "STAX_TASK_WORKER"
#: seconds a worker waits for a task before it exits
IDLE_ENV = "STAX_TASK_WORKER_IDLE"
IDLE_SECONDS = 120.0
#: the request's first field (the protocol's version)
MAGIC = b"STAX-TASK 2"
#: the first field of a request the engine writes itself (no job process: see
#: :class:`Request` and ``jupyter_stax/engine/taskdirect.py``)
DIRECT_MAGIC = b"STAX-TASK-DIRECT 1"
#: the line from which on this file is the worker's alone (a task's entry compiles the part
#: before it only)
WORKER_PART = "# " + "-" * 70 + " the worker\n"
#: the line of a task's body between the runner (the same in every task: the worker compiles
#: it once) and the call
CALL_MARK = "# ---- jupyter_stax: the call ----\n"
#: signals the job forwards to the task
FORWARDED = ("TERM", "INT", "HUP", "USR1", "USR2", "XCPU")


# ---------------------------------------------------------------------- shared
def worker_dir() -> str | None:
    """This user's private directory of workers (None: it cannot be made or trusted), in
    ``$TMPDIR`` when set, else in ``/dev/shm`` (memory: a request written to ``/tmp`` on a
    disk's file system cost the job's bash ~0.5 ms more), else in ``/tmp``; the job's bash
    chooses the same way (:func:`jupyter_stax.core.functask.render_task_step`)."""
    base = os.environ.get("TMPDIR") or (
        "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK)
        else "/tmp")
    d = os.path.join(base, f"stax-taskworker-{os.getuid()}")
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    st = os.lstat(d)
    if st.st_mode & 0o170000 != 0o040000 or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return d


def identity(env: dict[str, str]) -> list[str]:
    """What a worker must share with a job to run its task: the Python it names
    (``STAX_PYTHON``; with ``PATH`` when that is not an absolute path) and the environment
    that shapes an interpreter's start (``PYTHON*``, ``LD_*``)."""
    python = env.get("STAX_PYTHON") or "python3"
    out = [k + "=" + env[k] for k in sorted(env) if k.startswith(("LD_", "PYTHON"))]
    out.append("STAX_PYTHON=" + python)
    if not python.startswith("/"):
        out.append("PATH=" + env.get("PATH", ""))
    return out


def worker_name(digest: str, ident: list[str]) -> str:
    """The worker of this source (``digest``) and :func:`identity`: its files' names (the job
    finds it by the identity in its ``.id`` file, FNV-1a of it makes the name)."""
    h = 0xCBF29CE484222325
    for b in "".join(x + "\n" for x in ident).encode("utf-8", "surrogateescape"):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{digest}-{h:016x}"


def split_body(body: str) -> tuple[str, str]:
    """The part of a task's body every task shares (the runner, before :data:`CALL_MARK`) and
    the call, padded with newlines so its line numbers stay the body's ("" and the body when
    there is no mark)."""
    i = body.find("\n" + CALL_MARK)
    if i < 0:
        return "", body
    head = body[: i + 1]
    return head, "\n" * head.count("\n") + body[i + 1 :]


# ---------------------------------------------------------------------- the task's entry
def task_entry(src: str, body: str, digest: str) -> None:
    """Run the task ``body`` (the runner and its call) in this Python; when the job allows the
    warm worker and none runs, start one for the next tasks first."""
    if os.environ.get(WORKER_ENV) == "1":
        d = worker_dir()
        if d is not None:
            try:
                start_worker(src, d, worker_name(digest, identity(dict(os.environ))))
            except OSError:
                pass
    if sys.flags.no_site:  # what a normal start does, now
        import site

        site.main()
    main = sys.modules["__main__"]
    exec(compile(body, "<stdin>", "exec"), main.__dict__)


def start_worker(src: str, d: str, key: str) -> None:
    """Start the worker of ``key`` detached, unless one is starting or serving (its lock)."""
    import fcntl

    lock_path = os.path.join(d, key + ".lock")
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # an ending worker removes its lock file while it holds the lock: a lock taken on a
        # removed file is no lock (another job may have made a new one)
        if os.fstat(lock).st_ino != os.stat(lock_path).st_ino:
            raise OSError("stale lock")
    except OSError:
        os.close(lock)
        return
    code = os.path.join(d, key + ".py")  # the worker's source (its command line stays short)
    with open(os.open(code, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(src + f"\nserve({d!r}, {key!r}, {lock})\n")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - in the forked process
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            log = os.open(os.path.join(d, key + ".log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                          0o600)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            # nothing else of the job's (a pipe its launcher waits on) stays open in the worker
            os.closerange(3, lock)
            os.closerange(lock + 1, 65536)
            os.set_inheritable(lock, True)
            boot = "import sys; exec(compile(open(sys.argv[1]).read(), sys.argv[1], 'exec'))"
            os.execv(sys.executable, [sys.executable, "-c", boot, code])
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    os.close(lock)


# ---------------------------------------------------------------------- the worker
class Request:
    """A job's request file, parsed: NUL-terminated fields ``MAGIC``, the job's directory,
    its step script, the numbers of its pipe's descriptor and of its copies of stdout and
    stderr, its umask (as ``umask`` prints it), then its exported environment as
    ``NAME=VALUE``."""

    #: a direct request's (:data:`DIRECT_MAGIC`): the step's stdout and stderr paths, the
    #: attempt and the native id its records carry
    stdout = stderr = native = b""
    attempt = 0

    def __init__(self, data: bytes) -> None:
        fields = data.split(b"\0")
        if fields[0] == DIRECT_MAGIC:
            self._direct(fields)
            return
        if len(fields) < 8 or fields[0] != MAGIC or fields[-1] != b"":
            raise ValueError("not a task request")
        self.cwd = fields[1]
        self.script = fields[2] if fields[2].startswith(b"/") else os.path.join(
            fields[1], fields[2])
        self.pipe_fd, self.out_fd, self.err_fd = (int(f) for f in fields[3:6])
        self.umask = int(fields[6].strip(), 8)
        if not self.cwd.startswith(b"/") or min(self.pipe_fd, self.out_fd, self.err_fd) < 0 \
                or not 0 <= self.umask <= 0o777:
            raise ValueError("not a task request")
        self.env: dict[bytes, bytes] = {}
        for item in fields[7:-1]:
            k, sep, v = item.partition(b"=")
            if sep and k:
                self.env[k] = v

    def _direct(self, fields: list[bytes]) -> None:
        """The engine's request: ``DIRECT_MAGIC``, the engine's pid and its pipe's descriptor,
        the step directory (the task's), its step script, stdout and stderr, the umask (octal),
        the attempt, the native id, then the task's environment as ``NAME=VALUE``."""
        if len(fields) < 11 or fields[-1] != b"":
            raise ValueError("not a direct task request")
        self.pipe_fd = int(fields[2])
        self.out_fd = self.err_fd = -1
        self.cwd, self.script, self.stdout, self.stderr = fields[3:7]
        self.umask = int(fields[7], 8)
        self.attempt = int(fields[8])
        self.native = fields[9]
        if not all(f.startswith(b"/") for f in fields[3:7]) or not 0 <= self.umask <= 0o777 \
                or not self.native or any(c in self.native for c in b" \n"):
            raise ValueError("not a direct task request")
        self.env = {}
        for item in fields[10:-1]:
            k, sep, v = item.partition(b"=")
            if sep and k:
                self.env[k] = v

    def identity(self) -> list[str]:
        return identity({k.decode("utf-8", "surrogateescape"): v.decode(
            "utf-8", "surrogateescape") for k, v in self.env.items()})


def read_file(path: str | bytes, limit: int = 1 << 26, *, owned: bool = False) -> bytes:
    """A regular file, not through a link (``owned``: of this user; OSError otherwise). Its
    mode is not checked: a request lies in the private directory, and a step script is what
    the job would run itself (with umask 002 both are group-writable)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000 or (owned and st.st_uid != os.getuid()) or (
            st.st_size > limit
        ):
            raise PermissionError(f"{path!r} is not a regular file of yours")
        chunks: list[bytes] = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)


def script_body(script: bytes) -> str:
    """The Python of a task's step script: between its Python mark and its worker part."""
    text = script.decode("utf-8")
    start = text.index("\n# ---- Python")
    return text[start : text.index("\n# ---- the task worker", start) + 1]


def exit_code(code: object) -> int:
    """A process's exit status for ``SystemExit(code)``, as the interpreter makes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def set_environ(environ: os._Environ[bytes], env: dict[bytes, bytes]) -> None:
    """Make ``environ`` equal to ``env`` by its difference only (``clear()`` then ``update()``
    costs a forked child ~0.7 ms: each pop re-lists the keys, and every key is set again)."""
    for k in [k for k in environ if k not in env]:
        del environ[k]
    for k, v in env.items():
        if environ.get(k) != v:
            environ[k] = v


#: the call of a task's body as :func:`jupyter_stax.core.functask.task_source` writes it (after
#: :func:`split_body`'s padding): the worker's child calls the runner's entry with the text
#: instead of compiling the call
_CALL_HEAD = '_stax_task_main("""\n'
_CALL_TAIL = '\n""")\n'
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n"


def plain_call(call: str) -> str | None:
    """The base64 text of a call that is exactly ``_stax_task_main(\"\"\"<base64>\"\"\")`` (the
    padding newlines before it aside); None for anything else (it is compiled then)."""
    text = call.lstrip("\n")
    if not (text.startswith(_CALL_HEAD) and text.endswith(_CALL_TAIL)):
        return None
    inner = text[len(_CALL_HEAD) : len(text) - len(_CALL_TAIL)]
    try:
        raw = inner.encode("ascii")
    except UnicodeEncodeError:
        return None
    return inner if raw and not raw.translate(None, _B64) else None


#: a job's environment variable asking for a child of its own that ends with the task ("1")
FRESH_ENV = "STAX_TASK_FRESH"
#: tasks a child runs before it is replaced
CHILD_TASKS = 500
#: what a child says after the task of a job that asked for a process of its own
FRESH_WHY = b"a process of its own asked for"
#: idle children kept for :data:`BURST_IDLE` seconds after a burst of tasks (beyond max(2,
#: CPUs), which stay): a burst's next tasks, or the next burst, need no fork (a fork costs the
#: worker ~1-2 ms and the child ~3-4 ms of copy-on-write faults; an idle child ~4.5 MB)
BURST_CHILDREN = 32
BURST_IDLE = 10.0
#: the worker's environment variable overriding :data:`BURST_IDLE` (seconds)
BURST_IDLE_ENV = "STAX_TASK_WORKER_BURST_IDLE"
#: how much a child may grow (resident memory over what it had when forked) and stay
CHILD_GROWTH = 256 << 20


class _Task:
    def __init__(self, reply: int, job: int, job_pid: int | str) -> None:
        self.reply = reply  # the job's pipe (a direct task's: the engine's)
        self.job = job  # the job's pidfd (-1: a direct task, which outlives the engine)
        self.job_pid = job_pid  # its key in ``running``: the job's pid, a direct task's token
        self.child: _Child | None = None
        #: a direct task's step directory and attempt: the worker writes its exit record
        self.record: tuple[bytes, int] | None = None


def write_record(step_dir: bytes, name: str, line: str) -> None:
    """A record file of a direct task's step (``stax.start``, ``stax.exit``), as the job
    script would write it (its reader takes a line without its newline as not written)."""
    fd = os.open(os.path.join(step_dir, name.encode()),
                 os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class _Child:
    """A forked child of the worker: it runs tasks one after the other (see
    :func:`child_loop`), each sent over its socket."""

    def __init__(self, pid: int, pidfd: int, sock: object) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.sock = sock  # socket.socket: the task out, its report back
        self.task: _Task | None = None
        self.buf = b""
        self.idle_since = 0.0  # time.monotonic() of its last task's end
        #: the files of the modules from outside the Python installation that its tasks
        #: imported: path -> (mtime_ns, size) as they were read (see :func:`stale_module`)
        self.watch: dict[bytes, tuple[int, int]] = {}


def serve(d: str, key: str, lock: int) -> None:  # pragma: no cover - a separate process
    """The worker's loop (it holds ``lock`` while it lives)."""
    import contextlib
    import gc
    import importlib
    import pickle
    import select
    import signal
    import socket
    import struct
    import time
    import types

    os.chdir("/")
    try:
        import base64  # noqa: F401  (the runner's imports)
        import io  # noqa: F401
        import json  # noqa: F401
        import traceback  # noqa: F401

        import cloudpickle  # noqa: F401  (what by-value functions need: the point)
    except ImportError as e:
        print(f"jupyter_stax task worker: {e}; not serving", flush=True)
        return
    try:
        import ctypes  # noqa: F401  (a child makes itself a subreaper with it)
    except ImportError:
        pass
    if not hasattr(os, "pidfd_open") or not hasattr(socket, "send_fds"):
        print("jupyter_stax task worker: no pidfd_open or send_fds here; not serving",
              flush=True)
        return
    idle = float(os.environ.get(IDLE_ENV) or IDLE_SECONDS)
    spare = max(2, os.cpu_count() or 1)  # idle children kept
    burst = max(spare, BURST_CHILDREN)  # ... and for BURST_IDLE seconds after a burst
    burst_idle = float(os.environ.get(BURST_IDLE_ENV) or BURST_IDLE)
    me = identity(dict(os.environ))
    base = os.path.join(d, key)
    fifo, pid_file = base + ".fifo", base + ".pid"
    for stale in (fifo, pid_file):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    os.mkfifo(fifo, 0o600)
    ff = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # never at end of file: we write it too
    fd = os.open(base + ".id", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, "".join(x + "\n" for x in me).encode("utf-8", "surrogateescape"))
    os.close(fd)
    with open(os.open(pid_file + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(pid_file + ".tmp", pid_file)  # a job reads it once the FIFO is there
    poll = select.poll()
    poll.register(ff, select.POLLIN)
    children: dict[int, _Child] = {}  # the child's pidfd -> the child
    socks: dict[int, _Child] = {}  # the child's socket -> the child
    idlers: list[_Child] = []  # children waiting for a task
    jobs: dict[int, _Task] = {}  # the job's pidfd -> its task
    # the job's pid (a direct task's token) -> its task (its signals are forwarded)
    running: dict[int | str, _Task] = {}
    host = socket.gethostname()
    # the runner (the part of a body every task shares), compiled and run once into a
    # ``__main__`` of its own: a child copies that module's names into each task's fresh
    # ``__main__`` instead of defining the runner's functions again
    prepared: dict[str, types.ModuleType] = {}
    pending = b""
    last = time.monotonic()
    closing = False
    # the caches of the import system, invalidated here once (it imports nothing more;
    # checked before each fork), and by each child before each task (its '' on sys.path is
    # the job's directory)
    importlib.invalidate_caches()
    roots = installed_roots()
    modules = len(sys.modules)
    gc.freeze()  # what is loaded now stays shared with the children (fewer pages copied)
    print(f"jupyter_stax task worker {os.getpid()} serving {fifo}", flush=True)

    def send(t: _Task, line: bytes) -> None:
        try:
            os.write(t.reply, line)
        except OSError:
            pass

    def spawn() -> _Child:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        if len(sys.modules) != modules:  # something was imported here after all
            importlib.invalidate_caches()
        try:
            pid = os.fork()
        except OSError:
            mine.close()
            theirs.close()
            raise
        if pid == 0:
            child_loop(theirs, prepared, roots)
        theirs.close()
        c = _Child(pid, os.pidfd_open(pid), mine)
        children[c.pidfd] = c
        socks[mine.fileno()] = c
        poll.register(c.pidfd, select.POLLIN)
        poll.register(mine.fileno(), select.POLLIN)
        return c

    def retire(c: _Child) -> None:
        """No more tasks for ``c``: its socket closed (an idle child then exits)."""
        if c in idlers:
            idlers.remove(c)
        sock = c.sock
        if sock is not None:
            fno = sock.fileno()  # type: ignore[attr-defined]
            if socks.pop(fno, None) is not None:
                poll.unregister(fno)
            sock.close()  # type: ignore[attr-defined]
            c.sock = None

    def finish(t: _Task, code: int) -> None:
        """The task of ``t`` ended with ``code``: the job told, its files closed (a direct
        task's exit record written first, with the status a job's bash would give it)."""
        if t.record is not None:
            try:
                rc = code if code >= 0 else 128 - code
                write_record(t.record[0], "stax.exit", f"{t.record[1]} {rc} {time.time():.6f}\n")
            except OSError as e:
                print(f"exit record of {t.job_pid} not written: {e}", flush=True)
        send(t, b"X%d\n" % code)
        os.close(t.reply)
        if jobs.pop(t.job, None) is not None:
            poll.unregister(t.job)
            os.close(t.job)
        if running.get(t.job_pid) is t:
            del running[t.job_pid]
        if t.child is not None and t.child.task is t:
            t.child.task = None

    def reports(c: _Child) -> None:
        """Read what ``c`` reported (``X<status> <why it cannot go on, or ->``)."""
        while c.sock is not None:
            try:
                more = c.sock.recv(4096, socket.MSG_DONTWAIT)  # type: ignore[attr-defined]
            except BlockingIOError:
                return
            except OSError:
                more = b""
            if not more:  # the child is ending
                retire(c)
                return
            c.buf += more
            while b"\n" in c.buf:
                line, _, c.buf = c.buf.partition(b"\n")
                if line.startswith(b"M"):  # a module file its task imported (see stale_module)
                    path, _, stamp = line[1:].partition(b" ")
                    mtime, _, size = stamp.partition(b" ")
                    with contextlib.suppress(ValueError):
                        c.watch[bytes.fromhex(path.decode())] = (int(mtime), int(size))
                    continue
                t = c.task
                code, _, why = line[1:].partition(b" ")
                if t is None or not line.startswith(b"X"):
                    continue
                finish(t, int(code))
                if why != b"-" or closing or len(idlers) >= burst:
                    if why not in (b"-", FRESH_WHY):
                        print(f"child {c.pid} not reused: {why.decode(errors='replace')}",
                              flush=True)
                    retire(c)  # it ends by itself (why) or on its socket's end
                else:
                    c.idle_since = time.monotonic()
                    idlers.append(c)

    def take(pid: int, token: str = "") -> None:
        """Take the request of job ``pid`` (``token``: the engine's direct request of that
        name, ``pid`` its own): its file unlinked (the job can no longer withdraw it), then
        declined (``R``) or run by a child (``P``)."""
        req = f"{base}.d{token}.req" if token else f"{base}.{pid}.req"
        try:
            data = read_file(req, 1 << 24, owned=True)
            os.unlink(req)  # taken (the job withdraws a request by unlinking it)
        except OSError:
            return  # withdrawn (the job runs the task itself) or not ours
        fields = data.split(b"\0")
        try:  # the job's pipe (fourth field), to answer even a request not understood
            if token:
                pid = int(fields[1])
            n = int(fields[2] if token else fields[3])
            reply = os.open(f"/proc/{pid}/fd/{n}", os.O_WRONLY | os.O_NONBLOCK)
        except (OSError, ValueError, IndexError):
            return  # the job is gone: nobody to answer
        t = _Task(reply, -1, token or pid)
        fds: list[int] = []
        try:
            r = Request(data)
            if r.identity() != me:
                raise ValueError("another Python or interpreter environment")
            if token:  # the task's own files; the task outlives the engine
                if not r.script.startswith(r.cwd + b"/"):
                    raise ValueError("the step script is not in the step directory")
                for path in (r.stdout, r.stderr):
                    fds.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                       | os.O_APPEND | os.O_NOCTTY, 0o666 & ~r.umask))
                t.record = (r.cwd, r.attempt)
            else:
                t.job = os.pidfd_open(pid)
                for n in (r.out_fd, r.err_fd):
                    fds.append(os.open(f"/proc/{pid}/fd/{n}",
                                       os.O_WRONLY | os.O_APPEND | os.O_NOCTTY))
            body = script_body(read_file(r.script))
            head, call = split_body(body)
            if head and head not in prepared:
                if len(prepared) > 16:
                    prepared.clear()
                prepared[head] = prepare(head)
            fresh = r.env.get(FRESH_ENV.encode()) == b"1"
            payload = pickle.dumps((data, head, call, fresh))
            sizes = struct.pack("<Q", len(payload))
            for _ in range(len(idlers) + 3):  # an idle child, else a new one
                c = idlers.pop() if idlers and not fresh else spawn()
                changed = stale_module(c.watch)
                if changed:  # it would run the task with the module as it was
                    print(f"child {c.pid} not reused: {changed}", flush=True)
                    retire(c)
                    c = spawn()
                try:
                    socket.send_fds(c.sock, [sizes], fds)  # type: ignore[arg-type]
                    c.sock.sendall(payload)  # type: ignore[attr-defined]
                    break
                except OSError:  # it died meanwhile
                    retire(c)
            else:
                raise OSError("no child of the worker took the task")
        except (OSError, ValueError, SyntaxError) as e:
            send(t, b"R %s\n" % str(e).encode(errors="replace")[:200])
            for f in fds:
                os.close(f)
            if t.job >= 0:
                os.close(t.job)
            os.close(reply)
            return
        for f in fds:
            os.close(f)
        t.child = c
        c.task = t
        if t.job >= 0:
            jobs[t.job] = t
            poll.register(t.job, select.POLLIN)
        running[t.job_pid] = t
        if t.record is not None:  # as the job script's: the native id, the host, the time
            try:
                native = r.native.decode(errors="replace")
                write_record(t.record[0], "stax.start",
                             f"{t.record[1]} {native} {host} {time.time():.6f}\n")
            except OSError as e:
                print(f"start record of {token} not written: {e}", flush=True)
        send(t, b"P%d\n" % c.pid)

    def forward(line: bytes) -> None:
        """``S<job pid> <signal name>``: the job got that signal; its task's process group
        gets it, if the task runs still (never a later task of the same child); ``K<token>
        <signal name>``: the engine's, for its direct task ``token`` (a cancel)."""
        job, _, name = line[1:].partition(b" ")
        key: int | str = int(job) if job.isdigit() and line[:1] == b"S" else job.decode(
            errors="replace")
        t = running.get(key)
        try:
            sig = signal.Signals["SIG" + name.decode()]
        except (KeyError, UnicodeDecodeError):
            return
        if t is not None and t.child is not None and t.child.task is t:
            try:
                os.killpg(t.child.pid, sig)
            except OSError:
                pass

    while True:
        busy = bool(running) or any(c.task is not None for c in children.values())
        if not busy:
            if closing:
                if not children:
                    try:
                        more = os.read(ff, 65536)
                    except BlockingIOError:
                        more = b""
                    if not more:
                        break
                    pending += more
            elif time.monotonic() - last > idle:
                # leave nothing behind: the files go while this worker still holds the lock
                # (so none of them is another worker's yet), the lock file last; requests
                # written meanwhile are still read from the FIFO (its path is gone, so no
                # job opens it any more) and served before the worker ends
                files = [fifo, pid_file, base + ".id", base + ".py", base + ".log",
                         base + ".lock"]
                for name in os.listdir(d):  # requests of jobs killed before they sent them
                    job = name[len(key) + 1 : -4]
                    if name.startswith(key + ".") and name.endswith(".req") and (
                        job.isdigit() and not os.path.exists(f"/proc/{job}")
                    ):
                        files.insert(0, os.path.join(d, name))
                for own in files:
                    try:
                        os.unlink(own)
                    except OSError:
                        pass
                closing = True
                for c in list(idlers):
                    retire(c)  # they exit on their socket's end
                continue
        now = time.monotonic()
        while len(idlers) > spare and now - idlers[0].idle_since > burst_idle:
            retire(idlers[0])  # the burst's extra children, the longest idle first
        timeout = None if busy or closing else max(
            0.0, idle - (now - last)) * 1000 + 10
        if len(idlers) > spare:
            timeout = min(timeout if timeout is not None else 1e9, burst_idle * 1000 / 2)
        events = [] if b"\n" in pending else poll.poll(timeout)
        for fd, _ev in events:
            last = time.monotonic()
            if fd == ff:
                try:
                    pending += os.read(ff, 65536)
                except BlockingIOError:
                    pass
            elif fd in socks:
                reports(socks[fd])
            elif fd in children:  # a child ended
                c = children.pop(fd)
                reports(c)  # what it said before
                retire(c)
                poll.unregister(fd)
                os.close(fd)
                _, status = os.waitpid(c.pid, 0)
                if c.task is not None:  # killed while it ran the task (or it crashed)
                    finish(c.task, os.waitstatus_to_exitcode(status))
            elif fd in jobs:  # the job ended before its task: kill the task (and its child)
                t = jobs.pop(fd)
                poll.unregister(fd)
                os.close(fd)
                t.job = -1
                if t.child is not None and t.child.task is t:
                    try:
                        os.killpg(t.child.pid, 9)
                    except OSError:
                        pass
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            if line.isdigit():
                take(int(line))
            elif line.startswith(b"D") and line[1:].isalnum():
                take(-1, line[1:].decode())
            elif line.startswith((b"S", b"K")):
                forward(line)
    os.close(ff)
    print(f"jupyter_stax task worker {os.getpid()}: idle for {idle:g} s, exiting", flush=True)


def prepare(head: str) -> ModuleType:
    """A ``__main__`` module with the runner ``head`` run in it (in the worker, once)."""
    import builtins
    import types

    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    exec(compile(head, "<stdin>", "exec"), main.__dict__)
    return main


# ---------------------------------------------------------------------- the worker's child
def child_loop(  # pragma: no cover
    sock: object, prepared: dict[str, ModuleType], roots: tuple[str, ...]
) -> None:
    """In a forked child: run the tasks the worker sends, one after the other, as long as
    :class:`_Clean` finds nothing a task left that a later one could see; then exit. After
    each task it tells the worker the files of the modules it imported from outside the
    Python installation (``roots``; ``M<hex path> <mtime_ns> <size>`` lines before its ``X``
    line): the worker does not give it another task once one of them changed
    (:func:`stale_module`)."""
    import pickle
    import socket
    import struct

    keep = sock.fileno()  # type: ignore[attr-defined]
    code = 1
    try:
        os.setsid()
        # nothing of the worker's (its FIFO, lock, other jobs' pipes and children) stays here
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 20)
        null = os.open(os.devnull, os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(null, n)
        os.close(null)
        sys.argv[:] = ["-c"]  # as in the job's own Python
        try:  # orphaned descendants of a task become this child's: seen, not inherited
            import ctypes

            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
            # it ends with the worker (killed): a task of a dead worker has nobody to report
            # its end to, and its step fails as such (its process group is its own)
            ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG SIGKILL
        except Exception:
            pass
        clean = _Clean()
        served = 0
        seen = set(sys.modules)  # the worker's modules (the installation's): never watched
        known = len(sys.modules)
        while True:
            head = socket.recv_fds(sock, 8, 2)  # type: ignore[arg-type]
            msg, fds = head[0], head[1]
            if not msg:
                code = 0  # the worker is done with this child
                break
            while len(msg) < 8:
                more = sock.recv(8 - len(msg))  # type: ignore[attr-defined]
                if not more:
                    break
                msg += more
            n = struct.unpack("<Q", msg)[0]
            buf = bytearray(n)
            view = memoryview(buf)
            got = 0
            while got < n:
                k = sock.recv_into(view[got:])  # type: ignore[attr-defined]
                if not k:
                    raise EOFError("the worker's message ended early")
                got += k
            data, head_src, call, fresh = pickle.loads(buf)
            del buf, view
            if len(fds) != 2:
                raise EOFError("the task's output descriptors did not come")
            main = prepared.get(head_src) if head_src else None
            if head_src and main is None:
                if len(prepared) > 16:
                    prepared.clear()
                main = prepared[head_src] = prepare(head_src)
            served += 1
            code, why = run_task(Request(data), fds, main, call, clean,
                                 FRESH_WHY.decode() if fresh else (
                                     f"served {served} tasks" if served >= CHILD_TASKS
                                     else ""))
            report = b""
            if len(sys.modules) != known:  # the task imported something
                report = b"".join(b"M%s %d %d\n" % (f.hex().encode(), m, n)
                                  for f, m, n in user_modules(roots, seen))
                known = len(sys.modules)
            report += b"X%d %s\n" % (code, why.encode() if why else b"-")
            sock.sendall(report)  # type: ignore[attr-defined]
            if why:
                break
    except BaseException:
        pass
    os._exit(code)


def installed_roots() -> tuple[str, ...]:
    """The directories of the Python installation (its standard library and site-packages,
    of the environment and of its base, and the user's site-packages), each ending in ``/``:
    a module under one is not watched for edits (:func:`user_modules`)."""
    import site
    import sysconfig

    dirs: set[str] = set()
    for base in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix,
                      "installed_base": sys.base_prefix,
                      "installed_platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=base)
        dirs.update(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    return tuple(sorted({os.path.join(os.path.realpath(d), "") for d in dirs if d}))


def user_modules(roots: tuple[str, ...], seen: set[str]) -> list[tuple[bytes, int, int]]:
    """The modules of ``sys.modules`` not in ``seen`` (added to it) whose file lies outside
    ``roots`` (:func:`installed_roots`): their files' paths, mtimes (ns) and sizes now."""
    out: list[tuple[bytes, int, int]] = []
    for name, mod in list(sys.modules.items()):
        if name in seen:
            continue
        seen.add(name)
        f = getattr(mod, "__file__", None)
        if not isinstance(f, str) or not f.startswith("/"):
            continue
        if os.path.realpath(f).startswith(roots):
            continue
        try:
            st = os.stat(f)
        except OSError:  # from a zip file, or gone already
            continue
        out.append((os.fsencode(f), st.st_mtime_ns, st.st_size))
    return out


def stale_module(watch: dict[bytes, tuple[int, int]]) -> str:
    """Why a child whose tasks imported the modules of ``watch`` (their files' mtimes and
    sizes as the child read them) must not take another task: a file changed or is gone
    ("" when none is)."""
    for path, (mtime, size) in watch.items():
        try:
            st = os.stat(path)
        except OSError:
            return f"module file {os.fsdecode(path)} is gone"
        if (st.st_mtime_ns, st.st_size) != (mtime, size):
            return f"module file {os.fsdecode(path)} changed"
    return ""


def run_task(  # pragma: no cover - forked
    r: Request, fds: list[int], prepared: ModuleType | None, call: str, clean: _Clean,
    why: str
) -> tuple[int, str]:
    """In the child: become the job's task (its environment, directory, umask, output), run
    the body as ``__main__`` would (in a fresh ``__main__``: ``prepared``'s names, the runner
    run already), then undo what it changed. Returns its exit status as the interpreter would
    make it and why this child cannot take another task ("" when it can: ``why`` given, or
    :meth:`_Clean.dirt` finds something; the exit functions then ran as at an exit)."""
    import atexit
    import builtins
    import importlib
    import traceback
    import types

    rc = 1
    me = os.getpid()
    try:
        set_environ(os.environb, r.env)
        os.umask(r.umask)
        os.chdir(r.cwd)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        main = types.ModuleType("__main__")
        if prepared is None:
            main.__dict__["__builtins__"] = builtins
        else:
            main.__dict__.update(prepared.__dict__)
        sys.modules["__main__"] = main
        importlib.invalidate_caches()  # another directory than the last task's, maybe
        try:
            text = plain_call(call) if prepared is not None else None
            if text is not None:
                main.__dict__["_stax_task_main"](text)
            else:
                exec(compile(call, "<stdin>", "exec"), main.__dict__)
            rc = 0
        except SystemExit as e:
            rc = exit_code(e.code)
        except BaseException:
            traceback.print_exc()
            rc = 1
        if os.getpid() != me:  # a process the task forked came back here: it ends as it
            for stream in (sys.stdout, sys.stderr):  # would have at the end of a fork
                try:
                    stream.flush()
                except BaseException:
                    pass
            os._exit(rc)
        del main
        threading = sys.modules.get("threading")
        if threading is not None:  # as at an exit: the task's threads that are no daemons
            me = threading.current_thread()
            for th in threading.enumerate():
                if th is not me and not th.daemon:
                    th.join()
    except BaseException as e:
        try:
            traceback.print_exc()
        except BaseException:
            pass
        why = why or f"the task's start or end failed: {e!r}"[:200]
    try:
        clean.restore()
        why = why or clean.dirt()
    except BaseException as e:
        why = why or f"what the task changed could not be undone: {e!r}"[:200]
    if why:
        try:  # as at an exit (the child ends after this task)
            atexit._run_exitfuncs()
        except BaseException:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:  # the job's files: no longer this child's (a job's pipe must see its end)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        os.chdir("/")
    except OSError:
        why = why or "its output could not be detached"
    return rc, why


class _Clean:  # pragma: no cover - in a forked child
    """What a child was before its first task: after each task, :meth:`dirt` says what the
    task left that a later task would see (and that cannot be undone), :meth:`restore` undoes
    what can be."""

    def __init__(self) -> None:
        import atexit
        import signal

        self.signals = self._signals()
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        self.fds = sorted(os.listdir("/proc/self/fd"))
        self.atexit = atexit._ncallbacks()
        self.rss = self._status()[1]
        self.main = sys.modules["__main__"]
        self.path = list(sys.path)
        self.argv = list(sys.argv)
        self.streams = (sys.stdin, sys.stdout, sys.stderr)
        self.hooks = (sys.excepthook, sys.displayhook, sys.breakpointhook)
        self.recursion = sys.getrecursionlimit()
        self.switch = sys.getswitchinterval()
        self.priority = os.getpriority(os.PRIO_PROCESS, 0)
        self.cpus = os.sched_getaffinity(0)
        warnings = sys.modules.get("warnings")
        self.warnings = list(warnings.filters) if warnings is not None else None

    @staticmethod
    def _signals() -> list[object]:
        import signal

        return [signal.getsignal(s) for s in sorted(signal.valid_signals())]

    @staticmethod
    def _status() -> tuple[int, int]:
        """This process's threads and resident kB (``/proc/self/status``)."""
        with open("/proc/self/status", "rb") as f:
            text = f.read()
        threads = int(text.split(b"\nThreads:", 1)[1].split(None, 1)[0])
        rss = int(text.split(b"\nVmRSS:", 1)[1].split(None, 1)[0])
        return threads, rss

    def dirt(self) -> str:
        """What the task left behind that a later task would see ("" when nothing)."""
        import atexit
        import signal
        import time

        threads, rss = self._status()
        for _ in range(40):  # a joined thread's system thread may be ending still
            if threads == 1:
                break
            time.sleep(0.0005)
            threads = self._status()[0]
        else:
            return "a thread left running"
        if self._signals() != self.signals:
            return "a signal handler changed"
        if signal.pthread_sigmask(signal.SIG_BLOCK, ()) != self.mask:
            return "the signal mask changed"
        if any(signal.getitimer(w) != (0.0, 0.0) for w in (
                signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)):
            return "a timer (alarm) left set"
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass  # the task's ended processes that it did not wait for
        except ChildProcessError:
            pass
        with open(f"/proc/self/task/{os.getpid()}/children", "rb") as f:
            if f.read().strip():
                return "a process it started runs still"
        if sorted(os.listdir("/proc/self/fd")) != self.fds:
            import gc

            gc.collect()  # a file of the task's namespace, in a cycle (its functions')
            if sorted(os.listdir("/proc/self/fd")) != self.fds:
                return "a file descriptor left open"
        if atexit._ncallbacks() != self.atexit:
            return "an exit function registered"
        if rss - self.rss > CHILD_GROWTH >> 10:
            return f"it grew by {(rss - self.rss) >> 10} MB"
        if sys.gettrace() is not None or sys.getprofile() is not None:
            return "a trace or profile function set"
        if os.getpriority(os.PRIO_PROCESS, 0) != self.priority:
            return "its priority changed"
        if os.sched_getaffinity(0) != self.cpus:
            return "its CPU affinity changed"
        return ""

    def restore(self) -> None:
        """Undo what a task may change of the interpreter's state (its ``__main__`` dropped)."""
        sys.modules["__main__"] = self.main
        for stream in (sys.stdout, sys.stderr):  # the task's own, if it replaced them
            try:
                if stream is not None:
                    stream.flush()
            except BaseException:
                pass
        sys.stdin, sys.stdout, sys.stderr = self.streams
        sys.path[:] = self.path
        sys.argv[:] = self.argv
        sys.excepthook, sys.displayhook, sys.breakpointhook = self.hooks
        if sys.getrecursionlimit() != self.recursion:
            sys.setrecursionlimit(self.recursion)
        if sys.getswitchinterval() != self.switch:
            sys.setswitchinterval(self.switch)
        warnings = sys.modules.get("warnings")
        if warnings is not None and self.warnings is not None and \
                warnings.filters != self.warnings:
            warnings.filters[:] = self.warnings
            warnings._filters_mutated()
        import gc

        if not gc.isenabled():
            gc.enable()
