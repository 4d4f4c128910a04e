"""Live numbers about a cluster, for ``GET clusters/{name}``.

Parsing is done by pure functions (tested on recorded output); the commands run on a worker
thread with a timeout, and a command that fails or hangs becomes ``SchedulerUnavailable`` (503)
with the command's own message.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from ..core.api import JobCounts, LocalSummary, NodeCounts, SlurmSummary
from ..core.errors import SchedulerUnavailable
from ..core.models import Cluster, Execution

#: seconds a scheduler command may take
COMMAND_TIMEOUT = 10.0

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


def run_command(argv: Sequence[str], timeout: float | None = None) -> str:
    """Run a scheduler command; its stdout, or SchedulerUnavailable with its message."""
    timeout = COMMAND_TIMEOUT if timeout is None else timeout
    shown = " ".join(argv)
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise SchedulerUnavailable(
            f"`{argv[0]}` is not installed on the machine of the Jupyter server (or not on its "
            "PATH)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SchedulerUnavailable(
            f"`{shown}` did not answer within {timeout:g} s; the scheduler may be overloaded or "
            "down, try again later"
        ) from None
    except OSError as e:
        raise SchedulerUnavailable(f"`{shown}` could not run: {e}") from None
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split()) or "no message"
        if "configuration source" in msg:
            msg += " (Slurm's commands cannot find slurm.conf: export SLURM_CONF)"
        raise SchedulerUnavailable(f"`{shown}` failed (exit {proc.returncode}): {msg}")
    return proc.stdout


def slurm_summary(cluster: Cluster) -> SlurmSummary:
    """Blocking (two commands): call it on a worker thread."""
    part = ["-p", cluster.queue] if cluster.queue else []
    nodes = parse_sinfo(run_command(["sinfo", "-h", *part, "-o", "%D|%T"]))
    jobs = parse_squeue_states(
        run_command(["squeue", "--me", "-h", *part, "-t", "PD,R,CG", "-o", "%t"])
    )
    return SlurmSummary(
        partition=cluster.queue, nodes=nodes, jobs=jobs, time=datetime.now(timezone.utc)
    )


def active_steps(executions: Iterable[Execution], cluster: str) -> int:
    """Steps of ``cluster`` that are submitted, queued or running."""
    return sum(1 for ex in executions for s in ex.steps if s.cluster == cluster and s.state.active)


def local_summary(cluster: Cluster, running: Iterable[Execution]) -> LocalSummary:
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return LocalSummary(
        cpus=os.cpu_count(),
        load_average=load,
        running_steps=active_steps(running, cluster.name),
        time=datetime.now(timezone.utc),
    )
