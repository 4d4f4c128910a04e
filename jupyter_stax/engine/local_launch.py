"""The PSI/J launcher of the ``local`` cluster: the job's bash script runs in the launched
process itself.

PSI/J's ``single`` launcher starts ``/bin/bash <work dir>/<sha256>/single_launch.sh ...``,
which sources ``launcher_lib.sh`` (a ``dirname`` process; a process substitution that stamps
each of its four log lines with a ``date`` process), then runs the job's executable as a child
and prints ``_PSI_J_LAUNCHER_DONE``: seven processes per job around the job's own, ~4 ms of CPU
on this kind of machine, where the job itself (our wrapper ``stax.job.sh`` and a trivial step)
takes ~2. On a batch cluster that cost hides in the scheduler's; on ``local`` it is most of
the work (see bench/README.md, "local_throughput").

This launcher is ONE bash process: ``bash -c`` redirects stdin, stdout and stderr to the
spec's files and sources the job's script (``/bin/bash SCRIPT ARGS...``, as every job of
jupyter_stax is) or execs any other executable. What PSI/J's local executor expects of a
launcher (``psij.executors.local``), and how it is kept:

* the launched process's exit code is the job's: the sourced script's ``exit``; a process
  killed by a signal gives a negative code (CANCELED after PSI/J's cancel, else FAILED);
* its combined stdout/stderr is a pipe read once the process ended; output there marks a
  failure of the launcher itself (``is_launcher_failure``), whose message PSI/J puts on the
  FAILED status. Here the pipe sees only bash's own complaint when a file of the job cannot be
  opened (exit 126): after the redirections nothing holds the pipe (no ``_PSI_J_LAUNCHER_DONE``
  line is needed, and a step's background process cannot keep it open);
* the process id is the native id (the engine re-attaches to it after a restart, and the
  start record's ``$$`` is that same process now);
* ``pre_launch``/``post_launch`` are not supported (jupyter_stax sets neither).

The script is sourced by the shell ``bash -c`` started, with ``$0`` set to its path, as
``bash SCRIPT`` would have it: what it and the step's script see is the same.

PSI/J finds launchers by name in its plug-in registry: :func:`register` adds this one under
:data:`NAME` through the public ``Launcher.register_launcher`` (PSI/J loads the class from this
file itself, as a module of its own: at module level this file imports nothing of jupyter_stax).
"""

from __future__ import annotations

import threading
from pathlib import Path

from psij import InvalidJobException, Job, Launcher

#: the launcher's name in PSI/J's registry (``JobSpec(launcher=NAME)``)
NAME = "stax_local"
#: its version in the registry
VERSION = "1.0"

#: bash: the job's files, then the rest; a file that cannot be opened: bash says which on the
#: launcher's pipe (PSI/J's failure message), exit 126 (the job did not run)
_REDIRECT = 'exec <"$1" >"$2" 2>"$3" || exit 126; shift 3; '
#: ``$0`` is a bash script: sourced in this shell (no second bash); a missing one exits 127 with
#: bash's own message, as ``bash SCRIPT`` does
SOURCE = (
    _REDIRECT
    + '[ -f "$0" ] || { echo "/bin/bash: $0: No such file or directory" >&2; exit 127; }; '
    + '. "$0" "$@"'
)
#: ``$0`` is any other executable: exec'd
EXEC = _REDIRECT + 'exec "$0" "$@"'

BASH = "/bin/bash"


def launch_command(
    executable: str, arguments: list[str], stdin: str, stdout: str, stderr: str
) -> list[str]:
    """The command that runs ``executable arguments...`` with its standard streams
    redirected to the three paths (pure). ``/bin/bash SCRIPT ARGS...`` is sourced in the
    launched bash, anything else exec'd by it."""
    if executable == BASH and arguments and not arguments[0].startswith("-"):
        script, *args = arguments
        if "/" not in script:  # `.` would look it up on PATH first
            script = "./" + script
        return [BASH, "-c", SOURCE, script, stdin, stdout, stderr, *args]
    return [BASH, "-c", EXEC, executable, stdin, stdout, stderr, *arguments]


def failure_message(output: str) -> str:
    """PSI/J's message for a launcher failure: bash's complaint(s) on the launcher's pipe,
    without the ``<script>: line 1:`` prefix that names the launch command's line."""
    lines = []
    for line in output.splitlines():
        line = line.strip()
        head, sep, rest = line.partition(": line 1: ")
        lines.append(rest if sep and " " not in head else line)
    text = "; ".join(ln for ln in lines if ln)
    return f"the job's standard streams cannot be opened: {text}"


class StaxLocalLauncher(Launcher):
    """See the module docstring."""

    def get_launch_command(self, job: Job) -> list[str]:
        spec = job.spec
        if spec is None or spec.executable is None:
            raise InvalidJobException("the job has no executable")
        if spec.pre_launch is not None or spec.post_launch is not None:
            raise InvalidJobException(f"the {NAME} launcher runs no pre_launch/post_launch")
        return launch_command(
            spec.executable,
            list(spec.arguments or []),
            _path(spec.stdin_path),
            _path(spec.stdout_path),
            _path(spec.stderr_path),
        )

    def is_launcher_failure(self, output: str) -> bool:
        return bool(output.strip())

    def get_launcher_failure_message(self, output: str) -> str:
        return failure_message(output)


def _path(p: Path | None) -> str:
    return "/dev/null" if p is None else str(p)


_registered = False
_lock = threading.Lock()


def register() -> None:
    """Make :data:`NAME` known to PSI/J (idempotent, process-wide)."""
    global _registered
    with _lock:
        if _registered:
            return
        from packaging.version import Version
        from psij.descriptor import Descriptor

        from ..core.errors import StaxError

        desc = Descriptor(name=NAME, version=Version(VERSION), cls=f"{__name__}.{_CLASS}")
        root = Path(__file__).parents[len(__name__.split(".")) - 1]
        try:
            Launcher.register_launcher(desc, str(root))
            Launcher.get_instance(NAME)  # PSI/J keeps a load error until asked
        except ValueError as e:
            cause = f" ({e.__cause__})" if e.__cause__ else ""
            raise StaxError(
                f"PSI/J cannot load jupyter_stax's local launcher from {root}: {e}{cause}; "
                "reinstall jupyter-stax"
            ) from None
        _registered = True


_CLASS = StaxLocalLauncher.__name__
