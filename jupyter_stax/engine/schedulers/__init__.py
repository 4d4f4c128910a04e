"""Scheduler knowledge, one module per scheduler (state tables, output parsers, pending reasons,
submit attributes, live summaries), and what is common to all of them.

:func:`get` is the registry: the knowledge jupyter_stax has about a PSI/J executor name beyond
what PSI/J does (None: PSI/J alone). Callers ask it instead of comparing scheduler names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...core import sweep
from ...core.api import SgeSummary, SlurmSummary
from ...core.errors import SchedulerUnavailable
from ...core.models import Cluster
from ..transport import (
    TRANSIENT_MARK,
    CommandResult,
    CommandTimedOut,
    Transport,
    TransportError,
)
from . import pbs, sge, slurm

#: sbatch/qsub error texts that mean "try again later" rather than "this job is wrong"
TRANSIENT_SUBMIT_ERRORS = (
    "unable to contact slurm controller",
    "socket timed out",
    "slurm temporarily unable",
    "resource temporarily unavailable",
    "connection refused",
    "connect failure",
    "cannot connect to server",
    "pbs_iff",
    "communication failure",
    "temporarily unavailable",
    *sge.TRANSIENT_ERRORS,
    TRANSIENT_MARK,
)


#: runs one scheduler command, returns its stdout or raises SchedulerUnavailable
Runner = Callable[[Sequence[str]], str]


def is_transient(message: str) -> bool:
    m = message.lower()
    return any(t in m for t in TRANSIENT_SUBMIT_ERRORS)


@dataclass(frozen=True)
class Scheduler:
    """What jupyter_stax adds to PSI/J for one scheduler."""

    name: str
    native_dependencies: bool
    """jobs can wait for other jobs at the scheduler (detached mode)"""
    submit_attributes: Callable[[str, Sequence[str]], dict[str, str]]
    """(job name, native ids to wait for) -> PSI/J custom attributes"""
    find_by_name_command: Callable[[str], list[str]] | None
    parse_job_ids: Callable[[str, str], str | None] | None
    """(output of find_by_name_command, job name) -> the newest native id, or None"""
    status_command: Sequence[str] | None
    """ONE status command for all our jobs (None: PSI/J's own)"""
    executor_settings: Callable[[Cluster], dict[str, object]] | None = None
    """cluster -> settings of the PSI/J executor's config beyond PSI/J's batch settings"""
    summary: Callable[[Cluster, Runner], SlurmSummary | SgeSummary] | None = None
    """(cluster, run a command -> stdout) -> live numbers (``core.api`` summary); blocking"""


@dataclass(frozen=True)
class ArrayStyle:
    """How a scheduler runs a sweep's array (see :mod:`..sweeps`)."""

    attributes: Callable[[int, int | None], dict[str, str]]
    """(elements, at most this many running or None) -> PSI/J custom attributes"""
    index: str
    """bash expression: the running element's index from 0"""
    max_size: int
    """elements of one array when the cluster does not say"""
    max_size_command: Sequence[str] | None = None
    parse_max_size: Callable[[str], int] | None = None
    """(output of max_size_command) -> elements one array may have"""


_ARRAYS = {
    slurm.NAME: ArrayStyle(
        attributes=slurm.array_attributes,
        index=sweep.SLURM_INDEX,
        max_size=slurm.DEFAULT_MAX_ARRAY_SIZE,
        max_size_command=slurm.MAX_ARRAY_SIZE_COMMAND,
        parse_max_size=slurm.parse_max_array_size,
    ),
    sge.NAME: ArrayStyle(
        attributes=sge.array_attributes,
        index=sweep.SGE_INDEX,
        max_size=sge.DEFAULT_MAX_ARRAY_SIZE,
        max_size_command=sge.MAX_ARRAY_SIZE_COMMAND,
        parse_max_size=sge.parse_max_array_size,
    ),
    pbs.NAME: ArrayStyle(
        attributes=pbs.array_attributes,
        index=sweep.PBS_INDEX,
        max_size=pbs.DEFAULT_MAX_ARRAY_SIZE,
    ),
}


def array_style(name: str) -> ArrayStyle | None:
    """How scheduler ``name`` runs job arrays (None: it runs a sweep as one job)."""
    return _ARRAYS.get(name)


_REGISTRY = {
    slurm.NAME: Scheduler(
        name=slurm.NAME,
        native_dependencies=True,
        submit_attributes=slurm.submit_attributes,
        find_by_name_command=slurm.find_by_name_command,
        parse_job_ids=lambda out, _name: slurm.parse_job_ids(out),
        status_command=slurm.STATUS_COMMAND,
        summary=slurm.summary,
    ),
    sge.NAME: Scheduler(
        name=sge.NAME,
        native_dependencies=True,
        submit_attributes=sge.submit_attributes,
        find_by_name_command=sge.find_by_name_command,
        parse_job_ids=sge.parse_job_ids,
        status_command=sge.STATUS_COMMAND,
        executor_settings=sge.executor_settings,
        summary=sge.summary,
    ),
}


def get(name: str) -> Scheduler | None:
    return _REGISTRY.get(name)


def native_dependencies(name: str) -> bool:
    s = get(name)
    return s is not None and s.native_dependencies


def run_checked(transport: Transport, argv: Sequence[str], timeout: float) -> str:
    """Run a scheduler command through ``transport``; its stdout, or SchedulerUnavailable with
    the command's own message (not installed, hung, failed)."""
    shown = " ".join(argv)
    try:
        res = transport.run(argv, timeout=timeout)
    except CommandTimedOut:
        raise SchedulerUnavailable(
            f"`{shown}` did not answer within {timeout:g} s; the scheduler may be overloaded or "
            "down, try again later"
        ) from None
    except TransportError as e:
        raise SchedulerUnavailable(f"`{shown}` could not run: {e}") from None
    return checked(res, argv, transport.where)


def checked(res: CommandResult, argv: Sequence[str], where: str) -> str:
    """The stdout of a scheduler command that ran, or SchedulerUnavailable saying why not."""
    shown = " ".join(argv)
    if res.returncode == 127 and res.stderr.endswith("command not found"):
        raise SchedulerUnavailable(
            f"`{argv[0]}` is not installed on {where} (or not on its PATH)"
        )
    if res.returncode == 126:
        raise SchedulerUnavailable(f"`{shown}` could not run: {res.stderr}")
    if res.returncode != 0:
        msg = " ".join((res.stderr or res.stdout).split()) or "no message"
        if "configuration source" in msg:
            msg += " (Slurm's commands cannot find slurm.conf: export SLURM_CONF)"
        raise SchedulerUnavailable(f"`{shown}` failed (exit {res.returncode}): {msg}")
    return res.stdout
