"""Re-running a recorded run anywhere: what to run (from an execution of the store, or from a
Workflow Run RO-Crate written by :mod:`jupyter_stax.operations.crate`, maybe on another
machine) and which image each step runs in on the target cluster.

Pure: :func:`from_execution` and :func:`from_crate` make a :class:`RerunSource` (the workflow,
the parameter values, the image each step ran in); :func:`repin` decides a step's image on the
target cluster:

* the variant the run used, found in this machine's catalog by digest (else by name or
  reference), when it fits the cluster: it runs again, pinned (a catalog entry of that name whose
  digest differs is refused: the image changed since);
* a registry reference (``docker://REPO:TAG``, ``registry.example.org/REPO:TAG``) whose digest
  the run recorded runs by that digest (``REPO@sha256:...``, :func:`pinned_reference`), said as a
  change: the tag may point elsewhere now, the digest cannot; a registry reference without a
  recorded digest runs by its tag, and that is said too;
* else the best fitting variant of the same family, and the change is said with the reason the
  pinned variant does not fit (``busy-x86 -> busy-arm: cpu x86_64 != aarch64``);
* a pinned reference that no catalog lists runs as it is when it still fits (an image path of
  this machine, or a registry reference: pulled wherever it runs).

The step's ``image:`` gets :attr:`Repinned.image`; an eFlows4HPC step's container
(``software.container.image``, which the runtime runs literally) gets :attr:`Repinned.reference`.
"""

from __future__ import annotations

import json
import re
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

__all__ = [
    "RegistryRef",
    "Repinned",
    "RerunSource",
    "from_crate",
    "from_execution",
    "pinned_reference",
    "registry_reference",
    "repin",
]


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
    """A step's image on the target cluster: the name the step's ``image:`` is given (a catalog
    variant, or a reference), the reference it runs (what an eFlows4HPC container names), and the
    change said in words (None: the same image, named the same way)."""

    image: str
    change: str | None = None
    reference: str = ""


# ---------------------------------------------------------------------- registry references
#: an OCI digest (``algorithm:encoded``, the OCI image spec's grammar)
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HOST_RE = re.compile(
    r"^(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+"
    r"|[A-Za-z0-9-]+(?=:))(?::[0-9]+)?$"
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class RegistryRef:
    """A registry image reference split: ``transport + repository[:tag][@digest]``."""

    transport: str  # "docker://" or "" (a runtime that takes registry names as they are)
    repository: str  # with its registry host: ghcr.io/org/image
    tag: str | None
    digest: str | None

    def by_digest(self, digest: str) -> str:
        return f"{self.transport}{self.repository}@{digest}"


def registry_reference(reference: str) -> RegistryRef | None:
    """``reference`` as a registry image reference, or None when it is not one (a path, an OCI
    layout ``oci:DIR``, a SIF file, ``library://`` ...). Without ``docker://`` the first path
    component must name a registry host (a dot, a port or ``localhost``: ``ghcr.io/org/x:1``),
    as the runtimes read it; ``org/x:1`` stays a relative path."""
    transport = "docker://" if reference.startswith("docker://") else ""
    rest = reference[len(transport) :]
    if not transport and ("://" in rest or rest.startswith(("/", ".", "~"))):
        return None
    rest, at, digest = rest.partition("@")
    if at and not DIGEST_RE.match(digest):
        return None
    head, slash, last = rest.rpartition("/")
    last, colon, tag = last.partition(":")
    if colon and not _TAG_RE.match(tag):
        return None
    host, _, path = (head + slash + last).partition("/")
    if not path or not _HOST_RE.match(host):
        if not transport:  # a registry name without docker:// starts with its host
            return None
        host, path = "", f"{host}/{path}" if path else host  # Docker Hub: docker://busybox
    if not _REPO_RE.match(path):
        return None
    return RegistryRef(transport, f"{host}/{path}" if host else path, tag or None, digest or None)


def pinned_reference(reference: str, digest: str | None) -> str | None:
    """``reference`` pinned to ``digest`` (``docker://ghcr.io/o/x:1`` + ``sha256:..`` ->
    ``docker://ghcr.io/o/x@sha256:..``: a reference never holds both, runtimes refuse that), or
    None when it is not a registry reference or no usable digest was recorded. A reference that
    names a digest already stays as it is."""
    ref = registry_reference(reference)
    if ref is None or not digest or not DIGEST_RE.match(digest):
        return None
    if ref.digest is not None:
        return reference
    return ref.by_digest(digest)


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
    reference can be run here as it is (a path that exists; a registry reference always can).
    ImageMismatch when neither the pinned variant nor any variant of its family fits; Conflict
    when the catalog's variant of that name has another digest now."""
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
    registry = registry_reference(candidate.reference) is not None
    fit = judge(candidate, cluster, traits, need, host_mpi=host_mpi)
    if fit.fits and (same or reference_usable or registry):
        return _pinned(step, candidate, pin.digest, catalogued=bool(same))
    family = [i for i in images if i.family == pin.family]
    if not family:
        why = fit.reason() if not fit.fits else "it is in no catalog here and cannot be read"
        raise ImageMismatch(
            f"step {step!r}: the run used StaX variant {pin.name!r} ({pin.reference}), which "
            f"cannot run on cluster {cluster!r} ({why}), and no catalog here has a variant of "
            f"its family {pin.family!r}; add one (see `jupyter stax images`)"
        )
    chosen = resolve(pin.family, family, cluster, traits, need, host_mpi=host_mpi).image
    why = fit.reason() if not fit.fits else "not in this machine's catalog"
    return Repinned(
        chosen.name, f"step {step!r}: {pin.name} -> {chosen.name}: {why}", chosen.reference
    )


def _pinned(step: str, image: StaxImage, digest: str | None, *, catalogued: bool) -> Repinned:
    """The image the run used, again: by its digest when it is a registry reference whose
    digest was recorded (said), by its tag when none was (said), else as it was named."""
    name = image.name if catalogued else image.reference
    by_digest = pinned_reference(image.reference, digest)
    if by_digest is not None and by_digest != image.reference:
        return Repinned(
            by_digest,
            f"step {step!r}: {name} pinned to the digest the run recorded: {image.reference} "
            f"-> {by_digest}",
            by_digest,
        )
    if by_digest is None and registry_reference(image.reference) is not None:
        return Repinned(
            name,
            f"step {step!r}: {name} runs by its tag ({image.reference}): the run recorded no "
            "digest, so the image may differ from the one it ran",
            image.reference,
        )
    return Repinned(name, None, image.reference)
