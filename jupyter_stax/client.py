"""The REST client of a Jupyter server that runs jupyter_stax, and how to find one.

:class:`RestService` implements :class:`~jupyter_stax.service.StaxService` over
``<server>/stax/api/`` with the standard library only (``urllib.request``): JSON in and out, the
server's token in ``Authorization: token ...``, a timeout on every request. The server's error
answers (:class:`~jupyter_stax.core.api.ErrorBody`) come back as the StaxError subclass they
name, with the server's message and details; a server that does not answer is
:class:`ServerUnreachable`.

:func:`find_server` is how clients decide between the server and the local store.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from .core.api import (
    INSTANCE_LIMIT_DEFAULT,
    ClusterDetail,
    ClusterInfo,
    ErrorBody,
    ExecutionPage,
    ImageList,
    InstancePage,
    Listed,
    LogChunk,
    ServerInfo,
    WorkflowSource,
)
from .core.errors import BadRequest, SchedulerUnavailable, StaxError, error_class
from .core.models import Execution, ParamValue, SubmitOptions, Workflow
from .core.published import (
    PublishedSummary,
    PublishedWorkflow,
    PublishRequest,
    TriggerRequest,
    split_ref,
)
from .core.staging import FetchRequest, FetchResult, base_for

log = logging.getLogger("jupyter_stax.client")

ENV_SERVER_URL = "JUPYTER_STAX_SERVER_URL"
ENV_TOKEN = "JUPYTER_STAX_TOKEN"
ENV_NO_SERVER = "JUPYTER_STAX_NO_SERVER"
API = "stax/api/"
#: seconds a server may take to answer ``GET stax/api/info`` when clients look for one
PROBE_TIMEOUT = 1.0
#: seconds for an ordinary request, and for a submission (a detached one waits until every
#: step is queued)
TIMEOUT = 30.0
SUBMIT_TIMEOUT = 300.0


class ServerUnreachable(SchedulerUnavailable):
    """The Jupyter server did not answer (not running, wrong URL, or too slow)."""


def error_from_answer(status: int, body: bytes, url: str) -> StaxError:
    """The StaxError an error answer stands for: the class its ErrorBody names (else one that
    fits its status; :func:`~jupyter_stax.core.errors.error_class`, the one registry), with the
    server's message and details."""
    try:
        err = ErrorBody.model_validate_json(body)
    except ValidationError:
        text = body.decode("utf-8", "replace").strip()[:300]
        err = ErrorBody(
            message=f"HTTP {status} from {url}" + (f": {text}" if text else ""), error=""
        )
    cls = error_class(err.error, status)
    e = cls(err.message, details=err.details)
    if type(e) is StaxError:
        e.http_status = status
    return e


class RestService:
    """:class:`~jupyter_stax.service.StaxService` over the REST API of the Jupyter server at
    ``url`` (its base URL, e.g. ``http://127.0.0.1:8888/``)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = TIMEOUT,
        info: ServerInfo | None = None,
    ) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.token = token or ""
        self.timeout = timeout
        self._info = info

    def __repr__(self) -> str:
        return f"RestService({self.url!r})"

    def describe(self) -> str:
        return f"server {self.url}"

    # ------------------------------------------------------------------ HTTP
    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """``method`` on ``<url>stax/api/<path>``; the decoded JSON answer."""
        url = self.url + API + path
        q = {k: str(v).lower() if isinstance(v, bool) else v for k, v in (query or {}).items()}
        q = {k: v for k, v in q.items() if v is not None}
        if q:
            url += "?" + urllib.parse.urlencode(q)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        data = None
        if body is not None or method in ("POST", "PUT", "PATCH"):
            data = json.dumps({} if body is None else body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        wait = self.timeout if timeout is None else timeout
        try:
            with urllib.request.urlopen(req, timeout=wait) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            with e:
                raise error_from_answer(e.code, e.read() or b"", url) from None
        except (urllib.error.URLError, OSError) as e:
            raise self._unreachable(e, wait) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise StaxError(f"the answer of {method} {url} is not JSON") from None

    def _unreachable(self, e: BaseException, wait: float) -> ServerUnreachable:
        reason = getattr(e, "reason", e)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            why = f"no answer within {wait:g} s"
        elif isinstance(reason, ConnectionRefusedError):
            why = "connection refused"
        else:
            why = str(reason) or type(reason).__name__
        return ServerUnreachable(
            f"the Jupyter server at {self.url} is not reachable ({why}); is it running? "
            f"Use --no-server (or {ENV_NO_SERVER}=1) to work on the store directly"
        )

    @staticmethod
    def _id(execution_id: str) -> str:
        return urllib.parse.quote(execution_id, safe="")

    # ------------------------------------------------------------------ StaxService
    def info(self, timeout: float | None = None) -> ServerInfo:
        self._info = ServerInfo.model_validate(self.request("GET", "info", timeout=timeout))
        return self._info

    def clusters(self) -> list[ClusterInfo]:
        return TypeAdapter(list[ClusterInfo]).validate_python(self.request("GET", "clusters"))

    def cluster(self, name: str) -> ClusterDetail:
        return ClusterDetail.model_validate(self.request("GET", f"clusters/{self._id(name)}"))

    def images(self, cluster: str | None = None) -> ImageList:
        query = {"cluster": cluster} if cluster else None
        return ImageList.model_validate(self.request("GET", "images", query=query))

    def submit(
        self,
        workflow: WorkflowSource,
        cluster: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
        options: SubmitOptions | None = None,
        steps: list[str] | None = None,
    ) -> Execution:
        """A workflow file is read here (the server never reads paths it is sent); YAML text
        and mappings go as they are."""
        wf: Any = workflow
        if isinstance(workflow, Path) or (
            isinstance(workflow, str)
            and "\n" not in workflow
            and workflow.endswith((".yaml", ".yml", ".json"))
        ):
            from .core.documents import load_workflow

            wf = load_workflow(workflow)
        if isinstance(wf, Workflow):
            if any(isinstance(s.software, str) for s in wf.steps):
                from .core.software import inline

                wf = inline(wf)  # the server never reads description files it is sent
            wf = wf.model_dump(mode="json", exclude_unset=True)
        elif isinstance(wf, Mapping):
            from .core.software import inline_mapping

            wf = inline_mapping(wf)  # the server never reads description files it is sent
        body: dict[str, Any] = {"workflow": wf, "params": dict(params or {})}
        if cluster:
            body["cluster"] = cluster
        opts = options or SubmitOptions()
        if opts.base_dir is None:  # relative inputs: beside the workflow file, or here
            opts = opts.model_copy(update={"base_dir": base_for(workflow)})
        if opts.outputs_dir is not None:
            out = Path(opts.outputs_dir).expanduser()
            opts.outputs_dir = str(out if out.is_absolute() else Path(opts.base_dir or ".") / out)
        body["options"] = opts.model_dump(mode="json", exclude_none=True)
        if steps:
            body["steps"] = list(steps)
        return Execution.model_validate(
            self.request("POST", "executions", body=body, timeout=max(self.timeout, SUBMIT_TIMEOUT))
        )

    def get(self, execution_id: str) -> Execution:
        return Execution.model_validate(self.request("GET", f"executions/{self._id(execution_id)}"))

    def list(
        self,
        state: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        workflow: str | None = None,
    ) -> tuple[list[Listed], str | None]:
        query = {"state": state, "limit": limit, "cursor": cursor, "workflow": workflow}
        page = ExecutionPage.model_validate(self.request("GET", "executions", query=query))
        return list(page.executions), page.next_cursor

    # ------------------------------------------------------------------ published, re-runs
    def publish(self, request: PublishRequest) -> PublishedWorkflow:
        """``POST workflows``; a workflow file was read on this side (:func:`~.operations.
        workflows.load_document`: the server never reads paths it is sent)."""
        answer = self.request("POST", "workflows", body=_body(request))
        return PublishedWorkflow.model_validate(answer)

    def workflows(self) -> builtins.list[PublishedSummary]:
        return TypeAdapter(list[PublishedSummary]).validate_python(
            self.request("GET", "workflows")
        )

    def workflow(self, name: str, version: str | None = None) -> PublishedWorkflow:
        name, version = split_ref(name, version)
        return PublishedWorkflow.model_validate(
            self.request("GET", f"workflows/{self._id(name)}", query={"version": version})
        )

    def trigger(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        cluster: str | None = None,
        version: str | None = None,
    ) -> Execution:
        name, version = split_ref(name, version)
        body = TriggerRequest(inputs=dict(inputs or {}), cluster=cluster, version=version)
        return Execution.model_validate(
            self.request(
                "POST",
                f"workflows/{self._id(name)}",
                body=_body(body),
                timeout=max(self.timeout, SUBMIT_TIMEOUT),
            )
        )

    def rerun(
        self,
        source: str | Path,
        cluster: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
    ) -> Execution:
        """``POST reruns``; a crate is read on this side and sent as data."""
        from .operations.workflows import rerun_request

        body = _body(rerun_request(source, cluster, params))
        return Execution.model_validate(
            self.request("POST", "reruns", body=body, timeout=max(self.timeout, SUBMIT_TIMEOUT))
        )

    def cancel(self, execution_id: str) -> Execution:
        return Execution.model_validate(
            self.request("DELETE", f"executions/{self._id(execution_id)}")
        )

    def retry(self, execution_id: str) -> Execution:
        return Execution.model_validate(
            self.request("POST", f"executions/{self._id(execution_id)}/retry")
        )

    def read_log(
        self,
        execution_id: str,
        step: str,
        stream: str = "stdout",
        offset: int = 0,
        attempt: int | None = None,
        limit: int | None = None,
    ) -> LogChunk:
        path = f"executions/{self._id(execution_id)}/steps/{self._id(step)}/log"
        query = {"stream": stream, "offset": offset, "attempt": attempt, "limit": limit}
        return LogChunk.model_validate(self.request("GET", path, query=query))

    def instances(
        self,
        execution_id: str,
        step: str,
        state: str | None = None,
        cursor: str | None = None,
        limit: int = INSTANCE_LIMIT_DEFAULT,
    ) -> InstancePage:
        path = f"executions/{self._id(execution_id)}/steps/{self._id(step)}/instances"
        query = {"state": state, "cursor": cursor, "limit": limit}
        return InstancePage.model_validate(self.request("GET", path, query=query))

    def fetch(
        self, execution_id: str, request: FetchRequest,
        progress: Callable[[str, int, int | None], None] | None = None,
    ) -> FetchResult:
        # ``progress`` is not told: the server moves the files (its steps show how it goes)
        if request.to is not None:  # the caller's directory, not the server's
            request = request.model_copy(
                update={"to": str(Path(request.to).expanduser().absolute())}
            )
        return FetchResult.model_validate(self.request(
            "POST", f"executions/{self._id(execution_id)}/fetch",
            body=request.model_dump(mode="json", exclude_none=True), timeout=SUBMIT_TIMEOUT,
        ))


    def export_crate(
        self,
        execution_id: str,
        dest: str | Path,
        *,
        as_dir: bool = False,
        license: str | None = None,
    ) -> Path:
        """``GET executions/{id}/crate`` saved to ``dest`` (a zip file), or unpacked into the
        new directory ``dest`` with ``as_dir`` (members that would land outside it refused)."""
        import shutil
        import tempfile

        from .operations.crate import safe_extract

        dest = Path(dest).expanduser().absolute()
        if not as_dir and dest.is_dir():
            raise BadRequest(f"{dest} is a directory; name a .zip file to write (or use --dir)")
        url = self.url + API + f"executions/{self._id(execution_id)}/crate"
        if license:
            url += "?" + urllib.parse.urlencode({"license": license})
        headers = {"Accept": "application/zip"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        req = urllib.request.Request(url, method="GET", headers=headers)
        where = Path(tempfile.mkdtemp(prefix="stax-crate-")) if as_dir else dest.parent
        where.mkdir(parents=True, exist_ok=True)
        part = where / (dest.name + ".part")
        try:
            try:
                with urllib.request.urlopen(req, timeout=SUBMIT_TIMEOUT) as resp, open(
                    part, "wb"
                ) as out:
                    shutil.copyfileobj(resp, out)
            except urllib.error.HTTPError as e:
                with e:
                    raise error_from_answer(e.code, e.read() or b"", url) from None
            except (urllib.error.URLError, OSError) as e:
                raise self._unreachable(e, SUBMIT_TIMEOUT) from None
            if as_dir:
                return safe_extract(part, dest)
            os.replace(part, dest)
            return dest
        finally:
            part.unlink(missing_ok=True)
            if as_dir:
                shutil.rmtree(where, ignore_errors=True)

# ---------------------------------------------------------------------- finding a server
def _body(model: BaseModel) -> dict[str, Any]:
    """A request body: the model's fields without the top-level ones that are None (None
    values inside, such as a parameter's, are kept)."""
    return {k: v for k, v in model.model_dump(mode="json").items() if v is not None}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    from .engine.store import process_start_time

    return process_start_time(pid) is not None or not Path("/proc").is_dir()  # not a zombie


def _runtime_candidates(runtime_dir: Path) -> Iterator[tuple[str, str, str]]:
    """(url, token, where) of the live servers of ``runtime_dir``, newest first."""
    try:
        files = sorted(
            runtime_dir.glob("jpserver-*.json"), key=lambda p: p.stat().st_mtime, reverse=True
        )
    except OSError:
        return
    for f in files:
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue  # being written, or gone
        if not isinstance(info, dict) or not _alive(info.get("pid")):
            log.debug("skipping %s: its server process is gone", f)
            continue
        url = str(info.get("url") or "")
        host = str(info.get("hostname") or "")
        if info.get("sock"):
            url = "http+unix://" + str(info["sock"])
        elif host in ("", "0.0.0.0", "*", "::", "[::]") and info.get("port"):
            scheme = "https" if info.get("secure") else "http"
            loop = "[::1]" if ":" in host else "127.0.0.1"
            url = f"{scheme}://{loop}:{info['port']}{info.get('base_url') or '/'}"
        yield url, str(info.get("token") or ""), str(f)


def _same_store(a: str, b: Path) -> bool:
    try:
        return Path(a).expanduser().resolve() == b.expanduser().resolve()
    except (OSError, RuntimeError):
        return False


def find_server(
    store_path: Path | None, *, runtime_dir: Path | None = None, timeout: float = PROBE_TIMEOUT
) -> RestService | None:
    """A Jupyter server running jupyter_stax on ``store_path`` (None: on any store), or None.

    Looks first at ``$JUPYTER_STAX_SERVER_URL`` / ``$JUPYTER_STAX_TOKEN`` (kernels and terminals
    of a server have them), then at the servers' runtime files (``jpserver-*.json`` in
    ``jupyter_runtime_dir()``; dead processes are skipped), newest first. A server is used only
    when it answers an authenticated ``GET stax/api/info`` within ``timeout`` seconds with a
    running engine on the same store.
    """
    candidates: list[tuple[str, str, str]] = []
    if os.environ.get(ENV_SERVER_URL):
        candidates.append(
            (os.environ[ENV_SERVER_URL], os.environ.get(ENV_TOKEN, ""), f"${ENV_SERVER_URL}")
        )
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = Path(jupyter_runtime_dir())
    candidates.extend(_runtime_candidates(runtime_dir))
    seen: set[str] = set()
    for url, token, where in candidates:
        if url in seen:
            continue
        seen.add(url)
        svc = _probe(url, token, where, store_path, timeout)
        if svc is not None:
            return svc
    return None


def _probe(
    url: str, token: str, where: str, store_path: Path | None, timeout: float
) -> RestService | None:
    if not url.startswith(("http://", "https://")):
        log.debug("skipping the server at %s (from %s): only http(s) is supported", url, where)
        return None
    svc = RestService(url, token)
    t = time.monotonic()
    try:
        info = svc.info(timeout=timeout)
    except (StaxError, ValidationError) as e:
        log.debug("skipping the server at %s (from %s): %s", url, where, e)
        return None
    if info.engine_id is None:
        log.debug(
            "skipping the server at %s: jupyter_stax does not run there: %s", url, info.problem
        )
        return None
    if store_path is not None and not _same_store(info.store, store_path):
        log.debug("skipping the server at %s: it serves %s, not %s", url, info.store, store_path)
        return None
    log.debug("using the server at %s (%.0f ms)", url, 1000 * (time.monotonic() - t))
    return svc
