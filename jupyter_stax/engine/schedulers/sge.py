"""Everything jupyter_stax knows about Grid Engine (Son of Grid Engine, Univa/Altair Grid Engine)
beyond the PSI/J executor :mod:`jupyter_stax.psij_sge`: the status command and its reading, which
queued jobs can never start (``qalter -w v``), the submit attributes (``-hold_jid``), finding a
job by name after an interrupted submission, the executor's settings from the cluster, and the
live summary of a cluster (``qstat -g c``, ``qhost -q``, my jobs).

Pure functions on recorded output (``tests/sge/data``), tested table-driven; commands run
through the cluster's transport by the callers.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone

from ...core.api import JobCounts, NodeCounts, SgeSummary, SlotCounts
from ...core.models import SGE_DEFAULT_MEMORY_COMPLEX, SGE_DEFAULT_PE, Cluster
from ...psij_sge import parse

log = logging.getLogger("jupyter_stax.backend")

NAME = "sge"

#: ONE ``qstat`` for all jobs of this user per poll (plain ``qstat`` lists the caller's jobs
#: only, also over SSH where the user is the remote one)
STATUS_COMMAND = ("qstat", "-xml")

#: stderr of Grid Engine's commands when sge_qmaster does not answer (recorded:
#: ``tests/sge/data/*-qmaster-down.txt``); see :func:`..is_transient`
TRANSIENT_ERRORS = (
    "unable to send message to qmaster",
    "commlib error",
)


def parse_status(out: str) -> dict[str, tuple[str, str]]:
    """``qstat -xml`` -> {job number: (PSI/J state name, qstat state code)}."""
    return {n: (parse.psij_state(code), code) for n, code in parse.parse_qstat_xml(out).items()}


def may_be_blocked(state: str, code: str) -> bool:
    """A queued job worth verifying: pending, not held (``hqw``: held by the user or waiting
    for ``-hold_jid`` jobs) and not in error (``Eqw``: reported failed by the executor)."""
    return state == "QUEUED" and "h" not in code and "E" not in code and "d" not in code


#: at most this many ``qalter -w v`` per status poll
VERIFY_PER_POLL = 4


def to_verify(native_ids: Iterable[str]) -> list[str]:
    """The jobs to verify at this poll: the oldest (lowest numbers) first, at most
    :data:`VERIFY_PER_POLL`; the others at the next polls."""
    return sorted(native_ids, key=lambda n: (len(n), n))[:VERIFY_PER_POLL]


def verify_command(native_id: str) -> list[str]:
    """``qalter -w v``: would the job find a queue on an EMPTY cluster? It changes nothing."""
    return ["qalter", "-w", "v", native_id]


_JOB_PREFIX = re.compile(r"^Job \d+\s+")


def parse_verification(out: str) -> str | None:
    """Why ``qalter -w v`` says the job can never start (``verification: no suitable
    queues``), from the lines before that verdict; None when it can (or when the output is not
    a verdict: the job started or is held meanwhile).

    Not ``qstat -j``'s scheduling info: it says why the job did not start at the scheduler's
    last run, which is the same kind of text for "the PE is full now" and "the PE never has
    that many slots" (``tests/sge/data/qstat-j-pe-full.txt``, ``qstat-j-never-starts.txt``);
    ``qalter -w v`` checks against an empty cluster."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not any(line.startswith("verification: no suitable queues") for line in lines):
        return None
    why = [_JOB_PREFIX.sub("", line) for line in lines if not line.startswith("verification:")]
    return "; ".join(why) or "no queue instance fits its requests"


def blocked_reason(why: str) -> str:
    """The message of a job that Grid Engine keeps pending forever, as the engine shows it."""
    return (
        f"no suitable queues: {why} (Grid Engine keeps it pending; it asks for more than any "
        "queue offers, even on an empty cluster)"
    )


def submit_attributes(job_name: str, after_native_ids: Sequence[str]) -> dict[str, str]:
    """PSI/J custom attributes of one job: its dependencies (detached mode). The executor names
    the job from its spec (``-N``)."""
    if not after_native_ids:
        return {}
    # -hold_jid waits for the jobs to END, whatever their exit (Slurm's afterany); the job script
    # checks its upstream steps' exit records. Ids that have left Grid Engine already are ignored.
    return {"sge.hold_jid": ",".join(after_native_ids)}


# ---------------------------------------------------------------------- array jobs
#: Grid Engine's default ``max_aj_tasks`` (tasks of one array job; ``qconf -sconf``)
DEFAULT_MAX_ARRAY_SIZE = 75000
MAX_ARRAY_SIZE_COMMAND = ("qconf", "-sconf")


def array_attributes(count: int, cap: int | None) -> dict[str, str]:
    """PSI/J custom attributes of one array job of ``count`` tasks (``qsub -t 1-N``: Grid
    Engine numbers tasks from 1), at most ``cap`` running at once (``-tc``)."""
    if count < 1:
        raise ValueError("an array needs at least one element")
    attrs = {"sge.t": f"1-{count}"}
    if cap is not None and cap < count:
        attrs["sge.tc"] = str(max(1, cap))
    return attrs


def parse_max_array_size(out: str) -> int:
    """``max_aj_tasks`` of ``qconf -sconf`` (0: unlimited; the default when absent)."""
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "max_aj_tasks" and parts[1].isdigit():
            n = int(parts[1])
            return n if n > 0 else 10**9
    return DEFAULT_MAX_ARRAY_SIZE


def find_by_name_command(job_name: str) -> list[str]:
    """Our jobs named ``job_name`` (recovery of an interrupted submission): those in ``qstat``,
    then those that ended already (``qacct -j NAME``; it exits 1 when it knows none)."""
    name = parse.job_name(job_name)
    return ["sh", "-c", 'qstat -xml && echo "@@qacct" && { qacct -j "$1" 2>&1; true; }', "sh", name]


def parse_job_ids(out: str, job_name: str) -> str | None:
    """The newest job number named ``job_name`` in :func:`find_by_name_command`'s output."""
    name = parse.job_name(job_name)
    xml, _, acct = out.partition("@@qacct")
    ids: list[int] = []
    if xml.strip():
        for job in ET.fromstring(xml).iter("job_list"):
            if (job.findtext("JB_name") or "").strip() == name:
                number = (job.findtext("JB_job_number") or "").strip()
                if number.isdigit():
                    ids.append(int(number))
    fields: dict[str, str] = {}
    for line in [*acct.splitlines(), "===="]:
        if line.startswith("===="):
            if fields.get("jobname") == name and fields.get("jobnumber", "").isdigit():
                ids.append(int(fields["jobnumber"]))
            fields = {}
            continue
        key, _, value = line.partition(" ")
        if key:
            fields[key] = value.strip()
    return str(max(ids)) if ids else None


def executor_settings(cluster: Cluster) -> dict[str, object]:
    """Settings of :class:`jupyter_stax.psij_sge.SgeExecutorConfig` from the cluster."""
    return {
        "parallel_environment": cluster.pe or SGE_DEFAULT_PE,
        "memory_complex": cluster.memory_complex or SGE_DEFAULT_MEMORY_COMPLEX,
    }


# ---------------------------------------------------------------------- cluster summary
#: queue instance states (``qhost -q``, ``qstat -f``) that make its slots unusable: a(larm),
#: u(nknown: execd not reporting), d(isabled), s(uspended), E(rror), c(onfiguration ambiguous),
#: D(isabled by calendar), S(ubordinated), A(larm on suspend threshold)
SGE_UNUSABLE_QUEUE_STATES = frozenset("audsEcDSA")


def parse_qstat_g_c(out: str, queue: str | None = None) -> SlotCounts:
    """``qstat -g c``: slots per cluster queue (``queue`` only, or the sum over all).
    ``TOTAL`` includes the slots of unusable queue instances (``aoACDS``, ``cdsuE``)."""
    n: Counter[str] = Counter()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 8 or not all(p.isdigit() for p in parts[2:8]):
            continue  # header, rule, warning
        if queue is not None and parts[0] != queue:
            continue
        used, res, avail, total, ao, cdsu = (int(p) for p in parts[2:8])
        n["used"] += used
        n["reserved"] += res
        n["available"] += avail
        n["total"] += total
        n["unavailable"] += max(ao, cdsu)
    return SlotCounts(
        total=n["total"],
        used=n["used"],
        reserved=n["reserved"],
        available=n["available"],
        unavailable=n["unavailable"],
    )


def parse_qhost_q(out: str, queue: str | None = None) -> NodeCounts:
    """``qhost -q``: execution hosts, each followed by its queue instances (``all.q BIP 0/1/4
    [states]``). A host is unavailable when it reports no load (``-``: its execd is down) or
    every instance (of ``queue``) is in an unusable state; allocated when a slot is in use."""
    hosts: list[tuple[str, bool, list[tuple[int, str]]]] = []
    for line in out.splitlines():
        if not line.strip() or line.startswith(("HOSTNAME", "---")):
            continue
        parts = line.split()
        if not line[0].isspace():
            if parts[0] != "global" and len(parts) >= 7:
                hosts.append((parts[0], parts[6] != "-", []))
            continue
        if hosts and len(parts) >= 3 and parts[2].count("/") == 2:
            if queue is not None and parts[0] != queue:
                continue
            _resv, used, _tot = parts[2].split("/")
            states = parts[3] if len(parts) > 3 else ""
            hosts[-1][2].append((int(used) if used.isdigit() else 0, states))
    by_state: Counter[str] = Counter()
    for _name, reporting, instances in hosts:
        if queue is not None and not instances:
            continue  # not a host of this queue
        usable = [i for i in instances if not set(i[1]) & SGE_UNUSABLE_QUEUE_STATES]
        if not reporting or (instances and not usable):
            by_state["unavailable"] += 1
        elif any(used for used, _ in usable):
            by_state["allocated"] += 1
        else:
            by_state["idle"] += 1
    return NodeCounts(
        total=sum(by_state.values()),
        idle=by_state["idle"],
        allocated=by_state["allocated"],
        unavailable=by_state["unavailable"],
        by_state=dict(sorted(by_state.items())),
    )


def parse_my_jobs(out: str) -> JobCounts:
    """``qstat -xml`` (my jobs) -> queued / running; jobs being deleted count as completing."""
    n: Counter[str] = Counter()
    for code in parse.parse_qstat_xml(out).values():
        if "d" in code:
            n["completing"] += 1
        elif parse.psij_state(code) == "ACTIVE":
            n["running"] += 1
        else:
            n["queued"] += 1
    return JobCounts(queued=n["queued"], running=n["running"], completing=n["completing"])


def summary(cluster: Cluster, run: Callable[[Sequence[str]], str]) -> SgeSummary:
    """Slots, hosts and my jobs (three commands through ``run``, which returns a command's
    stdout or raises SchedulerUnavailable). Blocking: call it on a worker thread."""
    slots = parse_qstat_g_c(run(["qstat", "-g", "c"]), cluster.queue)
    hosts = parse_qhost_q(run(["qhost", "-q"]), cluster.queue)
    jobs = parse_my_jobs(run(list(STATUS_COMMAND)))
    return SgeSummary(
        queue=cluster.queue,
        slots=slots,
        hosts=hosts,
        jobs=jobs,
        time=datetime.now(timezone.utc),
    )
