"""The SSH transport: a remote cluster's files and commands over ONE connection.

:class:`SSHTransport` implements :class:`~jupyter_stax.engine.transport.Transport` with the
primitives of :class:`.base.SSHConnection` (one exec channel, one round trip, each):

- ``run`` -> ``SSHConnection.run`` in the account's login shell (the site's PATH, SLURM_CONF);
- ``write_files``/``make_dirs``/``rename``/``remove``/``symlink``: one ``sh`` script each,
  whatever the number of files;
- submission in batches (:attr:`SSHTransport.batch_limit` steps at most): ``write_steps``, the
  directories, earlier attempts' renames and scripts of many steps in one script;
  ``run_many``, their submit scripts and ``sbatch`` commands in one script (each command's
  output framed, :mod:`..batch`; NOT retried: a ``sbatch`` twice is two jobs);
- ``remove_later``: helper files of ended jobs are removed by the next records read or
  submission script (or when the transport closes), never by a round trip of their own;
- ``read_records``: the start and exit records of EVERY step directory asked for in ONE
  ``read_files`` (one tar stream), parsed by the same pure functions as the local transport's
  (:func:`jupyter_stax.core.jobscript.parse_start_record` / ``parse_exit_record``);
- ``read_chunk``/``read_tail``: ``tail -c``/``head -c`` on the cluster.

Threading: the :class:`~jupyter_stax.engine.transport.Transport` interface is blocking and
thread-safe; the connection is asyncio. Each transport owns a private event loop on a daemon
thread; a call submits its coroutine there and waits for it, so any number of engine threads share
the ONE connection (its semaphore bounds the channels open at once).

Errors: an SSH error becomes a :class:`~jupyter_stax.engine.transport.TransportError` (the
engine warns on the execution and tries again: never a failed or lost step), including the
configuration ones (unknown or changed host key, refused authentication): those say what to do,
and the run continues once the user fixed them. A helper command that failed on the cluster (a
work directory that cannot be written) is a :class:`~jupyter_stax.core.errors.StaxError` of that
call. :meth:`SSHTransport.warning` says since when the cluster does not answer.

Paths: every path is a POSIX path on the cluster; ``~`` is the remote home. The scheduler's
helper files (PSI/J's submit scripts, ``.out``/``.ec``) go to ``~/.stax/psij/<cluster>`` there
(:attr:`SSHTransport.aux_dir`, absolute). The remote home is asked once and remembered on the
Jupyter side (``<state dir>/remote-home``), so an engine that re-attaches after a restart needs
no round trip for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import tarfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from ...core import jobscript as js
from ...core.api import ConnectionState
from ...core.errors import InvalidClusterConfig, StaxError
from ...core.models import Cluster
from ...core.staging import TreeEntry
from .. import batch, landing
from ..landing import Landed
from ..transport import (
    ClusterPath,
    CommandResult,
    CommandTimedOut,
    FileSpec,
    Progress,
    StepRecords,
    Transport,
    TransportError,
)
from . import files, open_connection, pump, shell
from .base import ByteStream, SSHConnection
from .errors import SSHError, SSHRemoteError, SSHTimeout
from .target import SSHTarget
from .tarstream import TarReader

T = TypeVar("T")

#: the connection layer's own "retrying" notes, cut from the warning that says it once
_RETRYING = re.compile(r"(;? retrying)?( \(next attempt in \d+ s\))?$")

#: buffers (of :data:`~jupyter_stax.engine.landing.CHUNK`) sent between two waits for the channel
PUT_DRAIN_EVERY = 8

#: files at least this large are checked on the cluster before a put: one a cut put left part
#: of is continued from there (after its first bytes' sha256 matched), one already whole is not
#: sent again
PUT_RESUME_MIN = 8 << 20

#: seconds the remote end of a transfer may take to finish once all was sent or read
TRANSFER_TIMEOUT = 600.0

#: the file in the cluster's state directory (Jupyter side) that remembers the remote home
HOME_FILE = "remote-home"

#: steps whose submission work (files, submit commands) one command carries at most: one round
#: trip for up to this many steps; a few batches go at once (the engine's submit workers)
BATCH_LIMIT = 25

#: files of :meth:`SSHTransport.remove_later` one script removes at most (the rest: the next)
REMOVE_LIMIT = 600


def target_of(cluster: Cluster) -> SSHTarget:
    """The SSH target of a remote cluster (:class:`.errors.SSHConfigError` when it is off)."""
    target = SSHTarget.from_cluster(cluster)
    if target is None:
        raise ValueError(f"cluster {cluster.name!r} has no host: it is not remote")
    return target


class SSHTransport(Transport):
    """One remote cluster over one SSH connection (see the module docstring)."""

    batch_limit = BATCH_LIMIT

    def __init__(
        self, cluster: Cluster, state_dir: Path | None = None, *,
        connection: SSHConnection | None = None,
    ) -> None:
        self.cluster = cluster
        self.state_dir = state_dir
        self.connection = connection or open_connection(target_of(cluster))
        self.where = self.connection.target.destination
        self._home: str | None = self._remembered_home()
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._last_failure: SSHError | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"stax-ssh-{cluster.name}", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._leftovers: list[str] = []  # remove_later's, for the next script
        self._leftovers_lock = threading.Lock()
        #: bytes of file content streams read from the cluster by ``get_files`` so far (tar
        #: streams and the rests of resumed files): what a transfer cost on the wire
        self.received = 0
        #: bytes of file content streams written to the cluster by ``put_files`` so far
        self.sent = 0
        self._received_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._result(self._submit(coro), timeout)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the transport's loop (see :meth:`_result`)."""
        if self._closed:
            coro.close()
            raise TransportError(f"{self.where}: the SSH transport is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _result(self, fut: concurrent.futures.Future[T], timeout: float | None = None) -> T:
        """What the coroutine of ``fut`` returned, its SSH errors mapped onto the transport's."""
        try:
            result = fut.result(None if timeout is None else timeout + 30)
        except SSHTimeout as e:
            self._failed(e)
            raise CommandTimedOut(f"{self.where}: {e.message}") from None
        except SSHRemoteError as e:
            self._ok()  # the cluster answered: the command itself failed
            raise StaxError(e.message) from None
        except SSHError as e:
            self._failed(e)
            raise TransportError(e.message) from None
        except concurrent.futures.TimeoutError:
            fut.cancel()
            self._failed(None)
            raise CommandTimedOut(f"{self.where}: no answer within {timeout:g} s") from None
        except concurrent.futures.CancelledError:  # closed while the call was on its way
            raise TransportError(f"{self.where}: the SSH transport was closed") from None
        self._ok()
        return result

    def _failed(self, e: SSHError | None) -> None:
        if self._failing_since is None:
            self._failing_since = time.time()
        self._last_error = e.message if e is not None else "no answer"
        self._last_failure = e

    def _ok(self) -> None:
        self._failing_since = None
        self._last_error = None
        self._last_failure = None

    def connection_state(self) -> ConnectionState:
        """connected, idle, reconnecting since when and why, or refused (:mod:`.state`)."""
        from .state import describe

        return describe(self.connection, self._failing_since, self._last_failure,
                        self._last_error)

    def warning(self) -> str | None:
        since = self._failing_since or self.connection.stats.down_since
        if since is None:
            return None
        at = time.strftime("%H:%M:%S", time.localtime(since))
        why = self._last_error or self.connection.stats.last_error or "no answer"
        why = _RETRYING.sub("", why) or why
        return f"ssh connection to {self.where} lost since {at}; retrying ({why})"

    def verify(self) -> None:
        """Connect unless connected (at once, whatever the backoff: a user asked); a
        configuration error (host key, authentication, the entry) is raised as a StaxError
        that says the fix; a transient one (down, refused, time-out) is not."""
        if self._closed or self.connection.connected:
            return
        self.connection.reset_backoff()
        fut = asyncio.run_coroutine_threadsafe(self.connection.connect(), self._loop)
        try:
            fut.result(self.connection.timeout + 30)
        except SSHError as e:
            self._failed(e)
            if not e.transient:
                raise InvalidClusterConfig(e.message) from None
        except concurrent.futures.TimeoutError:
            fut.cancel()

    def close(self) -> None:
        if self._closed:
            return
        if self.connection.connected:  # what remove_later kept, while the connection is up
            with contextlib.suppress(Exception):
                self.remove(self._take_leftovers())
        self._closed = True
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.connection.close(), self._loop).result(10)
        with contextlib.suppress(Exception):  # calls still on their way end now: a thread
            # waiting for one (an engine worker) must not wait forever on a stopped loop
            asyncio.run_coroutine_threadsafe(_cancel_others(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    # ------------------------------------------------------------------ paths
    def _remembered_home(self) -> str | None:
        if self.state_dir is None:
            return None
        try:
            dest, _, home = (self.state_dir / HOME_FILE).read_text().rstrip("\n").partition("\t")
        except OSError:
            return None
        return home if dest == self._home_key() and home.startswith("/") else None

    def _home_key(self) -> str:
        t = self.connection.target
        return f"{t.destination}:{t.port or ''}"

    def home(self) -> str:
        """The remote account's home directory (asked once, then remembered)."""
        if self._home is None:
            home = self._call(self.connection.home())
            if self.state_dir is not None:
                with contextlib.suppress(OSError):
                    self.state_dir.mkdir(parents=True, exist_ok=True)
                    (self.state_dir / HOME_FILE).write_text(f"{self._home_key()}\t{home}\n")
            self._home = home
        return self._home

    def resolve(self, path: ClusterPath) -> str:
        """``path`` as an absolute path on the cluster (``~`` and relative: in the home)."""
        p = str(path)
        if p == "~":
            return self.home()
        if p.startswith("~/"):
            return str(PurePosixPath(self.home()) / p[2:])
        if not p.startswith("/"):
            return str(PurePosixPath(self.home()) / p)
        return p

    @property
    def aux_dir(self) -> Path:  # type: ignore[override]
        return Path(self.home()) / ".stax" / "psij" / self.cluster.name

    # ------------------------------------------------------------------ Transport
    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        data = stdin.encode() if stdin is not None else None
        res = self._call(self.connection.run(list(argv), data, timeout=timeout), timeout)
        return CommandResult(res.rc, res.out, res.err)

    def make_dirs(self, paths: Sequence[ClusterPath]) -> None:
        self._call(self.connection.mkdirs([str(p) for p in paths]))

    def write_files(self, files: Mapping[ClusterPath, FileSpec]) -> None:
        self._call(self.connection.write_files(
            {str(p): (spec.text.encode(), spec.mode) for p, spec in files.items()}
        ))

    def rename(self, moves: Sequence[tuple[ClusterPath, ClusterPath]]) -> None:
        self._call(self.connection.rename([(str(a), str(b)) for a, b in moves]))

    def remove(self, paths: Sequence[ClusterPath]) -> None:
        self._call(self.connection.remove([str(p) for p in paths]))

    def symlink(self, link: ClusterPath, target: ClusterPath) -> None:
        self._call(self.connection.symlink(str(link), str(target)))

    def write_steps(
        self,
        dirs: Sequence[ClusterPath],
        moves: Sequence[tuple[ClusterPath, ClusterPath]],
        files: Mapping[ClusterPath, FileSpec],
    ) -> None:
        data = {self.resolve(p): (spec.text.encode(), spec.mode) for p, spec in files.items()}
        with self._leftovers_taken() as gone:
            self._call(self.connection.write_steps(
                [str(d) for d in dirs], [(str(a), str(b)) for a, b in moves], data, remove=gone,
            ))

    def run_many(
        self,
        commands: Sequence[Sequence[str]],
        *,
        files: Mapping[ClusterPath, FileSpec] | None = None,
        links: Sequence[tuple[ClusterPath, ClusterPath]] = (),
        timeout: float | None = None,
    ) -> list[CommandResult | TransportError]:
        """ONE command: the files and links, then each command (see
        :meth:`Transport.run_many`); never tried again on its own (a ``sbatch`` whose answer
        was lost may have queued its job: the caller looks for it before trying again)."""
        if not commands and not files and not links:
            return []
        with self._leftovers_taken() as gone:
            script = "\n".join([
                *shell.prelude_lines(
                    {self.resolve(p): (spec.text.encode(), spec.mode)
                     for p, spec in (files or {}).items()},
                    [(str(a), str(b)) for a, b in links], gone,
                ),
                batch.batch_script(commands) if commands else "printf '@@stax-start\\n'",
            ]) + "\n"
            res = self._call(
                self.connection.exec(shell.SH, script.encode(), timeout=timeout), timeout
            )
        out = res.out
        if batch.START not in out:  # the files could not be written: nothing ran
            if res.rc in (0, -1):
                raise TransportError(f"{self.where}: a batch of {len(commands)} commands did "
                                     f"not start (exit {res.rc})")
            raise StaxError(
                f"{self.where}: writing {len(files or {})} files before {len(commands)} "
                f"commands failed (exit {res.rc}): {res.err.strip()[-500:] or 'no message'}"
            )
        got: list[CommandResult | TransportError] = list(
            batch.parse_batch_prefix(out, commands)
        )
        lost = TransportError(
            f"{self.where}: the answer of a batch of {len(commands)} commands was cut off "
            f"after {len(got)} (exit {res.rc})"
        )
        return got + [lost] * (len(commands) - len(got))

    def remove_later(self, paths: Sequence[ClusterPath]) -> None:
        with self._leftovers_lock:
            self._leftovers += [str(p) for p in paths]

    def _take_leftovers(self) -> list[str]:
        with self._leftovers_lock:
            gone = self._leftovers[:REMOVE_LIMIT]
            del self._leftovers[:REMOVE_LIMIT]
        return gone

    @contextlib.contextmanager
    def _leftovers_taken(self) -> Iterator[list[str]]:
        """remove_later's files for the next script; kept for another if it fails."""
        gone = self._take_leftovers()
        try:
            yield gone
        except BaseException:
            with self._leftovers_lock:
                self._leftovers[:0] = gone
            raise

    def read_records(self, step_dirs: Sequence[ClusterPath]) -> dict[str, StepRecords]:
        names = {str(d): (f"{d}/{js.START_RECORD}", f"{d}/{js.EXIT_RECORD}") for d in step_dirs}
        if not names:
            return {}
        with self._leftovers_taken() as gone:
            paths = [p for pair in names.values() for p in pair]
            got = self._call(self.connection.read_files(paths, js.RECORD_MAX_BYTES, remove=gone))
        return {
            d: StepRecords(js.parse_start_record(got.get(start)),
                           js.parse_exit_record(got.get(end)))
            for d, (start, end) in names.items()
        }

    def read_chunk(self, path: ClusterPath, offset: int, limit: int) -> bytes:
        return self._call(self.connection.read_from(str(path), offset, limit)) or b""

    def read_tail(self, path: ClusterPath, limit: int) -> bytes:
        return self._call(self.connection.read_tail(str(path), limit)) or b""


    # ------------------------------------------------------------------ files in and out
    def list_tree(self, root: ClusterPath) -> list[TreeEntry]:
        res = self._call(self.connection.exec(
            shell.SH, files.list_tree_script(self.resolve(root)), retry=True
        ))
        try:
            return files.parse_list_tree(res.stdout)
        except shell.ProtocolError as e:
            raise TransportError(f"{self.where}: listing {root}: {e}") from None

    def put_files(
        self, items: Sequence[tuple[Path, str]], dest_dir: ClusterPath, *,
        progress: Progress | None = None,
    ) -> dict[str, tuple[int, str]]:
        """ONE tar stream into ``dest_dir`` whatever the number of files (see
        :func:`.files.write_tar`). With the openssh client the stream goes to the ``ssh``
        process's stdin pipe straight from this thread (blocking writes); with asyncssh it goes
        through the transport's loop a buffer at a time (:class:`_Push`)."""
        if not items:
            return {}
        sums: dict[str, tuple[int, str]] = {}
        big = [(p, n, size) for p, n in items
               if (size := _size(p)) >= PUT_RESUME_MIN and _encodable(n)]
        if big:
            sums.update(self._put_resume(big, dest_dir, progress))
            items = [(p, n) for p, n in items if n not in sums]
            if not items:
                return sums
        self._push(
            files.unpack_command(self.resolve(dest_dir)),
            lambda out: files.write_tar(
                out, items, lambda n, size, digest: sums.__setitem__(n, (size, digest)),
                progress,
            ),
            f"writing files into {dest_dir}",
        )
        return sums

    def _push(self, command: str, body: Callable[[_Push], None], what: str) -> None:
        """Run ``command`` on the cluster with ``body`` writing its stdin (:class:`_Push`);
        the remote end's exit status says how it went: a dropped connection or a cut stream is
        a TransportError (the engine tries again), a failure of the command a StaxError with
        the cluster's message (``what`` says what was being done)."""
        stream = self._call(self.connection.open_stream(command, raw="stdin"))
        cut = False
        try:
            fd, stream.stdin_fd = stream.stdin_fd, None  # ours now (closed: the EOF)
            out = _Push(self, stream, fd)
            try:
                body(out)
                out.flush()
            except (BrokenPipeError, _Cut):  # the remote end is gone: its exit status says why
                cut = True
            finally:
                if fd is not None:
                    os.close(fd)
            if fd is None:
                self._call(stream.write_eof())
            rc, err = self._call(stream.finish(TRANSFER_TIMEOUT))
        except BaseException:
            self._abort(stream)
            raise
        if rc == -1 or (cut and rc in (0, 255)):
            raise TransportError(f"{self.where}: the connection dropped while writing files")
        if rc != 0:
            raise StaxError(
                f"{self.where}: {what} failed (exit {rc}): "
                f"{err.decode(errors='replace').strip()[-500:] or 'no message'}"
            )
        if cut:
            raise TransportError(f"{self.where}: {what} was cut off")

    def _put_resume(
        self, big: Sequence[tuple[Path, str, int]], dest_dir: ClusterPath,
        progress: Progress | None,
    ) -> dict[str, tuple[int, str]]:
        """Big files a cut put left partly on the cluster: ONE command gives each target's size
        and the sha256 of its first bytes (up to the local size); where those bytes are this
        file's first bytes (hashed here), only the rest is sent (appended by one stream each),
        and a target already whole is not sent at all. The rest: whole, in the tar stream."""
        dest = self.resolve(dest_dir)
        res = self._call(self.connection.exec(
            shell.SH, files.prefix_sums_script(dest, [(n, size) for _, n, size in big]),
            retry=True,
        ))
        try:
            there = files.parse_prefix_sums(res.stdout, len(big))
        except shell.ProtocolError as e:
            raise TransportError(f"{self.where}: checking files in {dest_dir}: {e}") from None
        done: dict[str, tuple[int, str]] = {}
        for (path, name, size), got in zip(big, there, strict=True):
            if got is None or not 0 < got[0] <= size:
                continue
            kept = got[0]
            try:
                with open(path, "rb", buffering=0) as f:
                    n, prefix = landing.hash_fd(f.fileno(), kept)
            except OSError:
                continue  # the tar stream says what is wrong with it
            if n != kept or prefix.hexdigest() != got[1]:
                continue
            if progress is not None:
                progress(kept)
            if kept == size:
                done[name] = (size, got[1])
                continue
            done[name] = self._append(path, name, dest, kept, size, prefix, progress)
        return done

    def _append(
        self, path: Path, name: str, dest: str, offset: int, size: int, prefix: Any,
        progress: Progress | None,
    ) -> tuple[int, str]:
        """The bytes of ``path`` after ``offset`` appended to ``dest/name`` (its first
        ``offset`` bytes checked already: ``prefix`` is their sha256 object, which goes on
        over the rest)."""

        def body(out: _Push) -> None:
            with open(path, "rb", buffering=0) as f:
                f.seek(offset)
                files.send_fd(f.fileno(), size - offset, out, prefix,
                              memoryview(bytearray(landing.CHUNK)), path, progress)

        self._push(
            files.append_command(dest, name, offset), body, f"writing {name!r} into {dest}"
        )
        return size, prefix.hexdigest()

    def get_files(
        self, src_dir: ClusterPath, names: Sequence[str], dest_dir: Path, *,
        overwrite: bool = False, progress: Progress | None = None,
    ) -> dict[str, Landed]:
        """ONE tar stream out of ``src_dir``, read on this thread by :class:`.TarReader` from a
        pipe: the ``ssh`` process's stdout (openssh client) or one the channel's session writes
        (asyncssh, :mod:`.asyncssh_pipe`); written by ONE
        :class:`~jupyter_stax.engine.landing.Lander`: a ``dest_dir`` that does not exist yet
        is landed in a hidden sibling directory renamed into place once at the end. The files a
        cut fetch landed whole there are not fetched again once their sizes and sums match the
        cluster's (:meth:`_check_landed`), nor are the files already in place in an existing
        ``dest_dir`` (:meth:`_check_present`: ``unchanged``; or ``kept`` when they differ and
        not ``overwrite``); a file whose fetch was cut continues from the bytes
        kept here once their sha256 matches the cluster's first bytes of the file
        (:meth:`_resume`); the others come whole."""
        if not names:
            return {}
        out: dict[str, Landed] = {}
        with landing.Lander(dest_dir, stage=True) as lander:
            whole = lander.landed_before(names)
            if whole:
                self._check_landed(src_dir, whole, lander, out, progress)
            present = lander.present([n for n in names if n not in out])
            if present:
                self._check_present(src_dir, present, lander, overwrite, out, progress)
            kept = lander.partials([n for n in names if n not in out])
            if kept:
                self._resume(src_dir, kept, lander, overwrite, out, progress)
            rest = [n for n in names if n not in out]
            if rest:
                out.update(self._get_tar(src_dir, rest, lander, overwrite, progress))
            return lander.commit(out, overwrite=overwrite)

    def _check_landed(
        self, src_dir: ClusterPath, whole: Mapping[str, tuple[int, str]],
        lander: landing.Lander, out: dict[str, Landed], progress: Progress | None,
    ) -> None:
        """The files a cut fetch landed whole (``whole``: name -> size and sha256 here): ONE
        command gives the size and sha256 of each on the cluster; those that match are kept
        (not fetched again), the others are dropped (fetched whole)."""
        there = self._cluster_sums(src_dir, list(whole))
        for name, got in whole.items():
            if there.get(name) != got:
                lander.drop(name)
                continue
            out[name] = Landed(lander.path_of(name), got[0], got[1], "new")
            if progress is not None:
                progress(got[0])

    def _cluster_sums(self, src_dir: ClusterPath, names: list[str]) -> dict[str, tuple[int, str]]:
        """The size and sha256 of each of ``names`` (relative to ``src_dir``) on the cluster, in
        ONE command; a name absent there is absent here."""
        res = self._call(self.connection.exec(
            files.sums_command(self.resolve(src_dir)), files.names_input(names), retry=True,
        ))
        try:
            return files.parse_copy(res.stdout)
        except shell.ProtocolError as e:
            raise TransportError(f"{self.where}: checking files in {src_dir}: {e}") from None

    def _check_present(
        self, src_dir: ClusterPath, present: Mapping[str, int], lander: landing.Lander,
        overwrite: bool, out: dict[str, Landed], progress: Progress | None,
    ) -> None:
        """The files already in place in an existing destination (``present``: name -> size
        here): ONE command gives their sizes and sha256 on the cluster; a file with the same
        size and sum here is ``unchanged`` and not fetched (as rsync skips it); one that
        differs is ``kept`` without fetching it unless ``overwrite`` (then it comes whole)."""
        there = self._cluster_sums(src_dir, list(present))
        for name in present:
            got = there.get(name)
            if got is None:
                continue  # not a regular file there: the stream says what it is
            same = lander.same(name, *got)
            if same is None and overwrite:
                continue  # fetched, and replaces it
            out[name] = same or Landed(lander.path_of(name), got[0], got[1], "kept")
            if progress is not None:
                progress(got[0])

    def _count(self, n: int) -> None:
        with self._received_lock:
            self.received += n

    def _count_sent(self, n: int) -> None:
        with self._received_lock:
            self.sent += n

    def _get_tar(
        self, src_dir: ClusterPath, names: Sequence[str], lander: landing.Lander,
        overwrite: bool, progress: Progress | None,
    ) -> dict[str, Landed]:
        wanted = set(names)
        out: dict[str, Landed] = {}
        stream = self._call(self.connection.open_stream(
            files.pack_command(self.resolve(src_dir)), raw="stdout",
        ))
        reader: TarReader | None = None
        try:
            self._call(stream.write(files.names_input(names), drain=False))
            self._call(stream.write_eof())
            r = _raw_stdout(stream)
            reader = TarReader(r)
            try:
                try:
                    self._untar(reader, wanted, lander, overwrite, out, progress)
                    reader.drain()
                finally:
                    os.close(r)
            except (tarfile.TarError, EOFError) as e:
                # a dropped connection says so first (finish raises it)
                rc, err = self._call(stream.finish(TRANSFER_TIMEOUT))
                if not reader.received and rc not in (-1, 0, 255):  # it never started
                    raise StaxError(
                        f"{self.where}: reading files from {src_dir} failed (exit {rc}): "
                        f"{err.decode(errors='replace').strip()[-500:] or 'no message'}"
                    ) from None
                raise TransportError(
                    f"{self.where}: reading files from {src_dir} was cut off ({e}; exit {rc})"
                ) from None
            rc, err = self._call(stream.finish(TRANSFER_TIMEOUT))
        except BaseException:
            self._abort(stream)
            raise
        finally:
            if reader is not None:
                self._count(reader.received)
        if rc == -1:
            raise TransportError(f"{self.where}: the connection dropped while reading files")
        if rc not in (0, 1, 2) or (rc and not out and names):
            raise StaxError(
                f"{self.where}: reading files from {src_dir} failed (exit {rc}): "
                f"{err.decode(errors='replace').strip()[-500:] or 'no message'}"
            )
        return out

    @staticmethod
    def _untar(
        reader: TarReader, wanted: set[str], lander: landing.Lander, overwrite: bool,
        out: dict[str, Landed], progress: Progress | None,
    ) -> None:
        for m in reader:
            name = files.member_name(m.name)
            if name not in wanted or not m.regular or name in out:
                continue  # not asked for, or not a regular file: never written
            out[name] = lander.land(name, reader.pieces(progress), overwrite=overwrite)

    def _resume(
        self, src_dir: ClusterPath, kept: Mapping[str, int], lander: landing.Lander,
        overwrite: bool, out: dict[str, Landed], progress: Progress | None,
    ) -> None:
        """Continue the files a cut fetch left partial here (``kept``: name -> bytes kept):
        ONE command gives each file's size and the sha256 of its first bytes on the cluster;
        where that matches the kept bytes' sha256 (hashed here), only the rest is sent (one
        ``tail`` stream each); a partial that does not match is dropped (the file then comes
        whole, in the tar stream)."""
        src = self.resolve(src_dir)
        items = sorted(kept.items())
        res = self._call(self.connection.exec(
            shell.SH, files.prefix_sums_script(src, items), retry=True
        ))
        try:
            sums = files.parse_prefix_sums(res.stdout, len(items))
        except shell.ProtocolError as e:
            raise TransportError(f"{self.where}: checking kept bytes in {src_dir}: {e}") from None
        for (name, n), there in zip(items, sums, strict=True):
            prefix = lander.prefix_hash(name, n) if there is not None and there[0] >= n else None
            if prefix is None or there is None or prefix.hexdigest() != there[1]:
                lander.drop_partial(name)  # never trusted blindly: fetched whole
                continue
            if progress is not None:
                progress(n)
            out[name] = self._tail(src, name, n, there[0] - n, prefix, lander, overwrite,
                                   progress)

    def _tail(
        self, src: str, name: str, offset: int, want: int, prefix: Any, lander: landing.Lander,
        overwrite: bool, progress: Progress | None,
    ) -> Landed:
        """``name``'s last ``want`` bytes (after ``offset``) appended to its partial file."""
        if want <= 0:
            return lander.land_rest(name, prefix, offset, (), overwrite=overwrite)
        stream = self._call(self.connection.open_stream(
            files.tail_command(src, offset), raw="stdout",
        ))
        try:
            self._call(stream.write(files.names_input([name]), drain=False))
            self._call(stream.write_eof())
            r = _raw_stdout(stream)
            try:
                try:
                    landed = lander.land_rest(
                        name, prefix, offset, self._pieces(r, want, progress),
                        overwrite=overwrite,
                    )
                    _drain(r)
                finally:
                    os.close(r)
            except EOFError:
                # a dropped connection says so first (finish raises it)
                rc, _ = self._call(stream.finish(TRANSFER_TIMEOUT))
                raise TransportError(
                    f"{self.where}: reading {name!r} from {src} was cut off again (exit {rc}); "
                    "the bytes received are kept for the next try"
                ) from None
            rc, _ = self._call(stream.finish(TRANSFER_TIMEOUT))
        except BaseException:
            self._abort(stream)
            raise
        if rc == -1:
            raise TransportError(f"{self.where}: the connection dropped while reading files")
        return landed

    def _pieces(
        self, fd: int, want: int, progress: Progress | None
    ) -> Iterator[memoryview]:
        """``want`` bytes read from ``fd`` into one reused buffer (EOFError when it ends
        first); counted in :attr:`received`."""
        buf = memoryview(bytearray(landing.CHUNK))
        left = want
        try:
            while left > 0:
                k = os.readv(fd, [buf[: min(len(buf), left)]])
                if not k:
                    raise EOFError(f"the stream ended {left} bytes early")
                left -= k
                if progress is not None:
                    progress(k)
                yield buf[:k]
        finally:
            self._count(want - left)

    def copy_files(
        self, src_dir: ClusterPath, names: Sequence[str], dest_dir: ClusterPath
    ) -> dict[str, tuple[int, str]]:
        if not names:
            return {}
        cmd = files.copy_script(self.resolve(src_dir), self.resolve(dest_dir))
        res = self._call(self.connection.exec(cmd, files.names_input(names), retry=True))
        if res.rc != 0:
            raise StaxError(
                f"{self.where}: copying files into {dest_dir} failed (exit {res.rc}): "
                f"{res.err.strip()[-500:] or 'no message'}"
            )
        try:
            return files.parse_copy(res.stdout)
        except shell.ProtocolError as e:
            raise TransportError(f"{self.where}: copying files: {e}") from None

    def _abort(self, stream: ByteStream) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stream.abort(), self._loop).result(10)


def _raw_stdout(stream: ByteStream) -> int:
    """The stream's stdout pipe, taken over by the caller (who closes it)."""
    r, stream.stdout_fd = stream.stdout_fd, None
    if r is None:
        raise RuntimeError("the SSH client gave no stdout pipe for a fetch (open_stream raw)")
    return r


class _Push:
    """A file object a worker thread writes the tar stream to, gathered in ONE reused buffer.
    A full buffer goes either straight to ``fd`` (the ``ssh`` process's stdin pipe: blocking
    writes on this thread) or, without one, by one call on the transport's loop (see
    :mod:`.pump`)."""

    def __init__(self, transport: SSHTransport, stream: ByteStream, fd: int | None) -> None:
        self.transport, self.stream, self.fd = transport, stream, fd
        self.view = memoryview(bytearray(landing.CHUNK))
        self.used = 0
        self.sent = 0

    def write(self, data: bytes | memoryview) -> int:
        src = memoryview(data)
        if not self.used and len(src) >= len(self.view):  # a whole buffer: no copy here
            self._send(src)
            return len(src)
        while src:
            n = min(len(src), len(self.view) - self.used)
            self.view[self.used : self.used + n] = src[:n]
            self.used += n
            src = src[n:]
            if self.used == len(self.view):
                self.flush()
        return len(data)

    def flush(self) -> None:
        if self.used:
            self._send(self.view[: self.used])
            self.used = 0

    def _send(self, view: memoryview) -> None:
        self.transport._count_sent(len(view))
        if self.fd is not None:
            while view:
                view = view[os.write(self.fd, view):]
            return
        # wait for the channel every few buffers only: a few MB in flight keep it busy
        self.sent += 1
        drain = self.sent % PUT_DRAIN_EVERY == 0
        try:
            self.transport._call(pump.send(self.stream, view, drain))
        except TransportError as e:  # the channel closed: its exit status may say why
            raise _Cut(str(e)) from None


class _Cut(Exception):
    """The stream of a put closed before it was all sent (see ``put_files``)."""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _encodable(name: str) -> bool:
    """Whether ``name`` can be written in a command line (UTF-8 without lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _drain(fd: int) -> None:
    """Read ``fd`` to its end (what a growing file sent beyond the size asked for)."""
    buf = bytearray(1 << 16)
    while os.readv(fd, [buf]):
        pass


async def _cancel_others() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me]
    for t in others:
        t.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def remote_home(cluster: Cluster, state_dir: Path | None) -> str:
    """The home directory of a remote cluster's account: remembered in ``state_dir`` or asked
    over a short-lived connection (blocking). Raises TransportError when it does not answer."""
    tr = SSHTransport(cluster, state_dir)
    try:
        return tr.home()
    finally:
        tr.close()
