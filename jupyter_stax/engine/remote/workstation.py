"""The backend of a remote workstation (``scheduler: local`` with a ``host``): steps are processes
started detached over SSH, watched with ONE status command per poll for all of them, canceled by
killing their process group, and found again after an engine restart by their pid.

The shell side (start, status, cancel scripts and their parser) is
:mod:`jupyter_stax.engine.schedulers.workstation`; this class runs those scripts through the
cluster's transport (``transport.run(["/bin/sh", "-s"], stdin=script)``: one round trip each) and
speaks the engine's :class:`~jupyter_stax.engine.backend.Backend` interface, so the engine has the
same code path as for a batch scheduler:

* ``submit`` starts the process and returns its pid as the native id (a lost answer is safe to
  retry: starting is idempotent per attempt);
* a poll thread (every ``poll_interval`` s, default 1) sends the status of every watched job as
  :class:`~jupyter_stax.engine.backend.JobUpdate` s: ``running`` once, then ``completed`` (the
  exit record is there: the engine decides the outcome from it) or ``failed`` (the process is gone
  and left no exit record: killed, or the machine restarted);
* ``attach`` (a new engine) checks the pid in the same way and watches it again;
  :class:`~jupyter_stax.engine.backend.JobGone` when it is neither alive nor left a record;
* a transport error is transient: the poll says nothing that round (the transport's warning is
  on the execution) and asks again; no job is ever declared gone because the machine did not
  answer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import PurePosixPath

from ...core.errors import SchedulerUnavailable, StaxError
from ...core.jobscript import JobRequest
from ..backend import Backend, JobGone, JobUpdate, SubmitError
from ..runstate import JobKey
from ..schedulers import workstation as ws
from ..transport import CommandResult, TransportError

log = logging.getLogger("jupyter_stax.workstation")


@dataclass
class _Watched:
    pid: int
    step_dir: str | None  # None: look it up in the index (attached by pid)
    attempt: int
    said_running: bool = False


class WorkstationBackend(Backend):
    """Processes on a remote workstation (see the module docstring)."""

    def _make_executor(self) -> None:
        self._watched: dict[JobKey, _Watched] = {}
        self._forget: list[int] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poller: threading.Thread | None = None
        self.interval = self.cluster.effective_poll_interval  # as its records are read

    @property
    def index_dir(self) -> str:
        return str(PurePosixPath(str(self.transport.aux_dir)) / ws.INDEX)

    def _sh(self, script: str, timeout: float = 120) -> CommandResult:
        return self.transport.run(["/bin/sh", "-s"], stdin=script, timeout=timeout)

    # ------------------------------------------------------------------ jobs
    def submit(self, key: JobKey, req: JobRequest) -> str:
        if req.after_native_ids:
            raise SubmitError("a workstation has no scheduler to order jobs (no --detach)",
                              transient=False)
        script = ws.launch_script(
            step_dir=str(req.step_dir), job_script=str(req.job_script), stdout=str(req.stdout),
            stderr=str(req.stderr), attempt=req.attempt, index_dir=self.index_dir,
        )
        try:
            res = self._sh(script, timeout=60)
        except TransportError as e:  # safe to retry: the start is idempotent per attempt
            raise SubmitError(f"{self.cluster.name}: {e}", transient=True) from None
        pid = ws.parse_launch(res.stdout)
        if res.returncode != 0 or pid is None:
            msg = " ".join((res.stderr or res.stdout).split()) or f"exit {res.returncode}"
            raise SubmitError(f"could not start the step on {self.transport.where}: {msg}",
                              transient=False)
        self._watch(key, _Watched(pid, str(req.step_dir), req.attempt))
        return str(pid)

    def attach(self, key: JobKey, native_id: str) -> None:
        if not native_id.isdigit():
            raise JobGone(f"{native_id!r} is not a process id")
        pid = int(native_id)
        try:
            res = self._sh(ws.status_script([(pid, None)], self.index_dir), timeout=60)
            got = ws.parse_status(res.stdout).get(pid)
        except (TransportError, ws.StatusCutOff) as e:
            # cannot tell now: watch it; the poll decides once the machine answers
            log.warning("%s: status of process %s: %s", self.cluster.name, pid, e)
            got = ws.ProcessStatus(True, None)
        if got is None or (not got.alive and got.exit is None):
            raise JobGone(f"process {pid} is not running on {self.transport.where}")
        self._watch(key, _Watched(pid, None, key.attempt))

    def cancel(self, key: JobKey, native_id: str) -> None:
        if not native_id.isdigit():
            return
        try:
            res = self._sh(ws.cancel_script(int(native_id)), timeout=60)
        except TransportError as e:
            raise SchedulerUnavailable(f"{self.cluster.name} did not answer: {e}") from None
        if res.returncode != 0:
            raise StaxError(f"cancel of process {native_id} failed: {res.message}")
        self._wake.set()

    def find_by_name(self, job_name: str) -> str | None:
        return None  # the start record (its pid) is how an interrupted start is found

    def forget(self, key: JobKey, native_id: str | None) -> None:
        with self._lock:
            w = self._watched.pop(key, None)
            if w is not None:
                self._forget.append(w.pid)

    def warning(self) -> str | None:
        return self.health.warning(f"{self.cluster.name} (processes over SSH)")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._poller is not None:
            self._poller.join(10)
        with self._lock:
            self._watched.clear()

    # ------------------------------------------------------------------ polling
    def _watch(self, key: JobKey, w: _Watched) -> None:
        with self._lock:
            self._watched[key] = w
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll_loop, name=f"stax-ws-{self.cluster.name}", daemon=True
                )
                self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.poll()
            except Exception:  # never let the thread die: the next round tries again
                log.exception("%s: status poll failed", self.cluster.name)

    def poll(self) -> None:
        """ONE status command for every watched process; their updates to ``on_update``."""
        with self._lock:
            watched = dict(self._watched)
            forget, self._forget = self._forget, []
        if not watched and not forget:
            return
        script = ws.status_script(
            [(w.pid, w.step_dir) for w in watched.values()], self.index_dir, forget
        )
        try:
            res = self._sh(script, timeout=120)
            got = ws.parse_status(res.stdout)
        except (TransportError, ws.StatusCutOff) as e:
            with self._lock:
                self._forget[:0] = forget
            log.info("%s: status poll: %s", self.cluster.name, e)
            return  # the transport's warning says it; nothing is decided on no answer
        if res.returncode != 0:
            self.health.failed(res.message or f"exit {res.returncode}")
            return
        self.health.ok()
        now = time.time()
        for key, w in watched.items():
            st = got.get(w.pid)
            if st is None:
                continue
            ended = st.exit is not None and st.exit.attempt == w.attempt
            if not w.said_running and (st.alive or ended):
                w.said_running = True
                self.on_update(JobUpdate(key, "running", None, None, now))
            if ended:
                assert st.exit is not None
                self._drop(key, w)
                self.on_update(JobUpdate(key, "completed", st.exit.exit_code, None, now))
            elif not st.alive:
                self._drop(key, w)
                self.on_update(JobUpdate(
                    key, "failed", None,
                    f"process {w.pid} on {self.transport.where} ended without writing its exit "
                    "record (killed, or the machine restarted?)", now,
                ))

    def _drop(self, key: JobKey, w: _Watched) -> None:
        with self._lock:
            if self._watched.get(key) is w:
                del self._watched[key]

