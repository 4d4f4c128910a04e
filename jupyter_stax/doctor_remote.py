"""``jupyter stax doctor`` for a remote cluster: one finding per thing that can stop it, each with
its fix, in the order a connection meets them:

1. DNS and route: the host name resolves and something answers on the port;
2. host key: known_hosts has the server's key (never accepted silently);
3. authentication: a key (or the agent's) is accepted;
4. on the cluster, in ONE command (:func:`jupyter_stax.engine.batch.run_batch`): the
   scheduler's commands on the account's PATH (as non-interactive SSH sessions see it), the
   scheduler answering (Slurm: ``scontrol ping``), the work directory writable (or creatable),
   the container runtime, and ``python3`` (informational: only Python steps need it).

Nothing is changed on the cluster: the work directory is not created, only its nearest
existing parent is checked. A check that could not run because an earlier one failed is not
reported (the earlier one's fix comes first).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .core.models import Cluster

if TYPE_CHECKING:
    from .engine.transport import CommandResult


@dataclass
class Finding:
    """As :class:`jupyter_stax.doctor.Finding` (which :mod:`.doctor` makes of it)."""

    level: Literal["ok", "warn", "fail"]
    what: str
    detail: str
    fix: str = ""

#: seconds the checks on the cluster may take in all
TIMEOUT = 60.0

#: prints the commands of ``$@`` that are NOT on PATH, one a line
MISSING_COMMANDS = 'for c in "$@"; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done'
#: ``$1``: the work directory (``~`` is the home). Prints ``exists DIR``, ``creatable DIR``
#: (its nearest existing parent DIR is writable) or ``unwritable DIR``
WORK_DIR = r"""
d=$1
case $d in "~") d=$HOME ;; "~/"*) d=$HOME/${d#"~/"} ;; esac
p=$d
while [ ! -e "$p" ] && [ "$p" != / ] && [ "$p" != . ]; do p=$(dirname -- "$p"); done
if [ "$p" = "$d" ] && [ -d "$d" ] && [ -w "$d" ] && [ -x "$d" ]; then echo "exists $d"
elif [ "$p" != "$d" ] && [ -d "$p" ] && [ -w "$p" ] && [ -x "$p" ]; then echo "creatable $p"
else echo "unwritable $p"; fi
"""
PYTHON = "command -v python3 >/dev/null 2>&1 && python3 --version 2>&1"

#: problem (see :class:`~jupyter_stax.core.api.ConnectionState`) -> the check it fails
_STAGE = {
    "config": "config",
    "unknown-host": "route",
    "connection-refused": "route",
    "timeout": "route",
    "connection-lost": "route",
    "host-key-unknown": "host key",
    "host-key-changed": "host key",
    "auth-refused": "authentication",
}
_ORDER = ["route", "host key", "authentication"]


def _fix(stage: str, c: Cluster) -> str:
    from .engine.remote.errors import AUTH_FIX

    port = f" -p {c.port}" if c.port else ""
    return {
        "config": "fix the cluster's SSH settings in the clusters file",
        "route": f"check `host` and `port` (and a Host/HostName/ProxyJump entry in ~/.ssh/config); "
                 f"`ssh{port} {c.host} true` must work from this machine",
        "host key": "follow the message: compare the fingerprint with the one your centre "
                    "publishes, then add the key to known_hosts",
        "authentication": AUTH_FIX,
    }[stage]


def check_remote_cluster(
    c: Cluster, scheduler_commands: Mapping[str, Sequence[str]],
    runtime_commands: Mapping[str, str],
) -> Iterator[Finding]:
    """The findings of remote cluster ``c`` (blocking: one connection, one command).
    ``scheduler_commands``/``runtime_commands``: the doctor's tables (what each needs)."""
    needed = list(scheduler_commands.get(c.scheduler, ()))
    runtime = runtime_commands.get(str(c.container_runtime or ""))
    from .core.errors import StaxError
    from .engine.batch import run_batch
    from .engine.remote.errors import SSHError
    from .engine.remote.transport import SSHTransport

    what = f"cluster {c.name} ({c.scheduler} over SSH)"
    try:
        tr = SSHTransport(c)
    except SSHError as e:
        yield Finding("fail", f"{what}: settings", e.message, _fix("config", c))
        return
    try:
        commands = _commands(c, needed, runtime)
        try:
            results = run_batch(tr, commands, TIMEOUT)
        except StaxError as e:
            state = tr.connection_state()
            stage = _STAGE.get(state.problem or "", "route")
            if stage == "config":
                yield Finding("fail", f"{what}: settings", state.error or e.message,
                              _fix("config", c))
                return
            for s in _ORDER[: _ORDER.index(stage)]:
                yield Finding("ok", f"{what}: {_label(s)}", _passed(s, c))
            detail = state.error or e.message
            if stage == "authentication":  # the message ends with the fix: say it once
                detail = detail.split(": check `host`")[0]
            yield Finding("fail", f"{what}: {_label(stage)}", detail, _fix(stage, c))
            return
        for s in _ORDER:
            yield Finding("ok", f"{what}: {_label(s)}", _passed(s, c))
        yield from _remote_findings(c, what, tr.where, results, needed, runtime)
    finally:
        tr.close()


def _label(stage: str) -> str:
    return {"route": "DNS/route"}.get(stage, stage)


def _passed(stage: str, c: Cluster) -> str:
    port = c.port or 22
    return {
        "route": f"{(c.host or '').rpartition('@')[2]} resolves and answers on port {port}",
        "host key": "the server's key is the one in known_hosts",
        "authentication": "the key was accepted",
    }[stage]


def _commands(c: Cluster, needed: list[str], runtime: str | None) -> list[list[str]]:
    from .core.clusters import REMOTE_WORK_DIR

    probe = needed + ([runtime] if runtime else [])
    cmds = [
        ["sh", "-c", MISSING_COMMANDS, "sh", *probe] if probe else ["true"],
        ["sh", "-c", WORK_DIR, "sh", str(c.work_dir or REMOTE_WORK_DIR)],
        ["sh", "-c", PYTHON],
    ]
    if c.scheduler == "slurm":
        cmds.append(["scontrol", "ping"])
    return cmds


def _remote_findings(
    c: Cluster, what: str, where: str, results: Sequence[CommandResult], needed: list[str],
    runtime: str | None,
) -> Iterator[Finding]:
    missing = set(results[0].stdout.split())
    sched_missing = [x for x in needed if x in missing]
    if sched_missing:
        yield Finding(
            "fail", f"{what}: scheduler commands",
            f"not found on {where}: {', '.join(sched_missing)}",
            "put them on PATH for non-interactive SSH sessions of that account (e.g. in "
            "~/.bashrc on the cluster, above its 'interactive only' guard, or ask the centre "
            "which login node has them)",
        )
    elif needed:
        detail = f"found on {where}: {', '.join(needed)}"
        if c.scheduler == "slurm" and len(results) > 3:
            ping = results[3]
            if ping.returncode != 0 or "DOWN" in ping.stdout:
                msg = " ".join((ping.stdout + " " + ping.stderr).split()) or "no answer"
                yield Finding("fail", f"{what}: scheduler commands",
                              f"{detail}, but `scontrol ping` says: {msg}",
                              "the cluster's Slurm controller does not answer: try again "
                              "later, or ask the centre")
                detail = ""
            else:
                detail += "; " + " ".join(ping.stdout.split())
        if detail:
            yield Finding("ok", f"{what}: scheduler commands", detail)
    kind, _, path = results[1].stdout.strip().partition(" ")
    wd = str(c.work_dir or "~/stax-runs")
    if kind == "exists":
        yield Finding("ok", f"{what}: work dir", f"{wd} is writable ({path})")
    elif kind == "creatable":
        yield Finding("ok", f"{what}: work dir", f"{wd} will be made in {path} (writable)")
    else:
        yield Finding(
            "fail", f"{what}: work dir",
            f"{wd} cannot be written by the account on {where} ({path or 'no answer'} is not a "
            "writable directory)",
            "set the cluster's `work_dir` to a directory that account can write on the cluster "
            "(e.g. /scratch/USER/stax-runs), visible from the compute nodes",
        )
    if runtime:
        if runtime in missing:
            yield Finding("warn", f"{what}: runtime",
                          f"{c.container_runtime}: {runtime} not found on {where} (fine if the "
                          "compute nodes have it)",
                          f"install {c.container_runtime} or set container_runtime")
        else:
            yield Finding("ok", f"{what}: runtime", f"{c.container_runtime} ({runtime})")
    py = results[2]
    if py.returncode == 0 and py.stdout.strip():
        yield Finding("ok", f"{what}: python3", f"{py.stdout.strip()} (for Python steps)")
    else:
        yield Finding("warn", f"{what}: python3",
                      f"not found on {where}: only Python steps need it",
                      "load a Python module in the cluster's `setup` for Python steps")
