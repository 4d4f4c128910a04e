"""REST handlers under ``<base_url>stax/api/``: thin, authenticated and authorized
(``auth_resource = "stax"``), answering with the wire models of :mod:`jupyter_stax.core.api`.

Errors go through ONE map (:mod:`.errors`): a StaxError answers with its ``http_status``, every
error body is an ``ErrorBody``. The document of this API is ``GET stax/api/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from pydantic import BaseModel, TypeAdapter
from tornado import web

from ..core.api import ClusterDetail, ClusterInfo
from ..core.clusters import ClusterRegistry
from ..core.errors import NotFound
from ..core.models import Cluster, Workflow
from . import inputs
from .app import StaxApp
from .errors import error_answer, log_error
from .logs import log_file_name, read_chunk
from .summary import local_summary, slurm_summary

AUTH_RESOURCE = "stax"
API = "stax/api"


def cluster_info(registry: ClusterRegistry, c: Cluster) -> dict[str, Any]:
    return {**c.model_dump(), "work_dir": str(registry.work_dir(c))}


class StaxHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every jupyter_stax handler: JSON in and out, one error map."""

    auth_resource = AUTH_RESOURCE

    @property
    def stax(self) -> StaxApp:
        return cast(StaxApp, self.extensionapp)

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
        reg = self.stax.require_registry()
        infos = [ClusterInfo.model_validate(cluster_info(reg, c)) for c in reg]
        self.reply(TypeAdapter(list[ClusterInfo]).dump_json(infos))


class ClusterHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        reg = self.stax.require_registry()
        c = reg.get(name)
        detail = ClusterDetail.model_validate(cluster_info(reg, c))
        if c.scheduler == "slurm":
            detail.summary = await asyncio.to_thread(slurm_summary, c)
        elif c.scheduler == "local":
            store = self.stax.require_engine().store
            detail.summary = local_summary(c, store.list_executions(state="running", limit=10**6))
        else:
            detail.note = (
                f"no live numbers for {c.scheduler} clusters yet (Slurm and local clusters have "
                "them)"
            )
        self.reply(detail)


class ImagesHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        name = self.get_query_argument("cluster", None)
        cluster = self.stax.require_registry().get(name) if name else None
        from ..engine.catalog import Catalog

        # sources may run apptainer/skopeo inspect: off the event loop
        catalog = await asyncio.to_thread(Catalog.load, self.stax.catalog_specs())
        self.reply(catalog.listing(cluster))


class ExecutionsHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        state, limit, before = inputs.page_args(self.query("state", "limit", "cursor"))
        store = self.stax.require_engine().store
        items = store.list_executions(
            state=state.value if state else None, limit=limit + 1, before=before
        )
        self.reply(inputs.make_page(items, limit))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        req = inputs.submit_request(self.request.body)
        assert isinstance(req.workflow, Workflow)  # YAML text was parsed: never taken as a path
        engine = self.stax.require_engine()
        ex = await engine.submit(
            req.workflow,
            req.cluster or self.stax.default_cluster,
            req.params,
            req.options,
            req.steps,
        )
        self.set_header("Location", url_path_join(self.base_url, API, "executions", ex.id))
        self.reply(ex, 201)


class ExecutionHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, execution_id: str) -> None:
        self.reply(self.stax.require_engine().get(execution_id))

    @web.authenticated
    @authorized
    async def delete(self, execution_id: str) -> None:
        self.reply(await self.stax.require_engine().cancel(execution_id), 202)


class RetryHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def post(self, execution_id: str) -> None:
        engine = self.stax.require_engine()
        ex = engine.get(execution_id)
        inputs.check_retry(ex)
        self.reply(await engine.retry(ex.id), 202)


class LogHandler(StaxHandler):
    @web.authenticated
    @authorized
    async def get(self, execution_id: str, step: str) -> None:
        stream, offset, limit, attempt = inputs.log_args(
            self.query("stream", "offset", "limit", "attempt")
        )
        ex = self.stax.require_engine().get(execution_id)
        try:
            s = ex.step(step)
        except KeyError:
            raise NotFound(
                f"execution {ex.id} has no step {step!r}; its steps: "
                + ", ".join(x.name for x in ex.steps)
            ) from None
        name = log_file_name(stream, attempt, s.attempt, s.name)
        final = s.state.final or attempt not in (None, s.attempt)
        chunk = await asyncio.to_thread(
            read_chunk,
            s.directory,
            name,
            offset=offset,
            limit=limit,
            final=final,
            label=f"{name} of step {s.name!r}",
        )
        self.reply(chunk)


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
    (rf"{API}/executions/{_ID}/steps/(?P<step>[^/]+)/log", LogHandler),
    (rf"{API}/info", InfoHandler),
    (rf"{API}/openapi\.json", OpenAPIHandler),
    (rf"{API}(?P<rest>/.*)?", NoEndpointHandler),
]
