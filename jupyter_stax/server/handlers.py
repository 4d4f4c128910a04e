"""REST handlers under ``<base_url>stax/api/``: thin, authenticated and authorized
(``auth_resource = "stax"``), answering with the wire models of :mod:`jupyter_stax.core.api`.

Each handler parses HTTP (:mod:`.inputs`), calls ONE operation of
:class:`jupyter_stax.operations.Operations` (the same ones the local service calls; blocking
ones on a worker thread) and answers; errors go through ONE map (:mod:`.errors`): a StaxError
answers with its ``http_status``, every error body is an ``ErrorBody``. The document of this API
is ``GET stax/api/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Protocol, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from pydantic import BaseModel, TypeAdapter
from tornado import web

from ..core.api import ClusterInfo, ExecutionPage, ExecutionSummary
from ..core.errors import NotFound
from ..core.models import Workflow
from ..core.published import PublishedSummary
from ..operations import Operations
from . import inputs
from .errors import error_answer, log_error

if TYPE_CHECKING:
    from ..core.api import ServerInfo
    from ..engine.engine import Engine

AUTH_RESOURCE = "stax"
API = "stax/api"


class Host(Protocol):
    """What the handlers use of :class:`~.app.StaxApp` (named here, not imported: the app
    imports the handlers)."""

    operations: Operations
    default_cluster: str

    def require_engine(self) -> Engine: ...

    def info(self) -> ServerInfo: ...


class StaxHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every jupyter_stax handler: JSON in and out, one error map."""

    auth_resource = AUTH_RESOURCE

    @property
    def stax(self) -> Host:
        return cast(Host, self.extensionapp)

    @property
    def ops(self) -> Operations:
        """The operations over this server's store and clusters (``StaxApp.operations``)."""
        return self.stax.operations

    @property
    def root_dir(self) -> str | None:
        """The server's root directory (where files named in requests may be)."""
        root = self.settings.get("server_root_dir")
        return str(root) if root else None

    def query(self, *names: str) -> dict[str, str | None]:
        return {n: self.get_query_argument(n, None) for n in names}

    def reply(self, body: BaseModel | bytes, status: int = 200) -> None:
        self.set_status(status)
        self.finish(body if isinstance(body, bytes) else body.model_dump_json())

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        status, body = error_answer(exc_info[1] if exc_info else None, status_code)
        self.set_status(status)
        self.finish(body.model_dump_json())

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        log_error(value, f"{self.request.method} {self.request.path}")


class ClustersHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(TypeAdapter(list[ClusterInfo]).dump_json(self.ops.clusters()))


class ClusterHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply(await asyncio.to_thread(self.ops.cluster, name))


class ImagesHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        # sources may run apptainer/skopeo inspect: off the event loop
        cluster = self.get_query_argument("cluster", None)
        self.reply(await asyncio.to_thread(self.ops.images, cluster))


class ExecutionsHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        state, limit, cursor = inputs.page_args(self.query("state", "limit", "cursor"))
        workflow = self.get_query_argument("workflow", None) or None
        await self.ops.checked()  # the first answer after an adoption is the true one
        items, next_cursor = self.ops.page(state, limit, cursor, workflow)
        page = ExecutionPage(
            executions=[ExecutionSummary.of(ex) for ex in items], next_cursor=next_cursor
        )
        self.reply(page)

    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = inputs.submit_request(self.request.body)
        assert isinstance(req.workflow, Workflow)  # YAML text was parsed: never taken as a path
        ex = await self.ops.submit(
            self.stax.require_engine(),
            req.workflow,
            req.cluster or self.stax.default_cluster,
            req.params,
            req.options,
            req.steps,
            over_network=True,
            root=self.root_dir,
        )
        self.set_header("Location", url_path_join(self.base_url, API, "executions", ex.id))
        self.reply(ex, 201)


class ExecutionHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, execution_id: str) -> None:
        self.reply(await self.ops.get_checked(execution_id))

    @web.authenticated
    @authorized
    async def delete(self, execution_id: str) -> None:
        engine = self.stax.require_engine()
        self.reply(await self.ops.cancel(engine, execution_id), 202)


class RetryHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def post(self, execution_id: str) -> None:
        engine = self.stax.require_engine()
        self.reply(await self.ops.retry(engine, execution_id), 202)


class LogHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, execution_id: str, step: str) -> None:
        stream, offset, limit, attempt = inputs.log_args(
            self.query("stream", "offset", "limit", "attempt")
        )
        chunk = await asyncio.to_thread(
            self.ops.read_log, execution_id, step, stream, offset, attempt, limit
        )
        self.reply(chunk)


class InstancesHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, execution_id: str, step: str) -> None:
        state, cursor, limit = inputs.instance_args(self.query("state", "cursor", "limit"))
        page = await asyncio.to_thread(
            self.ops.instances, execution_id, step, state, cursor, limit
        )
        self.reply(page)


class StepFilesHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, execution_id: str, step: str) -> None:
        self.reply(await asyncio.to_thread(self.ops.step_files, execution_id, step))


class StepFileDownloadHandler(StaxHandler):
    """One regular file of a step directory as an attachment, streamed (see
    :mod:`jupyter_stax.operations.stepfiles` for what is refused)."""

    @web.authenticated
    @authorized
    async def get(self, execution_id: str, step: str) -> None:
        from urllib.parse import quote

        path = self.get_query_argument("path", None)
        d = await asyncio.to_thread(self.ops.download, execution_id, step, path)
        try:
            ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in d.name)
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header(
                "Content-Disposition",
                f"attachment; filename=\"{ascii_name or 'file'}\"; "
                f"filename*=UTF-8''{quote(d.name, safe='')}",
            )
            self.set_header("Content-Length", str(d.size))
            while chunk := await asyncio.to_thread(d.file.read, 1 << 20):
                self.write(chunk)
                await self.flush()
        finally:
            await asyncio.to_thread(d.close)
        self.finish()


class FetchHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def post(self, execution_id: str) -> None:
        req = inputs.fetch_request(self.request.body)
        root = self.root_dir
        if root is not None:
            from pathlib import Path

            from ..operations.requests import check_inside

            if req.to is not None:
                if not Path(req.to).is_absolute():
                    req.to = str(Path(root) / req.to)
                check_inside(root, [("to", Path(req.to))])
        self.reply(await asyncio.to_thread(self.ops.fetch, execution_id, req))


class CrateHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, execution_id: str) -> None:
        import tempfile
        from pathlib import Path

        from ..operations.crate import crate_file_name

        license = self.get_query_argument("license", None) or None
        with tempfile.TemporaryDirectory(prefix="stax-crate-") as tmp:
            ex = self.ops.get(execution_id)
            path = await asyncio.to_thread(
                self.ops.export_crate, ex.id, Path(tmp) / "crate.zip", license=license
            )
            name = crate_file_name(ex)
            self.set_header("Content-Type", "application/zip")
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            self.set_header("Content-Length", str(path.stat().st_size))
            with open(path, "rb") as f:  # in chunks: a crate holds every log of the run
                while chunk := f.read(1 << 20):
                    self.write(chunk)
                    await self.flush()
        self.finish(set_content_type="application/zip")


class WorkflowsHandler(StaxHandler):
    """``GET workflows``: the published workflows; ``POST workflows``: publish one."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        items = await asyncio.to_thread(self.ops.workflows)
        self.reply(TypeAdapter(list[PublishedSummary]).dump_json(items))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = inputs.publish_request(self.request.body)
        p = await asyncio.to_thread(
            lambda: self.ops.publish(req, over_network=True, root=self.root_dir)
        )
        self.set_header("Location", url_path_join(self.base_url, API, "workflows", p.name))
        self.reply(p, 201)


class WorkflowHandler(StaxHandler):
    """``GET workflows/{name}``: one published workflow; ``POST``: trigger it with inputs."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        version = self.get_query_argument("version", None) or None
        self.reply(await asyncio.to_thread(self.ops.workflow, name, version))

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        req = inputs.trigger_request(self.request.body)
        ex = await self.ops.trigger(
            self.stax.require_engine(), name, req, self.stax.default_cluster
        )
        self.set_header("Location", url_path_join(self.base_url, API, "executions", ex.id))
        self.reply(ex, 201)


class RerunsHandler(StaxHandler):
    """``POST reruns``: run a recorded run again (an execution, or a crate read by the client)."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = inputs.rerun_request(self.request.body)
        ex = await self.ops.rerun(
            self.stax.require_engine(), req, self.stax.default_cluster, over_network=True
        )
        self.set_header("Location", url_path_join(self.base_url, API, "executions", ex.id))
        self.reply(ex, 201)


class InfoHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(self.stax.info())


class OpenAPIHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        from .openapi import document

        doc = document()
        doc["servers"] = [{"url": self.base_url, "description": "this Jupyter server"}]
        self.reply(json.dumps(doc).encode())


class BuildsHandler(StaxHandler):
    """``POST stax/api/builds``: plan (refused here: 400/404/503) and start a build; 201 + id.
    The recipe (and a catalog file) are paths relative to the server's root directory; the
    catalog may also be one of the catalog files the server reads."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = inputs.build_request(
            self.request.body, self.serverapp.root_dir, self.ops.catalog_files()
        )
        st = await asyncio.to_thread(self.ops.start_build, req)
        self.set_header("Location", url_path_join(self.base_url, API, "builds", st.id))
        self.reply(st, 201)


class BuildHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, build_id: str) -> None:
        self.reply(self.ops.build_jobs.get(build_id))


class BuildLogHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, build_id: str) -> None:
        self.reply(await asyncio.to_thread(self.ops.build_jobs.log, build_id))


class NotebookParametersHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        path = self.get_query_argument("path", None)
        self.reply(await asyncio.to_thread(self.ops.notebook_parameters, path, self.root_dir))


class NoEndpointHandler(StaxHandler):
    """Anything else under stax/api: a JSON 404 (after authentication, like every route)."""

    def _missing(self) -> None:
        raise NotFound(
            f"no endpoint {self.request.method} {self.request.path}; see GET "
            f"{url_path_join(self.base_url, API, 'openapi.json')} for the API"
        )

    @web.authenticated
    @authorized
    async def get(self, rest: str | None = None) -> None:
        self._missing()

    @web.authenticated
    @authorized
    async def post(self, rest: str | None = None) -> None:
        self._missing()

    @web.authenticated
    @authorized
    async def put(self, rest: str | None = None) -> None:
        self._missing()

    @web.authenticated
    @authorized
    async def patch(self, rest: str | None = None) -> None:
        self._missing()

    @web.authenticated
    @authorized
    async def delete(self, rest: str | None = None) -> None:
        self._missing()


_ID = r"(?P<execution_id>[^/]+)"

#: (pattern relative to base_url, handler); the last one catches everything else under API
HANDLERS: list[tuple[str, type[StaxHandler]]] = [
    (rf"{API}/clusters", ClustersHandler),
    (rf"{API}/clusters/(?P<name>[^/]+)", ClusterHandler),
    (rf"{API}/images", ImagesHandler),
    (rf"{API}/executions", ExecutionsHandler),
    (rf"{API}/executions/{_ID}", ExecutionHandler),
    (rf"{API}/executions/{_ID}/retry", RetryHandler),
    (rf"{API}/executions/{_ID}/fetch", FetchHandler),
    (rf"{API}/executions/{_ID}/crate", CrateHandler),
    (rf"{API}/executions/{_ID}/steps/(?P<step>[^/]+)/log", LogHandler),
    (rf"{API}/executions/{_ID}/steps/(?P<step>[^/]+)/files", StepFilesHandler),
    (rf"{API}/executions/{_ID}/steps/(?P<step>[^/]+)/download", StepFileDownloadHandler),
    (rf"{API}/executions/{_ID}/steps/(?P<step>[^/]+)/instances", InstancesHandler),
    (rf"{API}/builds", BuildsHandler),
    (rf"{API}/builds/(?P<build_id>[^/]+)", BuildHandler),
    (rf"{API}/builds/(?P<build_id>[^/]+)/log", BuildLogHandler),
    (rf"{API}/workflows", WorkflowsHandler),
    (rf"{API}/workflows/(?P<name>[^/]+)", WorkflowHandler),
    (rf"{API}/reruns", RerunsHandler),
    (rf"{API}/notebook-parameters", NotebookParametersHandler),
    (rf"{API}/info", InfoHandler),
    (rf"{API}/openapi\.json", OpenAPIHandler),
    (rf"{API}(?P<rest>/.*)?", NoEndpointHandler),
]
