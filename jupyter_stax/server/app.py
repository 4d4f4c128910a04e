"""The Jupyter server extension: settings (``c.StaxApp.<name>``) and the engine's lifecycle.

The server hosts ONE engine for its store while it runs: it starts on the server's event loop
(``_start_jupyter_server_extension``), adopts unfinished executions nobody drives, and stops
with the server (``stop_extension``), releasing its executions so the next engine adopts them
at once; jobs keep running meanwhile. While it runs the server also holds the engine lock of
the store (the one the ``jupyter stax`` CLI's background engine takes), so CLI submissions are
driven here too instead of by a second process.

Kernels started by this server find it through ``JUPYTER_STAX_SERVER_URL`` and
``JUPYTER_STAX_TOKEN`` in their environment.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Dict, Float, List, Unicode, default

from .._version import __version__
from ..core.api import ServerInfo
from ..core.clusters import ClusterRegistry
from ..core.errors import ServiceUnavailable, StaxError
from ..operations import Operations

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp

    from ..engine.engine import Engine

ENV_SERVER_URL = "JUPYTER_STAX_SERVER_URL"
ENV_TOKEN = "JUPYTER_STAX_TOKEN"

_WILDCARD_V4 = {"", "0.0.0.0", "*", "localhost"}
_WILDCARD_V6 = {"::", "[::]"}


def server_url(serverapp: ServerApp) -> str:
    """This server's own http(s) URL with its base_url, as a process on the same machine
    reaches it (a wildcard or ``localhost`` address becomes the loopback address)."""
    base = serverapp.base_url if serverapp.base_url.endswith("/") else serverapp.base_url + "/"
    if serverapp.sock:
        from urllib.parse import quote

        return f"http+unix://{quote(serverapp.sock, safe='')}{base}"
    ip = serverapp.ip
    if ip in _WILDCARD_V4:
        host = "127.0.0.1"
    elif ip in _WILDCARD_V6:
        host = "[::1]"
    elif ":" in ip and not ip.startswith("["):
        host = f"[{ip}]"
    else:
        host = ip
    scheme = "https" if serverapp.certfile else "http"
    return f"{scheme}://{host}:{serverapp.port}{base}"


class StaxApp(ExtensionApp):
    """jupyter_stax in the Jupyter server: REST API under ``<base_url>stax/api/``, events,
    and the engine that drives executions."""

    name = "jupyter_stax"
    description = "Run HPC workflows on Slurm, PBS, Flux or the local machine from Jupyter."
    version = __version__
    load_other_extensions = True

    clusters_file = Unicode(
        "",
        config=True,
        help="""The clusters file (YAML: ``clusters: {NAME: {scheduler: slurm, ...}}``).
        Empty (default): ``$JUPYTER_STAX_CLUSTERS`` if set, else ``stax/clusters.yaml`` in the
        Jupyter config directory; a missing default file means only the ``local`` cluster. A file
        named here must exist.""",
    )
    clusters = Dict(
        config=True,
        help="""Clusters as settings, ``{name: {scheduler: ..., queue: ..., ...}}`` (the same
        fields as the clusters file); a cluster named here replaces the file's cluster of the
        same name.""",
    )
    store_path = Unicode(
        config=True,
        help="""The SQLite store of executions (shared with the ``jupyter stax`` CLI). Default:
        ``$JUPYTER_STAX_STORE`` if set, else ``stax/stax.sqlite`` in the Jupyter data
        directory.""",
    )
    work_dir = Unicode(
        "",
        config=True,
        help="""Where execution directories go for clusters without their own ``work_dir``.
        Empty (default): ``$JUPYTER_STAX_WORK_DIR`` if set, else ``~/stax-runs``.""",
    )
    default_cluster = Unicode(
        "local",
        config=True,
        help="The cluster of a submission that names none (POST stax/api/executions).",
    )
    lease_timeout = Float(
        15.0,
        config=True,
        help="""Seconds without a heartbeat after which an engine on ANOTHER machine counts as
        gone and its unfinished executions are adopted (on this machine a dead engine is seen at
        once).""",
    )
    record_interval = Float(
        0.5,
        config=True,
        help="""Seconds between two looks at the steps' own start/exit records (what makes a
        finished job final without waiting for the next scheduler poll).""",
    )
    image_catalogs = List(
        Unicode(),
        config=True,
        help="""StaX image catalog sources: catalog files (``.yaml``), ``oci:DIR[:TAG]``,
        ``ch:DIR``, ``sif:PATH``, ``docker://REF`` (see the README, StaX images). Empty
        (default): ``$JUPYTER_STAX_IMAGES`` (separated by ``;``) if set, else
        ``stax/images.yaml`` in the Jupyter config directory when it exists.""",
    )

    def catalog_specs(self) -> list[str] | None:
        """The configured catalog sources, or None for the defaults."""
        return list(self.image_catalogs) or None

    @default("store_path")
    def _default_store_path(self) -> str:
        from ..engine.store import default_store_path

        return str(default_store_path())

    # ------------------------------------------------------------------ state
    registry: ClusterRegistry | None = None
    engine: Engine | None = None
    problem: str | None = None
    """Why jupyter_stax does not run in this server (None while all is well)."""
    _lock_fd: int | None = None
    _unsubscribe: Any = None
    _env: dict[str, str] | None = None
    operations: Operations
    """What the handlers call: the operations over this server's store (its engine's) and
    clusters; ServiceUnavailable while they are not there."""

    def initialize_settings(self) -> None:
        self.operations = Operations(
            store=lambda: self.require_engine().store,
            registry=self.require_registry,
            image_catalogs=self.catalog_specs,
            transport=lambda c: self.require_engine().transport(c),
        )
        try:
            self.registry = ClusterRegistry.load(
                self.clusters_file or None,
                extra=self.clusters,
                work_dir=self.work_dir or None,
            )
        except StaxError as e:
            self.problem = f"the cluster configuration is not valid: {e}"
            self.log.error("jupyter_stax: %s", self.problem)
            return
        if self.default_cluster not in self.registry:
            self.log.warning(
                "jupyter_stax: StaxApp.default_cluster %r is not a configured cluster (%s)",
                self.default_cluster,
                ", ".join(self.registry.names()),
            )

    def initialize_handlers(self) -> None:
        from .handlers import HANDLERS

        self.handlers.extend(HANDLERS)

    # ------------------------------------------------------------------ lifecycle
    async def _start_jupyter_server_extension(self, serverapp: ServerApp) -> None:
        self._export_env(serverapp)
        if self.problem is not None or self.registry is None:
            return
        try:
            await self._start_engine(serverapp)
        except Exception as e:
            self.problem = f"the engine could not start: {e}"
            self.log.exception("jupyter_stax: %s", self.problem)
            await self._stop_engine()

    async def _start_engine(self, serverapp: ServerApp) -> None:
        from ..engine.engine import Engine
        from ..engine.store import Store
        from .events import EventBridge, register_schemas

        store = Store(self.store_path)
        self._take_lock(store.path)
        engine = Engine(
            store=store,
            clusters=self.registry,
            lease_timeout=self.lease_timeout,
            record_interval=self.record_interval,
            image_catalogs=self.catalog_specs(),
        )
        event_logger = getattr(serverapp, "event_logger", None)
        if event_logger is not None:
            register_schemas(event_logger)
            self._unsubscribe = engine.subscribe(EventBridge(engine, event_logger))
        self.engine = engine  # before start(): adopted executions' events go out already
        await engine.start()
        self.log.info(
            "jupyter_stax %s: engine %s serving %s; clusters: %s",
            __version__,
            engine.id,
            store.path,
            ", ".join(self.registry.names() if self.registry else []),
        )

    async def stop_extension(self) -> None:
        await self._stop_engine()
        for key, value in (self._env or {}).items():
            if os.environ.get(key) == value:
                del os.environ[key]
        self._env = None

    async def _stop_engine(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            try:
                await engine.stop()  # releases its executions: the next engine adopts them
            except Exception:
                self.log.exception("jupyter_stax: the engine did not stop cleanly")
            finally:
                if self._unsubscribe is not None:
                    self._unsubscribe()
                    self._unsubscribe = None
                engine.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _take_lock(self, store_path: Path) -> None:
        """Hold the store's engine lock (like the CLI's background engine) when it is free, so
        CLI submissions are driven by this server's engine rather than a second process."""
        from ..engine.daemon import lock_path

        path = lock_path(store_path.expanduser().absolute())
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.log.info(
                "jupyter_stax: a jupyter stax background engine serves %s too; both drive "
                "executions (each one by exactly one engine) until it exits",
                store_path,
            )
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _export_env(self, serverapp: ServerApp) -> None:
        env = {
            ENV_SERVER_URL: server_url(serverapp),
            ENV_TOKEN: serverapp.identity_provider.token or "",
        }
        os.environ.update(env)
        self._env = env

    # ------------------------------------------------------------------ for handlers
    def info(self) -> ServerInfo:
        """What ``GET stax/api/info`` answers: clients use this server only when it serves the
        store they would otherwise use."""
        return ServerInfo(
            version=__version__,
            store=str(Path(self.store_path).expanduser().absolute()),
            engine_id=self.engine.id if self.engine is not None else None,
            default_cluster=self.default_cluster,
            problem=self.problem,
        )

    def require_engine(self) -> Engine:
        if self.engine is not None:
            return self.engine
        raise ServiceUnavailable(self._why())

    def require_registry(self) -> ClusterRegistry:
        if self.registry is not None:
            return self.registry
        raise ServiceUnavailable(self._why())

    def _why(self) -> str:
        if self.problem:
            return (
                f"jupyter_stax is not running in this Jupyter server: {self.problem}. Fix it and "
                "restart the server (the server log has the details)"
            )
        return "jupyter_stax is starting in this Jupyter server; try again in a moment"
