"""Live numbers about a cluster, for ``GET clusters/{name}``: a thin caller of the scheduler
modules (:mod:`jupyter_stax.engine.schedulers`), where the parsing lives.

The commands run on a worker thread with a timeout, through the cluster's transport; a command
that fails or hangs becomes ``SchedulerUnavailable`` (503) with the command's own message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..core.api import LocalSummary, SgeSummary, SlurmSummary
from ..core.models import Cluster, Execution
from ..engine import schedulers
from ..engine.schedulers import local, sge, slurm
from ..engine.schedulers.local import active_steps
from ..engine.schedulers.slurm import (
    SLURM_JOB_STATES,
    SLURM_NODE_BUCKETS,
    SLURM_UNUSABLE_FLAGS,
    SLURM_UNUSABLE_PARTS,
    parse_sinfo,
    parse_squeue_states,
)
from ..engine.transport import LocalTransport, Transport

__all__ = [
    "COMMAND_TIMEOUT",
    "SLURM_JOB_STATES",
    "SLURM_NODE_BUCKETS",
    "SLURM_UNUSABLE_FLAGS",
    "SLURM_UNUSABLE_PARTS",
    "active_steps",
    "local_summary",
    "parse_sinfo",
    "parse_squeue_states",
    "run_command",
    "scheduler_summary",
    "sge_summary",
    "slurm_summary",
]

#: seconds a scheduler command may take
COMMAND_TIMEOUT = 10.0


def run_command(
    argv: Sequence[str], timeout: float | None = None, transport: Transport | None = None
) -> str:
    """Run a scheduler command; its stdout, or SchedulerUnavailable with its message."""
    timeout = COMMAND_TIMEOUT if timeout is None else timeout
    return schedulers.run_checked(transport or LocalTransport(), argv, timeout)


def slurm_summary(cluster: Cluster, transport: Transport | None = None) -> SlurmSummary:
    """Blocking (two commands): call it on a worker thread."""
    return slurm.summary(cluster, lambda argv: run_command(argv, transport=transport))


def sge_summary(cluster: Cluster, transport: Transport | None = None) -> SgeSummary:
    """Blocking (three commands): call it on a worker thread."""
    return sge.summary(cluster, lambda argv: run_command(argv, transport=transport))


def scheduler_summary(
    cluster: Cluster, transport: Transport | None = None
) -> SlurmSummary | SgeSummary | None:
    """The live numbers of a batch cluster from its scheduler module (None: the scheduler has
    no summary). Blocking: call it on a worker thread."""
    k = schedulers.get(cluster.scheduler)
    if k is None or k.summary is None:
        return None
    return k.summary(cluster, lambda argv: run_command(argv, transport=transport))


def local_summary(cluster: Cluster, running: Iterable[Execution]) -> LocalSummary:
    return local.summary(cluster, running)
