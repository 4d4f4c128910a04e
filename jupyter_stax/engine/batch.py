"""Several commands in ONE round trip through a transport (a login node is shared: a live
summary that needs ``sinfo`` and ``squeue`` costs one SSH command, not two).

:func:`run_batch` runs each ``argv`` (quoted word by word: data, never code) in one ``sh``
script on the cluster, each with its own stdout, stderr and exit status, framed so that no
output can be mistaken for the frame (base64). :func:`batched_summary` runs a scheduler's
summary function (which calls its runner once per command, each command independent of the
previous ones' output) with the commands of one batch: a first pass records the commands (on
empty outputs), one batch runs them, a second pass parses the real outputs.
"""

from __future__ import annotations

import base64
import binascii
import shlex
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..core.errors import SchedulerUnavailable
from ..core.models import Cluster
from .transport import CommandResult, CommandTimedOut, Transport, TransportError

T = TypeVar("T")

_START = "@@stax-start\n"


def batch_script(commands: Sequence[Sequence[str]]) -> str:
    """The ``sh`` script that runs every command in order (each with no stdin)."""
    lines = [
        "t=$(mktemp -d) || exit 1",
        "trap 'rm -rf \"$t\"' EXIT",
        "printf '@@stax-start\\n'",
    ]
    for argv in commands:
        if not argv:
            raise ValueError("empty command")
        lines.append(
            f"{shlex.join(argv)} >\"$t/o\" 2>\"$t/e\" </dev/null; printf '@@cmd %s\\n' \"$?\"; "
            "base64 <\"$t/o\"; printf '@@err\\n'; base64 <\"$t/e\"; printf '@@end\\n'"
        )
    return "\n".join(lines) + "\n"


def parse_batch(stdout: str, commands: Sequence[Sequence[str]]) -> list[CommandResult]:
    """The results of :func:`batch_script` (ValueError when the output is cut off)."""
    at = stdout.find(_START)
    if at < 0:
        raise ValueError("no start marker")
    lines = stdout[at + len(_START):].split("\n")
    out: list[CommandResult] = []
    i = 0
    for argv in commands:
        if i >= len(lines) or not lines[i].startswith("@@cmd "):
            raise ValueError(f"the output stops before `{argv[0]}`")
        rc = int(lines[i].split()[1])
        i += 1
        parts: list[list[str]] = [[], []]
        k = 0
        while i < len(lines) and lines[i] != "@@end":
            if lines[i] == "@@err":
                k = 1
            else:
                parts[k].append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"the output of `{argv[0]}` was cut off")
        i += 1
        try:
            o, e = (base64.b64decode("".join(p), validate=True).decode(errors="replace")
                    for p in parts)
        except binascii.Error as err:
            raise ValueError(f"broken base64: {err}") from None
        if rc == 127:  # as LocalTransport says it, whatever the remote sh's words
            e = f"{argv[0]}: command not found"
        out.append(CommandResult(rc, o, e))
    return out


def run_batch(
    transport: Transport, commands: Sequence[Sequence[str]], timeout: float
) -> list[CommandResult]:
    """Run ``commands`` through ``transport`` in ONE command. TransportError / CommandTimedOut
    as :meth:`Transport.run`; the results in order."""
    if not commands:
        return []
    res = transport.run(["sh", "-c", batch_script(commands)], timeout=timeout)
    try:
        return parse_batch(res.stdout, commands)
    except ValueError as e:
        why = " ".join(res.stderr.split())[-300:]
        raise TransportError(
            f"{transport.where}: a batch of {len(commands)} commands did not complete "
            f"(exit {res.returncode}: {e}{'; ' + why if why else ''})"
        ) from None


def batched_summary(
    summary: Callable[[Cluster, Callable[[Sequence[str]], str]], T],
    cluster: Cluster,
    transport: Transport,
    timeout: float,
) -> T:
    """``summary(cluster, runner)`` with all its commands in ONE round trip (see the module).
    SchedulerUnavailable as :func:`.schedulers.run_checked` says it."""
    from .schedulers import checked

    commands: list[list[str]] = []

    def record(argv: Sequence[str]) -> str:
        commands.append(list(argv))
        return ""

    summary(cluster, record)
    shown = "; ".join(" ".join(c) for c in commands)
    try:
        results = run_batch(transport, commands, timeout)
    except CommandTimedOut:
        raise SchedulerUnavailable(
            f"`{shown}` did not answer within {timeout:g} s; the scheduler may be overloaded or "
            "down, try again later"
        ) from None
    except TransportError as e:
        raise SchedulerUnavailable(f"`{shown}` could not run: {e}") from None
    replies = iter(zip(commands, results, strict=True))

    def replay(argv: Sequence[str]) -> str:
        want, res = next(replies)
        if list(argv) != want:
            raise RuntimeError(f"the summary asked for {argv!r} where it asked {want!r} before")
        return checked(res, argv, transport.where)

    return summary(cluster, replay)
