"""The engine daemon: one background engine per store, started on demand by clients.

``python -m jupyter_stax.engine.daemon [--store PATH] [--clusters FILE] [--idle-exit SECONDS]``

It holds an exclusive ``flock`` on ``<store>.engine.lock`` for its lifetime (a second daemon on
the same store exits at once, with status 0), adopts every unfinished execution nobody drives
(clients insert executions without an owner), and exits once it has had nothing to drive for
``--idle-exit`` seconds (``$JUPYTER_STAX_DAEMON_IDLE_EXIT``, default 60). SIGTERM and SIGINT
stop it cleanly: jobs keep running and the next engine adopts their executions.

Logs go to ``engine.log`` next to the store. :func:`ensure_daemon` is what clients call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..core.clusters import ClusterRegistry
from .engine import Engine
from .store import Store, default_store_path

log = logging.getLogger("jupyter_stax.daemon")

ENV_IDLE_EXIT = "JUPYTER_STAX_DAEMON_IDLE_EXIT"
DEFAULT_IDLE_EXIT = 60.0
LOG_FILE = "engine.log"
#: how long a starting daemon tries to take the lock (a client's probe holds it for microseconds)
LOCK_TRIES = (0.05,) * 8


def lock_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".engine.lock")


def log_path(store_path: Path) -> Path:
    return store_path.parent / LOG_FILE


def _open_lock(store_path: Path) -> int:
    path = lock_path(store_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def module_argv(module: str) -> list[str]:
    """``python -m MODULE`` for a background process of ours, without the caller's working
    directory on its import path: a notebook folder holding a ``queue.py``, ``yaml.py`` or a
    checkout of jupyter_stax must not replace what the engine imports (a plain ``-m`` puts the
    working directory before everything else). 3.11+ has the switch (``-P``); on 3.10 the
    module runs through ``runpy`` from a ``-c`` that first drops the working directory (the
    ``''`` that ``-c`` puts first on ``sys.path``)."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", module]
    return [sys.executable, "-c", _RUN_MODULE_310, module]


#: 3.10's stand-in for ``-P -m MODULE ARGS``: ``sys.argv`` is then ``['-c', MODULE, ARGS...]``
_RUN_MODULE_310 = (
    "import sys, runpy; del sys.path[0]; m = sys.argv.pop(1); "
    "runpy.run_module(m, run_name='__main__', alter_sys=True)"
)


def ensure_daemon(store_path: Path, clusters_file: Path | None) -> int | None:
    """Start a daemon for ``store_path`` unless one holds the lock; returns the new pid or None.

    The daemon inherits the environment (``SLURM_CONF``, ``JUPYTER_STAX_*``...); its output is
    appended to the engine log.
    """
    store_path = Path(store_path).expanduser().absolute()
    fd = _open_lock(store_path)
    try:
        if not _try_lock(fd):
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    cmd = [*module_argv("jupyter_stax.engine.daemon"), "--store", str(store_path)]
    if clusters_file is not None:
        cmd += ["--clusters", str(Path(clusters_file).expanduser().absolute())]
    with open(log_path(store_path), "ab") as out:
        proc = subprocess.Popen(
            cmd,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            close_fds=True,
        )
    return proc.pid


async def serve(
    store_path: Path,
    clusters_file: Path | None,
    idle_exit: float,
    stop: asyncio.Event | None = None,
) -> bool:
    """Run an engine until it has been idle for ``idle_exit`` seconds (returns False) or until
    ``stop`` is set or SIGTERM/SIGINT arrives (returns True)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    store = Store(store_path)
    engine = Engine(
        store=store,
        clusters=ClusterRegistry.load(clusters_file),
        adopt=True,
        scan_interval=0.25,
    )
    await engine.start()
    log.info("engine %s serving %s (pid %d)", engine.id, store_path, os.getpid())
    idle_since: float | None = None
    try:
        while not stop.is_set():
            t = time.monotonic()
            try:
                idle = not engine.busy and store.unowned_unfinished(engine.lease_timeout) == 0
            except Exception:
                log.exception("cannot read the store; staying up")
                idle = False
            if not idle:
                idle_since = None
            elif idle_since is None:
                idle_since = t
            elif t - idle_since >= idle_exit:
                log.info("idle for %g s; exiting", idle_exit)
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await engine.stop()
        store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    if stop.is_set():
        log.info("engine %s stopped by signal", engine.id)
    return stop.is_set()


def _still_needed(store_path: Path, lease_timeout: float = 15.0) -> bool:
    """After letting go of the lock: did a client insert an execution meanwhile?"""
    store = Store(store_path)
    try:
        return store.unowned_unfinished(lease_timeout) > 0
    finally:
        store.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jupyter_stax.engine.daemon",
        description="Drive the executions of a jupyter_stax store in the background.",
    )
    p.add_argument("--store", type=Path, help="SQLite store (default: $JUPYTER_STAX_STORE)")
    p.add_argument("--clusters", type=Path, help="clusters file (default: $JUPYTER_STAX_CLUSTERS)")
    env = os.environ.get(ENV_IDLE_EXIT)
    p.add_argument(
        "--idle-exit",
        type=float,
        default=float(env) if env else DEFAULT_IDLE_EXIT,
        metavar="SECONDS",
        help=f"exit after this long with nothing to drive (default: ${ENV_IDLE_EXIT} or 60)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store_path: Path = (args.store or default_store_path()).expanduser().absolute()
    fd = _open_lock(store_path)
    try:
        for wait in (*LOCK_TRIES, None):
            if _try_lock(fd):
                break
            if wait is None:
                return 0  # another daemon serves this store
            time.sleep(wait)
        logging.basicConfig(
            filename=str(log_path(store_path)),
            level=logging.INFO,
            format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        )
        logging.getLogger("psij").setLevel(logging.WARNING)
        while True:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            stopped = asyncio.run(serve(store_path, args.clusters, args.idle_exit))
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            # a client may have inserted an execution after our last look and found the lock
            # held (so it started nobody): look again now that the lock is free
            if stopped or not _still_needed(store_path) or not _try_lock(fd):
                return 0
            log.info("new work arrived while exiting; serving again")
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
