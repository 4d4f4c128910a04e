"""Published workflows and re-runs from a notebook (``stax.publish``, ``stax.workflows``,
``stax.trigger``, ``stax.rerun``; the magics ``%stax publish``, ``%stax workflows`` and
``%stax rerun`` call these). The work is the service's (:mod:`jupyter_stax.operations.workflows`
behind it), as for every other surface.

>>> import jupyter_stax as stax
>>> stax.publish("sums.yaml", name="sums", inputs={"n": "how many numbers"})
>>> run = stax.trigger("sums", {"n": 100})
>>> again = stax.rerun(run.id, cluster="slurm-arm")
>>> again.model.origin.changes
["step 'md': gromacs-x86-cuda -> gromacs-arm: cpu x86_64 != aarch64"]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core import models
from ..core.models import ParamValue
from ..core.published import InputSpec, PublishedSummary, PublishedWorkflow, PublishRequest
from ..service import StaxService
from .api import Execution, Workflow, _resolve

__all__ = ["publish", "rerun", "trigger", "workflow", "workflows"]


def _specs(inputs: Mapping[str, str | Mapping[str, Any]] | None) -> dict[str, InputSpec]:
    """``{name: "description"}`` or ``{name: {type, description, required, default}}``."""
    out = {}
    for k, v in (inputs or {}).items():
        out[k] = InputSpec(description=v) if isinstance(v, str) else InputSpec.model_validate(v)
    return out


def publish(
    source: Workflow | models.Workflow | str | Path,
    *,
    name: str | None = None,
    version: str | None = None,
    cluster: str | None = None,
    description: str | None = None,
    inputs: Mapping[str, str | Mapping[str, Any]] | None = None,
    service: StaxService | None = None,
) -> PublishedWorkflow:
    """Publish a workflow (a notebook :class:`~.api.Workflow`, a model, or a workflow file with
    its ``inputs:`` block) as ``name`` (default: its own) at ``version`` (default: the next
    integer), with ``cluster`` as its triggers' default. ``inputs`` describes inputs:
    ``{"n": "how many"}`` or ``{"n": {"type": "integer", "description": ...}}``."""
    from ..operations.workflows import load_document

    if isinstance(source, (str, Path)):
        req = load_document(Path(source))
    else:
        wf = source.model() if isinstance(source, Workflow) else source
        req = PublishRequest(workflow=wf, options=models.SubmitOptions(base_dir=str(Path.cwd())))
    req.inputs.update(_specs(inputs))
    req = req.model_copy(
        update={"name": name, "version": version, "cluster": cluster, "description": description}
    )
    return _resolve(service).publish(req)


def workflows(*, service: StaxService | None = None) -> list[PublishedSummary]:
    """The published workflows (the latest version of each)."""
    return _resolve(service).workflows()


def workflow(
    name: str, version: str | None = None, *, service: StaxService | None = None
) -> PublishedWorkflow:
    """A published workflow: its declared inputs, default cluster and steps."""
    return _resolve(service).workflow(name, version)


def trigger(
    name: str,
    inputs: Mapping[str, Any] | None = None,
    *,
    cluster: str | None = None,
    version: str | None = None,
    service: StaxService | None = None,
) -> Execution:
    """Run the published workflow ``name`` with ``inputs``: every unknown input, wrong type and
    missing required input is refused at once (BadRequest lists them)."""
    svc = _resolve(service)
    return Execution(svc, svc.trigger(name, dict(inputs or {}), cluster, version))


def rerun(
    source: str | Path | Execution,
    *,
    cluster: str | None = None,
    params: Mapping[str, ParamValue] | None = None,
    service: StaxService | None = None,
) -> Execution:
    """Run a recorded run again (an execution, its id, or a crate from any machine): same
    workflow and parameters (``params`` changes some), images pinned to the variants it used;
    on a cluster where one does not fit, its family's fitting variant (the execution's
    ``model.origin.changes`` says what changed and why)."""
    svc = _resolve(service)
    ref = source.id if isinstance(source, Execution) else source
    return Execution(svc, svc.rerun(ref, cluster, dict(params or {})))
