"""Everything jupyter_stax knows about Slurm: its job and node state tables, the parsers of
``squeue`` and ``sinfo`` output, the pending reasons that mean "never starts as it stands",
the submit attributes (job name, dependencies) and the live summary of a cluster.

Pure functions on recorded output, tested table-driven; commands run through the cluster's
transport (see :mod:`..transport`) by the callers.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from ...core.api import JobCounts, NodeCounts, SlurmSummary
from ...core.models import Cluster

log = logging.getLogger("jupyter_stax.backend")

NAME = "slurm"

#: squeue compact state -> PSI/J state name (a superset of PSI/J's table)
SLURM_STATES = {
    "PD": "QUEUED",
    "CF": "QUEUED",
    "RD": "QUEUED",
    "RF": "QUEUED",
    "RH": "QUEUED",
    "RV": "QUEUED",
    "R": "ACTIVE",
    "CG": "ACTIVE",
    "RQ": "ACTIVE",
    "SO": "ACTIVE",
    "RS": "ACTIVE",
    "SI": "ACTIVE",
    "SE": "ACTIVE",
    "ST": "ACTIVE",
    "S": "ACTIVE",
    "CD": "COMPLETED",
    "CA": "CANCELED",
    "F": "FAILED",
    "BF": "FAILED",
    "DL": "FAILED",
    "NF": "FAILED",
    "OOM": "FAILED",
    "PR": "FAILED",
    "TO": "FAILED",
}

#: ONE ``squeue`` for all jobs of this user per poll, delimiter-separated (reasons may be long)
STATUS_COMMAND = ("squeue", "--me", "-t", "all", "-h", "-o", "%i|%t|%r")


def parse_squeue(out: str) -> dict[str, tuple[str, str]]:
    """``%i|%t|%r`` lines -> {native_id: (PSI/J state name, reason)}; bad lines are skipped."""
    result: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split("|", 2)
        if len(parts) < 2:
            log.warning("ignoring squeue line I cannot parse: %r", line)
            continue
        native_id, code = parts[0].strip(), parts[1].strip()
        state = SLURM_STATES.get(code)
        if state is None:
            log.warning("ignoring unknown Slurm state %r of job %s", code, native_id)
            continue
        result[native_id] = (state, parts[2].strip() if len(parts) > 2 else "")
    return result


#: Slurm pending reasons (``squeue %r``) that mean the job will not start as it stands: it asks
#: for more than the partition, QOS or account allows, or it is held. Slurm keeps such jobs
#: pending forever; the engine says so on the execution (it does not cancel them).
SLURM_BLOCKED_REASONS: dict[str, str] = {
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "PartitionTimeLimit": "its time limit is above the partition's",
    "PartitionConfig": "it asks for more than the partition's nodes have (nodes, CPUs, memory)",
    "BadConstraints": "its constraints cannot be satisfied",
    "QOSMaxNodePerJobLimit": "it asks for more nodes than its QOS allows",
    "QOSMaxCpuPerJobLimit": "it asks for more CPUs than its QOS allows",
    "QOSMaxWallDurationPerJobLimit": "its time limit is above its QOS's",
    "QOSMaxMemoryPerJob": "it asks for more memory than its QOS allows",
    "QOSMaxGRESPerJob": "it asks for more GPUs/GRES than its QOS allows",
    "AssocMaxNodesPerJobLimit": "it asks for more nodes than its account allows",
    "AssocMaxCpuPerJobLimit": "it asks for more CPUs than its account allows",
    "AssocMaxWallDurationPerJobLimit": "its time limit is above its account's",
    "InvalidAccount": "its account is not valid",
    "InvalidQOS": "its QOS is not valid",
    "DependencyNeverSatisfied": "a job it depends on ended in a way that never satisfies it",
    "JobHeldUser": "it is held (scontrol release releases it)",
    "JobHeldAdmin": "it is held by an administrator",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
}


def blocked_reason(state: str, reason: str) -> str | None:
    """``'PartitionNodeLimit: it asks for more nodes ...'`` for a queued job whose Slurm reason
    says it will not start as it stands; None otherwise (Priority, Resources, Dependency ...)."""
    if state != "QUEUED":
        return None
    key = reason.split(",", 1)[0].strip().strip("()")
    why = SLURM_BLOCKED_REASONS.get(key)
    return f"{key}: {why}" if why else None


def parse_status(out: str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """``squeue`` output of :data:`STATUS_COMMAND` -> ({native_id: (PSI/J state, reason)},
    {native_id: why it will never start} for blocked queued jobs). A job array's elements
    (``123_4``, ``123_[5-9%2]``) are also summed up under the array's id (``123``): see
    :func:`aggregate_arrays`."""
    jobs = parse_squeue(out)
    blocked = {}
    for native_id, (state, reason) in jobs.items():
        why = blocked_reason(state, reason)
        if why:
            blocked[native_id] = why
            blocked.setdefault(array_base(native_id), why)
    jobs.update(aggregate_arrays(jobs))
    return jobs, blocked


# ---------------------------------------------------------------------- job arrays
#: ``--array`` elements run ``stax.array.*.sh`` of a sweep (see :mod:`..sweeps`)
ARRAY_ATTRIBUTE = "slurm.array"
#: Slurm's default MaxArraySize (the largest index is one less)
DEFAULT_MAX_ARRAY_SIZE = 1001
MAX_ARRAY_SIZE_COMMAND = ("scontrol", "show", "config")
_ARRAY_ID_RE = re.compile(r"^([0-9]+)_(?:[0-9]+|\[.*\])$")


def array_base(native_id: str) -> str:
    """``123`` of an array element's id (``123_4``, ``123_[5-9%2]``); other ids unchanged."""
    m = _ARRAY_ID_RE.match(native_id)
    return m[1] if m else native_id


def aggregate_arrays(jobs: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """One state per job array from its elements' states: QUEUED while all wait, ACTIVE while
    some wait or run and some have started (or ended), else the end: CANCELED if one was
    canceled, FAILED if one failed, COMPLETED. The reason is the first element's."""
    elements: dict[str, list[tuple[str, str]]] = {}
    for native_id, st in jobs.items():
        base = array_base(native_id)
        if base != native_id:
            elements.setdefault(base, []).append(st)
    out = {}
    for base, states in elements.items():
        names = {s for s, _ in states}
        if names == {"QUEUED"}:
            state = "QUEUED"
        elif names & {"QUEUED", "ACTIVE"}:
            state = "ACTIVE"
        elif "CANCELED" in names:
            state = "CANCELED"
        elif "FAILED" in names:
            state = "FAILED"
        else:
            state = "COMPLETED"
        out[base] = (state, states[0][1])
    return out


_ELEMENTS_RE = re.compile(r"^([0-9]+)_\[([0-9,:\-]+)(?:%[0-9]+)?\]$")
_ELEMENT_RE = re.compile(r"^([0-9]+)_([0-9]+)$")


def pending_elements(jobs: dict[str, tuple[str, str]]) -> dict[str, set[int]]:
    """The elements of each array still waiting (``123_[5-9,12%2]`` lines of ``squeue``, and
    single pending elements ``123_4``), by the array's id; an array that has none waiting is
    not listed. What makes a sweep read only the records of elements that started."""
    out: dict[str, set[int]] = {}
    for native_id, (state, _) in jobs.items():
        if state != "QUEUED":
            continue
        m = _ELEMENTS_RE.match(native_id)
        if m:
            got = out.setdefault(m[1], set())
            for part in m[2].split(","):
                first, _, rest = part.partition("-")
                last, _, step = rest.partition(":")
                if first.isdigit():
                    hi = int(last) if last.isdigit() else int(first)
                    got.update(range(int(first), hi + 1, int(step) if step.isdigit() else 1))
            continue
        m = _ELEMENT_RE.match(native_id)
        if m:
            out.setdefault(m[1], set()).add(int(m[2]))
    return out


def array_spec(count: int, cap: int | None) -> str:
    """``--array`` of ``count`` elements numbered from 0, at most ``cap`` running at once."""
    if count < 1:
        raise ValueError("an array needs at least one element")
    spec = f"0-{count - 1}" if count > 1 else "0"
    return spec + (f"%{cap}" if cap is not None and cap < count else "")


def array_attributes(count: int, cap: int | None) -> dict[str, str]:
    """PSI/J custom attributes of one job array (elements append to the shared output)."""
    return {ARRAY_ATTRIBUTE: array_spec(count, cap), "slurm.open-mode": "append"}


def parse_max_array_size(out: str) -> int:
    """MaxArraySize of ``scontrol show config`` (Slurm's default when it is not there)."""
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "MaxArraySize":
            try:
                return max(1, int(value.strip()))
            except ValueError:
                break
    return DEFAULT_MAX_ARRAY_SIZE


def node_cpus_command(queue: str | None) -> list[str]:
    """``sinfo`` listing the CPUs of the nodes (of the partition ``queue``)."""
    return ["sinfo", "-h", *(["-p", queue] if queue else []), "-o", "%c"]


def parse_node_cpus(out: str) -> int | None:
    """The fewest CPUs a node of :func:`node_cpus_command`'s output has (``16`` or ``8+``
    lines), or None when it lists none."""
    counts = [int(m[1]) for m in re.finditer(r"^\s*([0-9]+)\+?\s*$", out, re.M)]
    return min(counts) if counts else None


def split_array(count: int, max_array_size: int) -> list[tuple[int, int]]:
    """``(offset, size)`` of each array that ``count`` elements need when one array holds at
    most ``max_array_size`` of them (indices 0 .. MaxArraySize - 1)."""
    step = max(1, max_array_size)
    return [(k, min(step, count - k)) for k in range(0, count, step)]


def submit_attributes(job_name: str, after_native_ids: Sequence[str]) -> dict[str, str]:
    """PSI/J custom attributes of one job: its name (PSI/J never sets it from the spec) and its
    dependencies (detached mode)."""
    attrs = {"slurm.job-name": job_name}
    if after_native_ids:
        # afterany: order only; the job script checks its upstream steps' exit records
        # (PSI/J's Slurm script always exits 0, so afterok would never see a failure)
        attrs["slurm.dependency"] = "afterany:" + ":".join(after_native_ids)
    return attrs


def find_by_name_command(job_name: str) -> list[str]:
    """``squeue`` listing the ids of our jobs named ``job_name`` (recovery of a submission)."""
    return ["squeue", "--me", "-h", "-t", "all", "-n", job_name, "-o", "%i"]


def parse_job_ids(out: str) -> str | None:
    """The newest id of :func:`find_by_name_command`'s output (an array's own id for its
    elements), or None."""
    ids = out.split()
    return array_base(ids[-1]) if ids else None


def parse_all_job_ids(out: str) -> list[str]:
    """Every job id of :func:`find_by_name_command`'s output, arrays once, oldest first."""
    return sorted({array_base(i) for i in out.split()}, key=lambda i: (len(i), i))


# ---------------------------------------------------------------------- cluster summary
#: Slurm node base states (``sinfo %T``, flags stripped) -> our bucket; anything else is
#: ``unavailable`` (down, drained, draining, fail, maint, reserved, unknown, ...)
SLURM_NODE_BUCKETS = {
    "idle": "idle",
    "allocated": "allocated",
    "mixed": "allocated",
    "completing": "allocated",
}
#: a node state ending in one of these flags is not usable, whatever its base state
#: (``*`` not responding, ``!`` pending power down, ``%`` powering down, ``$`` maintenance,
#: ``@`` pending reboot); ``~`` (powered off), ``#`` (powering up), ``-`` (planned) are usable
SLURM_UNUSABLE_FLAGS = frozenset("*!%$@")
#: a combined state (``mixed+drain``) with one of these parts is not usable
SLURM_UNUSABLE_PARTS = frozenset(
    {
        "drain",
        "draining",
        "drained",
        "fail",
        "failing",
        "maint",
        "down",
        "not_responding",
        "reboot_requested",
        "reboot_issued",
        "power_down",
        "powered_down",
        "powering_down",
        "inval",
    }
)
#: ``squeue %t`` -> field of JobCounts
SLURM_JOB_STATES = {"PD": "queued", "R": "running", "CG": "completing"}


def parse_sinfo(out: str) -> NodeCounts:
    """``sinfo -h -o '%D|%T'``: lines of ``COUNT|STATE`` (a state may repeat over partitions
    or node groups; e.g. ``2|idle``, ``1|mixed``, ``3|down*``, ``1|drained``)."""
    by_state: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    for line in out.splitlines():
        line = line.strip()
        if not line:
            continue
        count_s, sep, state = line.partition("|")
        if not sep or not count_s.strip().isdigit():
            continue  # a warning line, not data
        count = int(count_s)
        state = state.strip().lower()
        by_state[state] += count
        base = state
        flags = set()
        while base and not (base[-1].isalnum() or base[-1] == "_"):
            flags.add(base[-1])
            base = base[:-1]
        parts = base.split("+")
        bucket = SLURM_NODE_BUCKETS.get(parts[0], "unavailable")
        if flags & SLURM_UNUSABLE_FLAGS or SLURM_UNUSABLE_PARTS.intersection(parts[1:]):
            bucket = "unavailable"
        buckets[bucket] += count
    return NodeCounts(
        total=sum(by_state.values()),
        idle=buckets["idle"],
        allocated=buckets["allocated"],
        unavailable=buckets["unavailable"],
        by_state=dict(sorted(by_state.items())),
    )


def parse_squeue_states(out: str) -> JobCounts:
    """``squeue --me -h -t PD,R,CG -o '%t'``: one compact state per line."""
    n: Counter[str] = Counter()
    for line in out.split():
        field = SLURM_JOB_STATES.get(line.strip().upper())
        if field:
            n[field] += 1
    return JobCounts(queued=n["queued"], running=n["running"], completing=n["completing"])


def summary(cluster: Cluster, run: Callable[[Sequence[str]], str]) -> SlurmSummary:
    """Nodes and my jobs (two commands through ``run``, which returns a command's stdout or
    raises SchedulerUnavailable). Blocking: call it on a worker thread."""
    part = ["-p", cluster.queue] if cluster.queue else []
    nodes = parse_sinfo(run(["sinfo", "-h", *part, "-o", "%D|%T"]))
    jobs = parse_squeue_states(run(["squeue", "--me", "-h", *part, "-t", "PD,R,CG", "-o", "%t"]))
    return SlurmSummary(
        partition=cluster.queue, nodes=nodes, jobs=jobs, time=datetime.now(timezone.utc)
    )
