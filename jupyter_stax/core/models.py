"""The one public model: what the workflow file, REST API, magics, CLI and frontend speak.

Pure pydantic; no Jupyter, PSI/J or database imports here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from .images import ClusterTraits, ContainerOptions, ResolvedImage
from .staging import Fetch, InputSpec, StepFiles, check_input, check_pattern
from .states import ExecutionState, StepState
from .units import parse_memory, parse_walltime

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME_RE = PARAM_NAME_RE
#: a remote cluster's host: a DNS name, an IPv4 address or a ~/.ssh/config alias (nothing a
#: shell or ssh would read as syntax or an option)
HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SSH_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")

#: schedulers = PSI/J executor names that load with psij-python (aliases pbspro/torque do not),
#: and jupyter_stax's own Grid Engine executor (:mod:`jupyter_stax.psij_sge`)
KNOWN_SCHEDULERS = ("local", "slurm", "sge", "pbs", "pbs_classic", "lsf", "cobalt", "flux")
#: other names accepted for a scheduler
SCHEDULER_ALIASES = {
    "pbspro": "pbs",
    "openpbs": "pbs",
    "torque": "pbs_classic",
    "gridengine": "sge",
}
#: Grid Engine defaults of :attr:`Cluster.pe` and :attr:`Cluster.memory_complex`
SGE_DEFAULT_PE = "smp"
SGE_DEFAULT_MEMORY_COMPLEX = "h_vmem"
_SGE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
Launcher = Literal["single", "srun", "mpirun"]
ParamValue = str | int | float | bool | None
OnFailure = Literal["continue", "stop"]
Language = Literal["bash", "python"]


def _check_name(kind: str, value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"{kind} name {value!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (it becomes a directory and a job name)"
        )
    return value


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for k in env:
        if not ENV_NAME_RE.match(k):
            raise ValueError(f"environment variable name {k!r} is not a shell identifier")
    return env


def _check_params(params: dict[str, ParamValue]) -> dict[str, ParamValue]:
    for k in params:
        if not PARAM_NAME_RE.match(k):
            raise ValueError(f"parameter name {k!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return params


class _Model(BaseModel):
    # defer_build: a model's validator is built when it is first used, not at import (a
    # command that uses a few models, e.g. a cached `jupyter stax build`, pays for those only)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class Resources(_Model):
    """What one step asks of the scheduler. Unset fields take the cluster's defaults."""

    nodes: Annotated[int, Field(ge=1)] | None = None
    ntasks: Annotated[int, Field(ge=1)] | None = None
    cpus_per_task: Annotated[int, Field(ge=1)] | None = Field(
        None, validation_alias=AliasChoices("cpus_per_task", "cpus-per-task")
    )
    gpus: Annotated[int, Field(ge=0)] | None = Field(None, description="GPUs per task")
    memory: str | None = Field(
        None,
        validation_alias=AliasChoices("memory", "mem"),
        description="per node, e.g. 4G, 512M (a bare number is MiB)",
    )
    time: str | None = Field(
        None,
        validation_alias=AliasChoices("time", "walltime"),
        description="walltime: MM, MM:SS, HH:MM:SS or D-HH:MM:SS",
    )

    @field_validator("memory", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> Any:
        if v is None:
            return v
        parse_memory(v)
        return str(v)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        if v is None:
            return v
        parse_walltime(v)
        return str(v)

    @property
    def memory_bytes(self) -> int | None:
        return parse_memory(self.memory) if self.memory else None

    @property
    def time_seconds(self) -> int | None:
        return parse_walltime(self.time) if self.time else None


class Step(_Model):
    """A named bash script with ``{{param}}`` placeholders, run as one scheduler job."""

    name: str
    run: str = Field(
        "",
        validation_alias=AliasChoices("run", "script", "command"),
        description="bash script; {{name}} placeholders are replaced by quoted parameter values "
        "(required unless 'software' is given)",
    )
    after: list[str] = Field(default_factory=list, description="steps that must complete first")
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="step-specific parameter bindings (override all others)"
    )
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("env", "environment"),
        description="environment variables exported for the step (values are literal)",
    )
    image: str | None = Field(
        None,
        description="StaX image to run the step in: a family (the best variant for the "
        "step's cluster is chosen), a variant name, or an image reference",
    )
    software: str | dict[str, Any] | None = Field(
        None,
        description="an eFlows4HPC software invocation description (binary, mpi, mpmd_mpi): "
        "a JSON file path or the description itself; it becomes the step's script",
    )
    notebook: str | None = Field(
        None,
        description="a Jupyter notebook (.ipynb, notebook side) run top to bottom by papermill "
        "on the cluster, 'params' injected after its cell tagged 'parameters'; the executed "
        "copy comes back beside it as <name>.<execution id>.ipynb (see "
        "jupyter_stax.core.notebooks)",
    )
    cluster: str | None = Field(None, description="run this step on another cluster")
    launcher: Launcher | None = None
    retries: Annotated[int, Field(ge=0, le=100)] = 0
    language: Language = Field(
        "bash",
        description="bash: run is a bash script; python: run is Python source run by python3 "
        "(placeholders become stax_param('name') calls, and stax_params holds every value)",
    )
    sweep: dict[str, Any] | None = Field(
        None,
        description="run the step once per combination of these values (a grid; zip: true "
        "pairs the lists): {name: [values] | {range: [start, stop]}, zip: bool}; instance i "
        "runs in <step>/<i>/ (see jupyter_stax.core.sweep)",
    )
    max_parallel: Annotated[int, Field(ge=1)] | None = Field(
        None, description="sweep: at most this many instances running at once"
    )
    pack: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="sweep: instances per scheduler job (array element), run in parallel up "
        "to its CPUs; auto: chosen from the instance count so short tasks do not cost a job each",
    )

    expected_seconds: Annotated[float, Field(gt=0)] | None = Field(
        None,
        description="sweep: how long one instance is expected to run, seconds; pack: auto "
        "puts enough instances in a scheduler job for about a minute of work (default 5)",
    )

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep(cls, v: Any) -> Any:
        if v is None:
            return v
        from .sweepspec import normalize

        return normalize(v)

    inputs: list[InputSpec] = Field(
        default_factory=list,
        description="copied into the step directory before its job is submitted: notebook-side "
        "paths, globs or directories (relative to the workflow file or the notebook's "
        "directory), or {from: STEP, path: GLOB} for an upstream step's files",
    )
    outputs: list[str] = Field(
        default_factory=list,
        description="patterns in the step directory (e.g. 'results/*.csv') of the files kept "
        "and fetched back to the notebook side",
    )
    fetch: Fetch = Field(
        "auto", description="auto: outputs come back when the step completes; manual: on request"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name("step", v)

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    _env = field_validator("env")(classmethod(lambda cls, v: _check_env(v)))
    _params = field_validator("params")(classmethod(lambda cls, v: _check_params(v)))

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, v: Any) -> Any:
        return [check_input(i) for i in ([v] if isinstance(v, (str, dict)) else v)]

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, v: Any) -> Any:
        v = [v] if isinstance(v, str) else v
        return [check_pattern(p) if isinstance(p, str) else p for p in v]

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, v: str | None) -> str | None:
        from .notebooks import check_notebook_spec

        return check_notebook_spec(v)  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _run_or_software(self) -> Step:
        for i in self.inputs:  # an input from a step makes it a dependency
            if not isinstance(i, str) and i.step not in self.after:
                self.after.append(i.step)
        if self.notebook is not None:  # notebook steps: see core/notebooks.py
            from .notebooks import notebook_step_problem

            problem = notebook_step_problem(self)
            if problem:
                raise ValueError(problem)
            if self.notebook not in self.inputs:  # staged in like any input
                self.inputs.insert(0, self.notebook)
            return self
        if self.software is None and not self.run.strip():
            raise ValueError(
                "a step needs 'run' (a bash script), 'software' (an eFlows4HPC description) "
                "or 'notebook' (an .ipynb file)"
            )
        if self.software is not None and self.run.strip():
            raise ValueError("give either 'run' or 'software', not both")
        if self.software is not None and self.language != "bash":
            raise ValueError("a 'software' step renders to bash; drop 'language'")
        if self.sweep is None and (
            self.max_parallel is not None or self.pack != "auto" or self.expected_seconds
        ):
            raise ValueError(
                "max_parallel, pack and expected_seconds apply to a sweep; add 'sweep' or drop them"
            )
        both = sorted(set(self.sweep or ()) & set(self.params) - {"zip"})
        if both:
            raise ValueError(
                f"{', '.join(both)} is both in 'params' and 'sweep'; give it in one of them"
            )
        return self


class Workflow(_Model):
    """Steps and default parameters. Validated as a whole by :func:`jupyter_stax.core.dag.check`."""

    name: str = "workflow"
    description: str | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    on_failure: OnFailure = Field(
        "continue",
        description="continue: steps that do not depend on a failed step still run; "
        "stop: no new step starts after a failure (running ones finish)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name("workflow", v)

    _params = field_validator("params")(classmethod(lambda cls, v: _check_params(v)))

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


class Cluster(_Model):
    """A place to run steps: a PSI/J executor plus site defaults."""

    name: str
    scheduler: str = Field(
        "local", description="PSI/J executor name: " + ", ".join(KNOWN_SCHEDULERS)
    )
    queue: str | None = Field(None, validation_alias=AliasChoices("queue", "partition"))
    account: str | None = None
    walltime: str = Field("01:00:00", description="default walltime of a step")
    launcher: Launcher = "single"
    work_dir: str | None = Field(
        None,
        description="where execution directories go (must be visible to compute nodes); on a "
        "remote cluster a path ON THE CLUSTER (default ~/stax-runs there)",
    )
    host: str | None = Field(
        None,
        description="[user@]host or a Host alias of ~/.ssh/config: the cluster is remote, "
        "reached over SSH (no host: the machine of the Jupyter server)",
    )
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="SSH port of a remote cluster (default: ~/.ssh/config, else 22)"
    )
    identity_file: str | None = Field(
        None,
        description="private key for a remote cluster (default: the agent, ~/.ssh/config, "
        "the default keys); an encrypted key is used through ssh-agent",
    )
    ssh: Literal["asyncssh", "openssh"] | None = Field(
        None,
        description="SSH client of a remote cluster: asyncssh (built in, the default) or "
        "openssh (the system ssh with a ControlMaster)",
    )
    known_hosts: str | None = Field(
        None, description="known_hosts file checked for a remote cluster's host key"
    )
    poll_interval: Annotated[float, Field(gt=0, le=3600)] | None = Field(
        None, description="seconds between two scheduler status queries (one per cluster)"
    )
    env: dict[str, str] = Field(
        default_factory=dict, validation_alias=AliasChoices("env", "environment")
    )
    setup: str | None = Field(
        None, description="bash lines run before every step (module load ...)"
    )
    custom_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="scheduler directives passed through PSI/J, e.g. {'slurm.qos': 'debug'}",
    )
    pe: str | None = Field(
        None,
        description=f"Grid Engine: the parallel environment of multi-slot steps ('-pe NAME "
        f"SLOTS'; `qconf -spl` lists them); default {SGE_DEFAULT_PE}",
    )
    memory_complex: str | None = Field(
        None,
        description="Grid Engine: the complex that carries a step's memory ('-l NAME=', per "
        f"slot), e.g. mem_free; default {SGE_DEFAULT_MEMORY_COMPLEX}",
    )
    container_runtime: str | None = Field(
        None,
        description="apptainer, singularity, charliecloud, podman, podman-hpc, sarus, shifter, "
        "none, or a plug-in's name (local: detected)",
    )
    container_options: ContainerOptions = Field(default_factory=ContainerOptions)
    traits: ClusterTraits = Field(
        default_factory=ClusterTraits,
        description="what the compute nodes offer, for StaX matching (local: detected)",
    )
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name("cluster", v)

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime(cls, v: Any) -> Any:
        parse_walltime(v)
        return str(v)

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        v = v.strip().lower()
        return SCHEDULER_ALIASES.get(v, v)

    @field_validator("pe", "memory_complex")
    @classmethod
    def _sge_name(cls, v: str | None) -> str | None:
        if v is not None and not _SGE_NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a Grid Engine name: use letters, digits, '_', '.' or '-', "
                "starting with a letter"
            )
        return v

    _env = field_validator("env")(classmethod(lambda cls, v: _check_env(v)))

    @field_validator("container_runtime")
    @classmethod
    def _runtime(cls, v: str | None) -> str | None:
        from .containers import runtime_name

        return None if v is None else runtime_name(v)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        user, _, host = v.rpartition("@")
        if not HOST_RE.match(host) or (user and not SSH_USER_RE.match(user)):
            raise ValueError(
                f"host {v!r} is not [user@]host or a ~/.ssh/config alias (letters, digits, "
                "'.', '-', '_' only: no spaces, quotes or shell characters)"
            )
        return v

    @model_validator(mode="after")
    def _remote(self) -> Cluster:
        if self.host is None:
            given = [
                k for k in ("port", "identity_file", "ssh", "known_hosts")
                if getattr(self, k) is not None
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)} only apply to a remote cluster: add `host: "
                    "[user@]host` or drop them"
                )
            return self
        if self.work_dir is not None and (
            not self.work_dir.strip() or any(c in self.work_dir for c in "\n\0")
        ):
            raise ValueError("work_dir of a remote cluster must be a non-empty single-line path")
        return self

    @property
    def remote(self) -> bool:
        """True for a cluster reached over SSH (it has a ``host``)."""
        return self.host is not None

    @property
    def effective_poll_interval(self) -> float:
        """``poll_interval``, else 0.5 s for ``local`` and 2 s for a batch scheduler, remote
        ones included. Decided for remote clusters (issue 13): each poll costs two round trips
        (ONE status command, ONE records read for all jobs), and the engine reads the records
        half-way between two status answers, so a job's end is seen within half an interval
        (median job end -> committed final state about 1 s at 100 ms RTT, see
        bench/remote_throughput.py) without a third round trip. No adaptive faster polling: a
        job's end cannot be foreseen, and polling faster "when jobs may end" would add round
        trips on a shared login node exactly when many jobs run."""
        if self.poll_interval is not None:
            return self.poll_interval
        return 0.5 if self.scheduler == "local" else 2.0


class AttemptRecord(BaseModel):
    """A finished earlier attempt of a step (kept when the step is retried)."""

    model_config = ConfigDict(defer_build=True)

    attempt: int
    state: StepState
    native_id: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    files: StepFiles | None = Field(
        None, description="what that attempt staged in (source, size, sha256) and kept"
    )


class SweepInstance(BaseModel):
    """One instance of a sweep step (see :mod:`.sweep`): its index, state and exit code."""

    model_config = ConfigDict(defer_build=True)

    index: int
    state: str
    exit_code: int | None = None


class SweepSummary(BaseModel):
    """A sweep step's instances in counts (what its row shows), as its engine last wrote it."""

    model_config = ConfigDict(defer_build=True)

    total: int
    attempt: int = 0
    counts: dict[str, int] = Field(
        default_factory=dict,
        description="instances per state: pending, queued, running, completed, failed, lost "
        "(its job ended without an exit record), canceled",
    )
    failed: list[SweepInstance] = Field(
        default_factory=list, description="the first instances that did not complete"
    )
    pack: int = 1
    elements: int = Field(0, description="array elements (scheduler jobs) of this attempt")
    jobs: list[str] = Field(default_factory=list, description="native ids of the array(s)")

    def line(self) -> str:
        """``9,812/10,000 done, 3 failed, 185 running``."""
        c = self.counts
        parts = [f"{c.get('completed', 0):,}/{self.total:,} done"]
        bad = c.get("failed", 0) + c.get("lost", 0)
        for n, word in (
            (bad, "failed"),
            (c.get("canceled", 0), "canceled"),
            (c.get("running", 0), "running"),
            (c.get("queued", 0) + c.get("pending", 0), "waiting"),
        ):
            if n:
                parts.append(f"{n:,} {word}")
        return ", ".join(parts)


class StepRun(BaseModel):
    """One step of one execution, as the engine last committed it."""

    model_config = ConfigDict(defer_build=True)

    name: str
    state: StepState = StepState.PENDING
    attempt: int = Field(0, description="1 for the first submission; 0 before it")
    cluster: str
    native_id: str | None = None
    job_name: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    directory: str
    script: str
    stdout: str
    stderr: str
    image: str | None = Field(None, description="the image the step asked for")
    resolved_image: ResolvedImage | None = Field(
        None, description="the variant it runs in: reference, digest, labels, runtime"
    )
    history: list[AttemptRecord] = Field(default_factory=list)
    sweep: SweepSummary | None = Field(
        None, description="a sweep step's instances in counts (None: not a sweep, or not known)"
    )
    files: StepFiles | None = Field(
        None, description="inputs staged and outputs kept (size, sha256), and the fetch state"
    )


class SubmitOptions(_Model):
    detached: bool = Field(
        False,
        description="queue the whole DAG at once with scheduler-native dependencies "
        "(Slurm --dependency=afterok), so it runs on with no engine watching",
    )
    on_failure: OnFailure | None = None
    base_dir: str | None = Field(
        None,
        description="the notebook-side directory relative inputs are read from (default: the "
        "workflow file's, else the current directory)",
    )
    outputs_dir: str | None = Field(
        None,
        description="where fetched outputs go, as <outputs_dir>/<execution id>/<step>/ "
        "(default: stax-outputs beside base_dir)",
    )


#: the warning a read adds to an unfinished execution whose stored states no engine has
#: reconciled with the scheduler yet (detached, or its engine died and the next one has not
#: finished its first pass): never present them as current
UNVERIFIED_WARNING = (
    "states as of the submission (or the last engine's last look); being checked with the "
    "scheduler"
)


class Origin(BaseModel):
    """Where an execution came from, beyond a plain submission: a published workflow's trigger
    (name and version), or a re-run (of an execution or a crate) with what changed and why."""

    workflow: str | None = Field(None, description="the published workflow it was triggered from")
    version: str | None = Field(None, description="that workflow's version")
    rerun_of: str | None = Field(
        None, description="the execution id (or crate) this is a re-run of"
    )
    changes: list[str] = Field(
        default_factory=list,
        description="what a re-run changed and why, e.g. \"step 'md': gromacs-x86-cuda -> "
        "gromacs-arm: cpu x86_64 != aarch64\"",
    )


class Execution(BaseModel):
    """A run of a workflow on a cluster with bound parameters."""

    model_config = ConfigDict(defer_build=True)

    id: str
    workflow: Workflow
    cluster: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    options: SubmitOptions = Field(default_factory=SubmitOptions)
    state: ExecutionState = ExecutionState.PENDING
    created_at: datetime
    finished_at: datetime | None = None
    work_dir: str
    owner: str | None = Field(None, description="engine driving this execution")
    cancel_requested: bool = False
    warnings: list[str] = Field(default_factory=list)
    steps: list[StepRun]
    origin: Origin | None = Field(
        None, description="the published workflow or the run this came from (None: submitted)"
    )

    @computed_field(  # type: ignore[prop-decorator]
        description="the states are as of the submission (or the last engine's last look) and "
        "are being checked with the scheduler: not current yet (warnings says so in words)"
    )
    @property
    def unverified(self) -> bool:
        return UNVERIFIED_WARNING in self.warnings

    def step(self, name: str) -> StepRun:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def progress(self) -> tuple[int, int]:
        done = sum(1 for s in self.steps if s.state.final)
        return done, len(self.steps)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.state.value] = out.get(s.state.value, 0) + 1
        return out
