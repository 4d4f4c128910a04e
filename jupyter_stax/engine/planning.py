"""Planning an execution: validation, StaX image resolution, step directories, and the files of
one attempt. No event loop and no Engine: clients that only store an execution for an engine to
drive (``jupyter_stax.service.LocalService``) call :func:`prepare` directly.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import jobscript as js
from ..core.clusters import ClusterRegistry
from ..core.dag import bound_params, check, select
from ..core.documents import load_workflow
from ..core.errors import InvalidWorkflow, NotFound, StaxError
from ..core.images import ResolvedImage
from ..core.models import (
    Cluster,
    Execution,
    ParamValue,
    Step,
    StepRun,
    SubmitOptions,
    Workflow,
)
from . import schedulers, staging
from .store import Store, default_store_path, now
from .transport import ClusterPath, FileSpec

if TYPE_CHECKING:
    from .catalog import Catalog


def prepare(
    workflow: Workflow | Mapping[str, Any] | str | Path,
    cluster: str = "local",
    params: Mapping[str, ParamValue] | None = None,
    options: SubmitOptions | None = None,
    steps: list[str] | None = None,
    *,
    clusters: ClusterRegistry,
    store: Store | None = None,
    owner: str | None = None,
    image_catalogs: Sequence[str] | None = None,
) -> Execution:
    """A validated, not yet stored Execution (what clients insert for an engine to adopt).

    Raises InvalidWorkflow (every problem found, with details) or UnknownCluster. ``store``:
    the id is new there. ``image_catalogs``: StaX catalog sources (None: the defaults)."""
    wf = (
        workflow
        if isinstance(workflow, Workflow)
        else load_workflow(dict(workflow) if isinstance(workflow, Mapping) else workflow)
    )
    opts = staging.with_defaults(options or SubmitOptions(), workflow)
    if opts.on_failure:
        wf = wf.model_copy(update={"on_failure": opts.on_failure})
    wf = select(wf, steps)
    params = dict(params or {})
    main = clusters.get(cluster)
    if any(isinstance(s.software, str) for s in wf.steps):
        from ..core.software import inline

        wf = inline(wf)
    check(wf, params)
    wf, resolved, image_errors = resolve_images(wf, main, clusters, image_catalogs)
    problems = [e.message for e in image_errors] + staging.input_problems(wf, opts)
    for s in wf.steps:
        c = clusters.get(s.cluster) if s.cluster else main
        launcher = js.effective_launcher(s, c)
        if launcher == "srun" and c.scheduler != "slurm":
            problems.append(
                f"step {s.name!r} uses launcher 'srun', which needs a Slurm cluster; "
                f"cluster {c.name!r} uses {c.scheduler!r} (use 'single' or 'mpirun')"
            )
        if opts.detached:
            if not schedulers.native_dependencies(c.scheduler):
                problems.append(
                    "detached mode queues steps with Slurm or Grid Engine dependencies; "
                    f"step {s.name!r} "
                    f"runs on {c.name!r} ({c.scheduler}). Submit without --detach"
                )
            if s.retries:
                problems.append(
                    f"step {s.name!r} has retries={s.retries}, but a detached execution is "
                    "run by the scheduler alone and cannot resubmit; drop retries or --detach"
                )
    if len(problems) == 1 and image_errors:
        raise image_errors[0]
    if problems:
        details = problems + [d for e in image_errors for d in e.details]
        raise InvalidWorkflow(f"workflow {wf.name!r} cannot run as asked", details=details)
    eid = new_execution_id(store)
    root = cluster_work_dir(clusters, main, store) / eid
    runs = []
    for s in wf.steps:
        c = clusters.get(s.cluster) if s.cluster else main
        d = (cluster_work_dir(clusters, c, store) / eid / s.name) if s.cluster else root / s.name
        runs.append(
            StepRun(
                name=s.name,
                cluster=c.name,
                directory=str(d),
                script=str(d / js.STEP_SCRIPT),
                stdout=str(d / js.STDOUT),
                stderr=str(d / js.STDERR),
                image=s.image,
                resolved_image=resolved.get(s.name),
            )
        )
    if main.remote:
        here = store.path if store is not None else default_store_path()
        _PROVENANCE_HERE[eid] = here.parent / "provenance" / eid
    return Execution(
        id=eid,
        workflow=wf,
        cluster=main.name,
        params=params,
        options=opts,
        created_at=now(),
        work_dir=str(root),
        owner=owner,
        steps=runs,
    )


def state_dir(store: Store, cluster: Cluster) -> Path:
    """jupyter_stax's state directory for ``cluster`` on the Jupyter side (PSI/J's work
    directory, what the cluster's transport remembers)."""
    return store.path.parent / "psij" / cluster.name


def cluster_work_dir(clusters: ClusterRegistry, cluster: Cluster, store: Store | None) -> Path:
    """The cluster's work directory as an absolute path on the cluster. A remote cluster's
    ``~`` (or a relative path) is in the remote account's home, asked over SSH once and then
    remembered in its state directory (blocking: one round trip the first time)."""
    wd = clusters.work_dir(cluster)
    if not cluster.remote or str(wd).startswith("/"):
        return wd
    from .remote.transport import remote_home

    home = remote_home(cluster, state_dir(store, cluster) if store is not None else None)
    text = str(wd)
    rest = text[2:] if text.startswith("~/") else "" if text == "~" else text
    return Path(home) / rest if rest else Path(home)


#: execution id -> where its provenance goes on the Jupyter side, for executions whose main
#: cluster is remote (their work directory is a path on the cluster, see write_provenance)
_PROVENANCE_HERE: dict[str, Path] = {}


def new_execution_id(store: Store | None) -> str:
    """A short random id, unknown to ``store``."""
    while True:
        eid = secrets.token_hex(4)
        if store is None:
            return eid
        try:
            store.resolve_id(eid)
        except NotFound:
            return eid


def catalog(image_catalogs: Sequence[str] | None) -> Catalog:
    """The StaX catalog as its sources are now (read on each call)."""
    from .catalog import Catalog

    return Catalog.load(None if image_catalogs is None else list(image_catalogs))


def resolve_images(
    wf: Workflow,
    main: Cluster,
    clusters: ClusterRegistry,
    image_catalogs: Sequence[str] | None = None,
) -> tuple[Workflow, dict[str, ResolvedImage], list[StaxError]]:
    """Each step's image resolved for its cluster (software descriptions: their container
    image, and their resources where the step sets none)."""
    from ..core import software as sw
    from ..core.images import step_need
    from .catalog import runtime_for

    resolved: dict[str, ResolvedImage] = {}
    errors: list[StaxError] = []
    steps = []
    cat: Catalog | None = None
    for s in wf.steps:
        c = clusters.get(s.cluster) if s.cluster else main
        name, runtime = s.image, None
        if isinstance(s.software, dict):
            desc = sw.load_software(s.software, where=f"step {s.name!r}")
            implied = {
                k: v for k, v in sw.resources(desc).items() if getattr(s.resources, k) is None
            }
            if implied:
                res = s.resources.model_copy(update=implied)
                s = s.model_copy(update={"resources": res})
            if desc.container is not None:
                name, runtime = desc.container.image, sw.container_runtime_name(desc)
        steps.append(s)
        if name is None:
            continue
        try:
            rt = runtime_for(c, runtime)
            if cat is None:
                cat = catalog(image_catalogs)
            need = step_need(js.effective_launcher(s, c), s.resources.ntasks, s.resources.gpus)
            if s.software is not None:
                need = step_need("single", None, s.resources.gpus)
            r, _ = cat.resolve(name, c, need, rt.name)
            if rt.name == "charliecloud" and "://" in r.reference:
                raise InvalidWorkflow(
                    f"step {s.name!r}: ch-run runs directory or SquashFS images, not "
                    f"{r.reference!r}; convert it with ch-image and name the directory"
                )
            resolved[s.name] = r
        except StaxError as e:
            if not e.message.startswith("step "):
                e = type(e)(f"step {s.name!r}: {e.message}", details=e.details)
            errors.append(e)
    return wf.model_copy(update={"steps": steps}), resolved, errors


def write_provenance(ex: Execution) -> None:
    """Write ``execution.json`` (workflow, params, options) into the execution directory.

    When the execution's main cluster is remote its work directory is on the cluster: the
    provenance stays on the Jupyter side, in ``provenance/<id>/`` beside the store (so that
    writing it never depends on the connection: :func:`prepare` notes where)."""
    root = _PROVENANCE_HERE.pop(ex.id, None) or Path(ex.work_dir)
    root.mkdir(parents=True, exist_ok=True)
    doc = {
        "id": ex.id,
        "cluster": ex.cluster,
        "params": ex.params,
        "options": ex.options.model_dump(mode="json"),
        "workflow": ex.workflow.model_dump(mode="json", exclude_defaults=True),
    }
    (root / "execution.json").write_text(json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------------- one attempt
def container_plan(
    ex: Execution, step: Step, s: StepRun, cluster: Cluster, work_dir: Path
) -> js.ContainerPlan | None:
    """How the step runs in its resolved image on ``cluster`` (None: no image)."""
    if s.resolved_image is None:
        return None
    from . import plugins

    rt = plugins.runtime(s.resolved_image.runtime)
    if rt is None:
        raise StaxError(
            f"container runtime {s.resolved_image.runtime!r} is not available here "
            f"(known: {', '.join(sorted(plugins.runtimes()))})"
        )
    return js.container_plan(
        rt,
        s.resolved_image,
        step=step,
        cluster=cluster,
        params=bound_params(ex.workflow, ex.params, step),
        step_dir=Path(s.directory),
        work_dir=work_dir,
    )


def directives(plan: js.ContainerPlan | None, step: Step) -> dict[str, str]:
    """Scheduler attributes the step's container runtime asks for (e.g. shifter's image)."""
    if plan is None or step.software is not None:
        return {}
    return plan.runtime.directives(plan.run([], hybrid=False))


def attempt_files(
    ex: Execution,
    step: Step,
    s: StepRun,
    cluster: Cluster,
    attempt: int,
    plan: js.ContainerPlan | None,
    require_completed: Sequence[Path | tuple[Path, int]] = (),
) -> dict[ClusterPath, FileSpec]:
    """The step script and the job script of ``attempt`` (paths in the step directory)."""
    d = Path(s.directory)
    job = js.render_job_script(
        container=plan,
        execution_id=ex.id,
        step=step,
        attempt=attempt,
        cluster=cluster,
        params=bound_params(ex.workflow, ex.params, step),
        step_dir=d,
        execution_dir=Path(ex.work_dir),
        require_completed=require_completed,
    )
    return {
        d / js.STEP_SCRIPT: FileSpec(js.render_step_script(step, plan)),
        d / js.JOB_SCRIPT: FileSpec(job),
    }


def direct_task_env(
    ex: Execution,
    step: Step,
    cluster: Cluster,
    attempt: int,
    plan: js.ContainerPlan | None,
    require_completed: Sequence[Path | tuple[Path, int]],
    step_dir: Path,
) -> dict[str, str] | None:
    """A function task's environment when the engine may hand it to the warm task worker
    itself (see :func:`~..core.jobscript.direct_task_env`), None otherwise."""
    from .taskdirect import DirectTasks

    if not DirectTasks.enabled():
        return None
    return js.direct_task_env(
        execution_id=ex.id, step=step, attempt=attempt, cluster=cluster,
        params=bound_params(ex.workflow, ex.params, step), step_dir=step_dir,
        execution_dir=Path(ex.work_dir), require_completed=require_completed, container=plan,
    )


def required_upstream(ex: Execution, step: Step) -> list[Path | tuple[Path, int]]:
    """What a detached step's job checks before it runs (see ``require_completed`` of
    :func:`~..core.jobscript.render_job_script`): each upstream step's directory, or for a
    sweep its directory and instance count."""
    from ..core import sweep as sw

    out: list[Path | tuple[Path, int]] = []
    for a in step.after:
        d = Path(ex.step(a).directory)
        up = ex.workflow.step(a).sweep
        out.append((d, len(sw.spec(up))) if up is not None else d)
    return out


def earlier_attempt_moves(step_dir: Path, attempt: int) -> list[tuple[ClusterPath, ClusterPath]]:
    """Renames that keep the files of attempt ``attempt - 1`` as ``<name>.<attempt - 1>``."""
    if attempt <= 1:
        return []
    return [(step_dir / f, step_dir / f"{f}.{attempt - 1}") for f in js.ATTEMPT_FILES]
