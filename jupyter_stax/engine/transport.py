"""How the engine reaches a cluster: its files and its commands, through ONE small interface.

Everything that lives on the cluster goes through a :class:`Transport`: the step directory
(scripts, start/exit records, logs), the scheduler's commands (``sbatch``, ``squeue``, ``scancel``
...; PSI/J's included, see :mod:`.psij_compat`), the scheduler's helper files. What lives on the
Jupyter side does not: the store, the provenance (``execution.json``), PSI/J's own bookkeeping.
There is one transport per cluster (:func:`.transports.transport_for`), shared by the engine and the
cluster's backend; :class:`LocalTransport` implements it with plain files and subprocesses, and
a remote one (SSH) implements the same methods: the engine has one code path for both.

Contract (every implementation):

* Calls are blocking and thread-safe; the engine makes them on a worker thread, never on its
  event-loop thread.
* A normal return means the work is done on the cluster: files written (parents created, with
  the given modes, each file complete: a reader never sees half a script), renamed, removed;
  records read as they were at one moment; a command run to its end (its exit code returned,
  whatever it is: a non-zero exit is the command's answer, not a transport error).
* Batching: :meth:`Transport.read_records` reads the records of MANY step directories in one
  call (a remote transport: one round trip), and so do ``write_files``/``rename``/``remove``
  for their lists. The engine reads the records of all running steps of a cluster with one call
  per poll; PSI/J's status poll is one ``squeue`` per poll, one :meth:`Transport.run` call.
  Submission is batched as well where a call is a round trip (:attr:`Transport.batch_limit`):
  the files of every step that became ready together in one :meth:`Transport.write_steps`, and
  their submit scripts and submit commands in one :meth:`Transport.run_many`.
* :class:`TransportError` is TRANSIENT: the cluster did not answer (a connection lost, a login
  node down, a command that hung past its timeout). The engine warns on the execution and tries
  again later; it never fails a step or forgets a job because of it. Anything else that a call
  raises (``OSError`` of a local write, a bad argument) is a real error of that call.
* Missing files are not errors where the method says so (records, ``rename``, ``remove``).
* A command that is not installed on the cluster is an exit code 127 with a message, as a
  shell would say it, not an exception.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from ..core import jobscript as js
from ..core.errors import StaxError
from ..core.staging import TreeEntry, list_local_tree
from . import landing
from .landing import Landed

#: a path on the cluster (a remote transport treats it as a POSIX path there)
ClusterPath = str | PurePath
#: told the bytes of each piece a transfer moved (a progress bar adds them up)
Progress = Callable[[int], None]


#: in the message of every command failure that a transport error caused (see
#: :func:`.schedulers.is_transient`)
TRANSIENT_MARK = "the cluster did not answer"


class TransportError(StaxError):
    """The cluster did not answer (transient: warn and try again; never fail a step for it)."""

    http_status = 503


class CommandTimedOut(TransportError):
    """A command ran longer than its timeout (it was killed)."""


@dataclass(frozen=True)
class CommandResult:
    """What a command said: its exit code, stdout and stderr (text)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """stdout and stderr on one line each (PSI/J's format for a failed command)."""
        return "\n".join(x for x in (self.stdout, self.stderr) if x)


@dataclass(frozen=True)
class FileSpec:
    """A file to write: its text and its mode."""

    text: str
    mode: int = 0o644


@dataclass(frozen=True)
class StepRecords:
    """The records a step's job wrote (None: absent or not completely written yet)."""

    start: js.StartRecord | None
    exit: js.ExitRecord | None


class Transport(ABC):
    """One cluster's files and commands (see the module docstring for the contract)."""

    #: where commands run, for messages ("the machine of the Jupyter server", "alice@login")
    where: str
    #: a directory on the cluster for the scheduler's helper files (PSI/J's job-side ``.out``,
    #: ``.ec``, ``.nodefile`` and submit scripts)
    aux_dir: Path
    #: how many steps' submission work (:meth:`write_steps`, :meth:`run_many`) one call should
    #: carry on a remote cluster, where every call is a round trip (the engine gives a local
    #: cluster's calls small batches of its own, ``engine.LOCAL_BATCH``)
    batch_limit: int = 1

    @abstractmethod
    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run one command to its end. Raises :class:`CommandTimedOut` past ``timeout``."""

    @abstractmethod
    def make_dirs(self, paths: Sequence[ClusterPath]) -> None:
        """Create directories (and parents); existing ones are fine."""

    @abstractmethod
    def write_files(self, files: Mapping[ClusterPath, FileSpec]) -> None:
        """Write files whole (parents created; an existing file is replaced)."""

    @abstractmethod
    def rename(self, moves: Sequence[tuple[ClusterPath, ClusterPath]]) -> None:
        """Rename ``(source, target)`` pairs in order; a missing source is skipped."""

    @abstractmethod
    def remove(self, paths: Sequence[ClusterPath]) -> None:
        """Remove files; missing ones are fine."""

    @abstractmethod
    def symlink(self, link: ClusterPath, target: ClusterPath) -> None:
        """Make ``link`` point to ``target`` (replacing a link that points elsewhere)."""

    @abstractmethod
    def write_steps(
        self,
        dirs: Sequence[ClusterPath],
        moves: Sequence[tuple[ClusterPath, ClusterPath]],
        files: Mapping[ClusterPath, FileSpec],
    ) -> None:
        """The files of many steps in ONE call: make ``dirs`` (and parents), then rename
        ``moves`` in order (a missing source is skipped, and so is a move whose target exists:
        a call tried again never moves this attempt's new files over the earlier attempt's),
        then write ``files`` (parents made, an existing file replaced). Unlike
        :meth:`write_files`, a file may be seen half-written while the call runs (a remote
        transport writes them all with one ``tar``): for files nobody reads before the call
        returns (the scripts of an attempt not yet submitted)."""

    def run_many(
        self,
        commands: Sequence[Sequence[str]],
        *,
        files: Mapping[ClusterPath, FileSpec] | None = None,
        links: Sequence[tuple[ClusterPath, ClusterPath]] = (),
        timeout: float | None = None,
    ) -> list[CommandResult | TransportError]:
        """Write ``files`` (as :meth:`write_steps` writes them: for files nobody reads
        meanwhile, e.g. new submit scripts) and make the symbolic ``links`` (``(link,
        target)``, as :meth:`symlink`), then run each command to its end, in order and with no
        stdin: ONE call where a call is a round trip. Each command's result, or the
        TransportError of one whose answer did not come back (it may have run: a ``sbatch``
        whose answer was lost).
        Raises TransportError when nothing came back, and a StaxError (nothing ran) when the
        files could not be written. ``timeout``: for the whole call.

        This default writes, then runs the commands one by one (a local cluster)."""
        if files:
            self.write_files(files)
        for link, target in links:
            self.symlink(link, target)
        out: list[CommandResult | TransportError] = []
        for argv in commands:
            try:
                out.append(self.run(argv, timeout=timeout))
            except TransportError as e:
                out.append(e)
        return out

    def remove_later(self, paths: Sequence[ClusterPath]) -> None:
        """Remove files that may wait (helper files of ended jobs): a remote transport removes
        them with its next script (a records read, a submission) instead of a round trip of
        their own, or when it closes. Never raises; missing files are fine. This default
        removes them now."""
        with contextlib.suppress(OSError, TransportError):
            self.remove(paths)

    @abstractmethod
    def read_records(self, step_dirs: Sequence[ClusterPath]) -> dict[str, StepRecords]:
        """The start and exit records of many step directories, in ONE call (keys: ``str`` of
        each directory as given)."""

    @abstractmethod
    def read_chunk(self, path: ClusterPath, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of a file from ``offset`` (b"" past its end or when missing)."""

    @abstractmethod
    def read_tail(self, path: ClusterPath, limit: int) -> bytes:
        """The last ``limit`` bytes of a file (b"" when missing)."""

    # ------------------------------------------------------------------ data in and out
    # (issue 14; :mod:`.staging` uses them). Names are relative paths, data: never shell text.
    @abstractmethod
    def list_tree(self, root: ClusterPath) -> list[TreeEntry]:
        """Every entry below ``root`` with its kind and size, symbolic links NOT followed
        (listed as links); [] when ``root`` is missing."""

    @abstractmethod
    def put_files(
        self, files: Sequence[tuple[Path, str]], dest_dir: ClusterPath, *,
        progress: Progress | None = None,
    ) -> dict[str, tuple[int, str]]:
        """Copy files of THIS machine (``(path here, relative name)``) into ``dest_dir`` on the
        cluster (parents made, a file there replaced), streamed; each name's size and sha256
        (of the bytes sent). TransportError when the connection drops (then try again).
        ``progress(n)``: called (on the caller's thread) after each piece of ``n`` bytes."""

    @abstractmethod
    def get_files(
        self, src_dir: ClusterPath, names: Sequence[str], dest_dir: Path, *,
        overwrite: bool = False, progress: Progress | None = None,
    ) -> dict[str, Landed]:
        """Copy regular files ``src_dir/name`` of the cluster into ``dest_dir`` on THIS machine
        (by :func:`.landing.land`: never outside ``dest_dir``, an existing different file kept
        unless ``overwrite``), streamed. A name that is not a regular file there is skipped
        (absent from the result). ``progress``: as for :meth:`put_files`."""

    @abstractmethod
    def copy_files(
        self, src_dir: ClusterPath, names: Sequence[str], dest_dir: ClusterPath
    ) -> dict[str, tuple[int, str]]:
        """Copy regular files from one directory of the cluster to another on it (an upstream
        step's files into a dependant's directory); each name's size and sha256."""

    def warning(self) -> str | None:
        """A one-line note on the connection when it has trouble (shown on executions)."""
        return None

    def verify(self) -> None:  # noqa: B027  (optional hook)
        """Before a new run: raise a StaxError when the cluster cannot be used as configured
        (a remote host key that changed, a key that is refused); a cluster that is just not
        answering is fine (the run waits for it with a warning)."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections; the transport is not used afterwards."""


def _read_record_file(path: str) -> bytes | None:
    """A record file's bytes (None: absent or unreadable); raw descriptors: a sweep's poll
    reads thousands of them."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, js.RECORD_MAX_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


class LocalTransport(Transport):
    """The cluster's files are this machine's files; its commands are subprocesses here."""

    where = "the machine of the Jupyter server"

    def __init__(self, aux_dir: Path | None = None) -> None:
        # callers that submit no job (cluster summaries) need no helper directory
        self.aux_dir = aux_dir or Path(tempfile.gettempdir()) / "jupyter_stax"

    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        try:
            proc = subprocess.run(
                list(argv),
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except FileNotFoundError:
            return CommandResult(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            raise CommandTimedOut(
                f"`{' '.join(argv)}` did not answer within {timeout:g} s"
            ) from None
        except OSError as e:
            return CommandResult(126, "", f"{argv[0]}: {e}")
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def make_dirs(self, paths: Sequence[ClusterPath]) -> None:
        for p in paths:
            os.makedirs(p, exist_ok=True)

    def write_files(self, files: Mapping[ClusterPath, FileSpec]) -> None:
        for p, spec in files.items():
            path = Path(p)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(spec.text)
                os.chmod(tmp, spec.mode)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def rename(self, moves: Sequence[tuple[ClusterPath, ClusterPath]]) -> None:
        for src, dst in moves:
            with contextlib.suppress(FileNotFoundError):
                os.replace(src, dst)

    def remove(self, paths: Sequence[ClusterPath]) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    def write_steps(
        self,
        dirs: Sequence[ClusterPath],
        moves: Sequence[tuple[ClusterPath, ClusterPath]],
        files: Mapping[ClusterPath, FileSpec],
    ) -> None:
        self.make_dirs(dirs)
        self.rename([(a, b) for a, b in moves if not os.path.lexists(b)])
        self.write_files(files)

    def symlink(self, link: ClusterPath, target: ClusterPath) -> None:
        link = Path(link)
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link) == str(target):
                return
            link.unlink(missing_ok=True)
        link.symlink_to(target, target_is_directory=True)

    def read_records(self, step_dirs: Sequence[ClusterPath]) -> dict[str, StepRecords]:
        out = {}
        read = _read_record_file
        for d in step_dirs:
            s = str(d)
            out[s] = StepRecords(
                js.parse_start_record(read(f"{s}/{js.START_RECORD}")),
                js.parse_exit_record(read(f"{s}/{js.EXIT_RECORD}")),
            )
        return out

    def read_chunk(self, path: ClusterPath, offset: int, limit: int) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(limit)
        except FileNotFoundError:
            return b""

    def read_tail(self, path: ClusterPath, limit: int) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read()
        except OSError:
            return b""

    def list_tree(self, root: ClusterPath) -> list[TreeEntry]:
        return list_local_tree(Path(root))

    def put_files(
        self, files: Sequence[tuple[Path, str]], dest_dir: ClusterPath, *,
        progress: Progress | None = None,
    ) -> dict[str, tuple[int, str]]:
        out = {}
        for src, name in files:
            with open(src, "rb") as f:  # the user's own file: a link to it is followed
                got = landing.land(
                    Path(dest_dir), name, landing.read_chunks(f, progress=progress),
                    overwrite=True,
                )
            out[name] = (got.size, got.sha256)
        return out

    def get_files(
        self, src_dir: ClusterPath, names: Sequence[str], dest_dir: Path, *,
        overwrite: bool = False, progress: Progress | None = None,
    ) -> dict[str, Landed]:
        out = {}
        for name in names:
            try:
                f = landing.open_regular(landing.target(Path(src_dir), name, make_parents=False))
            except (OSError, landing.UnsafePath):
                continue  # gone, or not a regular file (links are never followed)
            with f:
                out[name] = landing.land(
                    dest_dir, name, landing.read_chunks(f, progress=progress),
                    overwrite=overwrite,
                )
        return out

    def copy_files(
        self, src_dir: ClusterPath, names: Sequence[str], dest_dir: ClusterPath
    ) -> dict[str, tuple[int, str]]:
        got = self.get_files(src_dir, names, Path(dest_dir), overwrite=True)
        return {n: (x.size, x.sha256) for n, x in got.items()}
