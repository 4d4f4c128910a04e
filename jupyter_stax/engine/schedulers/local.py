"""The ``local`` scheduler (PSI/J's local executor: processes on this machine): its summary."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timezone

from ...core.api import LocalSummary
from ...core.models import Cluster, Execution

NAME = "local"


def active_steps(executions: Iterable[Execution], cluster: str) -> int:
    """Steps of ``cluster`` that are submitted, queued or running."""
    return sum(1 for ex in executions for s in ex.steps if s.cluster == cluster and s.state.active)


def summary(cluster: Cluster, running: Iterable[Execution]) -> LocalSummary:
    """CPUs and load of this machine, and the steps of ``cluster`` among ``running``."""
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
