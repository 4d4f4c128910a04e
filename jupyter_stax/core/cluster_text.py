"""One cluster's detail as text (``jupyter stax clusters NAME``, the picker widget): its
settings, its scheduler's live numbers and, for a remote cluster, its connection's state."""

from __future__ import annotations

from .api import ClusterDetail, ConnectionState, LocalSummary, SgeSummary, SlurmSummary


def connection_line(conn: ConnectionState | None) -> str | None:
    """``connected``, ``reconnecting since 10:02:03 UTC: why`` ... (None: a local cluster)."""
    if conn is None:
        return None
    via = f"{conn.destination} ({conn.client})"
    if conn.state == "connected":
        return f"connected to {via}"
    if conn.state == "idle":
        return f"not connected to {via} yet (it connects on first use)"
    since = conn.since.strftime("%Y-%m-%d %H:%M:%S UTC") if conn.since else "a moment"
    if conn.state == "reconnecting":
        return f"reconnecting to {via} since {since}: {conn.error}"
    what = (conn.problem or "refused").replace("-", " ")
    return f"REFUSED by {via} since {since} ({what}): {conn.error}"


def summary_line(detail: ClusterDetail) -> str | None:
    s = detail.summary
    if isinstance(s, SlurmSummary):
        n, j = s.nodes, s.jobs
        part = f"{s.partition}: " if s.partition else ""
        return (f"{part}nodes {n.idle} idle, {n.allocated} allocated, {n.unavailable} "
                f"unavailable of {n.total}; my jobs {j.queued} queued, {j.running} running")
    if isinstance(s, SgeSummary):
        q = f"{s.queue}: " if s.queue else ""
        return (f"{q}{s.slots.available} of {s.slots.total} slots free, {s.hosts.idle} of "
                f"{s.hosts.total} hosts idle; my jobs {s.jobs.queued} queued, "
                f"{s.jobs.running} running")
    if isinstance(s, LocalSummary):
        load = f", load {s.load_average[0]:.2f}" if s.load_average else ""
        return f"{s.cpus or '?'} CPUs{load}; {s.running_steps} steps running"
    return None


def detail_text(d: ClusterDetail) -> str:
    """Several ``key: value`` lines."""
    rows = [
        ("cluster", d.name),
        ("scheduler", d.scheduler),
        ("host", f"{d.host}" + (f" port {d.port}" if d.port else "") if d.host else None),
        ("queue", d.queue),
        ("account", d.account),
        ("walltime", d.walltime),
        ("work dir", d.work_dir),
        ("connection", connection_line(d.connection)),
        ("now", summary_line(d) or d.note),
    ]
    return "\n".join(f"{k + ':':<11} {v}" for k, v in rows if v)
