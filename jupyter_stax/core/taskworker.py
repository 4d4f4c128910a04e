"""The fast start of function tasks: the step's Python starts without ``site`` (``-S``), and on
``local`` it hands the task to a warm per-user worker that has cloudpickle loaded already.

Starting Python with ``site`` and importing cloudpickle costs tens of milliseconds of CPU per
task, most of a trivial task's cost. This file runs in three roles, always from its own source
text (it is embedded in each task's step script, see
:func:`jupyter_stax.core.functask.render_task_step`, so it needs nothing of jupyter_stax where
the task runs: the standard library only, and no triple single quotes in this file):

* the task's entry (:func:`task_entry`), in the job's Python started with ``-S``. When the job
  allows it (``STAX_TASK_WORKER=1``: function tasks on a cluster whose scheduler is ``local``,
  without an image), it connects to the worker of this Python and environment, sends it the
  task (the runner's source, the job's environment, working directory and umask) and its
  stdout and stderr descriptors, forwards termination signals to the task and exits with the
  task's status. When there is no worker, it starts one for the next tasks (one per key: a
  lock) and runs the task itself: ``site`` first (as a normal start would), then the runner.
* the worker (:func:`serve`), a detached process (its own session) that forks one child per
  task. The child takes the job's environment, directory, umask and descriptors, and runs the
  runner as ``__main__`` would. When the job's end of the connection closes (the job was
  killed), the child's process group is killed. It exits after ``STAX_TASK_WORKER_IDLE``
  seconds (default 120) without tasks.
* imported by jupyter_stax for the constants.

The task stays a real step: its job runs (the entry is the job's process), writes its records
and exits with the task's status; stdout and stderr are the job's; a cancel or a time limit
that ends the job ends the task (a signal is forwarded; a job killed outright closes the
connection and the worker kills the task). A worker serves only its own user (a private
directory, and the peer's uid checked) and only jobs whose Python, ``PYTHON*`` and ``LD_*``
environment (what shapes an interpreter's start) are the ones it started with: the key of its
socket. Anything unexpected falls back to running the task in the job's own Python.
"""

from __future__ import annotations

import os
import sys

#: the job's environment variable that allows the worker ("1")
WORKER_ENV = "STAX_TASK_WORKER"
#: seconds a worker waits for a task before it exits
IDLE_ENV = "STAX_TASK_WORKER_IDLE"
IDLE_SECONDS = 120.0
#: the request's first field (the protocol's version)
MAGIC = b"STAX-TASK 1"
#: the line from which on this file is the worker's alone (a task's entry compiles the part
#: before it only)
WORKER_PART = "# " + "-" * 70 + " the worker\n"
#: signals the entry forwards to the task
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGXCPU")


# ---------------------------------------------------------------------- shared
def worker_dir() -> str | None:
    """This user's private directory of workers (None: it cannot be made or trusted)."""
    base = os.environ.get("TMPDIR") or "/tmp"
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


def worker_key(digest: str, env: dict[str, str] | None = None) -> str:
    """What a worker must share with a job to run its task: this source (``digest``), the
    Python, and the environment that shapes an interpreter's start (FNV-1a, 64 bits)."""
    env = dict(os.environ) if env is None else env
    parts = [digest, sys.executable, sys.version]
    parts += sorted(k + "=" + v for k, v in env.items() if k.startswith(("PYTHON", "LD_")))
    h = 0xCBF29CE484222325
    for b in "\0".join(parts).encode("utf-8", "surrogateescape"):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def netstrings(fields: list[bytes]) -> bytes:
    return b"".join(b"%d:" % len(f) + f for f in fields)


# ---------------------------------------------------------------------- the task's entry
def task_entry(src: str, body: str, digest: str) -> None:
    """Run the task ``body`` (the runner and its call): in the warm worker when allowed and
    there, else here."""
    if os.environ.get(WORKER_ENV) == "1":
        try:
            rc = handoff(src, body, digest)
        except OSError:
            rc = None
        if rc is not None:
            if rc < 0:  # killed by a signal: end the same way
                _signal = __import__("_signal")  # not `signal`: that imports enum, slowly
                _signal.signal(-rc, _signal.SIG_DFL)
                os.kill(os.getpid(), -rc)
                rc = 128 - rc
            os._exit(rc)
    if sys.flags.no_site:  # what a normal start does, now
        import site

        site.main()
    main = sys.modules["__main__"]
    exec(compile(body, "<stdin>", "exec"), main.__dict__)


def handoff(src: str, body: str, digest: str) -> int | None:
    """The task's exit code from the worker (negative: killed by that signal); None when no
    worker took it (one is started for the next tasks)."""
    import _socket

    d = worker_dir()
    if d is None:
        return None
    key = worker_key(digest)
    path = os.path.join(d, key + ".sock")
    if len(path.encode()) > 100:  # longer than a socket address may be
        return None
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            s.connect(path)
        except OSError:
            start_worker(src, d, key)
            return None
        um = os.umask(0)
        os.umask(um)
        env = b"\0".join(k + b"=" + v for k, v in os.environb.items())
        payload = netstrings([MAGIC, os.getcwdb(), b"%d" % um, env, body.encode()])
        payload = b"%d\n" % len(payload) + payload
        fds = (1).to_bytes(4, sys.byteorder) + (2).to_bytes(4, sys.byteorder)
        sent = s.sendmsg([payload[:65536]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        s.sendall(payload[sent:])
        return await_status(s)
    finally:
        s.close()


def await_status(s: object) -> int | None:
    """Read the worker's answers: ``P<pid>`` once the task runs, ``X<code>`` when it ended."""
    buf = b""
    pid = None
    while True:
        chunk = s.recv(4096)  # type: ignore[attr-defined]
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            if line[:1] == b"P":
                pid = int(line[1:])
                forward_signals(pid)
            elif line[:1] == b"X":
                return int(line[1:])
    if pid is None:
        return None  # the worker did not start it (it was ending): run it here
    sys.stderr.write(
        f"jupyter_stax: the task worker ended before the task (pid {pid}) did; its exit "
        "status is unknown\n"
    )
    return 1


def forward_signals(pid: int) -> None:
    """Signals that would end the job's own Python end the task (its process group)."""
    _signal = __import__("_signal")  # not `signal`: that imports enum, slowly

    def forward(sig: int, frame: object) -> None:
        try:
            os.killpg(pid, sig)
        except OSError:
            pass

    for name in FORWARDED:
        sig = getattr(_signal, name, None)
        if sig is not None:
            _signal.signal(sig, forward)


def start_worker(src: str, d: str, key: str) -> None:
    """Start the worker of ``key`` detached, unless one is starting or serving (its lock)."""
    import fcntl

    lock = os.open(os.path.join(d, key + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
def parse_netstrings(data: bytes) -> list[bytes]:
    """The fields of :func:`netstrings` (ValueError when garbled)."""
    out = []
    i = 0
    while i < len(data):
        colon = data.index(b":", i)
        n = int(data[i:colon])
        out.append(data[colon + 1 : colon + 1 + n])
        i = colon + 1 + n
        if i > len(data):
            raise ValueError("truncated request")
    return out


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


class _Conn:
    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []
        self.want: int | None = None
        self.pid: int | None = None
        self.pidfd: int | None = None


def serve(d: str, key: str, lock: int) -> None:  # pragma: no cover - a separate process
    """The worker's loop (it holds ``lock`` while it lives)."""
    import select
    import socket
    import struct
    import time

    os.chdir("/")
    try:
        import base64  # noqa: F401  (the runner's imports)
        import io  # noqa: F401
        import json  # noqa: F401
        import pickle  # noqa: F401
        import traceback  # noqa: F401

        import cloudpickle  # noqa: F401  (what by-value functions need: the point)
    except ImportError as e:
        print(f"jupyter_stax task worker: {e}; not serving", flush=True)
        return
    if not hasattr(os, "pidfd_open"):
        print("jupyter_stax task worker: no pidfd_open here; not serving", flush=True)
        return
    idle = float(os.environ.get(IDLE_ENV) or IDLE_SECONDS)
    path = os.path.join(d, key + ".sock")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    os.chmod(path, 0o600)
    lst.listen(128)
    lst.setblocking(False)
    poll = select.poll()
    poll.register(lst, select.POLLIN)
    conns: dict[int, _Conn] = {}  # socket fd -> connection
    children: dict[int, _Conn] = {}  # pidfd -> connection
    last = time.monotonic()
    print(f"jupyter_stax task worker {os.getpid()} serving {path}", flush=True)

    def drop(c: _Conn) -> None:
        fd = c.sock.fileno()  # type: ignore[attr-defined]
        if fd in conns:
            del conns[fd]
            try:
                poll.unregister(fd)
            except KeyError:
                pass
        for f in c.fds:
            os.close(f)
        c.fds = []
        c.sock.close()  # type: ignore[attr-defined]

    while True:
        busy = bool(conns or children)
        if not busy and time.monotonic() - last > idle:
            break
        for fd, _ev in poll.poll(None if busy else max(0.0, idle - (time.monotonic() - last))
                                 * 1000 + 10):
            last = time.monotonic()
            if fd == lst.fileno():
                try:
                    sock, _ = lst.accept()
                except OSError:
                    continue
                creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
                if struct.unpack("3i", creds)[1] != os.getuid():
                    sock.close()
                    continue
                sock.setblocking(False)
                conns[sock.fileno()] = _Conn(sock)
                poll.register(sock, select.POLLIN)
            elif fd in children:
                c = children.pop(fd)
                poll.unregister(fd)
                os.close(fd)
                assert c.pid is not None
                _, status = os.waitpid(c.pid, 0)
                try:
                    c.sock.send(b"X%d\n" % os.waitstatus_to_exitcode(status))  # type: ignore[attr-defined]
                except OSError:
                    pass
                drop(c)
            elif fd in conns:
                c = conns[fd]
                try:
                    data, anc, _flags, _addr = c.sock.recvmsg(  # type: ignore[attr-defined]
                        1 << 20, socket.CMSG_SPACE(16)
                    )
                except BlockingIOError:
                    continue
                except OSError:
                    data, anc = b"", []
                for level, kind, raw in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        n = len(raw) - len(raw) % 4
                        c.fds += [int.from_bytes(raw[i : i + 4], sys.byteorder)
                                  for i in range(0, n, 4)]
                if c.pid is not None:  # running: the job's end closed (it was killed)
                    if not data:
                        try:
                            os.killpg(c.pid, 9)
                        except OSError:
                            pass
                        del conns[fd]
                        poll.unregister(fd)
                    continue
                if not data:
                    drop(c)
                    continue
                c.buf += data
                if c.want is None and b"\n" in c.buf:
                    head, _, c.buf = c.buf.partition(b"\n")
                    c.want = int(head)
                if c.want is None or len(c.buf) < c.want:
                    continue
                try:
                    fields = parse_netstrings(c.buf[: c.want])
                    if len(fields) != 5 or fields[0] != MAGIC or len(c.fds) != 2:
                        raise ValueError("not a task request")
                except ValueError:
                    drop(c)
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    lst.close()
                    for other in list(conns.values()):
                        if other is not c:
                            other.sock.close()  # type: ignore[attr-defined]
                    for pfd in children:
                        os.close(pfd)
                    run_child(fields, c.fds)
                c.pid = pid
                c.pidfd = os.pidfd_open(pid)
                children[c.pidfd] = c
                poll.register(c.pidfd, select.POLLIN)
                for f in c.fds:
                    os.close(f)
                c.fds = []
                try:
                    c.sock.send(b"P%d\n" % pid)  # type: ignore[attr-defined]
                except OSError:
                    pass
    for own in (path, os.path.join(d, key + ".py")):  # still this worker's: it holds the lock
        try:
            os.unlink(own)
        except OSError:
            pass
    lst.close()
    print(f"jupyter_stax task worker {os.getpid()}: idle for {idle:g} s, exiting", flush=True)


def run_child(fields: list[bytes], fds: list[int]) -> None:  # pragma: no cover - forked
    """In the forked child: become the job's task (its environment, directory, umask, output),
    run the runner as ``__main__``, exit with its status as the interpreter would."""
    import atexit
    import builtins
    import importlib
    import traceback
    import types

    rc = 1
    try:
        os.setsid()
        _, cwd, um, env, body = fields
        os.environb.clear()
        for item in env.split(b"\0"):
            k, sep, v = item.partition(b"=")
            if sep and k:
                os.environb[k] = v
        os.umask(int(um))
        os.chdir(cwd)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.argv[:] = ["-c"]  # as in the job's own Python
        importlib.invalidate_caches()  # '' on sys.path is now the job's directory
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        try:
            exec(compile(body.decode(), "<stdin>", "exec"), main.__dict__)
            rc = 0
        except SystemExit as e:
            rc = exit_code(e.code)
        except BaseException:
            traceback.print_exc()
            rc = 1
        try:
            threading = sys.modules.get("threading")
            if threading is not None:
                threading._shutdown()
            atexit._run_exitfuncs()
        except BaseException:
            pass
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(rc)
