"""Rendering a step into the two files that run it.

``stax.step.sh``  the user's script with placeholders replaced by quoted references to
                  ``STAX_PARAM_*`` variables (see :mod:`.params`);
``stax.job.sh``   the wrapper the scheduler runs: it enters the step directory, records its start
                  (``stax.start``), exports parameters and environment, runs the step (through the
                  launcher for multi-task steps) and records the exit code (``stax.exit``).

The exit record is written by the step itself, so the engine never depends on PSI/J's exit-code
file (deleted on first read) or on the scheduler's memory of the job. Records carry the attempt
number, so a record left by an earlier attempt is never taken for the current one.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .containers import ContainerRun, ContainerRuntime, step_command
from .functask import TASK_MARK, render_task_step
from .images import Bind, ResolvedImage, parse_bind
from .models import Cluster, ParamValue, Step
from .params import PARAM_ENV_PREFIX, export_lines, render_script
from .pystep import PARAMS_JSON_ENV, render_python_step
from .units import parse_walltime

STEP_SCRIPT = "stax.step.sh"
JOB_SCRIPT = "stax.job.sh"
STDOUT = "stax.out"
STDERR = "stax.err"
START_RECORD = "stax.start"
EXIT_RECORD = "stax.exit"
#: files of one attempt; an earlier attempt's are renamed to ``<name>.<attempt>``
ATTEMPT_FILES = (STDOUT, STDERR, START_RECORD, EXIT_RECORD)


@dataclass(frozen=True)
class JobRequest:
    """Everything a scheduler backend needs to submit one attempt of one step."""

    execution_id: str
    step: str
    attempt: int
    job_name: str
    step_dir: Path
    job_script: Path
    stdout: Path
    stderr: Path
    walltime_seconds: int
    nodes: int | None = None
    ntasks: int | None = None
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    memory_bytes: int | None = None
    queue: str | None = None
    account: str | None = None
    custom_attributes: dict[str, str] = field(default_factory=dict)
    after_native_ids: tuple[str, ...] = ()
    """scheduler-native dependencies (detached mode): start only after these jobs succeeded"""
    task_env: Mapping[str, str] | None = None
    """a function task the engine may hand to the warm task worker itself: what its job
    script would export (see :func:`direct_task_env`); None: a job"""


#: variables the job script exports for every step (passed into containers by name)
STAX_ENV = (
    "STAX_EXECUTION",
    "STAX_STEP",
    "STAX_ATTEMPT",
    "STAX_CLUSTER",
    "STAX_STEP_DIR",
    "STAX_EXECUTION_DIR",
)


@dataclass(frozen=True)
class ContainerPlan:
    """How one step runs in its image: the runtime, the resolved image, and what every
    container of the step gets (binds, working directory, environment names, GPU kind)."""

    runtime: ContainerRuntime
    image: ResolvedImage
    binds: tuple[Bind, ...]
    workdir: str
    env: tuple[str, ...]
    gpu: str | None = None
    flags: tuple[str, ...] = ()
    host_mpi: bool = False
    executable: str | None = None

    def run(self, command: list[str], *, hybrid: bool) -> ContainerRun:
        return ContainerRun(
            image=self.image.reference,
            command=command,
            binds=self.binds,
            workdir=self.workdir,
            env=self.env,
            gpu=self.gpu,
            hybrid=hybrid,
            host_mpi=self.host_mpi,
            flags=self.flags,
            executable=self.executable,
        )


def container_plan(
    runtime: ContainerRuntime,
    image: ResolvedImage,
    *,
    step: Step,
    cluster: Cluster,
    params: Mapping[str, ParamValue],
    step_dir: Path,
    work_dir: Path,
) -> ContainerPlan:
    """The step directory and the work directory are always bound (at the same paths), then
    the cluster's own binds; the step starts in its directory."""
    binds: list[Bind] = []
    for d in (work_dir, step_dir):
        b = Bind(str(d), str(d))
        if b not in binds:
            binds.append(b)
    binds += [parse_bind(b) for b in cluster.container_options.binds]
    env = list(STAX_ENV) + sorted({**cluster.env, **step.env})
    env += sorted(PARAM_ENV_PREFIX + k for k in params)
    if step.language == "python" or step.notebook is not None:
        env.append(PARAMS_JSON_ENV)
    gpu = image.stax_labels.gpu
    return ContainerPlan(
        runtime=runtime,
        image=image,
        binds=tuple(binds),
        workdir=str(step_dir),
        env=tuple(dict.fromkeys(env)),
        gpu=gpu if gpu and gpu != "none" else None,
        flags=tuple(cluster.container_options.flags),
        host_mpi=cluster.container_options.host_mpi,
        executable=cluster.container_options.command,
    )


def job_name(execution_id: str, step: str) -> str:
    return f"stax-{execution_id}-{step}"


def effective_launcher(step: Step, cluster: Cluster) -> str:
    return step.launcher or cluster.launcher


def run_line(
    step: Step, cluster: Cluster, container: ContainerPlan | None = None, *, own: bool = False
) -> str:
    """The line of the job script that runs the step's script. In a container with a
    multi-task launcher, the launcher stays on the host and starts one container per rank.
    ``own``: the job script runs in a process of its own that ends with the step (a sweep
    instance's, see :func:`render_job_script`): a single-task step's script is sourced in
    it, without a subshell."""
    launcher = effective_launcher(step, cluster)
    r = step.resources
    if container is not None and step.software is None:
        inner = container.runtime.render(
            container.run(step_command(STEP_SCRIPT), hybrid=launcher != "single")
        )
        if launcher == "srun":
            return f"srun {inner}"
        if launcher == "mpirun":
            return f"mpirun -n {r.ntasks or 1} {inner}"
        return inner
    if launcher == "srun":
        return f"srun bash ./{STEP_SCRIPT}"
    if launcher == "mpirun":
        n = r.ntasks or 1
        return f"mpirun -n {n} bash ./{STEP_SCRIPT}"
    if own:
        return f". ./{STEP_SCRIPT}"
    # single: sourced in a subshell: no new bash process, `exit N` ends only the step
    return f"( . ./{STEP_SCRIPT} )"


def render_step_script(step: Step, container: ContainerPlan | None = None) -> str:
    """The step's own script: its ``run`` (bash, or Python run by python3), or what its
    software description renders to (with the description's container wrapped around each
    program)."""
    if step.notebook is not None:  # run by papermill (see core/notebooks.py)
        from .notebooks import render_notebook_step

        return render_notebook_step(step.notebook)
    if step.language == "python":
        if step.run.startswith(TASK_MARK):  # a function task: its own fast start
            return render_task_step(step.run, where=f"step {step.name!r}")
        return render_python_step(step.run, where=f"step {step.name!r}")
    text = step.run
    if step.software is not None:
        from . import software as sw

        desc = sw.load_software(step.software, where=f"step {step.name!r}")
        if container is not None:
            text = sw.render(
                desc,
                runtime=container.runtime,
                binds=container.binds,
                workdir=container.workdir,
                env=container.env,
            )
        else:
            text = sw.render(desc)
    body = render_script(text, where=f"step {step.name!r}")
    if not body.endswith("\n"):
        body += "\n"
    return body


def render_job_script(
    *,
    execution_id: str,
    step: Step,
    attempt: int,
    cluster: Cluster,
    params: Mapping[str, ParamValue],
    step_dir: Path | str,
    execution_dir: Path | str,
    require_completed: Sequence[Path | tuple[Path, int]] = (),
    container: ContainerPlan | None = None,
    exit_record: bool = True,
) -> str:
    """The wrapper script. ``require_completed``: step directories whose exit records must say
    0 before this step runs (detached mode: the scheduler only orders the jobs, see below); a
    ``(directory, n)`` pair is a sweep's: the records of its instances ``0 .. n-1`` (in
    ``<directory>/<i>/``) must all say 0. ``exit_record=False``: a sweep instance's, sourced
    by the sweep's runner in a process of the instance's own, which writes the exit record
    from that process's exit status (see :func:`.sweep.render_runner`); the step's script is
    sourced in that process (``exit`` or ``exec`` in it end the instance, as they would end
    a step's subshell)."""
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# jupyter_stax: execution {execution_id}, step {step.name}, attempt {attempt}, "
        f"cluster {cluster.name}.",
        f"# Generated; the step's own script is {STEP_SCRIPT}. Records: {START_RECORD}, "
        + (f"{EXIT_RECORD}." if exit_record else f"{EXIT_RECORD} (by the sweep's runner)."),
        f"cd -P -- {q(str(step_dir))} || {{ echo 'jupyter_stax: cannot enter step directory' "
        f"{q(str(step_dir))} >&2; exit 126; }}",
        f"printf '%s %s %s %s\\n' {attempt} \"${{SLURM_JOB_ID:-${{PBS_JOBID:-"
        f'${{FLUX_JOB_ID:-$$}}}}}}" "${{HOSTNAME:-?}}" "$EPOCHREALTIME" > {START_RECORD}',
        f"export STAX_EXECUTION={q(execution_id)} STAX_STEP={q(step.name)} "
        f"STAX_ATTEMPT={attempt} STAX_CLUSTER={q(cluster.name)}",
        f"export STAX_STEP_DIR={q(str(step_dir))} STAX_EXECUTION_DIR={q(str(execution_dir))}",
    ]
    env = {**cluster.env, **step.env}
    lines += [f"export {k}={q(v)}" for k, v in env.items()]
    exports = export_lines(params).rstrip("\n")
    if exports:
        lines.append(exports)
    if step.language == "python" or step.notebook is not None:  # typed values (core/pystep.py)
        lines.append(f"export {PARAMS_JSON_ENV}={q(json.dumps(dict(params), sort_keys=True))}")
    if require_completed:
        lines += upstream_check(
            require_completed,
            f"printf '%s skipped %s\\n' {attempt} \"$EPOCHREALTIME\" > {EXIT_RECORD}; exit 0",
        )
    if cluster.setup:
        lines += ["# cluster setup", cluster.setup.rstrip("\n")]
    if container is not None:
        img = container.image
        about = (
            f"StaX image {img.name} ({img.reference}"
            + (f", {img.digest}" if img.digest else "")
            + f") via {container.runtime.name}"
        )
        lines.append("# " + " ".join(about.split()))
        if step.software is None:
            lines += container.runtime.preamble(container.run([], hybrid=False))
    if not exit_record:
        lines += [run_line(step, cluster, container, own=True), ""]
        return "\n".join(lines)
    lines += [
        run_line(step, cluster, container),
        "rc=$?",
        f'printf \'%s %s %s\\n\' {attempt} "$rc" "$EPOCHREALTIME" > {EXIT_RECORD}',
        'exit "$rc"',
        "",
    ]
    return "\n".join(lines)


def direct_task_env(
    *,
    execution_id: str,
    step: Step,
    attempt: int,
    cluster: Cluster,
    params: Mapping[str, ParamValue],
    step_dir: Path | str,
    execution_dir: Path | str,
    require_completed: Sequence[Path | tuple[Path, int]] = (),
    container: ContainerPlan | None = None,
) -> dict[str, str] | None:
    """What the job script of a function task exports (over the engine's own environment,
    which a ``local`` job inherits), when the engine may hand the task to the warm task
    worker itself (``jupyter_stax/engine/taskdirect.py``): a function task on a ``local``
    cluster (not remote), without image, cluster setup, upstream checks, sweep or launcher,
    whose environment allows the worker (``STAX_TASK_WORKER=1``). None: it runs as a job."""
    from .taskworker import WORKER_ENV

    env = {**cluster.env, **step.env}
    if (
        cluster.scheduler != "local" or cluster.remote or container is not None
        or cluster.setup or require_completed or step.sweep is not None
        or step.notebook is not None or step.software is not None
        or step.language != "python" or not step.run.startswith(TASK_MARK)
        or effective_launcher(step, cluster) != "single" or env.get(WORKER_ENV) != "1"
    ):
        return None
    from .params import param_env

    out = {
        "STAX_EXECUTION": execution_id, "STAX_STEP": step.name, "STAX_ATTEMPT": str(attempt),
        "STAX_CLUSTER": cluster.name, "STAX_STEP_DIR": str(step_dir),
        "STAX_EXECUTION_DIR": str(execution_dir), **env, **param_env(params),
        PARAMS_JSON_ENV: json.dumps(dict(params), sort_keys=True),
        "PWD": os.path.realpath(step_dir),  # the job script's `cd -P`
    }
    return out


def walltime_seconds(step: Step, cluster: Cluster) -> int:
    return step.resources.time_seconds or parse_walltime(cluster.walltime)


def upstream_check(required: Sequence[Path | tuple[Path, int]], skip: str) -> list[str]:
    """Bash lines that run ``skip`` (which must exit) unless every upstream step completed:
    its exit record says 0, or for a ``(directory, n)`` sweep every instance's does.

    Scheduler-native dependencies only order the jobs (afterany): PSI/J's Slurm script always
    exits 0, so afterok cannot see a failure. The step checks its upstream steps' own exit
    records and records itself as skipped when one did not complete."""
    q = shlex.quote
    lines: list[str] = []
    steps = [d for d in required if not isinstance(d, tuple)]
    if steps:
        lines += [
            f"for _d in {' '.join(q(str(d)) for d in steps)}; do",
            '  _rc=$(cut -d" " -f2 "$_d/' + EXIT_RECORD + '" 2>/dev/null) || _rc=none',
            '  if [ "$_rc" != 0 ]; then',
            '    echo "jupyter_stax: not run: upstream step ${_d##*/} did not complete'
            ' (exit record: ${_rc:-none})" >&2',
            f"    {skip}",
            "  fi",
            "done",
        ]
    for d, n in (r for r in required if isinstance(r, tuple)):
        # a sweep: every instance's exit record, read with bash's read (no process per
        # instance: 100,000 records in about a second)
        lines += [
            f"_d={q(str(d))} _i=0",
            f"while [ $_i -lt {int(n)} ]; do",
            '  _rc=none; { read -r _ _rc _ < "$_d/$_i/' + EXIT_RECORD + '"; } 2>/dev/null',
            '  if [ "$_rc" != 0 ]; then',
            '    echo "jupyter_stax: not run: instance $_i of upstream sweep ${_d##*/} did'
            ' not complete (exit record: ${_rc:-none})" >&2',
            f"    {skip}",
            "  fi",
            "  _i=$((_i + 1))",
            "done",
        ]
    return lines


@dataclass(frozen=True)
class StartRecord:
    attempt: int
    job_id: str
    host: str
    time: float


@dataclass(frozen=True)
class ExitRecord:
    attempt: int
    exit_code: int | None
    """None when the step did not run (``skipped``: an upstream step did not complete)"""
    time: float

    @property
    def skipped(self) -> bool:
        return self.exit_code is None


def read_start_record(step_dir: Path) -> StartRecord | None:
    return parse_start_record(_read_file(step_dir / START_RECORD))


def read_exit_record(step_dir: Path) -> ExitRecord | None:
    """The step's own exit record, or None when absent or not completely written yet."""
    return parse_exit_record(_read_file(step_dir / EXIT_RECORD))


def parse_start_record(data: bytes | None) -> StartRecord | None:
    """A start record from the bytes of its file (None: absent, partly written or garbled);
    pure, shared by every transport (a remote one reads the bytes over SSH)."""
    parts = _record_parts(data, 4)
    if parts is None:
        return None
    try:
        return StartRecord(int(parts[0]), parts[1], parts[2], _epoch(parts[3]))
    except ValueError:
        return None


def parse_exit_record(data: bytes | None) -> ExitRecord | None:
    """An exit record from the bytes of its file (None: absent, partly written or garbled)."""
    parts = _record_parts(data, 3)
    if parts is None:
        return None
    try:
        code = None if parts[1] == "skipped" else int(parts[1])
        return ExitRecord(int(parts[0]), code, _epoch(parts[2]))
    except ValueError:
        return None


#: how much of a record file is read (records are one short line)
RECORD_MAX_BYTES = 4096


def _read_file(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(RECORD_MAX_BYTES)
    except OSError:
        return None


def _record_parts(data: bytes | None, n: int) -> list[str] | None:
    if data is None or not data.endswith(b"\n"):
        return None  # absent, or being written
    parts = data.decode("utf-8", "replace").split()
    return parts if len(parts) == n else None


def _epoch(text: str) -> float:
    # $EPOCHREALTIME uses the locale's decimal separator
    return float(text.replace(",", "."))
