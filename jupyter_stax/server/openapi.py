"""The OpenAPI 3.1 document of the REST API, generated from the pydantic models.

``python -m jupyter_stax.server.openapi > docs/openapi.json`` writes the committed copy; a test
fails when it drifts from this code, and another when a route of :mod:`.handlers` is missing
here (or the other way round). Served at ``GET <base_url>stax/api/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..core import api
from ..core.models import Execution
from ..core.nbparams import NotebookParameters
from ..core.published import PublishedSummary, PublishedWorkflow, PublishRequest, TriggerRequest
from ..core.staging import FetchRequest, FetchResult
from ..core.states import RETRYABLE, ExecutionState, StepState
from ..core.stepfiles import StepFileList
from ..operations.builds import BuildLog, BuildRequest, BuildStatus
from ..operations.workflows import RerunRequest

REF = "#/components/schemas/{model}"
#: the API's version (not the package's): bumped on incompatible changes
API_VERSION = "1"
PREFIX = "/stax/api"

_ERRORS = {
    400: "bad input: a query parameter, the body or the workflow is not valid (details list "
    "every problem)",
    403: "not authenticated (send 'Authorization: token <TOKEN>') or not authorized, or a log "
    "file that points outside its step directory",
    404: "unknown execution, step, cluster or attempt",
    409: "the request does not fit the execution's state (or: that version is published "
    "already; the pinned image changed)",
    500: "a bug in jupyter_stax (the server log has the traceback)",
    503: "jupyter_stax is starting or could not start in this server, or the scheduler did not "
    "answer",
}
#: errors every operation may answer with
_ALWAYS = (403, 500, 503)


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    operation_id: str
    summary: str
    status: int
    response: type[BaseModel] | tuple[str, type[BaseModel]] | None
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    description: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    """a binary answer (e.g. application/zip) has the schema of a binary string"""


def _path(name: str, description: str) -> Param:
    return Param(name, "path", {"type": "string"}, description, required=True)


_EXEC = _path("execution_id", "an execution id, or a unique prefix of one (like the CLI accepts)")

OPERATIONS: tuple[Op, ...] = (
    Op(
        "get",
        "/clusters",
        "listClusters",
        "The configured clusters",
        200,
        ("array", api.ClusterInfo),
    ),
    Op(
        "get",
        "/clusters/{name}",
        "getCluster",
        "A cluster with live numbers from its scheduler",
        200,
        api.ClusterDetail,
        (404,),
        (_path("name", "cluster name"),),
        description="Slurm: node counts by state (sinfo) and your queued/running jobs "
        "(squeue --me) in the cluster's partition; local: CPUs, load average and running steps; "
        "other schedulers: summary null with a note. 503 when a scheduler command fails or "
        "times out, with its message.",
    ),
    Op(
        "get",
        "/images",
        "listImages",
        "The StaX image catalog, with fit and reasons per cluster",
        200,
        api.ImageList,
        (404,),
        (
            Param(
                "cluster",
                "query",
                {"type": "string"},
                "judge every image for this cluster: fits, and each rule's outcome",
            ),
        ),
        description="Every image of the configured catalog sources (StaxApp.image_catalogs). "
        "With cluster, each image carries fits and the outcome of each matching rule (cpu, gpu, "
        "mpi, kabi, network). Sources that cannot be read (a tool not installed, a missing "
        "path) are listed in problems, once each; they never make the request fail.",
    ),
    Op(
        "get",
        "/executions",
        "listExecutions",
        "Executions, newest first, a page at a time",
        200,
        api.ExecutionPage,
        (400,),
        (
            Param(
                "state",
                "query",
                {"enum": [s.value for s in ExecutionState]},
                "only executions in this state",
            ),
            Param(
                "limit",
                "query",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": api.PAGE_LIMIT_MAX,
                    "default": api.PAGE_LIMIT_DEFAULT,
                },
                "executions per page",
            ),
            Param(
                "cursor", "query", {"type": "string"}, "next_cursor of the previous page (opaque)"
            ),
            Param(
                "workflow",
                "query",
                {"type": "string"},
                "only executions triggered from this published workflow (NAME or NAME@VERSION)",
            ),
        ),
    ),
    Op(
        "post",
        "/executions",
        "submitExecution",
        "Validate and start a workflow",
        201,
        Execution,
        (400, 404),
        body=api.SubmitRequest,
        description="Everything is checked before anything is submitted; 400 lists every "
        "problem of the workflow. 404: unknown cluster.",
        headers={"Location": "the URL of the new execution"},
    ),
    Op(
        "get",
        "/executions/{execution_id}",
        "getExecution",
        "An execution with all its steps",
        200,
        Execution,
        (404,),
        (_EXEC,),
    ),
    Op(
        "delete",
        "/executions/{execution_id}",
        "cancelExecution",
        "Cancel queued and running jobs and pending steps",
        202,
        Execution,
        (404, 409),
        (_EXEC,),
        description="409 when the execution is already final.",
    ),
    Op(
        "post",
        "/executions/{execution_id}/retry",
        "retryExecution",
        "Run the failed, lost, canceled and skipped steps again",
        202,
        Execution,
        (404, 409),
        (_EXEC,),
        description="409 while the execution is not final, or when it completed.",
    ),
    Op(
        "post",
        "/executions/{execution_id}/fetch",
        "fetchOutputs",
        "Fetch steps' outputs to the server's side (the notebook side)",
        200,
        FetchResult,
        (400, 404),
        (_EXEC,),
        body=FetchRequest,
        description="Every step that declares outputs (or the one named), or the files a "
        "pattern matches in its directory, through the cluster's transport: to "
        "<outputs dir>/<id>/<step>/ for a remote cluster; in place (not copied) for a cluster "
        "that shares the server's file system, unless 'to' is given. An existing different "
        "file is kept unless overwrite. Each file's size and sha256 is recorded on the step. "
        "403 when 'to' is outside the server's root directory.",
    ),
    Op(
        "get",
        "/executions/{execution_id}/crate",
        "exportExecutionCrate",
        "The execution as a Workflow Run RO-Crate (zip)",
        200,
        None,
        (403, 404, 409),
        (
            _EXEC,
            Param(
                "license",
                "query",
                {"type": "string"},
                "the crate's license, a URL or SPDX id (default: the crate says none was given)",
            ),
        ),
        description="A zip download (Content-Disposition: attachment) of the Workflow Run "
        "RO-Crate of a final execution (Process, Workflow and Provenance Run Crate 0.5): the "
        "workflow, each step's rendered script, one CreateAction per step attempt with its "
        "stdout/stderr. 409 while the execution is not final; 403 when a step file links "
        "outside its step directory.",
        content_type="application/zip",
    ),
    Op(
        "get",
        "/executions/{execution_id}/steps/{step}/log",
        "getStepLog",
        "A chunk of a step's stdout or stderr",
        200,
        api.LogChunk,
        (400, 404),
        (
            _EXEC,
            _path("step", "step name"),
            Param(
                "stream",
                "query",
                {"enum": ["stdout", "stderr"], "default": "stdout"},
                "which stream",
            ),
            Param(
                "offset",
                "query",
                {"type": "integer", "minimum": 0, "default": 0},
                "byte offset to read from (next_offset of the previous chunk)",
            ),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 0, "default": api.LOG_LIMIT_DEFAULT},
                f"most bytes to return (larger values are cut to {api.LOG_LIMIT_MAX})",
            ),
            Param(
                "attempt",
                "query",
                {"type": "integer", "minimum": 1},
                "an earlier attempt's output (default: the current attempt)",
            ),
        ),
        description="A missing file is an empty chunk at offset 0. Follow a log by asking "
        "again from next_offset until eof. 403 when the file links outside the step directory.",
    ),
    Op(
        "get",
        "/executions/{execution_id}/steps/{step}/files",
        "listStepFiles",
        "The regular files of a step's directory, with their sizes",
        200,
        StepFileList,
        (404,),
        (_EXEC, _path("step", "step name")),
        description="Listed through the step's cluster (its SSH transport for a remote one); "
        "symbolic links are left out (counted in 'links') and never followed. An empty list "
        "before the directory exists.",
    ),
    Op(
        "get",
        "/executions/{execution_id}/steps/{step}/download",
        "downloadStepFile",
        "One file of a step's directory (an attachment)",
        200,
        None,
        (400, 404),
        (
            _EXEC,
            _path("step", "step name"),
            Param(
                "path",
                "query",
                {"type": "string"},
                "the file's path relative to the step directory",
                required=True,
            ),
        ),
        description="Streamed through the step's cluster (never whole in memory). Only a "
        "regular file inside the step directory: 400 for an absolute path or one with '..', "
        "403 for a symbolic link (or a path through one) or anything but a regular file, 404 "
        "when there is no such file.",
        content_type="application/octet-stream",
    ),
    Op(
        "post",
        "/builds",
        "startBuild",
        "Build a recipe's StaX variants in the background (eFlows4HPC image-creation shape)",
        201,
        BuildStatus,
        (400, 404),
        body=BuildRequest,
        description="The recipe (and a catalog file) are paths relative to the server's root "
        "directory (403 outside it); the catalog may also be one of the catalog files the server "
        "reads (StaxApp.image_catalogs). Everything is checked before the build starts: 400 for a "
        "recipe error (unknown matrix key, missing base, no variant fits the cluster), 404 for "
        "an unknown cluster, 503 when no builder is installed.",
        headers={"Location": "the URL of the new build"},
    ),
    Op(
        "get",
        "/builds/{build_id}",
        "getBuild",
        "A build's state: PENDING, BUILDING, CONVERTING, FINISHED or FAILED",
        200,
        BuildStatus,
        (404,),
        (_path("build_id", "the id POST builds answered with"),),
        description="FAILED with a message naming each failed variant and the builder's last "
        "line; the variants that built are in images and results.",
    ),
    Op(
        "get",
        "/builds/{build_id}/log",
        "getBuildLog",
        "A build's progress lines and each variant's builder log so far",
        200,
        BuildLog,
        (404,),
        (_path("build_id", "the id POST builds answered with"),),
    ),
    Op(
        "get",
        "/executions/{execution_id}/steps/{step}/instances",
        "listStepInstances",
        "A page of a sweep step's instances, the ones that did not complete first",
        200,
        api.InstancePage,
        (400, 404, 409),
        (
            _EXEC,
            _path("step", "step name (a step with a sweep)"),
            Param(
                "state",
                "query",
                {"enum": ["waiting", "running", "completed", "failed", "lost", "canceled"]},
                "only the instances in this state",
            ),
            Param("cursor", "query", {"type": "string"}, "next_cursor of the previous page"),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "default": api.INSTANCE_LIMIT_DEFAULT},
                f"most instances to return (larger values are cut to {api.INSTANCE_LIMIT_MAX})",
            ),
        ),
        description="The step's row (GET executions/{id}) carries the counts (its sweep field); "
        "this lists instances from their own records: state, exit code, attempt, swept values, "
        "directory. 400 for a step that is not a sweep; 409 for a remote cluster's step.",
    ),
    Op(
        "get",
        "/workflows",
        "listWorkflows",
        "The published workflows (the latest version of each)",
        200,
        ("array", PublishedSummary),
        description="Workflows published with `jupyter stax publish`, `%stax publish` or POST "
        "workflows: name, versions, declared inputs (type, default, description) and the "
        "default cluster. End users trigger them with POST workflows/{name}.",
    ),
    Op(
        "post",
        "/workflows",
        "publishWorkflow",
        "Publish a new version of a workflow with declared inputs",
        201,
        PublishedWorkflow,
        (400, 404, 409),
        body=PublishRequest,
        description="The inputs are the workflow's params (a default gives the type; no default: "
        "required), refined by 'inputs' (type, description, required, default). Everything is "
        "checked before it is stored: 400 lists every problem; 404: unknown default cluster; "
        "409: that version is published already (a version never changes).",
        headers={"Location": "the URL of the published workflow"},
    ),
    Op(
        "get",
        "/workflows/{name}",
        "getWorkflow",
        "A published workflow: its inputs, default cluster and steps",
        200,
        PublishedWorkflow,
        (404,),
        (
            _path("name", "the published workflow's name"),
            Param("version", "query", {"type": "string"}, "a version (default: the latest)"),
        ),
    ),
    Op(
        "post",
        "/workflows/{name}",
        "triggerWorkflow",
        "Run a published workflow with inputs",
        201,
        Execution,
        (400, 404),
        (_path("name", "the published workflow's name"),),
        body=TriggerRequest,
        description="The steps are the publisher's; the body gives input values only. 400 "
        "lists every unknown input, wrong type and missing required input. The execution "
        "remembers the workflow's name and version (origin; GET executions?workflow=NAME).",
        headers={"Location": "the URL of the new execution"},
    ),
    Op(
        "post",
        "/reruns",
        "rerunExecution",
        "Run a recorded run again, here or on another cluster",
        201,
        Execution,
        (400, 404, 409),
        body=RerunRequest,
        description="The same workflow and parameters (params changes some), each step's image "
        "pinned to the variant the run used; where that variant does not fit the cluster, its "
        "family's fitting variant runs and origin.changes says what changed and why. "
        "'execution': a run of this server; 'crate': a run read from a Workflow Run Crate by "
        "the client (jupyter stax rerun CRATE). 409: the pinned variant's digest changed.",
        headers={"Location": "the URL of the new execution"},
    ),
    Op(
        "get",
        "/notebook-parameters",
        "getNotebookParameters",
        "A notebook's parameters: the assignments of its cell tagged 'parameters'",
        200,
        NotebookParameters,
        (400, 404),
        (
            Param(
                "path",
                "query",
                {"type": "string"},
                "the notebook, relative to the server's root directory (as the contents API "
                "names it)",
                required=True,
            ),
        ),
        description="Names, defaults, types and the comment beside each assignment (papermill's "
        "convention), for a form that runs the notebook as a step (a step's notebook field; "
        "its params are injected after that cell). Nothing is run. 403 for a path outside the "
        "server's root directory; 400 for a file that is not a notebook.",
    ),
    Op(
        "get",
        "/info",
        "getInfo",
        "Which store this server's engine serves",
        200,
        api.ServerInfo,
        description="Clients (the jupyter stax command, kernels) use this server only when it "
        "answers with a running engine (engine_id not null) on the store they would otherwise "
        "use.",
    ),
    Op("get", "/openapi.json", "getOpenAPI", "This document", 200, None),
)


def _schemas() -> tuple[dict[tuple[Any, str], Any], dict[str, Any]]:
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (api.ErrorBody, "serialization")
    ]
    for op in OPERATIONS:
        if op.body is not None:
            models.append((op.body, "validation"))
        resp = op.response[1] if isinstance(op.response, tuple) else op.response
        if resp is not None:
            models.append((resp, "serialization"))
    refs, defs = models_json_schema(models, ref_template=REF)
    out: dict[tuple[Any, str], Any] = {(m, mode): schema for (m, mode), schema in refs.items()}
    return out, defs.get("$defs", {})


def state_vocabulary() -> dict[str, Any]:
    """Which states are final and which retryable, as enum schemas made from
    :mod:`jupyter_stax.core.states`: the JupyterLab frontend takes its state sets from these
    (``labextension/src/api/types.ts`` fails to compile when its sets differ), so the
    vocabulary is written once, in core."""

    def enum(values: list[str], description: str) -> dict[str, Any]:
        return {"type": "string", "enum": values, "description": description}

    return {
        "FinalStepState": enum(
            [s.value for s in StepState if s.final],
            "step states that end an attempt (nothing changes after them but a retry)",
        ),
        "RetryableStepState": enum(
            [s.value for s in StepState if s in RETRYABLE],
            "final step states that POST executions/{id}/retry runs again",
        ),
        "FinalExecutionState": enum(
            [s.value for s in ExecutionState if s.final],
            "execution states after which nothing changes but a retry",
        ),
        "RetryableExecutionState": enum(
            [s.value for s in ExecutionState if s.final and s is not ExecutionState.COMPLETED],
            "execution states POST executions/{id}/retry accepts (the retry precondition of "
            "jupyter_stax.operations.check_retry); other states answer 409",
        ),
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (a new dict on every call)."""
    refs, components = _schemas()
    components = {**components, **state_vocabulary()}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        o: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
        if op.description:
            o["description"] = op.description
        if op.params:
            o["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required,
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in op.params
            ]
        if op.body is not None:
            o["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        if op.content_type != "application/json":
            schema: dict[str, Any] = {"type": "string", "format": "binary"}
        elif isinstance(op.response, tuple):
            schema = {
                "type": "array",
                "items": refs[(op.response[1], "serialization")],
            }
        elif op.response is not None:
            schema = refs[(op.response, "serialization")]
        else:
            schema = {"type": "object"}
        ok: dict[str, Any] = {
            "description": op.summary,
            "content": {op.content_type: {"schema": schema}},
        }
        if op.headers:
            ok["headers"] = {
                k: {"description": v, "schema": {"type": "string"}} for k, v in op.headers.items()
            }
        responses: dict[str, Any] = {str(op.status): ok}
        error_ref = refs[(api.ErrorBody, "serialization")]
        for code in sorted({*op.errors, *_ALWAYS}):
            responses[str(code)] = {
                "description": _ERRORS[code],
                "content": {"application/json": {"schema": error_ref}},
            }
        o["responses"] = responses
        paths.setdefault(PREFIX + op.path, {})[op.method] = o
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter_stax",
            "version": API_VERSION,
            "description": "REST API of the jupyter_stax Jupyter server extension: clusters, "
            "executions of workflows, step logs. Paths are relative to the Jupyter server's "
            "base_url. Every error answers with an ErrorBody.",
        },
        "servers": [{"url": "/", "description": "the Jupyter server's base_url"}],
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'token <TOKEN>' with the Jupyter server's token",
                }
            },
        },
    }


def dumps() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    sys.stdout.write(dumps())
    return 0


if __name__ == "__main__":
    sys.exit(main())
