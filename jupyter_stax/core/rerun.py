"""Re-running a recorded run anywhere: what to run (from an execution of the store, or from a
Workflow Run RO-Crate written by :mod:`jupyter_stax.operations.crate`, maybe on another
machine) and which image each step runs in on the target cluster.

Pure: :func:`from_execution` and :func:`from_crate` make a :class:`RerunSource` (the workflow,
the parameter values, the image each step ran in); :func:`repin` decides a step's image on the
target cluster:

* the variant the run used, found in this machine's catalog by digest (else by name or
  reference), when it fits the cluster: it runs again, pinned (a catalog entry of that name whose
  digest differs is refused: the image changed since);
* else the best fitting variant of the same family, and the change is said with the reason the
  pinned variant does not fit (``busy-x86 -> busy-arm: cpu x86_64 != aarch64``);
* a pinned reference that no catalog lists (an image path of this machine) runs as it is when
  it still fits.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .crate import WORKFLOW_FILE, frag, step_segment
from .errors import BadRequest, Conflict
from .images import (
    ClusterTraits,
    ImageMismatch,
    Need,
    ResolvedImage,
    StaxImage,
    StaxLabels,
    judge,
    resolve,
)
from .models import Execution, ParamValue, Workflow

__all__ = ["Repinned", "RerunSource", "from_crate", "from_execution", "repin"]


@dataclass
class RerunSource:
    """What a re-run runs: the workflow, every parameter value the run had, the image each step
    ran in (by step name), the cluster it ran on, and what it is a re-run of."""

    workflow: Workflow
    params: dict[str, ParamValue]
    images: dict[str, ResolvedImage] = field(default_factory=dict)
    cluster: str | None = None
    label: str = ""


@dataclass(frozen=True)
class Repinned:
    """A step's image on the target cluster: the name the step is given (a catalog variant, or
    the pinned reference) and the change said in words (None: the same variant)."""

    image: str
    change: str | None = None


def from_execution(ex: Execution) -> RerunSource:
    """The run ``ex`` as it was recorded: its workflow, effective parameters and images."""
    return RerunSource(
        workflow=ex.workflow,
        params={**ex.workflow.params, **ex.params},
        images={s.name: s.resolved_image for s in ex.steps if s.resolved_image is not None},
        cluster=ex.cluster,
        label=ex.id,
    )


def _graph(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    graph = metadata.get("@graph")
    if not isinstance(graph, list):
        raise BadRequest("ro-crate-metadata.json has no @graph: not an RO-Crate")
    return {e["@id"]: e for e in graph if isinstance(e, dict) and isinstance(e.get("@id"), str)}


def _ids(v: Any) -> list[str]:
    items = v if isinstance(v, list) else [v] if v is not None else []
    return [i["@id"] for i in items if isinstance(i, dict) and isinstance(i.get("@id"), str)]


def _value(v: Any) -> ParamValue:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return json.dumps(v)


def from_crate(metadata: Mapping[str, Any], workflow: Workflow, label: str) -> RerunSource:
    """The run a jupyter_stax Workflow Run Crate records (its ``ro-crate-metadata.json`` parsed,
    and its ``workflow.yaml`` loaded): the parameter values of the workflow run's CreateAction
    and each step's ContainerImage. BadRequest for a crate that is not one of ours."""
    g = _graph(metadata)
    runs = [
        e for e in g.values()
        if e.get("@type") == "CreateAction" and WORKFLOW_FILE in _ids(e.get("instrument"))
    ]
    if not runs:
        raise BadRequest(
            f"{label}: no workflow run (a CreateAction of {WORKFLOW_FILE}) in the crate; is it "
            "a crate jupyter stax export wrote?"
        )
    run = runs[0]
    params: dict[str, ParamValue] = {**workflow.params}
    for pid in _ids(run.get("object")):
        pv = g.get(pid, {})
        if pv.get("@type") == "PropertyValue" and isinstance(pv.get("name"), str):
            params[pv["name"]] = _value(pv.get("value"))
    cluster = None
    loc = _ids(run.get("location"))
    if loc and isinstance(g.get(loc[0], {}).get("name"), str):
        cluster = g[loc[0]]["name"]
    images: dict[str, ResolvedImage] = {}
    for i, s in enumerate(workflow.steps):
        image_id = frag("image", step_segment(i, s.name))
        entity = g.get(image_id)
        if entity is None:
            continue
        props: dict[str, str] = {}
        labels: dict[str, str] = {}
        for pid in _ids(entity.get("additionalProperty")):
            pv = g.get(pid, {})
            if not pid.startswith(image_id + "-") or "value" not in pv:
                continue
            key = urllib.parse.unquote(pid[len(image_id) + 1 :])
            if key.startswith("label-"):
                labels[key[len("label-") :]] = str(pv["value"])
            else:
                props[key] = str(pv["value"])
        if not {"reference", "runtime", "variant", "family"} <= set(props):
            continue
        digest = entity.get("identifier")
        images[s.name] = ResolvedImage(
            requested=props.get("requested", props["variant"]),
            name=props["variant"],
            family=props["family"],
            reference=props["reference"],
            digest=digest if isinstance(digest, str) else None,
            labels=labels,
            runtime=props["runtime"],
            source=props.get("source", ""),
        )
    return RerunSource(workflow, params, images, cluster, label)


def _pinned_image(pin: ResolvedImage) -> StaxImage:
    return StaxImage(
        name=pin.name,
        family=pin.family,
        reference=pin.reference,
        digest=pin.digest,
        labels=StaxLabels.parse(pin.labels),
        source=pin.source,
    )


def repin(
    step: str,
    pin: ResolvedImage,
    images: Sequence[StaxImage],
    cluster: str,
    traits: ClusterTraits,
    need: Need,
    *,
    host_mpi: bool = False,
    reference_usable: bool = False,
) -> Repinned:
    """The image step ``step`` runs in on ``cluster`` when its run used ``pin`` (see the
    module's docstring). ``images``: this machine's catalog; ``reference_usable``: the pinned
    reference can be run here as it is (a path that exists). ImageMismatch when neither the
    pinned variant nor any variant of its family fits; Conflict when the catalog's variant of
    that name has another digest now."""
    same = [i for i in images if pin.digest and i.digest == pin.digest]
    same = same or [i for i in images if i.name == pin.name and i.family == pin.family]
    same = same or [i for i in images if i.reference == pin.reference]
    candidate = same[0] if same else _pinned_image(pin)
    if same and pin.digest and candidate.digest and candidate.digest != pin.digest:
        raise Conflict(
            f"step {step!r}: StaX variant {candidate.name!r} has digest {candidate.digest} now; "
            f"the run used {pin.digest}. The image changed since: rebuild or re-catalogue the "
            "old one to re-run it exactly, or submit the workflow again to use the new one"
        )
    fit = judge(candidate, cluster, traits, need, host_mpi=host_mpi)
    if fit.fits and (same or reference_usable):
        return Repinned(candidate.name if same else pin.reference)
    family = [i for i in images if i.family == pin.family]
    if not family:
        why = fit.reason() if not fit.fits else "it is in no catalog here and cannot be read"
        raise ImageMismatch(
            f"step {step!r}: the run used StaX variant {pin.name!r} ({pin.reference}), which "
            f"cannot run on cluster {cluster!r} ({why}), and no catalog here has a variant of "
            f"its family {pin.family!r}; add one (see `jupyter stax images`)"
        )
    chosen = resolve(pin.family, family, cluster, traits, need, host_mpi=host_mpi)
    why = fit.reason() if not fit.fits else "not in this machine's catalog"
    return Repinned(chosen.image.name, f"step {step!r}: {pin.name} -> {chosen.image.name}: {why}")
