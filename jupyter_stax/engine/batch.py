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

#: the line a batch prints before the first command
START = "@@stax-start\n"


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
    out = parse_batch_prefix(stdout, commands)
    if len(out) < len(commands):
        argv = commands[len(out)]
        raise ValueError(
            _why_cut(stdout, commands, len(out)) or f"the output of `{argv[0]}` was cut off"
        )
    return out


def parse_batch_prefix(stdout: str, commands: Sequence[Sequence[str]]) -> list[CommandResult]:
    """The results of the commands of :func:`batch_script` whose output came back whole, in
    order: fewer than ``commands`` when the output was cut off (the connection dropped: a
    command after those may or may not have run). ValueError when not even the start marker
    came back."""
    at = stdout.find(START)
    if at < 0:
        raise ValueError("no start marker")
    lines = stdout[at + len(START):].split("\n")
    out: list[CommandResult] = []
    i = 0
    for argv in commands:
        if i >= len(lines) or not lines[i].startswith("@@cmd "):
            break
        try:
            rc = int(lines[i].split()[1])
        except (IndexError, ValueError):
            break
        j = i + 1
        parts: list[list[str]] = [[], []]
        k = 0
        while j < len(lines) and lines[j] != "@@end":
            if lines[j] == "@@err":
                k = 1
            else:
                parts[k].append(lines[j])
            j += 1
        if j >= len(lines):
            break  # cut off inside this command's output
        i = j + 1
        try:
            o, e = (base64.b64decode("".join(p), validate=True).decode(errors="replace")
                    for p in parts)
        except binascii.Error:
            break
        if rc == 127:  # as LocalTransport says it, whatever the remote sh's words
            e = f"{argv[0]}: command not found"
        out.append(CommandResult(rc, o, e))
    return out


def _why_cut(stdout: str, commands: Sequence[Sequence[str]], done: int) -> str | None:
    """Why the output stops after ``done`` results (for :func:`parse_batch`'s message)."""
    at = stdout.find(START)
    rest = stdout[at + len(START):].split("\n") if at >= 0 else []
    starts = [n for n, line in enumerate(rest) if line.startswith("@@cmd ")]
    if len(starts) <= done:
        return f"the output stops before `{commands[done][0]}`"
    return None


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
