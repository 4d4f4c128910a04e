"""PSI/J's private names, in ONE place.

jupyter_stax uses a few internals of psij-python that its public API does not offer; each is
named in :data:`INTERNALS` and used only here. The version range is pinned in pyproject.toml
(``psij-python>=0.9.11,<0.10``: 0.9.11 is the tested one) and tests/engine/test_psij_compat.py
fails, naming the internal, when a PSI/J release moves one.

Where the cluster's transport (see :mod:`.transport`) hooks into PSI/J's batch executors:

* every command an executor runs (submit, cancel, the status poll, list) goes through
  ``BatchSchedulerExecutor._run_command``, which :func:`routed_executor` overrides to call
  ``transport.run``: a remote transport runs ``sbatch``/``squeue``/``scancel`` on the cluster,
  batched as PSI/J batches them (ONE status command per poll for all jobs of the executor);
  a transport error becomes a failed command whose message says the cluster did not answer
  (a failed status poll is counted, never fatal; a failed submission is retried);
* the job-side helper files (``$SLURM_JOB_ID.out/.ec/.nodefile``, written by the submit
  script's ``psij.script_dir``) go to ``transport.aux_dir`` (``_create_script_context``);
* PSI/J's launcher scripts (deployed into its local work directory) are copied once to
  ``transport.aux_dir`` and the launch command names them there (``_create_script_context``);
* the submit script PSI/J renders into its local work directory is copied to
  ``transport.aux_dir`` through the transport before the submit command names it there
  (``get_submit_command``), when the two directories differ (a remote cluster).

Submission in batches (a remote cluster: one round trip for many jobs, see
``Backend.submit_many``) runs PSI/J's own ``submit`` twice per job, on the same ``Job``, with no
other internal: :func:`recording` (the submit script is rendered, the files it needs and the
submit command are noted, and ``_run_command`` stops the submission there with
:class:`Recorded`: nothing runs, the job stays NEW), then, after ONE transport call wrote every
job's files and ran every submit command, :func:`replaying` (the same rendering; no file is
written again, and ``_run_command`` answers with that job's result, which PSI/J parses as
usual: native id, QUEUED, registered with the poll thread). Both are per thread.

PSI/J deploys its launcher scripts (``single_launch.sh`` and ``launcher_lib.sh``) into
``<work dir>/<sha256>/`` by making the directory first and moving the files in one by one, and
takes an existing directory as complete: a server killed (``kill -9``) between the two, or a
second process racing the first, leaves or sees a directory without ``single_launch.sh``, and
every job then fails at once with ``No such file or directory`` (seen in CI).
:func:`install_atomic_launcher_deploy` replaces that method with one that builds the directory
aside and renames it into place, and repairs (file by file, atomically) a directory an older
process left incomplete.

For a local cluster ``transport.aux_dir`` IS PSI/J's work directory, so PSI/J's files stay where
PSI/J puts them. PSI/J's local executor (``scheduler: local``) starts processes here itself and
runs no commands: a remote workstation needs an executor of its own over the transport.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import StaxError
from .transport import (
    TRANSIENT_MARK,
    ClusterPath,
    CommandResult,
    FileSpec,
    Transport,
    TransportError,
)

#: the directory PSI/J's ScriptBasedLauncher deploys its scripts into (a sha256)
_DEPLOYED = re.compile(r"^[0-9a-f]{64}$")

#: the PSI/J version these internals were checked against
TESTED_VERSION = "0.9.11"

#: every PSI/J internal jupyter_stax relies on: (module, attribute path, what we use it for)
INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("psij._plugins", "_get_plugin_class", "load an executor class without instantiating it"),
    ("psij.job_executor", "JobExecutor._executors", "the registry _get_plugin_class reads"),
    (
        "psij.executors.batch.batch_scheduler_executor",
        "BatchSchedulerExecutor._run_command",
        "route the scheduler commands through the cluster's transport",
    ),
    (
        "psij.executors.batch.batch_scheduler_executor",
        "BatchSchedulerExecutor._create_script_context",
        "point psij.script_dir at the cluster's helper directory",
    ),
    (
        "psij.executors.batch.batch_scheduler_executor",
        "UNKNOWN_ERROR",
        "the message of a failed command that said nothing",
    ),
    (
        "psij.executors.batch.batch_scheduler_executor",
        "_QueuePollThread.done",
        "stop an executor's polling thread (BatchSchedulerExecutor._queue_poll_thread)",
    ),
    (
        "psij.launchers.script_based_launcher",
        "ScriptBasedLauncher._deploy_files",
        "deploy PSI/J's launcher scripts atomically (install_atomic_launcher_deploy)",
    ),
    (
        "psij.executors.batch.slurm",
        "SlurmJobExecutor._REASONS_MAP",
        "Slurm's messages for the reasons of failed jobs",
    ),
)


@dataclass
class Recording:
    """What one job's submission needs on the cluster (see :func:`recording`): its submit
    script, written by the batch (PSI/J's launcher scripts are deployed at once, atomically)."""

    files: dict[ClusterPath, FileSpec] = field(default_factory=dict)


class Recorded(Exception):
    """Raised by ``_run_command`` in :func:`recording` mode: the submit command PSI/J would run."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(" ".join(argv))
        self.argv = argv


_mode = threading.local()


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """In this thread: the routed executors note files instead of writing them, and stop a
    submission at its submit command (:class:`Recorded`)."""
    rec = Recording()
    _mode.value = rec
    try:
        yield rec
    finally:
        _mode.value = None


@contextlib.contextmanager
def replaying(answer: CommandResult | TransportError) -> Iterator[None]:
    """In this thread: the routed executors write no file (a batch wrote them) and answer the
    submit command with ``answer`` (what the batch said of it)."""
    _mode.value = answer
    try:
        yield
    finally:
        _mode.value = None


def _current() -> Recording | CommandResult | TransportError | None:
    return getattr(_mode, "value", None)


def plugin_class(name: str) -> Any:
    """PSI/J's executor class registered under ``name`` (without instantiating it)."""
    import psij
    from psij._plugins import _get_plugin_class

    try:
        entry = _get_plugin_class(name, None, "executor", psij.JobExecutor._executors)
    except ValueError as e:
        installed = ", ".join(sorted(psij.JobExecutor.get_executor_names()))
        cause = f" ({e.__cause__})" if e.__cause__ else ""
        raise StaxError(
            f"PSI/J cannot load an executor {name!r}{cause}; PSI/J knows: {installed}"
        ) from None
    return entry.ecls


def stop_polling(executor: Any) -> None:
    """Let a batch executor's status-polling thread end (PSI/J has no public way)."""
    thread = getattr(executor, "_queue_poll_thread", None)
    if thread is not None:
        thread.done = True


def slurm_failure_message(reason: str) -> str | None:
    """PSI/J's message for a Slurm reason of a failed job (the reason itself if unknown)."""
    from psij.executors.batch.slurm import SlurmJobExecutor

    return SlurmJobExecutor._REASONS_MAP.get(reason, reason or None)


def routed_executor() -> type:
    """A mixin for PSI/J batch executors that runs their commands and puts their cluster-side
    files through ``self.transport`` (see the module docstring). Imported lazily."""
    from psij.executors.batch.batch_scheduler_executor import UNKNOWN_ERROR

    class Routed:
        transport: Transport
        work_directory: Path

        def _run_command(self, cmd: list[str]) -> str:
            mode = _current()
            if isinstance(mode, Recording):
                raise Recorded(list(cmd))
            try:
                if isinstance(mode, TransportError):
                    raise mode
                res = mode if isinstance(mode, CommandResult) else self.transport.run(cmd)
            except TransportError as e:
                raise subprocess.CalledProcessError(
                    255, cmd, output=f"{TRANSIENT_MARK}: {e}"
                ) from None
            if res.returncode != 0:
                raise subprocess.CalledProcessError(
                    res.returncode, cmd, output=res.message or UNKNOWN_ERROR
                )
            return res.stdout

        def _remote(self) -> bool:
            return Path(self.transport.aux_dir) != Path(self.work_directory)

        def _create_script_context(self, job: Any) -> dict[str, object]:
            ctx: dict[str, Any] = super()._create_script_context(job)  # type: ignore[misc]
            if self._remote():
                ctx["psij"]["script_dir"] = str(self.transport.aux_dir)
                ctx["psij"]["launch_command"] = self._remote_launch(ctx["psij"]["launch_command"])
            return ctx

        def _remote_launch(self, argv: list[str]) -> list[str]:
            """The launch command with PSI/J's launcher scripts (deployed into a directory
            ``<hash>/`` of its local work directory, or of that directory's parent) copied
            once to the cluster's helper directory and named there."""
            wd, there = Path(self.work_directory), Path(self.transport.aux_dir)
            deployed: set[Path] = self.__dict__.setdefault("_stax_deployed", set())
            lock: threading.Lock = self.__dict__.setdefault("_stax_deploying", threading.Lock())
            mode = _current()
            out = []
            for word in argv:
                p = Path(word)
                src = p.parent
                if not (
                    p.is_absolute() and _DEPLOYED.match(src.name)
                    and (src.parent == wd or src.parent in wd.parents) and p.is_file()
                ):
                    out.append(word)
                    continue
                if src not in deployed and not isinstance(mode, (CommandResult, TransportError)):
                    # once per executor (batches on other threads wait for it), atomically
                    # (jobs of an earlier engine may be reading them), also while recording a
                    # batch (whose files are written in place)
                    with lock:
                        if src not in deployed:
                            self.transport.write_files({
                                there / src.name / f.name:
                                    FileSpec(f.read_text(), f.stat().st_mode)
                                for f in src.iterdir() if f.is_file()
                            })
                            deployed.add(src)
                out.append(str(there / src.name / p.name))
            return out

        def get_submit_command(self, job: Any, submit_file_path: Path) -> list[str]:
            if self._remote():
                there = Path(self.transport.aux_dir) / submit_file_path.name
                mode = _current()
                spec = FileSpec(submit_file_path.read_text())
                if isinstance(mode, Recording):
                    mode.files[there] = spec
                elif mode is None:
                    self.transport.write_files({there: spec})
                submit_file_path = there
            return super().get_submit_command(job, submit_file_path)  # type: ignore[misc,no-any-return]

    return Routed


def _deploy_atomically(work_dir: Path, paths: list[Path]) -> Path:
    """PSI/J's launcher files ``paths`` in ``work_dir/<sha256 of their contents>/``, complete:
    built in a hidden directory and renamed into place (a directory that exists is complete,
    whoever made it, and is never rewritten while jobs read it); a directory an interrupted
    older deploy left incomplete is repaired file by file, each written aside and renamed."""
    work_dir.mkdir(parents=True, exist_ok=True)
    files = [(p.name, p.read_bytes(), p.stat().st_mode & 0o7777) for p in paths]
    h = hashlib.sha256()
    for _, data, _ in files:
        h.update(data)
    dst = work_dir / h.hexdigest()

    def missing() -> list[tuple[str, bytes, int]]:
        out = []
        for name, data, mode in files:
            try:
                ok = (dst / name).read_bytes() == data
            except OSError:
                ok = False
            if not ok:
                out.append((name, data, mode))
        return out

    def write(path: Path, data: bytes, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)

    if dst.is_dir() and not missing():
        return dst
    tmp = work_dir / f".{dst.name}.{secrets.token_hex(8)}.tmp"
    tmp.mkdir()
    try:
        for name, data, mode in files:
            write(tmp / name, data, mode)
        os.rename(tmp, dst)  # replaces nothing but an empty directory
        return dst
    except OSError:
        pass  # dst exists with something in it: complete (a race) or left incomplete
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, data, mode in missing():
        aside = dst / f".{name}.{secrets.token_hex(8)}.tmp"
        write(aside, data, mode)
        os.replace(aside, dst / name)
    return dst


_atomic_installed = False
_atomic_lock = threading.Lock()


def install_atomic_launcher_deploy() -> None:
    """Make PSI/J's script-based launchers deploy their scripts with
    :func:`_deploy_atomically` (see the module docstring); idempotent, process-wide."""
    global _atomic_installed
    with _atomic_lock:
        if _atomic_installed:
            return
        from psij.launchers.script_based_launcher import ScriptBasedLauncher

        def _deploy_files(self: Any, paths: list[Path]) -> Path:
            return _deploy_atomically(Path(self.config.work_directory), list(paths))

        ScriptBasedLauncher._deploy_files = _deploy_files  # type: ignore[method-assign]
        _atomic_installed = True
