"""Wire models of the REST API (``<base_url>stax/api/``) beside those of :mod:`.models`, and
the types every service speaks (:class:`ServerInfo`, :data:`Listed`, :data:`WorkflowSource`).

Pure pydantic, like the rest of ``core``: the server's handlers, the operations layer
(:mod:`jupyter_stax.operations`), the OpenAPI document (:mod:`jupyter_stax.server.openapi`) and
both services (:mod:`jupyter_stax.service`, :mod:`jupyter_stax.client`) all speak these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from .images import ClusterTraits, RuleResult, StaxImage
from .models import Cluster, Execution, ParamValue, SubmitOptions, Workflow
from .states import ExecutionState

#: bounds of ``GET executions?limit=``
PAGE_LIMIT_DEFAULT = 50
PAGE_LIMIT_MAX = 500
#: bounds of ``GET .../log?limit=`` (bytes)
LOG_LIMIT_DEFAULT = 1 << 20
LOG_LIMIT_MAX = 8 << 20


class _Wire(BaseModel):
    # defer_build: a model's validator is built when it is first used, not at import (a
    # command that uses a few models, e.g. a cached `jupyter stax build`, pays for those only)
    model_config = ConfigDict(extra="forbid", defer_build=True)


class ErrorBody(_Wire):
    """Every error answer of the API (4xx and 5xx) has this shape."""

    message: str = Field(description="what was wrong, and what to do about it")
    details: list[str] = Field(
        default_factory=list, description="one line per problem (e.g. each invalid field)"
    )
    error: str = Field(description="the error's class name, e.g. InvalidWorkflow, NotFound")


class ClusterInfo(Cluster):
    """A configured cluster with its effective work directory."""

    work_dir: str = Field(
        description="where execution directories go (the cluster's own, or the default)"
    )


class NodeCounts(_Wire):
    """Nodes of the cluster's partition (all partitions when it names none), by state."""

    total: int
    idle: int
    allocated: int = Field(description="allocated, mixed or completing")
    unavailable: int = Field(
        description="down, drained, draining, failing, not responding, reserved or other"
    )
    by_state: dict[str, int] = Field(
        default_factory=dict, description="the scheduler's own state names and their node counts"
    )


class JobCounts(_Wire):
    """This user's jobs (all of them, not only jupyter_stax's) in the cluster's partition."""

    queued: int
    running: int
    completing: int = 0


class SlurmSummary(_Wire):
    """Live numbers from ``sinfo`` and ``squeue --me``."""

    scheduler: Literal["slurm"] = "slurm"
    partition: str | None = None
    nodes: NodeCounts
    jobs: JobCounts
    time: datetime


class SlotCounts(_Wire):
    """Slots of the cluster's Grid Engine queue (all queues when it names none)."""

    total: int
    used: int
    reserved: int = Field(0, description="reserved for pending jobs (resource reservation)")
    available: int = Field(description="free slots in usable queue instances")
    unavailable: int = Field(
        0, description="slots in queue instances that are disabled, suspended, in error or alarm"
    )


class SgeSummary(_Wire):
    """Live numbers from ``qstat -g c``, ``qhost -q`` and ``qstat`` (my jobs)."""

    scheduler: Literal["sge"] = "sge"
    queue: str | None = None
    slots: SlotCounts
    hosts: NodeCounts = Field(
        description="execution hosts (of the queue): idle, allocated (a slot in use) or "
        "unavailable (execd not reporting, every queue instance unusable)"
    )
    jobs: JobCounts
    time: datetime


class LocalSummary(_Wire):
    """The machine the Jupyter server runs on."""

    scheduler: Literal["local"] = "local"
    cpus: int | None = Field(description="os.cpu_count()")
    load_average: list[float] | None = Field(
        description="1, 5 and 15 minute load averages (None where the OS has none)"
    )
    running_steps: int = Field(
        description="steps of this cluster that are submitted, queued or running (from the store)"
    )
    time: datetime


ClusterSummary = Annotated[
    SlurmSummary | SgeSummary | LocalSummary, Field(discriminator="scheduler")
]


class ConnectionState(_Wire):
    """How a remote cluster's SSH connection is, as the engine (or the service) sees it."""

    state: Literal["connected", "idle", "reconnecting", "refused"] = Field(
        description="connected; idle (not opened yet: it opens on first use); reconnecting "
        "(it dropped or the login node does not answer: retried with backoff, runs wait); "
        "refused (a problem the user must fix: host key, authentication, unknown host)"
    )
    destination: str = Field(description="[user@]host as configured")
    client: str = Field(description="asyncssh, or openssh (the system ssh, ControlMaster)")
    since: datetime | None = Field(None, description="failing since (reconnecting, refused)")
    error: str | None = Field(None, description="the last error, with what to do about it")
    problem: str | None = Field(
        None,
        description="what kind of problem: host-key-unknown, host-key-changed, auth-refused, "
        "unknown-host, connection-refused, timeout, connection-lost, remote-error, config",
    )


class ClusterDetail(ClusterInfo):
    """A cluster with live numbers from its scheduler, where the scheduler offers them."""

    summary: ClusterSummary | None = None
    note: str | None = Field(None, description="why there is no summary, when there is none")
    connection: ConnectionState | None = Field(
        None, description="a remote cluster's SSH connection (None: a local cluster)"
    )


class ImageSourceStatus(_Wire):
    """One configured catalog source."""

    spec: str = Field(
        description="as configured: a catalog file, oci:DIR, ch:DIR, sif:..., docker://"
    )
    kind: str | None = Field(description="the source that reads it (None: no source does)")
    images: int = Field(0, description="images it gave")
    problem: str | None = Field(None, description="why it gave none (None while all is well)")


class ImageInfo(StaxImage):
    """A catalog image, judged for the cluster asked about (``fits`` None without one)."""

    fits: bool | None = None
    rules: list[RuleResult] = Field(
        default_factory=list, description="each matching rule: ok, fail, unchecked or note"
    )


class ImageList(_Wire):
    """``GET images[?cluster=C]``: the StaX catalog, with per-cluster fit and reasons."""

    cluster: str | None = Field(None, description="the cluster judged for (None: no fit shown)")
    runtime: str | None = Field(None, description="that cluster's container runtime")
    traits: ClusterTraits | None = Field(None, description="that cluster's traits")
    images: list[ImageInfo] = Field(default_factory=list)
    sources: list[ImageSourceStatus] = Field(default_factory=list)
    problems: list[str] = Field(
        default_factory=list,
        description="sources and plug-ins that could not be read, each said once",
    )
    note: str | None = None


class SubmitRequest(_Wire):
    """Body of ``POST executions``."""

    workflow: Workflow | str = Field(
        description="the workflow as an object, or as YAML text (never a server-side path)"
    )
    cluster: str | None = Field(
        None, description="cluster to run on (default: the server's StaxApp.default_cluster)"
    )
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="parameter values (override the workflow's defaults)"
    )
    options: SubmitOptions = Field(default_factory=SubmitOptions)
    steps: list[str] | None = Field(
        None, description="run only these steps and what they depend on (default: all)"
    )


class ExecutionSummary(_Wire):
    """One line of ``GET executions``."""

    id: str
    name: str
    cluster: str
    state: ExecutionState
    created_at: datetime
    finished_at: datetime | None = None
    done: int = Field(description="steps in a final state")
    total: int = Field(description="steps in the execution")
    counts: dict[str, int] = Field(
        description="number of steps per state (states with none left out)"
    )
    warnings: list[str] = Field(default_factory=list)
    unverified: bool = Field(
        False,
        description="the states are as of the submission (or the last engine's last look) and "
        "are being checked with the scheduler: not current yet (warnings says so in words)",
    )

    @classmethod
    def of(cls, ex: Execution) -> ExecutionSummary:
        done, total = ex.progress
        return cls(
            id=ex.id,
            name=ex.workflow.name,
            cluster=ex.cluster,
            state=ex.state,
            created_at=ex.created_at,
            finished_at=ex.finished_at,
            done=done,
            total=total,
            counts=ex.counts(),
            warnings=ex.warnings,
            unverified=ex.unverified,
        )


class ExecutionPage(_Wire):
    """Newest first; pass ``next_cursor`` as ``cursor`` to get the next (older) page."""

    executions: list[ExecutionSummary]
    next_cursor: str | None = Field(None, description="None on the last page")


class LogChunk(_Wire):
    """A piece of a step's stdout or stderr. ``offset`` and ``next_offset`` count BYTES."""

    data: str = Field(
        description="UTF-8 text; a character is never split at the end of a chunk (undecodable "
        "bytes elsewhere become U+FFFD)"
    )
    offset: int = Field(description="byte offset of data in the file")
    next_offset: int = Field(description="offset to ask for next")
    size: int = Field(description="size of the file in bytes when it was read")
    eof: bool = Field(description="the step is final and everything was read: stop following")


class InstanceInfo(_Wire):
    """One instance of a sweep step, from its own records."""

    index: int = Field(description="0-based; its directory is <step>/<index>/")
    state: Literal["waiting", "running", "completed", "failed", "lost", "canceled"] = Field(
        description="waiting: no start record yet; lost: its job ended without an exit record"
    )
    exit_code: int | None = None
    attempt: int = Field(description="the attempt of the step it last ran in (0: not yet)")
    params: dict[str, ParamValue] = Field(description="its swept values")
    directory: str


#: instances per page of ``GET .../instances`` (at most)
INSTANCE_LIMIT_DEFAULT = 100
INSTANCE_LIMIT_MAX = 1000


class InstancePage(_Wire):
    """``GET executions/{id}/steps/{step}/instances``: a page of a sweep's instances, the ones
    that did not complete first, then by index."""

    total: int = Field(description="instances of the sweep")
    counts: dict[str, int] = Field(description="instances per state")
    items: list[InstanceInfo]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: last")


class ServerInfo(_Wire):
    """``GET stax/api/info``: which store this server's engine serves (clients use a server
    only when it serves the store they would otherwise use)."""

    version: str = Field(description="the jupyter_stax version of the server")
    store: str = Field(description="absolute path of the SQLite store the server's engine serves")
    engine_id: str | None = Field(
        description="id of the server's engine (the owner of what it drives); None when "
        "jupyter_stax is not running in this server"
    )
    default_cluster: str = Field(description="the cluster of a submission that names none")
    problem: str | None = Field(
        None, description="why jupyter_stax does not run in this server (None while all is well)"
    )


#: what ``StaxService.submit`` accepts: a model, a parsed mapping, YAML text or a file path
WorkflowSource: TypeAlias = Workflow | Mapping[str, Any] | str | Path
#: a line of ``StaxService.list``: the local store gives whole executions, the REST API
#: summaries; both have ``id``, ``cluster``, ``state``, ``created_at``
Listed: TypeAlias = ExecutionSummary | Execution
