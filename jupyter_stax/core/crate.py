"""What a finished execution says as a Workflow Run RO-Crate: the pure mapping from the records
of the store to JSON-LD entities (the Process Run, Workflow Run and Provenance Run Crate
profiles 0.5, https://w3id.org/ro/wfrun/...). This module has the ids, the attempts, the files
wanted and the image entities; :mod:`.crate_plan` puts the whole crate together. No I/O:
:mod:`jupyter_stax.operations.crate` reads the files, hashes them and writes the crate with the
``rocrate`` library.

The shape (every ``@id`` made here is a crate path or a ``#`` fragment; names and values from
the store are quoted into ids and stay data everywhere else):

* ``workflow.yaml``: the stored workflow, the main entity (File, SoftwareSourceCode,
  ComputationalWorkflow, HowTo) with its parameters as ``input`` FormalParameters;
* per step: a HowToStep (``#step-NAME``) whose ``workExample`` is the tool, the step's rendered
  script ``steps/NAME/stax.step.sh`` (File, SoftwareSourceCode) with one FormalParameter per
  parameter value it sees; a ParameterConnection from each workflow parameter it inherits;
* per step ATTEMPT: a CreateAction (instrument: the tool) with startTime/endTime, actionStatus
  and ``error`` (the recorded reason), the scheduler job id (``identifier``), the cluster
  (``location``), the parameter values (PropertyValue ``object``s), the exit code and the
  attempt's stdout/stderr (``result``), the container image; and a ControlAction tying it to its
  HowToStep. An attempt the scheduler never ran (``skipped``: an upstream step did not complete)
  has no action (the profile says so); it is named in the workflow run's description;
* a CreateAction for the workflow run and an OrganizeAction for the engine (jupyter_stax and
  PSI/J with the versions recorded when the execution was stored).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import Conflict
from .images import ResolvedImage
from .jobscript import STDERR, STDOUT, STEP_SCRIPT
from .models import Execution, ParamValue, StepRun
from .staging import StepFiles
from .states import ExecutionState, StepState

PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": ("Process Run Crate", "0.5"),
    "https://w3id.org/ro/wfrun/workflow/0.5": ("Workflow Run Crate", "0.5"),
    "https://w3id.org/ro/wfrun/provenance/0.5": ("Provenance Run Crate", "0.5"),
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": ("Workflow RO-Crate", "1.0"),
}
#: the JSON-LD context of the workflow-run terms (containerImage, sha256, connection, ...)
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
WFRUN = "https://w3id.org/ro/terms/workflow-run#"
WORKFLOW_FILE = "workflow.yaml"
LANGUAGE_ID = "#jupyter-stax-workflow"
ENGINE_ID = "#jupyter-stax"
PSIJ_ID = "#psij-python"
#: actionStatus values: the full IRIs as text, as the profiles' validator (roc-validator) expects
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"
NO_LICENSE_ID = "#license-not-given"
#: a step name used as a directory of the crate as it is (anything else: ``step-N``)
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SIF = re.compile(r"\.sif$", re.IGNORECASE)


@dataclass(frozen=True)
class Wanted:
    """A file of the execution the crate should hold: ``name`` in the step directory
    ``directory`` (as the store records it), to be put at ``path`` in the crate."""

    path: str
    directory: str
    name: str
    step: str
    attempt: int | None = None
    """None: the step's script"""
    kind: str = "script"
    """script, stdout or stderr"""


@dataclass(frozen=True)
class FileFacts:
    """What the exporter found for a wanted file (None in the mapping: not found)."""

    size: int
    sha256: str


@dataclass
class Attempt:
    """One attempt of a step, from its history or its current record."""

    number: int
    state: StepState
    native_id: str | None
    exit_code: int | None
    reason: str | None
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    current: bool
    #: what the attempt staged in and kept (the data-staging records; None: none recorded)
    files: StepFiles | None = None


@dataclass
class CratePlan:
    """Everything the crate holds: data entities (``files``: crate path -> properties; the
    exporter adds the bytes), contextual ``entities``, and the root's properties."""

    root: dict[str, Any]
    workflow: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: list[dict[str, Any]] = field(default_factory=list)


def ref(i: str) -> dict[str, str]:
    return {"@id": i}


def frag(*parts: str) -> str:
    """A ``#`` fragment id from parts taken from the store (quoted: they stay data)."""
    return "#" + "-".join(urllib.parse.quote(p, safe="") for p in parts)


def step_segment(position: int, name: str) -> str:
    """The step's directory in the crate: its name when that is a plain file name (what the
    workflow model allows), else ``step-N``: nothing from the store becomes a path as is."""
    if _SAFE_SEGMENT.match(name) and ".." not in name:
        return name
    return f"step-{position + 1}"


def require_final(ex: Execution) -> Execution:
    """The crate records a finished run: Conflict while the execution is not final."""
    if not ex.state.final:
        done, total = ex.progress
        raise Conflict(
            f"execution {ex.id} is still {ex.state.value} ({done}/{total} steps final); a "
            "Workflow Run Crate records a finished run: wait for it (`jupyter stax wait "
            f"{ex.id}`) or cancel it, then export"
        )
    return ex


def is_staged_file(entity_id: str) -> bool:
    """A staged input or kept output: a data entity that stays in the step directory (an
    absolute ``file:`` URI), not a file of the crate."""
    return entity_id.startswith("file://")


def attempts(s: StepRun) -> list[Attempt]:
    """The step's attempts, oldest first (none before its first submission)."""
    out = [
        Attempt(
            h.attempt, h.state, h.native_id, h.exit_code, h.reason, h.submitted_at,
            h.started_at, h.finished_at, current=False, files=h.files,
        )
        for h in s.history
        if h.attempt >= 1
    ]
    if s.attempt >= 1 and s.attempt not in {a.number for a in out}:
        out.append(
            Attempt(
                s.attempt, s.state, s.native_id, s.exit_code, s.reason, s.submitted_at,
                s.started_at, s.finished_at, current=True, files=s.files,
            )
        )
    return sorted(out, key=lambda a: a.number)


def wanted_files(ex: Execution) -> list[Wanted]:
    """The step files the crate should hold: each step's rendered script, and each attempt's
    stdout and stderr (``stax.out.N`` for an earlier attempt N)."""
    out: list[Wanted] = []
    for i, s in enumerate(ex.steps):
        seg = step_segment(i, s.name)
        out.append(Wanted(f"steps/{seg}/{STEP_SCRIPT}", s.directory, STEP_SCRIPT, s.name))
        for a in attempts(s):
            if a.state is StepState.SKIPPED:
                continue
            for kind, base in (("stdout", STDOUT), ("stderr", STDERR)):
                name = base if a.current else f"{base}.{a.number}"
                out.append(
                    Wanted(
                        f"steps/{seg}/attempt-{a.number}/{base}", s.directory, name, s.name,
                        a.number, kind,
                    )
                )
    return out


def iso(t: datetime | None) -> str | None:
    """ISO 8601 with milliseconds and the UTC offset (what the profiles' validator matches)."""
    return t.isoformat(timespec="milliseconds") if t is not None else None


def value_type(v: ParamValue) -> str:
    """The schema.org DataType of a parameter value (a FormalParameter's additionalType)."""
    if isinstance(v, bool):
        return "Boolean"
    if isinstance(v, int):
        return "Integer"
    if isinstance(v, float):
        return "Float"
    return "Text"


def property_value(pv_id: str, name: str, v: ParamValue, example_of: str) -> dict[str, Any]:
    """A parameter value as a PropertyValue of the FormalParameter ``example_of``: the value
    itself (JSON keeps its type and every character; a null value has none)."""
    out: dict[str, Any] = {"@id": pv_id, "@type": "PropertyValue", "name": name}
    if v is not None:
        out["value"] = v
    out["exampleOfWork"] = ref(example_of)
    return out


def parse_reference(reference: str) -> dict[str, Any]:
    """ContainerImage properties of an image reference: registry, name, tag and the image
    type, where the reference says them (a local path has no registry)."""
    out: dict[str, Any] = {}
    scheme, sep, rest = reference.partition("://")
    if not sep:
        scheme, rest = "", reference
    if scheme in ("", "docker") and not reference.startswith(("/", ".", "~")):
        name, _, digest = rest.partition("@")
        first, slash, tail = name.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, name = first, tail
        else:
            registry = "docker.io"
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = name.rsplit(":", 1)
            out["tag"] = tag
        out.update(
            {
                "additionalType": ref(WFRUN + "DockerImage"),
                "registry": registry,
                "name": name,
            }
        )
        if digest.startswith("sha256:"):
            out["sha256"] = digest[len("sha256:") :]
        return out
    out["name"] = reference
    if scheme == "oras" or _SIF.search(rest):
        out["additionalType"] = ref(WFRUN + "SIFImage")
    if scheme and scheme != "oras":
        out["registry"] = scheme
    return out


def image_entities(image_id: str, r: ResolvedImage) -> list[dict[str, Any]]:
    """A ContainerImage for the resolved image: reference, digest, every label and the
    runtime (each label a PropertyValue under ``additionalProperty``)."""
    props: list[tuple[str, str, str]] = [
        ("reference", "image reference", r.reference),
        ("runtime", "container runtime", r.runtime),
        ("variant", "StaX variant", r.name),
        ("family", "StaX family", r.family),
        ("requested", "what the step asked for", r.requested),
    ]
    if r.source:
        props.append(("source", "catalog source", r.source))
    props += [(f"label-{k}", k, v) for k, v in sorted(r.labels.items())]
    pvs = [
        {
            "@id": frag(image_id.lstrip("#"), key),
            "@type": "PropertyValue",
            "name": name,
            "propertyID": key[len("label-") :] if key.startswith("label-") else key,
            "value": value,
        }
        for key, name, value in props
    ]
    image: dict[str, Any] = {
        "@id": image_id,
        "@type": "ContainerImage",
        **parse_reference(r.reference),
        "description": f"StaX variant {r.name} of {r.family} (the step asked for "
        f"{r.requested}), run with {r.runtime}",
        "additionalProperty": [ref(p["@id"]) for p in pvs],
    }
    if r.digest:
        algo, _, hexdigest = r.digest.partition(":")
        if algo == "sha256" and hexdigest:
            image["sha256"] = hexdigest
        image["identifier"] = r.digest
    return [image, *pvs]


def status(state: StepState | ExecutionState) -> str:
    """The actionStatus of a final state."""
    return COMPLETED if state.value == "completed" else FAILED


def failure(a: Attempt) -> str:
    """An attempt's ``error``: its state and the recorded reason (else its exit code)."""
    if a.reason:
        return f"{a.state.value}: {a.reason}"
    if a.exit_code is not None:
        return f"{a.state.value}: exit code {a.exit_code}"
    return a.state.value
