"""Scheduler backends: the only module that imports PSI/J (besides its helpers
:mod:`.psij_compat` and :mod:`.local_launch`, the ``local`` cluster's launcher).

ONE PSI/J executor per cluster (PSI/J builds a new executor, with its own polling thread, on every
``get_instance``). Blocking calls (``submit``, ``cancel``, ``attach``) are made by the engine on a
worker thread, never on the event-loop thread; PSI/J's status callbacks arrive on PSI/J's threads
and are handed to ``on_update``, which must be thread-safe (the engine moves them onto its loop).

Guards around PSI/J's known faults (see README, "PSI/J guards"):

* job name, stdout/stderr and walltime are always set explicitly (PSI/J defaults: no Slurm job name,
  /dev/null output, 10 minutes);
* PSI/J quotes paths badly (a space breaks the launcher's redirections and ``#SBATCH --chdir``):
  every path handed to PSI/J is shell-safe; a step directory that is not is reached through a
  shell-safe symlink;
* a scheduler that does not answer never turns jobs into failed ones: the polling error threshold
  is infinite, a missing ``squeue`` binary counts as a polling error (PSI/J would fail every job),
  and polling errors are kept in :attr:`Backend.health` so the engine can warn;
* ``squeue`` output is parsed line by line through a state table (:mod:`.schedulers.slurm`); a
  line that cannot be parsed is skipped (PSI/J's parser raises and freezes the status of every
  job of the executor);
* exit codes come from the step's own exit record (see :mod:`jupyter_stax.core.jobscript`),
  not from PSI/J's ``.ec`` file, which is deleted on first read; PSI/J's leftover files of
  finished jobs are removed.

Every command and every cluster-side file goes through the cluster's transport (see
:mod:`.transport`; PSI/J's own commands through :func:`.psij_compat.routed_executor`).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..core.errors import SchedulerUnavailable, StaxError
from ..core.jobscript import JobRequest
from ..core.models import Cluster
from . import psij_compat, schedulers
from .batch import run_batch
from .runstate import JobKey
from .schedulers import is_transient, sge, slurm
from .transport import (
    TRANSIENT_MARK,
    ClusterPath,
    CommandResult,
    FileSpec,
    Transport,
    TransportError,
)

log = logging.getLogger("jupyter_stax.backend")

#: PSI/J state name -> our name for what the scheduler says (final ones are checked against the
#: step's exit record by the engine)
_PSIJ_STATES = {
    "QUEUED": "queued",
    "ACTIVE": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELED": "canceled",
}


@dataclass(frozen=True)
class JobUpdate:
    key: JobKey
    state: str  # queued | running | completed | failed | canceled
    exit_code: int | None
    message: str | None
    time: float


#: seconds one submission command (a batch of submit commands) may take
SUBMIT_TIMEOUT = 600.0


class SubmitError(StaxError):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class JobGone(StaxError):
    """attach() found no such job (local: no such process)."""


def shell_safe(path: str) -> bool:
    return shlex.quote(path) == path


class Health:
    """What the last status queries of one executor said (thread-safe), and the queued jobs
    that will not start as they stand (``blocked``: native id -> reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures = 0
        self.since: float | None = None
        self.last_error: str | None = None
        self.blocked: dict[str, str] = {}
        #: array id -> its elements still waiting, from the last status query (None: the
        #: scheduler does not report elements, or it has not answered yet)
        self.waiting: dict[str, set[int]] | None = None
        #: ``time.monotonic()`` of the last status answer (the engine reads a remote cluster's
        #: records half-way between two, see :func:`.observing.records_due`)
        self.answered: float | None = None

    def set_blocked(self, blocked: dict[str, str]) -> None:
        with self._lock:
            self.blocked = blocked

    def set_waiting(self, waiting: dict[str, set[int]]) -> None:
        with self._lock:
            self.waiting = waiting

    def waiting_elements(self, native_id: str) -> set[int] | None:
        with self._lock:
            return None if self.waiting is None else self.waiting.get(native_id, set())

    def blocked_reason(self, native_id: str) -> str | None:
        with self._lock:
            return self.blocked.get(native_id)

    def ok(self) -> None:
        with self._lock:
            self.failures, self.since, self.last_error = 0, None, None
            self.answered = time.monotonic()

    def failed(self, message: str) -> None:
        with self._lock:
            self.failures += 1
            if self.since is None:
                self.since = time.time()
            self.last_error = " ".join(message.split())[:300]

    def warning(self, scheduler: str) -> str | None:
        with self._lock:
            if not self.failures:
                return None
            t = time.strftime("%H:%M:%S", time.localtime(self.since or time.time()))
            return (
                f"{scheduler} is not answering status queries since {t} "
                f"({self.failures} tries): {self.last_error}. Jobs keep their last known state; "
                "retrying."
            )


def _executor_classes() -> dict[str, Any]:
    """Our subclasses of PSI/J's executors, with the polling guards. Imported lazily."""
    from psij import JobState, JobStatus
    from psij.executors.batch.slurm import SlurmJobExecutor

    class _Guarded(psij_compat.routed_executor()):  # type: ignore[misc]
        """Mixin: commands through the transport; polling errors are counted, never fatal;
        failures are kept in ``health``."""

        health: Health

        def parse_status_output(self, exit_code: int, out: str) -> dict[str, Any]:
            if exit_code != 0:
                self.health.failed(out or f"exit code {exit_code}")
                raise RuntimeError(f"status command failed ({exit_code}): {out}")
            try:
                r = self._parse_ok(out)
            except Exception as e:
                self.health.failed(f"cannot parse status output: {e}")
                raise
            self.health.ok()
            return r

        def _parse_ok(self, out: str) -> dict[str, Any]:
            return super().parse_status_output(0, out)  # type: ignore[no-any-return]

    class StaxSlurmExecutor(_Guarded, SlurmJobExecutor):
        _NAME_ = "slurm"

        def get_status_command(self, native_ids: Collection[str]) -> list[str]:
            return list(slurm.STATUS_COMMAND)

        def _parse_ok(self, out: str) -> dict[str, Any]:
            r = {}
            jobs, blocked = slurm.parse_status(out)
            for native_id, (state, reason) in jobs.items():
                st = getattr(JobState, state)
                msg = None
                if st == JobState.FAILED:
                    msg = psij_compat.slurm_failure_message(reason)
                r[native_id] = JobStatus(st, message=msg)
            self.health.set_blocked(blocked)
            self.health.set_waiting(slurm.pending_elements(jobs))
            return r

    from ..psij_sge.executor import SgeExecutorConfig, SgeJobExecutor

    class StaxSgeExecutor(_Guarded, SgeJobExecutor):
        """One ``qstat -xml`` per poll (the caller's jobs, also over SSH); queued jobs that can
        never start are found with ``qalter -w v`` once each, after their first poll (a few per
        poll, so that a queue of hundreds of jobs does not delay the status of the others)."""

        _NAME_ = "sge"
        stax_config_class = SgeExecutorConfig
        _seen_queued: set[str]
        _verified: dict[str, str | None]

        def get_status_command(self, native_ids: Collection[str]) -> list[str]:
            return list(sge.STATUS_COMMAND)

        def _parse_ok(self, out: str) -> dict[str, Any]:
            r: dict[str, Any] = SgeJobExecutor.parse_status_output(self, 0, out)
            self.health.set_blocked(self._blocked(sge.parse_status(out)))
            return r

        def _blocked(self, jobs: dict[str, tuple[str, str]]) -> dict[str, str]:
            if not hasattr(self, "_verified"):
                self._seen_queued, self._verified = set(), {}
            candidates = {n for n, (st, code) in jobs.items() if sge.may_be_blocked(st, code)}
            new = sge.to_verify(candidates & self._seen_queued - self._verified.keys())
            for n in new:
                try:  # queued for a whole poll interval: verify once
                    self._verified[n] = sge.parse_verification(
                        self._run_command(sge.verify_command(n))
                    )
                except subprocess.CalledProcessError as e:  # exit 1 with the verdict
                    self._verified[n] = sge.parse_verification(str(e.output))
                except OSError as e:
                    log.warning("qalter -w v %s failed: %s", n, e)
            self._seen_queued = candidates
            self._verified = {n: v for n, v in self._verified.items() if n in candidates}
            return {n: sge.blocked_reason(v) for n, v in self._verified.items() if v}

    classes: dict[str, Any] = {
        "slurm": StaxSlurmExecutor,
        "sge": StaxSgeExecutor,
        "_guarded": _Guarded,
    }
    return classes


class Backend:
    """One cluster's PSI/J executor, with the guards described in the module docstring."""

    #: the PSI/J launcher of every job (``local``: :mod:`.local_launch`'s)
    _launcher = "single"

    def __init__(
        self,
        cluster: Cluster,
        state_dir: Path,
        on_update: Callable[[JobUpdate], None],
        transport: Transport,
    ) -> None:
        self.cluster = cluster
        self.scheduler = cluster.scheduler
        self.knowledge = schedulers.get(cluster.scheduler)
        self.state_dir = state_dir
        self.transport = transport
        self.links_dir = Path(transport.aux_dir) / "links"
        self.on_update = on_update
        self.health = Health()
        self._jobs: dict[JobKey, Any] = {}  # key -> psij.Job
        #: job names whose submit command's answer was lost (the connection dropped, the command
        #: hung): the job may be queued all the same; looked for before it is submitted again
        self._unsure: set[str] = set()
        self._lock = threading.Lock()
        if not shell_safe(str(self.state_dir)) or not shell_safe(str(transport.aux_dir)):
            raise StaxError(
                f"jupyter_stax's state directory {str(self.state_dir)!r} contains characters "
                "that PSI/J cannot quote (spaces, quotes, ...); set JUPYTER_STAX_STORE to a path "
                "without them"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if Path(transport.aux_dir) != self.state_dir:
            transport.make_dirs([transport.aux_dir])
        self._executor = self._make_executor()
        #: function tasks handed to the warm task worker without a job (``local`` only)
        self._direct: Any = None
        if self.scheduler == "local" and not cluster.remote:
            from .taskdirect import DirectTasks

            self._direct = DirectTasks(self._direct_update)

    # ------------------------------------------------------------------ setup
    def _make_executor(self) -> Any:
        import psij
        from psij.executors.batch.batch_scheduler_executor import BatchSchedulerExecutor

        psij_compat.install_atomic_launcher_deploy()
        name = self.scheduler
        if name == "local":  # PSI/J's executor, with our one-process launcher
            from . import local_launch  # imports PSI/J

            local_launch.register()
            self._launcher = local_launch.NAME
            return psij.JobExecutor.get_instance(
                "local", config=psij.JobExecutorConfig(work_directory=self.state_dir)
            )
        classes = _executor_classes()
        cls = classes.get(name)
        if cls is None:
            base = psij_compat.plugin_class(name)
            cls = type(f"Stax{base.__name__}", (classes["_guarded"], base), {"_NAME_": name})
        config_cls = _config_class(cls)
        interval = self.cluster.effective_poll_interval
        k = self.knowledge
        config = config_cls(
            work_directory=self.state_dir,
            queue_polling_interval=interval,
            initial_queue_polling_delay=min(interval, 0.5),
            queue_polling_error_threshold=10**9,
            **(k.executor_settings(self.cluster) if k and k.executor_settings else {}),
        )
        ex = cls(config=config)
        assert isinstance(ex, BatchSchedulerExecutor)
        ex.health = self.health  # type: ignore[attr-defined]
        ex.transport = self.transport  # type: ignore[attr-defined]
        return ex

    # ------------------------------------------------------------------ paths
    def safe_dir(
        self, req: JobRequest, links: list[tuple[ClusterPath, ClusterPath]] | None = None
    ) -> Path:
        """A shell-safe path to the step directory (the directory itself, or a symlink to it:
        made now, or noted in ``links`` for a batch to make)."""
        d = req.step_dir
        if shell_safe(str(d)):
            return d
        link = self.links_dir / req.execution_id / req.step
        if links is None:
            self.transport.symlink(link, d)
        else:
            links.append((link, d))
        return link

    # ------------------------------------------------------------------ jobs
    def _direct_update(
        self, native: str, key: JobKey, state: str, code: int | None, message: str | None
    ) -> None:
        self.on_update(JobUpdate(key, state, code, message, time.time()))

    def _job(self, key: JobKey, spec: Any = None) -> Any:
        import psij

        job = psij.Job(spec) if spec is not None else psij.Job()

        def cb(job: Any, status: Any) -> None:
            name = _PSIJ_STATES.get(status.state.name)
            if name is None:
                return
            t = status.time if isinstance(status.time, float) else time.time()
            self.on_update(JobUpdate(key, name, status.exit_code, status.message, t))

        job.set_job_status_callback(cb)
        with self._lock:
            self._jobs[key] = job
        return job

    @property
    def batch_limit(self) -> int:
        """How many jobs :meth:`submit_many` submits with one transport call (1: one by one)."""
        if self.scheduler == "local":
            return 1
        return max(1, self.transport.batch_limit)

    def submit(self, key: JobKey, req: JobRequest) -> str:
        """Submit one attempt; returns the native id. Blocking: call it on a worker thread.

        A successful return guarantees that the scheduler accepted the job and that the native
        id is known. Raises :class:`SubmitError` (``transient`` when worth retrying: the
        scheduler or the cluster did not answer).
        """
        if req.job_name in self._unsure:
            found = self._lost_submission(key, req)
            if found is not None:
                return found
        if self._direct is not None and req.task_env is not None:
            from .taskdirect import WorkerLost

            try:
                native = self._direct.submit(key, req, req.task_env)
            except WorkerLost as e:
                raise SubmitError(str(e), transient=False) from None
            if native is not None:
                return str(native)
        return self._run_submit(key, req, self._new_job(key, req))

    def submit_many(
        self, items: Sequence[tuple[JobKey, JobRequest]]
    ) -> list[str | Exception]:
        """Submit many attempts: for each, its native id or its exception (a SubmitError, as
        :meth:`submit` raises them; one job's failure is that job's alone). Blocking.

        With a transport that batches (:attr:`batch_limit` > 1): the jobs whose earlier answer
        was lost are looked for first, in one command; then every job's submit script is
        rendered by PSI/J (:func:`.psij_compat.recording`), the scripts are written and the
        submit commands run in ONE :meth:`.transport.Transport.run_many`, and PSI/J takes each
        answer (:func:`.psij_compat.replaying`). A job whose answer did not come back is
        remembered as unsure, as :meth:`submit` does: looked for by name before it is
        submitted again."""
        if self.batch_limit <= 1 or not items:
            return [_outcome(self.submit, key, req) for key, req in items]
        results: dict[int, str | Exception] = dict(self._found_lost(items))
        recorded: list[tuple[int, Any, list[str], psij_compat.Recording]] = []
        links: list[tuple[ClusterPath, ClusterPath]] = []
        for i, (key, req) in enumerate(items):
            if i in results:
                continue
            try:
                job = self._new_job(key, req, links)
                with psij_compat.recording() as rec:
                    self._run_submit(key, req, job)
                results[i] = SubmitError("PSI/J ran no submit command", transient=False)
            except psij_compat.Recorded as r:
                job.executor = None  # a public field PSI/J's submit sets: it runs again on it
                recorded.append((i, job, r.argv, rec))
            except Exception as e:  # SubmitError, or a bug: this job's alone
                with self._lock:
                    self._jobs.pop(key, None)
                results[i] = e
        if recorded:
            files: dict[ClusterPath, FileSpec] = {
                p: f for *_, rec in recorded for p, f in rec.files.items()
            }
            answers: list[CommandResult | TransportError]
            try:
                answers = self.transport.run_many(
                    [argv for _, _, argv, _ in recorded], files=files, links=links,
                    timeout=SUBMIT_TIMEOUT,
                )
            except TransportError as e:  # nothing came back: each answer is lost
                answers = [e] * len(recorded)
            except StaxError as e:  # the files were not written: nothing ran
                for i, _, _, _ in recorded:
                    with self._lock:
                        self._jobs.pop(items[i][0], None)
                    results[i] = SubmitError(f"{self.cluster.name}: {e}", transient=False)
                answers = []
            for (i, job, _, _), answer in zip(recorded, answers, strict=False):
                key, req = items[i]
                with psij_compat.replaying(answer):
                    results[i] = _outcome(self._run_submit, key, req, job)
        return [results[i] for i in range(len(items))]

    def _found_lost(
        self, items: Sequence[tuple[JobKey, JobRequest]]
    ) -> dict[int, str | SubmitError]:
        """The jobs of submissions whose answer was lost (:attr:`_unsure`), looked for by name
        in ONE command; {index: native id (watched again), or the SubmitError that says the
        scheduler cannot tell yet}. A job not found is submitted (absent from the result)."""
        k = self.knowledge
        lost = [i for i, (_, req) in enumerate(items) if req.job_name in self._unsure]
        if not lost:
            return {}
        if k is None or k.find_by_name_command is None or k.parse_job_ids is None:
            for i in lost:
                self._unsure.discard(items[i][1].job_name)
            return {}
        commands = [k.find_by_name_command(items[i][1].job_name) for i in lost]
        out: dict[int, str | SubmitError] = {}
        try:
            answers = run_batch(self.transport, commands, SUBMIT_TIMEOUT)
        except TransportError as e:
            for i in lost:
                out[i] = SubmitError(
                    f"{self.scheduler}'s job query failed while recovering "
                    f"{items[i][1].job_name}: {e} (before submitting it again)", transient=True,
                )
            return out
        for i, res in zip(lost, answers, strict=True):
            key, req = items[i]
            if res.returncode != 0:
                msg = " ".join(res.message.split()) or "no message"
                out[i] = SubmitError(
                    f"{self.scheduler}'s job query failed while recovering {req.job_name} "
                    f"(exit {res.returncode}): {msg} (before submitting it again)", transient=True,
                )
                continue
            self._unsure.discard(req.job_name)
            native = k.parse_job_ids(res.stdout, req.job_name)
            if native is not None:
                try:
                    self.attach(key, native)
                except JobGone:
                    continue  # submit it
                out[i] = native
        return out

    def _new_job(
        self, key: JobKey, req: JobRequest,
        links: list[tuple[ClusterPath, ClusterPath]] | None = None,
    ) -> Any:
        """The PSI/J job of an attempt, watched under ``key`` (``links``: the shell-safe
        symbolic links it needs are noted there instead of made, see :meth:`safe_dir`)."""
        import psij

        d = self.safe_dir(req, links)
        attrs: dict[str, object] = dict(self.cluster.custom_attributes)
        attrs.update(req.custom_attributes)  # the step's own (e.g. shifter's slurm.image)
        if self.knowledge is not None:
            attrs.update(self.knowledge.submit_attributes(req.job_name, req.after_native_ids))
        elif req.after_native_ids:
            raise SubmitError(
                f"scheduler-native dependencies are implemented for Slurm and Grid Engine only, "
                f"not {self.scheduler}",
                transient=False,
            )
        asked = (req.nodes, req.ntasks, req.cpus_per_task, req.gpus_per_task, req.memory_bytes)
        resources = (
            psij.ResourceSpecV1(
                node_count=req.nodes,
                process_count=req.ntasks,
                cpu_cores_per_process=req.cpus_per_task,
                gpu_cores_per_process=req.gpus_per_task,
                memory=req.memory_bytes,
            )
            if any(v is not None for v in asked)
            else None
        )
        spec = psij.JobSpec(
            executable="/bin/bash",
            arguments=[str(d / req.job_script.name)],
            directory=d,
            name=req.job_name,
            inherit_environment=True,
            stdout_path=d / req.stdout.name,
            stderr_path=d / req.stderr.name,
            resources=resources,
            attributes=psij.JobAttributes(
                duration=timedelta(seconds=req.walltime_seconds),
                queue_name=req.queue,
                account=req.account,
                custom_attributes=attrs or None,
            ),
            launcher=self._launcher,
        )
        return self._job(key, spec)

    def _run_submit(self, key: JobKey, req: JobRequest, job: Any) -> str:
        """PSI/J's submission of ``job``; its native id, or SubmitError."""
        import psij

        try:
            self._executor.submit(job)
        except psij.SubmitException as e:
            with self._lock:
                self._jobs.pop(key, None)
            msg = " ".join(str(e.message if hasattr(e, "message") else e).split())
            if "configuration source" in msg:
                msg += " (Slurm's commands cannot find slurm.conf: export SLURM_CONF)"
            if TRANSIENT_MARK in msg and req.attempt == 1:  # the answer, not the job, was lost?
                self._unsure.add(req.job_name)
            raise SubmitError(
                f"{self.scheduler} refused the job: {msg}", transient=is_transient(msg)
            ) from None
        except psij.InvalidJobException as e:
            with self._lock:
                self._jobs.pop(key, None)
            raise SubmitError(f"PSI/J rejected the job: {e}", transient=False) from None
        except TransportError as e:  # writing the submit script to the cluster
            with self._lock:
                self._jobs.pop(key, None)
            raise SubmitError(f"{self.cluster.name}: {e}", transient=True) from None
        native = job.native_id
        if native is None:
            raise SubmitError("the scheduler returned no job id", transient=False)
        return str(native)

    def _lost_submission(self, key: JobKey, req: JobRequest) -> str | None:
        """The job of a submission whose answer was lost, found by its name and watched; None
        when the scheduler has no such job (then it is submitted). Raises a transient
        SubmitError while the scheduler cannot say: never a second job on a guess."""
        try:
            native = self.find_by_name(req.job_name)
        except SchedulerUnavailable as e:
            raise SubmitError(f"{e} (before submitting it again)", transient=True) from None
        self._unsure.discard(req.job_name)
        if native is None:
            return None
        self.attach(key, native)
        return native

    def attach(self, key: JobKey, native_id: str) -> None:
        """Watch a job submitted earlier (by this or another process). Blocking."""
        if self._direct is not None and _is_direct(native_id):
            try:
                self._direct.attach(key, native_id)
            except ValueError:
                raise JobGone(f"job {native_id} is not a task of a worker") from None
            return
        job = self._job(key)
        try:
            self._executor.attach(job, native_id)
        except Exception as e:  # local: psutil.NoSuchProcess; others: bad id
            with self._lock:
                self._jobs.pop(key, None)
            raise JobGone(f"job {native_id} is gone: {type(e).__name__}") from None

    def cancel(self, key: JobKey, native_id: str) -> None:
        """Cancel a job. Blocking. Raises SchedulerUnavailable when the scheduler did not answer."""
        import psij

        if self._direct is not None and _is_direct(native_id):
            with contextlib.suppress(ValueError):
                self._direct.cancel(native_id)
            return
        with self._lock:
            job = self._jobs.get(key)
        try:
            if self.scheduler == "local" and (job is None or job.native_id is None):
                # an attached (adopted) process: PSI/J's cancel() sets a kill flag its reaper
                # retries every 0.1 s; once another parent reaped the process, that raises and
                # kills the reaper thread, freezing every local job of this process. Kill the
                # process tree ourselves; the reaper then sees it end.
                _kill_tree(int(native_id))
            elif job is not None and job.native_id is not None:
                self._executor.cancel(job)
            else:
                job = self._job(key)
                self._executor.attach(job, native_id)
                self._executor.cancel(job)
        except psij.SubmitException as e:
            msg = str(e)
            if is_transient(msg):
                raise SchedulerUnavailable(f"{self.scheduler} did not answer: {msg}") from None
            raise StaxError(f"cancel of job {native_id} failed: {msg}") from None
        except ProcessLookupError:
            pass

    def find_by_name(self, job_name: str) -> str | None:
        """Native id of a queued/running job of ours with this name (recovery of an interrupted
        submission), or None. Schedulers without such a query return None."""
        k = self.knowledge
        if k is None or k.find_by_name_command is None or k.parse_job_ids is None:
            return None
        try:
            res = self.transport.run(k.find_by_name_command(job_name), timeout=60)
        except TransportError as e:
            raise SchedulerUnavailable(
                f"{self.scheduler}'s job query failed while recovering {job_name}: {e}"
            ) from None
        if res.returncode != 0:
            msg = " ".join(res.message.split()) or "no message"
            raise SchedulerUnavailable(
                f"{self.scheduler}'s job query failed while recovering {job_name} "
                f"(exit {res.returncode}): {msg}"
            )
        return k.parse_job_ids(res.stdout, job_name)

    def forget(self, key: JobKey, native_id: str | None) -> None:
        """Drop a finished job and PSI/J's leftover files of it."""
        with self._lock:
            job = self._jobs.pop(key, None)
        if self._direct is not None:
            self._direct.forget(key)
        if native_id and self.scheduler != "local":
            wd = Path(getattr(self._executor, "work_directory", self.state_dir))
            aux = Path(self.transport.aux_dir)
            files = [wd / f"{native_id}{suffix}" for suffix in (".out", ".ec", ".nodefile")]
            if aux != wd:  # PSI/J's files here; the job's and the submit script on the cluster
                if job is not None:
                    files.append(wd / f"{job.id}.job")  # PSI/J's local copy of the submit script
                for f in files:
                    with contextlib.suppress(OSError):
                        f.unlink()
                files = [aux / f.name for f in files]
            self.transport.remove_later(files)  # a remote cluster: with its next script

    def state(self, key: JobKey) -> str | None:
        """What PSI/J last said of a job submitted or attached here (queued, running, or a
        final state); None when it said nothing yet or the job is not known here."""
        with self._lock:
            job = self._jobs.get(key)
        return None if job is None else _PSIJ_STATES.get(job.status.state.name)

    def warning(self) -> str | None:
        return self.health.warning(self.scheduler)

    def blocked(self, native_id: str) -> str | None:
        """Why the scheduler will not start this queued job as it stands, or None."""
        return self.health.blocked_reason(native_id)

    def waiting_elements(self, native_id: str) -> set[int] | None:
        """The elements of job array ``native_id`` that the last status query showed still
        waiting (empty: none, or the array is gone); None when the scheduler does not say
        (only Slurm's status lists elements) or has not answered yet."""
        return self.health.waiting_elements(native_id)

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        with self._lock:
            self._jobs.clear()
        psij_compat.stop_polling(self._executor)


def _is_direct(native_id: str) -> bool:
    from .taskdirect import is_direct

    return is_direct(native_id)


def _outcome(fn: Callable[..., str], *args: Any) -> str | Exception:
    """``fn(*args)``, or the exception it raised (one job's failure is that job's alone)."""
    try:
        return fn(*args)
    except Exception as e:
        return e


def _kill_tree(pid: int) -> None:
    """Kill a local job's process tree with no survivor.

    Killing the children first and their parent last let the parent (a sweep's runner with a
    free slot, a step's loop) start a new child between the two; that child, orphaned, kept
    running after the cancel (seen in CI). So the tree is frozen first: SIGSTOP from the root
    down, again until a pass finds no process it has not stopped (one that was forking when
    stopped shows its new child in the next pass), then SIGKILL to all of them. A process that
    left the tree before it was seen (reparented to init) is out of reach without cgroups."""
    import signal

    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    seen: dict[int, psutil.Process] = {}
    for _ in range(1000):  # a fork bomb must not hold the engine forever
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = list(seen.values())
            break
        new = [p for p in procs if p.pid not in seen]
        if not new:
            break
        for p in new:
            seen[p.pid] = p
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGSTOP)  # psutil checks the pid was not reused
    for p in seen.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _config_class(cls: Any) -> Any:
    import inspect

    from psij.executors.batch.batch_scheduler_executor import BatchSchedulerExecutorConfig

    own = getattr(cls, "stax_config_class", None)  # ours, with settings from the cluster
    if own is not None:
        return own
    sig = inspect.signature(cls.__init__)
    ann = sig.parameters.get("config")
    if ann is not None and isinstance(ann.annotation, type):
        return ann.annotation
    return BatchSchedulerExecutorConfig
