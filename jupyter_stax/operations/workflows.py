"""Published workflows and re-runs: the ONE place every surface (REST handlers, the local
service behind the CLI and the kernel) publishes, lists, shows and triggers workflows and re-runs
a recorded run.

Where published workflows live (the decision): in the store, table ``workflows`` (name, version,
the :class:`~..core.published.PublishedWorkflow` as JSON). The Jupyter server and the CLI already
share one store (the CLI uses the server when it serves the CLI's store, else the store itself),
so what one publishes the other finds, and an execution and the workflow it was triggered from
sit side by side (``executions.published`` / ``published_version``).

Each operation here is split in a PLAN (pure enough to test: what would run, where, with which
parameters and origin) and the driving, which is the caller's: :meth:`Operations.trigger` and
:meth:`Operations.rerun` hand the plan to an engine, the local service stores it for its
background engine. Blocking (SQLite, reading a crate).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.dag import check
from ..core.documents import load_workflow, parse_yaml, to_model
from ..core.errors import BadRequest, Conflict, InvalidWorkflow, NotFound, StaxError
from ..core.images import ResolvedImage, step_need
from ..core.jobscript import effective_launcher
from ..core.models import Origin, ParamValue, Step, SubmitOptions, Workflow
from ..core.published import (
    InputSpec,
    PublishedSummary,
    PublishedWorkflow,
    PublishRequest,
    TriggerRequest,
    check_inputs,
    declare_inputs,
    next_version,
    split_document,
    split_ref,
)
from ..core.rerun import RerunSource, from_crate, from_execution, repin

if TYPE_CHECKING:
    from ..core.clusters import ClusterRegistry
    from ..engine.catalog import Catalog
    from ..engine.store import Store

__all__ = [
    "CrateRun",
    "Planned",
    "RerunRequest",
    "is_crate",
    "publish",
    "published",
    "published_list",
    "read_crate",
    "rerun_plan",
    "rerun_request",
    "trigger_plan",
]

#: a sample value of each input type: a publish checks the workflow with these where an input
#: has no default (so a string input used in arithmetic is refused at publish, not at trigger)
_SAMPLES: dict[str, ParamValue] = {"string": "x", "integer": 1, "number": 1.5, "boolean": True}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CrateRun(_Wire):
    """A recorded run read from a crate by the client (:func:`read_crate`), sent as data."""

    workflow: Workflow
    params: dict[str, ParamValue] = Field(default_factory=dict)
    images: dict[str, ResolvedImage] = Field(
        default_factory=dict, description="the image each step ran in (by step name)"
    )
    cluster: str | None = Field(None, description="the cluster it ran on")
    label: str = Field("crate", description="what it is a re-run of (shown in origin)")


class RerunRequest(_Wire):
    """Body of ``POST reruns``: re-run an execution of this server (``execution``) or a run read
    from a crate (``crate``), on ``cluster`` with some parameters changed."""

    execution: str | None = Field(None, description="an execution id (or unique prefix)")
    crate: CrateRun | None = Field(None, description="a run read from a Workflow Run Crate")
    cluster: str | None = Field(
        None, description="where to run (default: where it ran, when that cluster is known here)"
    )
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="parameter values to change"
    )


@dataclass
class Planned:
    """What a trigger or a re-run submits."""

    workflow: Workflow
    cluster: str
    params: dict[str, ParamValue]
    options: SubmitOptions
    origin: Origin
    changes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- publishing
def _document(req: PublishRequest) -> tuple[Workflow, dict[str, InputSpec], str | None]:
    """The workflow, the input declarations and the description a publish request carries."""
    specs: dict[str, Any] = {}
    description = req.description
    if isinstance(req.workflow, str):
        data = parse_yaml(req.workflow, source="workflow")
        if not isinstance(data, dict):
            raise InvalidWorkflow("the workflow YAML must be a mapping with 'name' and 'steps'")
        data, specs = split_document(data)
        wf = to_model(Workflow, data, source="workflow", error=InvalidWorkflow)
    else:
        wf = req.workflow
    inputs = {
        str(k): to_model(InputSpec, v or {}, source=f"input {k!r}", error=InvalidWorkflow)
        for k, v in specs.items()
    }
    inputs.update(req.inputs)
    return wf, inputs, description or wf.description


def load_document(path: Path) -> PublishRequest:
    """A publish request from a file on this side: the workflow file (software descriptions
    inlined, relative inputs beside it) with its ``inputs:`` block."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidWorkflow(f"cannot read workflow file {str(path)!r}: {e.strerror}") from None
    data = parse_yaml(text, source=f"workflow file {str(path)!r}")
    if not isinstance(data, dict):
        raise InvalidWorkflow(f"workflow file {str(path)!r} must be a mapping with 'steps'")
    wf_data, specs = split_document(data)
    wf = to_model(Workflow, wf_data, source=f"workflow file {str(path)!r}", error=InvalidWorkflow)
    if any(isinstance(s.software, str) for s in wf.steps):
        from ..core.software import inline

        wf = inline(wf, path.parent)
    inputs = {
        str(k): to_model(InputSpec, v or {}, source=f"input {k!r}", error=InvalidWorkflow)
        for k, v in specs.items()
    }
    return PublishRequest(
        workflow=wf,
        inputs=inputs,
        options=SubmitOptions(base_dir=str(path.parent.absolute())),
    )


def publish(
    store: Store,
    registry: ClusterRegistry,
    req: PublishRequest,
    *,
    refuse: Callable[[Workflow], None] | None = None,
) -> PublishedWorkflow:
    """Check and store a new version of a published workflow. ``refuse``: the rule for
    workflows that came over the network (:func:`.requests.refuse_server_paths`). Conflict when
    that version exists; InvalidWorkflow listing every problem of the workflow or its inputs;
    UnknownCluster for a default cluster that is not configured."""
    wf, specs, description = _document(req)
    if refuse is not None:
        refuse(wf)
    inputs = declare_inputs(wf, specs)
    sample = {i.name: i.default if i.default is not None else _SAMPLES[i.type] for i in inputs}
    check(wf, sample)
    if req.cluster is not None:
        registry.get(req.cluster)
    name = req.name or wf.name
    wf = wf.model_copy(update={"name": name})  # its executions are listed under this name
    versions = [v for _, v, _ in store.published(name)]
    version = req.version or next_version(versions)
    p = PublishedWorkflow(
        name=name,
        version=version,
        description=description,
        inputs=inputs,
        default_cluster=req.cluster,
        workflow=wf,
        options=req.options,
        published_at=datetime.now(timezone.utc),
    )
    doc = p.model_dump_json(exclude={"versions"})
    if not store.publish(name, version, doc, p.published_at.timestamp()):
        raise Conflict(
            f"{name} version {version} is published already (versions: {', '.join(versions)}); "
            "a published version never changes: publish with another --version"
        )
    p.versions = [*versions, version]
    return p


def published(store: Store, name: str, version: str | None = None) -> PublishedWorkflow:
    """A published workflow (``NAME`` or ``NAME@VERSION``; default: the latest version);
    NotFound naming what there is."""
    name, version = split_ref(name, version)
    rows = store.published(name)
    if not rows:
        names = sorted({n for n, _, _ in store.published()})
        raise NotFound(
            f"no published workflow {name!r}; published: {', '.join(names) or 'none'} "
            "(jupyter stax publish FILE publishes one)"
        )
    versions = [v for _, v, _ in rows]
    pick = rows[-1] if version is None else next((r for r in rows if r[1] == version), None)
    if pick is None:
        raise NotFound(f"{name} has no version {version!r}; versions: {', '.join(versions)}")
    p = PublishedWorkflow.model_validate_json(pick[2])
    p.versions = versions
    return p


def published_list(store: Store) -> list[PublishedSummary]:
    """The latest version of every published workflow, by name."""
    latest: dict[str, PublishedWorkflow] = {}
    versions: dict[str, list[str]] = {}
    for name, version, doc in store.published():
        latest[name] = PublishedWorkflow.model_validate_json(doc)
        versions.setdefault(name, []).append(version)
    out = []
    for name in sorted(latest):
        latest[name].versions = versions[name]
        out.append(PublishedSummary.of(latest[name]))
    return out


def trigger_plan(
    store: Store, name: str, req: TriggerRequest, default_cluster: str
) -> Planned:
    """What a trigger of the published workflow ``name`` runs: its steps as published, its
    inputs checked (:func:`~..core.published.check_inputs`: InvalidInputs listing every problem)
    and bound as parameters."""
    p = published(store, name, req.version)
    params = check_inputs(p, req.inputs)
    return Planned(
        workflow=p.workflow,
        cluster=req.cluster or p.default_cluster or default_cluster,
        params=params,
        options=p.options,
        origin=Origin(workflow=p.name, version=p.version),
    )


# ---------------------------------------------------------------------- re-running
def read_crate(path: Path) -> CrateRun:
    """The run a Workflow Run Crate (a ``.zip`` or a directory) written by ``jupyter stax
    export`` records: its workflow, parameter values and each step's image."""
    path = Path(path).expanduser()
    label = f"crate {path.name}"
    try:
        if path.is_dir():
            meta_text = (path / "ro-crate-metadata.json").read_text()
            wf_text = (path / "workflow.yaml").read_text()
        else:
            with zipfile.ZipFile(path) as z:
                meta_text = z.read("ro-crate-metadata.json").decode()
                wf_text = z.read("workflow.yaml").decode()
    except FileNotFoundError as e:
        raise NotFound(f"{label}: {e.filename or path} does not exist") from None
    except KeyError as e:
        raise BadRequest(
            f"{label} has no {e.args[0]}: not a crate jupyter stax export wrote"
        ) from None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise BadRequest(f"{label} cannot be read as a crate (a zip or a directory): {e}") from None
    try:
        metadata = json.loads(meta_text)
    except ValueError as e:
        raise BadRequest(f"{label}: ro-crate-metadata.json is not JSON: {e}") from None
    wf = load_workflow(wf_text)
    src = from_crate(metadata, wf, label)
    return CrateRun(
        workflow=src.workflow,
        params=src.params,
        images=src.images,
        cluster=src.cluster,
        label=src.label,
    )


def rerun_plan(
    store: Store,
    registry: ClusterRegistry,
    catalog: Callable[[], Catalog],
    req: RerunRequest,
    default_cluster: str,
    *,
    over_network: bool = False,
) -> Planned:
    """What a re-run submits: the recorded workflow and parameters (``req.params`` changed), on
    ``req.cluster`` (default: where it ran, when known here), each step's image pinned to the
    variant the run used, or its family's variant that fits there (the change said in
    ``changes`` and the execution's origin)."""
    if (req.execution is None) == (req.crate is None):
        raise BadRequest("a re-run names either an execution or a crate (one of them)")
    if req.execution is not None:
        ex = store.get(store.resolve_id(req.execution))
        src = from_execution(ex)
        # where its relative inputs were read and its outputs went; not detached, no step subset
        options = SubmitOptions(base_dir=ex.options.base_dir, outputs_dir=ex.options.outputs_dir)
    else:
        assert req.crate is not None
        c = req.crate
        src = RerunSource(c.workflow, dict(c.params), dict(c.images), c.cluster, c.label)
        options = SubmitOptions()
    known = {c.name for c in registry}
    target = req.cluster or (
        src.cluster if src.cluster is not None and src.cluster in known else default_cluster
    )
    main = registry.get(target)
    steps = []
    changes: list[str] = []
    problems: list[StaxError] = []
    cat: Catalog | None = None
    for s in src.workflow.steps:
        pin = src.images.get(s.name)
        container = _container(s)
        if pin is None or (s.image is None and container is None):
            steps.append(s)
            continue
        cl = registry.get(s.cluster) if s.cluster else main
        cat = cat or catalog()
        if container is not None:  # as planning resolves an eFlows4HPC container
            need = step_need("single", None, s.resources.gpus)
        else:
            need = step_need(effective_launcher(s, cl), s.resources.ntasks, s.resources.gpus)
        usable = not over_network and "://" not in pin.reference and Path(pin.reference).exists()
        try:
            r = repin(
                s.name,
                pin,
                cat.images,
                cl.name,
                cl.traits,
                need,
                host_mpi=cl.container_options.host_mpi,
                reference_usable=usable,
            )
        except StaxError as e:
            problems.append(e)
            steps.append(s)
            continue
        if r.change:
            changes.append(r.change)
        if container is None:
            steps.append(s.model_copy(update={"image": r.image}))
        elif r.reference != container.get("image"):
            # the runtime runs the description's image as it is written: the reference
            assert isinstance(s.software, dict)  # _container said so
            software = {**s.software, "container": {**container, "image": r.reference}}
            steps.append(s.model_copy(update={"software": software}))
        else:
            steps.append(s)
    if problems:
        if len(problems) == 1:
            raise problems[0]
        raise InvalidWorkflow(
            f"{src.label} cannot re-run on cluster {target!r}",
            details=[e.message for e in problems],
        )
    params = {**src.params, **req.params}
    return Planned(
        workflow=src.workflow.model_copy(update={"steps": steps}),
        cluster=target,
        params=params,
        options=options,
        origin=Origin(rerun_of=src.label, changes=changes),
        changes=changes,
    )


def _container(step: Step) -> dict[str, Any] | None:
    """The container of an eFlows4HPC step's description (inlined), or None."""
    if not isinstance(step.software, dict):
        return None
    c = step.software.get("container")
    return c if isinstance(c, dict) and isinstance(c.get("image"), str) else None


def is_crate(source: str | Path) -> bool:
    """``source`` names a crate (a zip file, or a directory with ro-crate-metadata.json) rather
    than an execution id (a ``.zip`` that does not exist is a crate too: it is said so)."""
    p = Path(source).expanduser()
    return str(p).endswith(".zip") or (p / "ro-crate-metadata.json").is_file()


def rerun_request(
    source: str | Path, cluster: str | None, params: Mapping[str, ParamValue] | None
) -> RerunRequest:
    """The re-run request for ``source`` (an execution id, or a crate read here: a crate from
    another machine works, its files are this side's)."""
    if isinstance(source, Path) or is_crate(source):
        crate = read_crate(Path(source))
        return RerunRequest(crate=crate, cluster=cluster, params=dict(params or {}))
    return RerunRequest(execution=str(source), cluster=cluster, params=dict(params or {}))
