"""Function tasks on ``local`` handed by the engine straight to the user's warm task worker
(:mod:`jupyter_stax.core.taskworker`): no job process at all.

A function task on ``local`` without an image (its step allows the worker:
``STAX_TASK_WORKER=1``) is, as every step, rendered into its step directory (the job script
too: it is the fallback). When this user's worker of the same source and interpreter identity
runs, :meth:`DirectTasks.submit` writes a direct request (the step directory, script, stdout
and stderr, umask, attempt, native id and the environment the job script would have given
the task) into the worker's private directory, the line ``D<token>`` into its FIFO, and waits
for the answer on a pipe of its own that the worker opens through ``/proc``: ``P<child>``
(it runs; the worker wrote the start record), then ``X<status>`` (the worker wrote the exit
record first), or ``R`` (declined: the job goes to PSI/J as before). The native id is
``tw:<worker pid>:<token>``.

The task outlives the engine: the worker writes the records, so a restarted engine settles
the step from its exit record as any other (:func:`.observing.check_records`); until then
:meth:`attach` watches the worker's life, and a worker that ended without the exit record
fails the step with that reason (its children end with it: they run nothing unreported).
A cancel is ``K<token> KILL`` to the worker, which kills the task's process group only while
its child still runs that task. ``local`` enforces no walltime (PSI/J's local executor does
not either), so neither does this path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core import taskworker as tw
from ..core.functask import worker_digest
from ..core.jobscript import JobRequest
from .runstate import JobKey

#: the environment variable of the engine's that turns the direct path off ("0")
DIRECT_ENV = "STAX_TASK_DIRECT"
#: seconds the engine waits for the worker's first answer before it withdraws the request
ANSWER_SECONDS = 5.0
PREFIX = "tw:"


class WorkerLost(Exception):
    """The worker took the request and ended before it answered: the task may have begun."""


@dataclass
class _Watched:
    key: JobKey
    native: str
    worker: int
    token: str
    fd: int = -1  # the pipe's read end (-1: adopted after a restart: no pipe)
    buf: bytes = b""  # what came on it after the last whole line


def is_direct(native_id: str | None) -> bool:
    return bool(native_id) and str(native_id).startswith(PREFIX)


def parse_native(native_id: str) -> tuple[int, str]:
    """``tw:<worker pid>:<token>`` -> (worker pid, token); ValueError otherwise."""
    _, pid, token = native_id.split(":", 2)
    if not token.isalnum():
        raise ValueError(native_id)
    return int(pid), token


def _alive(pid: int) -> bool:
    """``pid`` is a task worker, running (not another process that got its pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rpartition(b")")[2].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"stax-taskworker-" in f.read()
    except (OSError, IndexError):
        return False


def _final(code: int) -> tuple[str, int, None]:
    """The update of a task that ended with ``code`` (negative: killed by that signal, as a
    job's bash would report it: 128 + the signal)."""
    return ("completed" if code == 0 else "failed", code if code >= 0 else 128 - code, None)


class DirectTasks:
    """The direct tasks of one engine's ``local`` backend (thread-safe)."""

    def __init__(self, on_update: Callable[[str, JobKey, str, int | None, str | None], None]):
        #: ``on_update(native, key, state, exit_code, message)``
        self._on_update = on_update
        self._lock = threading.Lock()
        self._watched: dict[JobKey, _Watched] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._to_close: list[int] = []  # pipes of forgotten tasks, closed by the loop
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="stax-taskdirect", daemon=True)
        self._thread.start()

    @staticmethod
    def enabled() -> bool:
        return os.environ.get(DIRECT_ENV, "1") != "0"

    # ------------------------------------------------------------------ submit
    def submit(self, key: JobKey, req: JobRequest, env: Mapping[str, str]) -> str | None:
        """Hand the attempt to the warm worker: its native id, or None (no worker of this
        identity runs, or it declined: submit the job as usual). Blocking (a few ms)."""
        d = tw.worker_dir()
        if d is None:
            return None
        environ = {**os.environ, **env}
        base = os.path.join(d, tw.worker_name(worker_digest(), tw.identity(environ)))
        try:
            st = os.stat(base + ".fifo")
            with open(base + ".pid", "rb") as f:
                worker = int(f.read())
        except (OSError, ValueError):
            return None
        if st.st_uid != os.getuid() or not _alive(worker):
            return None
        token = secrets.token_hex(8)
        native = f"{PREFIX}{worker}:{token}"
        umask = os.umask(0)
        os.umask(umask)
        r, w = os.pipe()
        req_path = f"{base}.d{token}.req"
        fields = [tw.DIRECT_MAGIC, str(os.getpid()).encode(), str(w).encode(),
                  os.fsencode(req.step_dir), os.fsencode(req.step_dir / "stax.step.sh"),
                  os.fsencode(req.stdout), os.fsencode(req.stderr), b"%o" % umask,
                  str(req.attempt).encode(), native.encode()]
        fields += [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in environ.items()]
        data = b"".join(x + b"\0" for x in fields)
        try:
            fd = os.open(req_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            fifo = os.open(base + ".fifo", os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fifo, b"D%s\n" % token.encode())
            finally:
                os.close(fifo)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(req_path)
            os.close(r)
            os.close(w)
            return None
        answer, rest = self._first_answer(r, req_path, worker)
        os.close(w)  # the worker has its own copy now (or will never open it)
        if answer is None or not answer.startswith(b"P"):
            os.close(r)
            if answer == b"taken":
                raise WorkerLost("the task worker ended while taking the task")
            return None
        self._on_update(native, key, "queued", None, None)
        self._on_update(native, key, "running", None, None)
        watched = _Watched(key, native, worker, token, r)
        code = self._feed(watched, rest)  # its end may have come with the first answer
        if code is not None:
            os.close(r)
            self._on_update(native, key, *_final(code))
        else:
            self._add(watched)
        return native

    def _first_answer(
        self, r: int, req_path: str, worker: int
    ) -> tuple[bytes | None, bytes]:
        """``P<pid>``, ``R...``, None (withdrawn: not taken in time, or the worker is gone)
        or ``taken`` (taken by a worker that died before it answered); and what came after
        that line (the task's end, when it was quick)."""
        deadline = time.monotonic() + ANSWER_SECONDS
        buf = b""
        while True:
            ready, _, _ = select.select([r], [], [], 0.05)
            if ready:
                more = os.read(r, 256)
                buf += more
                if b"\n" in buf or not more:
                    line, _, rest = buf.partition(b"\n")
                    return line, rest
                continue
            if _alive(worker) and time.monotonic() < deadline:
                continue
            try:
                os.unlink(req_path)  # withdrawn: the worker never saw it
                return None, b""
            except FileNotFoundError:
                if not _alive(worker):
                    return b"taken", b""
                deadline = time.monotonic() + ANSWER_SECONDS  # taken: the answer comes

    # ------------------------------------------------------------------ watch
    def attach(self, key: JobKey, native_id: str) -> None:
        """Watch a direct task of an earlier engine: its exit record settles it (the engine
        reads records); a worker that ended without one fails it (see :meth:`_loop`)."""
        worker, token = parse_native(native_id)
        self._add(_Watched(key, native_id, worker, token))

    def cancel(self, native_id: str) -> None:
        """``K<token> KILL`` to the worker: the task's process group is killed if it still
        runs; its exit record follows (status 137). Nothing when the worker is gone."""
        worker, token = parse_native(native_id)
        d = tw.worker_dir()
        if d is None or not _alive(worker):
            return
        for fifo in Path(d).glob("*.fifo"):
            with contextlib.suppress(OSError, ValueError):
                if int((fifo.with_suffix(".pid")).read_text()) != worker:
                    continue
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                try:
                    os.write(fd, b"K%s KILL\n" % token.encode())
                finally:
                    os.close(fd)

    def forget(self, key: JobKey) -> None:
        with self._lock:
            w = self._watched.pop(key, None)
        if w is not None and w.fd >= 0:
            self._wake(close=w.fd)

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _add(self, w: _Watched) -> None:
        with self._lock:
            self._watched[w.key] = w
        self._wake()

    def _wake(self, close: int = -1) -> None:
        with self._lock:
            if close >= 0:
                self._to_close.append(close)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _loop(self) -> None:
        """The answers of the live tasks' pipes; every half second, the workers of adopted
        tasks (a dead one without the task's exit record fails it)."""
        last = 0.0
        while not self._closed:
            with self._lock:
                by_fd = {w.fd: w for w in self._watched.values() if w.fd >= 0}
                for fd in self._to_close:
                    by_fd.pop(fd, None)
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._to_close.clear()
            ready, _, _ = select.select([self._wake_r, *by_fd], [], [], 0.5)
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            for fd in ready:
                w = by_fd.get(fd)
                if w is None:
                    continue
                try:
                    more = os.read(fd, 4096)
                except OSError:
                    more = b""
                code = self._feed(w, more)
                if code is not None:
                    self._end(w, *_final(code))
                elif not more:
                    self._end(w, "failed", None, self._gone(w))
            t = time.monotonic()
            if t - last >= 0.5:
                last = t
                with self._lock:
                    adopted = [w for w in self._watched.values() if w.fd < 0]
                for w in adopted:
                    if not _alive(w.worker):
                        self._end(w, "failed", None, self._gone(w))

    @staticmethod
    def _feed(w: _Watched, data: bytes) -> int | None:
        """Take the worker's answers ``data`` for ``w``: the task's status once its end
        (``X<status>``) came, else None."""
        w.buf += data
        while b"\n" in w.buf:
            line, _, w.buf = w.buf.partition(b"\n")
            if line.startswith(b"X") and line[1:].lstrip(b"-").isdigit():
                return int(line[1:])
        return None

    def _gone(self, w: _Watched) -> str:
        return (f"the task worker (pid {w.worker}) ended before the task did (killed?); the "
                "task was killed with it and left no exit record")

    def _end(self, w: _Watched, state: str, code: int | None, message: str | None) -> None:
        with self._lock:
            if self._watched.get(w.key) is not w:
                return
            del self._watched[w.key]
            if w.fd >= 0:
                self._to_close.append(w.fd)
        # the engine decides from the exit record first (.outcome): one written after all
        # (a race with the worker's end) wins over the message
        self._on_update(w.native, w.key, state, code, message)

