"""What a finished execution says as a Workflow Run RO-Crate: the pure mapping from the records
of the store to JSON-LD entities (the Process Run, Workflow Run and Provenance Run Crate
profiles 0.5, https://w3id.org/ro/wfrun/...). No I/O: :mod:`jupyter_stax.operations.crate`
reads the files, hashes them and writes the crate with the ``rocrate`` library.

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

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .dag import bound_params
from .errors import Conflict
from .images import ResolvedImage
from .jobscript import STDERR, STDOUT, STEP_SCRIPT
from .models import Execution, ParamValue, StepRun
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


def attempts(s: StepRun) -> list[Attempt]:
    """The step's attempts, oldest first (none before its first submission)."""
    out = [
        Attempt(
            h.attempt, h.state, h.native_id, h.exit_code, h.reason, h.submitted_at,
            h.started_at, h.finished_at, current=False,
        )
        for h in s.history
        if h.attempt >= 1
    ]
    if s.attempt >= 1 and s.attempt not in {a.number for a in out}:
        out.append(
            Attempt(
                s.attempt, s.state, s.native_id, s.exit_code, s.reason, s.submitted_at,
                s.started_at, s.finished_at, current=True,
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


def _value(v: ParamValue) -> dict[str, Any]:
    """A PropertyValue's value: the value itself (JSON keeps its type and every character)."""
    return {} if v is None else {"value": v}


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


def _status(state: StepState | ExecutionState) -> str:
    return COMPLETED if state.value == "completed" else FAILED


def _failure(a: Attempt) -> str:
    """An attempt's ``error``: its state and the recorded reason (else its exit code)."""
    if a.reason:
        return f"{a.state.value}: {a.reason}"
    if a.exit_code is not None:
        return f"{a.state.value}: exit code {a.exit_code}"
    return a.state.value


def plan(
    ex: Execution,
    files: Mapping[str, FileFacts | None],
    software: Mapping[str, str],
    exported_at: datetime,
    license: str | None = None,
) -> CratePlan:
    """The crate of the final execution ``ex``. ``files``: crate path -> what was found for each
    of :func:`wanted_files` (None: not found; it is left out and the action says so);
    ``software``: the versions recorded with the execution (``jupyter_stax``, ``psij``);
    ``license``: the crate's license (a URL or SPDX id) as the exporter states it (None: the
    crate says that no license was given: the store records none)."""
    require_final(ex)
    wf = ex.workflow
    eid = ex.id
    entities: list[dict[str, Any]] = []
    out_files: dict[str, dict[str, Any]] = {}
    add = entities.append

    def file_ref(path: str, props: dict[str, Any]) -> dict[str, str] | None:
        facts = files.get(path)
        if facts is None:
            return None
        out_files[path] = {**props, "contentSize": str(facts.size), "sha256": facts.sha256}
        return ref(path)

    # ------------------------------------------------------------------ the workflow
    effective: dict[str, ParamValue] = {**wf.params, **ex.params}
    wf_inputs = {}
    for name, v in effective.items():
        fp_id = WORKFLOW_FILE + frag("param", name)
        wf_inputs[name] = fp_id
        fp: dict[str, Any] = {
            "@id": fp_id,
            "@type": "FormalParameter",
            "name": name,
            "additionalType": value_type(v),
            "valueRequired": name not in wf.params,
            "workExample": ref(frag(eid, "param", name)),
        }
        if name in wf.params and wf.params[name] is not None:
            fp["defaultValue"] = (
                wf.params[name] if isinstance(wf.params[name], str) else json.dumps(wf.params[name])
            )
        add(fp)
        add(
            {
                "@id": frag(eid, "param", name),
                "@type": "PropertyValue",
                "name": name,
                **_value(v),
                "exampleOfWork": ref(fp_id),
            }
        )
    cluster_ids: dict[str, str] = {}

    def cluster(name: str) -> dict[str, str]:
        if name not in cluster_ids:
            cluster_ids[name] = frag("cluster", name)
            add(
                {
                    "@id": cluster_ids[name],
                    "@type": "Place",
                    "name": name,
                    "description": f"the jupyter_stax cluster {name!r} (clusters file entry)",
                }
            )
        return ref(cluster_ids[name])

    how_to_steps, tools_run, connections, controls, mentioned = [], [], [], [], []
    run_results: list[dict[str, str]] = []
    not_run: list[str] = []
    for i, s in enumerate(ex.steps):
        seg = step_segment(i, s.name)
        step_def = next((d for d in wf.steps if d.name == s.name), None)
        tool_id = f"steps/{seg}/{STEP_SCRIPT}"
        values = bound_params(wf, ex.params, step_def) if step_def else dict(effective)
        tool_inputs, step_connections = [], []
        for name, v in values.items():
            fp_id = tool_id + frag("param", name)
            tool_inputs.append(ref(fp_id))
            add(
                {
                    "@id": fp_id,
                    "@type": "FormalParameter",
                    "name": name,
                    "additionalType": value_type(v),
                    "description": f"exported to the step as STAX_PARAM_{name}",
                }
            )
            if name in wf_inputs and not (step_def and name in step_def.params):
                c_id = frag("connection", seg, name)
                connections.append(ref(c_id))
                step_connections.append(ref(c_id))
                add(
                    {
                        "@id": c_id,
                        "@type": "ParameterConnection",
                        "sourceParameter": ref(wf_inputs[name]),
                        "targetParameter": ref(fp_id),
                    }
                )
        tool_props: dict[str, Any] = {
            "@type": ["File", "SoftwareSourceCode"],
            "name": s.name,
            "description": f"the script of step {s.name!r} as jupyter_stax rendered it "
            "(placeholders replaced by references to STAX_PARAM_* variables)",
            "encodingFormat": "text/x-shellscript",
            "input": tool_inputs,
        }
        if step_def is not None and step_def.language == "python":
            tool_props["description"] += "; the step's Python source is run by python3"
        tool_ref = file_ref(tool_id, tool_props)
        if tool_ref is None:  # never written and not renderable: describe it without bytes
            add({"@id": tool_id, **tool_props, "@type": "SoftwareSourceCode"})
            tool_ref = ref(tool_id)
        how_id = frag("step", s.name)
        how_to_steps.append(ref(how_id))
        how: dict[str, Any] = {
            "@id": how_id,
            "@type": "HowToStep",
            "name": s.name,
            "position": str(i),
            "workExample": tool_ref,
        }
        if step_connections:
            how["connection"] = step_connections
        if step_def is not None and step_def.after:
            how["description"] = "runs after " + ", ".join(step_def.after)
        add(how)
        image_id = None
        if s.resolved_image is not None:
            image_id = frag("image", seg)
            entities.extend(image_entities(image_id, s.resolved_image))
        ran = [a for a in attempts(s) if a.state is not StepState.SKIPPED]
        if not ran:
            not_run.append(f"{s.name} ({s.state.value}" + (f": {s.reason})" if s.reason else ")"))
            continue
        tools_run.append(tool_ref)
        for a in ran:
            act_id = frag(eid, s.name, str(a.number))
            base = f"steps/{seg}/attempt-{a.number}/"
            logs = [
                file_ref(
                    base + name,
                    {
                        "@type": "File",
                        "name": f"{kind} of step {s.name!r}, attempt {a.number}",
                        "encodingFormat": "text/plain",
                    },
                )
                for kind, name in (("stdout", STDOUT), ("stderr", STDERR))
            ]
            result = [r for r in logs if r is not None]
            missing = [k for k, r in zip(("stdout", "stderr"), logs, strict=True) if r is None]
            if a.exit_code is not None:
                add(
                    {
                        "@id": act_id + "-exit-code",
                        "@type": "PropertyValue",
                        "name": "exit code",
                        "propertyID": "exit-code",
                        "value": a.exit_code,
                    }
                )
                result.append(ref(act_id + "-exit-code"))
            objs = []
            for name, v in values.items():
                pv_id = f"{act_id}-param-{urllib.parse.quote(name, safe='')}"
                objs.append(ref(pv_id))
                add(
                    {
                        "@id": pv_id,
                        "@type": "PropertyValue",
                        "name": name,
                        **_value(v),
                        "exampleOfWork": ref(tool_id + frag("param", name)),
                    }
                )
            job = f"job {a.native_id}" if a.native_id else "no job id (never reached the scheduler)"
            desc = f"attempt {a.number} of step {s.name!r}: {job} on cluster {s.cluster}, "
            desc += a.state.value
            if a.submitted_at is not None:
                desc += f"; submitted {a.submitted_at.isoformat()}"
            if missing:
                desc += "; not in the crate (not found at export): " + ", ".join(missing)
            action: dict[str, Any] = {
                "@id": act_id,
                "@type": "CreateAction",
                "name": f"Run of step {s.name} (attempt {a.number})",
                "description": desc,
                "instrument": tool_ref,
                "actionStatus": _status(a.state),
                "location": cluster(s.cluster),
                "object": objs,
                "result": result,
            }
            if a.native_id:
                jid = act_id + "-job"
                add(
                    {
                        "@id": jid,
                        "@type": "PropertyValue",
                        "name": "scheduler job id",
                        "propertyID": "job-id",
                        "value": a.native_id,
                    }
                )
                action["identifier"] = ref(jid)
            if a.started_at is not None:
                action["startTime"] = iso(a.started_at)
            if a.finished_at is not None:
                action["endTime"] = iso(a.finished_at)
            if a.state is not StepState.COMPLETED:
                action["error"] = _failure(a)
            if image_id is not None:
                action["containerImage"] = ref(image_id)
            add(action)
            mentioned.append(ref(act_id))
            if a.current:
                run_results.extend(r for r in logs if r is not None)
            control: dict[str, Any] = {
                "@id": act_id + "-control",
                "@type": "ControlAction",
                "name": f"orchestrate step {s.name} (attempt {a.number})",
                "instrument": ref(how_id),
                "object": ref(act_id),
                "actionStatus": _status(a.state),
            }
            if a.state is not StepState.COMPLETED:
                control["error"] = action["error"]
            controls.append(ref(control["@id"]))
            add(control)

    # ------------------------------------------------------------------ run and engine
    run_id = frag(eid)
    run: dict[str, Any] = {
        "@id": run_id,
        "@type": "CreateAction",
        "name": f"Run {eid} of workflow {wf.name}",
        "description": f"jupyter_stax execution {eid} on cluster {ex.cluster}: {ex.state.value}"
        + ("; steps that did not run: " + ", ".join(not_run) if not_run else ""),
        "instrument": ref(WORKFLOW_FILE),
        "startTime": iso(ex.created_at),
        "actionStatus": _status(ex.state),
        "location": cluster(ex.cluster),
        "object": [ref(frag(eid, "param", n)) for n in effective],
        "result": run_results,
    }
    if ex.finished_at is not None:
        run["endTime"] = iso(ex.finished_at)
    if ex.state is not ExecutionState.COMPLETED:
        bad = [
            f"{s.name} {s.state.value}" + (f" ({s.reason})" if s.reason else "")
            for s in ex.steps
            if s.state is not StepState.COMPLETED
        ]
        run["error"] = f"execution {ex.state.value}: " + "; ".join(bad)
    add(run)
    psij: dict[str, Any] = {
        "@id": PSIJ_ID,
        "@type": "SoftwareApplication",
        "name": "PSI/J (psij-python)",
        "url": "https://exaworks.org/psij",
    }
    engine: dict[str, Any] = {
        "@id": ENGINE_ID,
        "@type": "SoftwareApplication",
        "name": "jupyter_stax",
        "description": "the workflow engine of jupyter_stax (schedulers through PSI/J)",
        "softwareRequirements": ref(PSIJ_ID),
    }
    for entity, key in ((engine, "jupyter_stax"), (psij, "psij")):
        if software.get(key):
            entity["softwareVersion"] = software[key]
        else:
            entity["description"] = (
                entity.get("description", entity["name"])
                + "; its version was not recorded (the execution was stored by a jupyter_stax "
                "that did not record versions)"
            )
    add(engine)
    add(psij)
    organize: dict[str, Any] = {
        "@id": frag(eid, "engine"),
        "@type": "OrganizeAction",
        "name": f"jupyter_stax engine run of execution {eid}",
        "instrument": ref(ENGINE_ID),
        "object": controls,
        "result": ref(run_id),
        "startTime": iso(ex.created_at),
        "actionStatus": _status(ex.state),
    }
    if ex.finished_at is not None:
        organize["endTime"] = iso(ex.finished_at)
    if "error" in run:
        organize["error"] = run["error"]
    add(organize)
    add(
        {
            "@id": LANGUAGE_ID,
            "@type": "ComputerLanguage",
            "name": "jupyter_stax workflow",
            "alternateName": "StaX workflow YAML",
            "description": "steps (bash or Python scripts with {{param}} placeholders), "
            "their order (after), parameters, resources and StaX images",
            **({"version": software["jupyter_stax"]} if software.get("jupyter_stax") else {}),
        }
    )
    for pid, (name, version) in PROFILES.items():
        add({"@id": pid, "@type": "CreativeWork", "name": name, "version": version})
    workflow: dict[str, Any] = {
        "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
        "name": wf.name,
        "encodingFormat": "application/yaml",
        "programmingLanguage": ref(LANGUAGE_ID),
        "input": [ref(i) for i in wf_inputs.values()],
        "hasPart": tools_run,
        "step": how_to_steps,
        "connection": connections,
    }
    if wf.description:
        workflow["description"] = wf.description
    if not license:
        add(
            {
                "@id": NO_LICENSE_ID,
                "@type": "CreativeWork",
                "name": "no license given",
                "description": "the export named no license (jupyter stax export --license "
                "URL|SPDX-ID names one); ask the author of the run before reusing it",
            }
        )
    root = {
        "license": license or ref(NO_LICENSE_ID),
        "name": f"Run {eid} of workflow {wf.name}",
        "description": f"Workflow Run Crate of jupyter_stax execution {eid} ({ex.state.value} "
        f"on cluster {ex.cluster}), exported {exported_at.isoformat()}",
        "datePublished": exported_at.isoformat(),
        "conformsTo": [ref(p) for p in PROFILES],
        "mentions": [ref(run_id), *mentioned, ref(organize["@id"])],
    }
    return CratePlan(root=root, workflow=workflow, files=out_files, entities=entities)
