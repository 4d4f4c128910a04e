"""A workstation over SSH (``scheduler: local`` with a ``host``): no scheduler, the steps are
processes started detached on the remote machine. The shell scripts that start, watch and stop
them, and the parser of what they print: PURE functions (tested table-driven); the backend that
runs them through the cluster's transport is :mod:`jupyter_stax.engine.remote.workstation`.

How a step runs there (each line ONE command, one round trip):

* start: ``setsid nohup`` runs the job wrapper in a new session (its process group is its pid),
  stdin from /dev/null, stdout/stderr to the step's logs: the SSH channel closes at once and the
  process outlives the connection and the engine. Its pid is recorded in the step directory
  (``stax.pid``: ``<attempt> <pid>``) and in an index of the cluster's helper directory
  (``pids/<pid>`` -> the step directory), by which a new engine finds the step directory again
  from the native id (the pid) alone. Starting is idempotent per attempt: when ``stax.pid``
  already names a live process of this attempt, that pid is the answer (a start whose answer was
  lost with the connection is never a second process).
* status: for ALL watched pids in one script: is the process alive (``kill -0`` and, where
  ``/proc`` exists, its working directory is the step directory: a recycled pid is not ours),
  then the step's exit record. The liveness is taken BEFORE the record is read, so a process that
  ends in between is seen with its record.
* cancel: SIGTERM to the process group, SIGKILL to what is left after a grace period.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from ...core import jobscript as js

NAME = "local"

#: the step directory's record of the process: ``<attempt> <pid>``
PID_FILE = "stax.pid"
#: the index directory (under the cluster's helper directory): ``pids/<pid>`` -> step directory
INDEX = "pids"
#: seconds between SIGTERM and SIGKILL of a cancel
CANCEL_GRACE = 5


def launch_script(
    *, step_dir: str, job_script: str, stdout: str, stderr: str, attempt: int, index_dir: str
) -> str:
    """Start the job wrapper detached (see the module docstring); prints ``PID <pid>``."""
    q = shlex.quote
    d = q(step_dir)
    return "\n".join([
        "set -u",
        f"cd -P -- {d} || {{ echo 'cannot enter the step directory' {d} >&2; exit 3; }}",
        # idempotent per attempt: a live process of this attempt is the answer
        f"if read -r a p < {PID_FILE} 2>/dev/null && [ \"$a\" = {attempt} ] && "
        f"kill -0 \"$p\" 2>/dev/null; then echo \"PID $p\"; exit 0; fi",
        f"rm -f {PID_FILE}",
        "command -v setsid >/dev/null 2>&1 || { echo 'setsid (util-linux) is not installed' >&2;"
        " exit 4; }",
        # the inner sh records its own pid, then becomes the wrapper: pid = session = group
        f"setsid nohup /bin/sh -c 'echo \"$1 $$\" > {PID_FILE}.tmp && mv {PID_FILE}.tmp "
        f"{PID_FILE} && exec /bin/bash \"$2\"' stax-step {attempt} {q(job_script)} "
        f"> {q(stdout)} 2> {q(stderr)} < /dev/null &",
        "i=0",
        f"while ! [ -s {PID_FILE} ]; do",
        "  i=$((i+1)); [ $i -gt 500 ] && { echo 'the step process did not start' >&2; exit 5; }",
        "  sleep 0.01",
        "done",
        f"read -r a p < {PID_FILE}",
        f"mkdir -p {q(index_dir)} && ln -sfn {d} {q(index_dir)}/\"$p\"",
        'echo "PID $p"',
        "",
    ])


def parse_launch(out: str) -> int | None:
    """The pid a launch script printed (None: it printed none)."""
    for line in out.splitlines():
        word, _, pid = line.strip().partition(" ")
        if word == "PID" and pid.isdigit():
            return int(pid)
    return None


#: the status script's function: ``st PID STEP_DIR`` (an empty STEP_DIR: look it up in the
#: index); prints ``PID ALIVE COMPLETE RECORD``: ALIVE 1/0, COMPLETE 1 when the exit record is
#: there and ends with its newline (else 0, and no RECORD)
_STATUS_FN = f"""st() {{
  d=$2
  [ -n "$d" ] || d=$(readlink "$IDX/$1" 2>/dev/null) || d=
  if kill -0 "$1" 2>/dev/null && {{ [ ! -d /proc/"$1" ] || [ /proc/"$1"/cwd -ef "$d" ]; }}; then
    a=1
  else
    a=0
  fi
  f="$d/{js.EXIT_RECORD}"
  if [ -n "$d" ] && [ -s "$f" ] && [ "$(tail -c 1 "$f" | wc -l)" -eq 1 ]; then
    printf '%s %s 1 %s\\n' "$1" $a "$(head -n 1 "$f" | head -c 200)"
  else
    echo "$1 $a 0"
  fi
}}"""


def status_script(jobs: Sequence[tuple[int, str | None]], index_dir: str,
                  forget: Sequence[int] = ()) -> str:
    """ONE script for the status of every ``(pid, step directory or None)``; ``forget``: index
    entries of finished jobs to remove on the way. Prints one line per pid (see
    :func:`parse_status`)."""
    q = shlex.quote
    lines = [f"IDX={q(index_dir)}", _STATUS_FN]
    lines += [f"st {int(pid)} {q(d or '')}" for pid, d in jobs]
    if forget:
        lines.append("rm -f " + " ".join(f'"$IDX/{int(p)}"' for p in forget))
    lines.append("echo STAX-STATUS-DONE")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ProcessStatus:
    """What the status script saw of one pid."""

    alive: bool
    exit: js.ExitRecord | None
    """the step's exit record (of whatever attempt; None: none yet)"""


class StatusCutOff(ValueError):
    """The status script's output ended early (the connection dropped)."""


def parse_status(out: str) -> dict[int, ProcessStatus]:
    """``{pid: status}`` from a status script's output (a line it cannot read is skipped)."""
    if "STAX-STATUS-DONE" not in out:
        raise StatusCutOff("the status output is incomplete")
    got: dict[int, ProcessStatus] = {}
    for line in out.splitlines():
        words = line.split(" ", 3)
        if len(words) < 3 or not words[0].isdigit() or words[1] not in ("0", "1"):
            continue
        rec = None
        if words[2] == "1" and len(words) == 4:
            rec = js.parse_exit_record((words[3].strip() + "\n").encode())
        got[int(words[0])] = ProcessStatus(words[1] == "1", rec)
    return got


def cancel_script(pid: int, grace: int = CANCEL_GRACE) -> str:
    """SIGTERM to the process group ``pid``, SIGKILL after ``grace`` seconds if still alive."""
    p = int(pid)
    return "\n".join([
        f"kill -TERM -{p} 2>/dev/null || kill -TERM {p} 2>/dev/null || exit 0",
        "i=0",
        f"while kill -0 -{p} 2>/dev/null && [ $i -lt {grace * 10} ]; do sleep 0.1; "
        "i=$((i+1)); done",
        f"kill -KILL -{p} 2>/dev/null",
        "exit 0",
        "",
    ])
