"""PSI/J executor for Grid Engine (Son of Grid Engine, Univa/Altair Grid Engine): ``qsub``,
``qstat``, ``qdel``, ``qacct``.

Settings are read with ``getattr`` and defaults, so a plain ``BatchSchedulerExecutorConfig``
(what jupyter_stax's backend builds today for executors it does not know) works too: PE ``smp``,
memory complex ``h_vmem``, accounting on. Pass an :class:`SgeExecutorConfig` to change them.

PSI/J loads this module by file path for its registry (see ``psij-descriptors/``), so the class
``psij.JobExecutor.get_instance('sge')`` builds is not the same object as
``jupyter_stax.psij_sge.executor.SgeJobExecutor``; nothing here relies on ``isinstance`` with
its own classes.
"""

import logging
import os
import pwd
import re
import subprocess
import threading
import time
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from psij import (
    InvalidJobException,
    Job,
    JobSpec,
    JobState,
    JobStatus,
    ResourceSpecV1,
    SubmitException,
)
from psij.executors.batch.batch_scheduler_executor import (
    BatchSchedulerExecutor,
    BatchSchedulerExecutorConfig,
    InvalidJobStateError,
    check_status_exit_code,
)
from psij.executors.batch.script_generator import TemplatedScriptGenerator

from jupyter_stax.psij_sge import parse

log = logging.getLogger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: custom attribute prefixes rendered as "#$" directives (``sge.notify`` -> ``#$ -notify``)
ATTRIBUTE_PREFIXES = ("sge", "gridengine")


class SgeExecutorConfig(BatchSchedulerExecutorConfig):
    """Settings of the Grid Engine executor, besides PSI/J's batch settings.

    * ``parallel_environment``: the PE that multi-slot jobs ask for (``-pe NAME SLOTS``); sites
      name theirs (``smp``, ``mpi``, ``orte``, ...), ``qconf -spl`` lists them. Its allocation
      rule decides how slots spread over hosts (``$pe_slots``: all on one host).
    * ``memory_complex``: the complex that carries a job's memory (``-l NAME=``), ``h_vmem`` by
      default; many sites use a consumable such as ``mem_free`` or ``m_mem_free``. Grid Engine
      counts it per slot: the job's memory is divided by its slots.
    * ``use_accounting``: for a job that left ``qstat`` without writing its exit code file
      (killed by ``h_rt``, deleted, ...), read its exit status and failure from ``qacct -j``.
    """

    def __init__(
        self,
        launcher_log_file: Path | None = None,
        work_directory: Path | None = None,
        queue_polling_interval: float = 30,
        initial_queue_polling_delay: float = 2,
        queue_polling_error_threshold: int = 2,
        keep_files: bool = False,
        parallel_environment: str = "smp",
        memory_complex: str = "h_vmem",
        use_accounting: bool = True,
    ) -> None:
        super().__init__(
            launcher_log_file,
            work_directory,
            queue_polling_interval,  # type: ignore[arg-type]
            initial_queue_polling_delay,  # type: ignore[arg-type]
            queue_polling_error_threshold,
            keep_files,
        )
        self.parallel_environment = parallel_environment
        self.memory_complex = memory_complex
        self.use_accounting = use_accounting


class SgeJobExecutor(BatchSchedulerExecutor):
    """A :class:`psij.JobExecutor` for Grid Engine.

    Directives (``#$`` lines): job name (``-N``, made valid for Grid Engine), working directory
    (``-wd``, else ``-cwd``), queue (``-q``), account as project (``-P``), reservation (``-ar``),
    slots = processes x cores per process through ``-pe PE SLOTS`` when more than one, walltime
    ``-l h_rt=``, memory ``-l COMPLEX=`` per slot, ``-V`` when the environment is inherited, and
    custom attributes ``sge.OPTION`` (or ``gridengine.OPTION``) as ``#$ -OPTION VALUE`` (an empty
    value gives the bare option). Values that a ``#$`` line cannot carry are refused with
    :class:`psij.InvalidJobException` before anything is submitted.

    Status: one ``qstat -xml -u USER`` per poll for all jobs; state codes through
    :data:`jupyter_stax.psij_sge.parse.STATES`. An error state (``Eqw``) is FAILED with the reason
    from ``qstat -j`` and the job is deleted, so it can never start later. A job that left qstat
    takes its exit code from the script's exit code file, else (``use_accounting``) from
    ``qacct -j``, else it is COMPLETED (as PSI/J's other batch executors do); a job this executor
    deleted with ``qdel`` that did not write an exit code is CANCELED.
    """

    _NAME_ = "sge"

    def __init__(self, url: str | None = None, config: SgeExecutorConfig | None = None) -> None:
        if config is None:
            config = SgeExecutorConfig()
        super().__init__(url=url, config=config)
        self.generator = TemplatedScriptGenerator(config, Path(__file__).parent / "sge.mustache")
        self._canceled: set[str] = set()
        self._canceled_lock = threading.Lock()

    # ------------------------------------------------------------------ settings
    def _setting(self, name: str, default: Any) -> Any:
        # a plain BatchSchedulerExecutorConfig (or another copy of our config class) works too
        return getattr(self.config, name, default)

    # ------------------------------------------------------------------ submit
    def generate_submit_script(
        self, job: Job, context: dict[str, object], submit_file: IO[str]
    ) -> None:
        try:
            context["sge"] = self._directives(job, context)
            context["env"] = self._environment(job)
        except parse.DirectiveError as e:
            raise InvalidJobException(str(e)) from None
        self.generator.generate_submit_script(job, context, submit_file)

    @staticmethod
    def _spec(job: Job) -> JobSpec:
        assert job.spec is not None  # PSI/J's _check_job ran
        return job.spec

    def _directives(self, job: Job, context: dict[str, object]) -> dict[str, object]:
        spec = self._spec(job)
        q = parse.directive_value
        attrs = spec.attributes
        psij_ctx = context["psij"]
        assert isinstance(psij_ctx, dict)
        output = f"{psij_ctx['script_dir']}/$JOB_ID.out"
        if ":" in output:
            raise parse.DirectiveError(
                f"the executor's work directory {psij_ctx['script_dir']!r} contains ':', which "
                "qsub -o reads as a host name"
            )
        d: dict[str, object] = {
            "name": q(parse.job_name(spec.name or "psij"), "job name"),
            "directory": q(spec.directory.absolute(), "working directory")
            if spec.directory
            else None,
            "output": q(output, "work directory"),
        }
        if attrs is not None:
            d["queue"] = q(attrs.queue_name, "queue") if attrs.queue_name else None
            d["project"] = q(attrs.account, "account (project)") if attrs.account else None
            d["reservation"] = (
                q(attrs.reservation_id, "reservation") if attrs.reservation_id else None
            )
            if attrs.duration is not None:
                d["h_rt"] = parse.h_rt(attrs.duration.total_seconds())
            d["custom"] = self._custom(attrs.custom_attributes or {})
        slots = 1
        res = spec.resources
        if isinstance(res, ResourceSpecV1):
            slots = res.computed_process_count * (res.cpu_cores_per_process or 1)
            if res.memory:
                complex_ = parse.directive_option(self._setting("memory_complex", "h_vmem"))
                d["memory"] = {
                    "complex": complex_,
                    "value": parse.memory_per_slot(res.memory, slots),
                }
        if slots > 1:
            pe = q(self._setting("parallel_environment", "smp"), "parallel environment")
            d["pe"] = {"name": pe, "slots": slots}
        return d

    def _custom(self, custom: dict[str, object]) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for key, value in custom.items():
            prefix, _, option = key.partition(".")
            if prefix.lower() not in ATTRIBUTE_PREFIXES or not option:
                continue  # another scheduler's attribute (slurm.*, pbs.*)
            word = None
            if value is not None and value is not True and value != "":
                word = parse.directive_value(value, f"custom attribute {key!r}")
            out.append({"option": parse.directive_option(option), "value": word})
        return out

    def _environment(self, job: Job) -> list[dict[str, str]]:
        env = []
        for name, value in (self._spec(job).environment or {}).items():
            if not _ENV_NAME.fullmatch(name):
                raise parse.DirectiveError(f"environment variable name {name!r} is not valid")
            env.append({"name": name, "value": value})
        return env

    def get_submit_command(self, job: Job, submit_file_path: Path) -> list[str]:
        return ["qsub", "-terse", str(submit_file_path.absolute())]

    def job_id_from_submit_output(self, out: str) -> str:
        return parse.job_id_from_qsub(out)

    def _format_duration(self, d: timedelta) -> str:
        return parse.h_rt(d.total_seconds())

    # ------------------------------------------------------------------ cancel
    def get_cancel_command(self, native_id: str) -> list[str]:
        return ["qdel", native_id]

    def process_cancel_command_output(self, exit_code: int, out: str) -> None:
        if "does not exist" in out:
            raise InvalidJobStateError(out)  # it has ended anyway
        raise SubmitException(f"Failed to cancel job: {out}")

    def cancel(self, job: Job) -> None:
        if job.native_id is None:
            raise SubmitException("Job does not have a native ID.")
        if job.status.state.final:
            return
        try:
            self._run_command(self.get_cancel_command(job.native_id))
        except subprocess.CalledProcessError as ex:
            try:
                self.process_cancel_command_output(ex.returncode, ex.output)
            except InvalidJobStateError:
                pass
            return
        with self._canceled_lock:
            self._canceled.add(job.native_id)

    # ------------------------------------------------------------------ status
    def _user(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name

    def get_status_command(self, native_ids: Collection[str]) -> list[str]:
        return ["qstat", "-xml", "-u", self._user()]

    def parse_status_output(self, exit_code: int, out: str) -> dict[str, JobStatus]:
        check_status_exit_code("qstat", exit_code, out)
        codes = parse.parse_qstat_xml(out)
        failed = [n for n, code in codes.items() if parse.psij_state(code) == "FAILED"]
        reasons = self._error_reasons(failed) if failed else {}
        r: dict[str, JobStatus] = {}
        for native_id, code in codes.items():
            state = getattr(JobState, parse.psij_state(code))
            msg = None
            meta: dict[str, object] = {"sge_state": code}
            if state == JobState.FAILED:
                why = reasons.get(native_id, "no reason given by qstat -j")
                msg = f"Grid Engine put the job into error state {code}: {why}"
            r[native_id] = JobStatus(state, message=msg, metadata=meta)
        return r

    def _error_reasons(self, native_ids: list[str]) -> dict[str, str]:
        try:
            out = self._run_command(["qstat", "-j", ",".join(native_ids)])
        except (subprocess.CalledProcessError, OSError) as e:
            log.warning("qstat -j %s failed: %s", ",".join(native_ids), e)
            return {}
        return parse.parse_error_reasons(out)

    def get_list_command(self) -> list[str]:
        return ["qstat", "-u", self._user()]

    def parse_list_output(self, out: str) -> list[str]:
        return [line.split()[0] for line in out.splitlines()[2:] if line.split()]

    # ------------------------------------------------------------------ final states
    def _set_job_status(self, job: Job, status: JobStatus) -> None:
        native = job.native_id
        if native and status.state.final and not job.status.state.final:
            ec_file = self.work_directory / f"{native}.ec"
            if status.state == JobState.FAILED and (status.metadata or {}).get("sge_state"):
                # an error state: delete the job so that it can never start after being
                # reported failed (a retry would then run twice)
                try:
                    self._run_command(self.get_cancel_command(native))
                except (subprocess.CalledProcessError, OSError) as e:
                    log.warning("could not delete job %s in error state: %s", native, e)
            elif status.state == JobState.COMPLETED and not ec_file.exists():
                with self._canceled_lock:
                    canceled = native in self._canceled
                if canceled:
                    status = JobStatus(JobState.CANCELED, metadata=status.metadata)
                elif self._setting("use_accounting", True):
                    status = self._from_accounting(native, status)
            if status.state.final:
                with self._canceled_lock:
                    self._canceled.discard(native)
        super()._set_job_status(job, status)

    def _from_accounting(self, native_id: str, status: JobStatus) -> JobStatus:
        """The exit status of a job that left qstat, from ``qacct -j`` (written when the job
        ends; a few tries in case the accounting file lags), or ``status`` unchanged."""
        rec = None
        for attempt in range(3):
            try:
                out = self._run_command(["qacct", "-j", native_id])
            except (subprocess.CalledProcessError, OSError):
                out = ""
            rec = parse.parse_qacct(out)
            if rec is not None:
                break
            time.sleep(0.5 * (attempt + 1))
        if rec is None:
            return status
        if rec.failed == 0 and rec.exit_status == 0:
            return JobStatus(JobState.COMPLETED, exit_code=0, metadata=status.metadata)
        return JobStatus(
            JobState.FAILED,
            exit_code=rec.exit_status,
            message=rec.message,
            metadata=status.metadata,
        )

    def _clean_submit_script(self, job: Job) -> None:
        super()._clean_submit_script(job)
        self._delete_aux_file(job, ".nodefile")
