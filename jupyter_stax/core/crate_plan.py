"""The plan of a finished execution's Workflow Run RO-Crate: every entity, from the records of
the store (the shape is described in :mod:`.crate`, which holds the ids, the attempts, the files
wanted and the image entities this module puts together). Pure: no I/O."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .crate import (
    ENGINE_ID,
    LANGUAGE_ID,
    NO_LICENSE_ID,
    PROFILES,
    PSIJ_ID,
    WORKFLOW_FILE,
    Attempt,
    CratePlan,
    FileFacts,
    attempts,
    failure,
    frag,
    image_entities,
    iso,
    property_value,
    ref,
    require_final,
    status,
    step_segment,
    value_type,
)
from .dag import bound_params
from .jobscript import STDERR, STDOUT, STEP_SCRIPT
from .models import Execution, ParamValue, Step, StepRun
from .states import ExecutionState, StepState

Ref = dict[str, str]


def plan(
    ex: Execution,
    files: Mapping[str, FileFacts | None],
    software: Mapping[str, str],
    exported_at: datetime,
    license: str | None = None,
) -> CratePlan:
    """The crate of the final execution ``ex``. ``files``: crate path -> what was found for each
    of :func:`.crate.wanted_files` (None: not found; it is left out and the action says so);
    ``software``: the versions recorded with the execution (``jupyter_stax``, ``psij``);
    ``license``: the crate's license (a URL or SPDX id) as the exporter states it (None: the
    crate says that no license was given: the store records none). Conflict unless final."""
    require_final(ex)
    return _Graph(ex, files, software).build(exported_at, license)


class _Graph:
    """The entities of one crate as they are made (one use: :meth:`build`)."""

    def __init__(
        self, ex: Execution, files: Mapping[str, FileFacts | None], software: Mapping[str, str]
    ) -> None:
        self.ex = ex
        self.facts = files
        self.software = software
        self.entities: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.clusters: dict[str, str] = {}
        self.wf_inputs: dict[str, str] = {}
        self.how_to_steps: list[Ref] = []
        self.tools_run: list[Ref] = []
        self.connections: list[Ref] = []
        self.controls: list[Ref] = []
        self.mentioned: list[Ref] = []
        self.run_results: list[Ref] = []
        self.not_run: list[str] = []
        self.staged_files: dict[str, dict[str, Any]] = {}

    def add(self, entity: dict[str, Any]) -> None:
        self.entities.append(entity)

    def file_ref(self, path: str, props: dict[str, Any]) -> Ref | None:
        """The data entity at ``path`` with its size and sha256 (None: it was not found)."""
        facts = self.facts.get(path)
        if facts is None:
            return None
        self.files[path] = {**props, "contentSize": str(facts.size), "sha256": facts.sha256}
        return ref(path)

    def cluster(self, name: str) -> Ref:
        if name not in self.clusters:
            self.clusters[name] = frag("cluster", name)
            self.add(
                {
                    "@id": self.clusters[name],
                    "@type": "Place",
                    "name": name,
                    "description": f"the jupyter_stax cluster {name!r} (clusters file entry)",
                }
            )
        return ref(self.clusters[name])

    # ------------------------------------------------------------------ the workflow
    def parameters(self) -> dict[str, ParamValue]:
        """The workflow's inputs (FormalParameters) and this run's values of them."""
        wf, eid = self.ex.workflow, self.ex.id
        effective: dict[str, ParamValue] = {**wf.params, **self.ex.params}
        for name, v in effective.items():
            fp_id = WORKFLOW_FILE + frag("param", name)
            self.wf_inputs[name] = fp_id
            fp: dict[str, Any] = {
                "@id": fp_id,
                "@type": "FormalParameter",
                "name": name,
                "additionalType": value_type(v),
                "valueRequired": name not in wf.params,
                "workExample": ref(frag(eid, "param", name)),
            }
            default = wf.params.get(name)
            if name in wf.params and default is not None:
                fp["defaultValue"] = default if isinstance(default, str) else json.dumps(default)
            self.add(fp)
            self.add(property_value(frag(eid, "param", name), name, v, fp_id))
        return effective

    def step(self, i: int, s: StepRun, effective: dict[str, ParamValue]) -> None:
        """A step: its tool (the rendered script) with its parameters, its HowToStep, and one
        action per attempt that ran."""
        wf = self.ex.workflow
        seg = step_segment(i, s.name)
        step_def: Step | None = next((d for d in wf.steps if d.name == s.name), None)
        tool_id = f"steps/{seg}/{STEP_SCRIPT}"
        values = bound_params(wf, self.ex.params, step_def) if step_def else dict(effective)
        tool_inputs, step_connections = [], []
        for name, v in values.items():
            fp_id = tool_id + frag("param", name)
            tool_inputs.append(ref(fp_id))
            self.add(
                {
                    "@id": fp_id,
                    "@type": "FormalParameter",
                    "name": name,
                    "additionalType": value_type(v),
                    "description": f"exported to the step as STAX_PARAM_{name}",
                }
            )
            if name in self.wf_inputs and not (step_def and name in step_def.params):
                c_id = frag("connection", seg, name)
                self.connections.append(ref(c_id))
                step_connections.append(ref(c_id))
                self.add(
                    {
                        "@id": c_id,
                        "@type": "ParameterConnection",
                        "sourceParameter": ref(self.wf_inputs[name]),
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
        tool_ref = self.file_ref(tool_id, tool_props)
        if tool_ref is None:  # not here (a remote cluster's): described without its bytes
            self.add({"@id": tool_id, **tool_props, "@type": "SoftwareSourceCode"})
            tool_ref = ref(tool_id)
        how_id = frag("step", s.name)
        self.how_to_steps.append(ref(how_id))
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
        self.add(how)
        image_id = None
        if s.resolved_image is not None:
            image_id = frag("image", seg)
            self.entities.extend(image_entities(image_id, s.resolved_image))
        ran = [a for a in attempts(s) if a.state is not StepState.SKIPPED]
        if not ran:
            self.not_run.append(
                f"{s.name} ({s.state.value}" + (f": {s.reason})" if s.reason else ")")
            )
            return
        self.tools_run.append(tool_ref)
        for a in ran:
            self.attempt(s, seg, a, tool_ref, tool_id, how_id, values, image_id)

    def attempt(
        self,
        s: StepRun,
        seg: str,
        a: Attempt,
        tool_ref: Ref,
        tool_id: str,
        how_id: str,
        values: dict[str, ParamValue],
        image_id: str | None,
    ) -> None:
        """The CreateAction of one attempt and the ControlAction that orchestrated it."""
        act_id = frag(self.ex.id, s.name, str(a.number))
        base = f"steps/{seg}/attempt-{a.number}/"
        logs = [
            self.file_ref(
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
            self.add(
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
            self.add(property_value(pv_id, name, v, tool_id + frag("param", name)))
        staged = self.staged(s, a)
        objs.extend(staged["inputs"])
        result.extend(staged["outputs"])
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
            "actionStatus": status(a.state),
            "location": self.cluster(s.cluster),
            "object": objs,
            "result": result,
        }
        if a.native_id:
            jid = act_id + "-job"
            self.add(
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
            action["error"] = failure(a)
        if image_id is not None:
            action["containerImage"] = ref(image_id)
        self.add(action)
        self.mentioned.append(ref(act_id))
        if a.current:
            self.run_results.extend(r for r in logs if r is not None)
        control: dict[str, Any] = {
            "@id": act_id + "-control",
            "@type": "ControlAction",
            "name": f"orchestrate step {s.name} (attempt {a.number})",
            "instrument": ref(how_id),
            "object": ref(act_id),
            "actionStatus": status(a.state),
        }
        if a.state is not StepState.COMPLETED:
            control["error"] = action["error"]
        self.controls.append(ref(control["@id"]))
        self.add(control)

    def staged(self, s: StepRun, a: Attempt) -> dict[str, list[Ref]]:
        """The files the attempt staged in and kept, as the staging records have them (size,
        sha256, where an input came from). They stay where they are (a 1 GB input is not copied
        into the crate): each is a File with an absolute ``file:`` URI of its path in the step
        directory, located at the cluster (``contentLocation``: on a remote cluster the path is
        on that machine). The same path with other bytes in another attempt gets the attempt as
        its URI's fragment."""
        out: dict[str, list[Ref]] = {"inputs": [], "outputs": []}
        if a.files is None or a.files.attempt not in (0, a.number):
            return out
        for kind in ("inputs", "outputs"):
            for rec in getattr(a.files, kind):
                path = f"{s.directory.rstrip('/')}/{rec.path}"
                fid = "file://" + urllib.parse.quote(path)
                known = self.staged_files.get(fid)
                if known is not None and known.get("sha256") != rec.sha256:
                    fid += f"#attempt-{a.number}"
                    known = self.staged_files.get(fid)
                if known is None:
                    props: dict[str, Any] = {
                        "@id": fid,
                        "@type": "File",
                        "name": rec.path,
                        "contentSize": str(rec.size),
                        "contentLocation": self.cluster(s.cluster),
                        "description": (
                            f"{'an input staged into' if kind == 'inputs' else 'an output kept by'}"
                            f" step {s.name!r} (attempt {a.number}) on cluster {s.cluster}; "
                            "not in the crate: it stays in the step directory"
                        ),
                    }
                    if rec.sha256:
                        props["sha256"] = rec.sha256
                    if rec.source:
                        props["description"] += f"; staged from {rec.source}"
                    self.staged_files[fid] = props
                    self.add(props)
                out[kind].append(ref(fid))
        return out

    # ------------------------------------------------------------------ run and engine
    def run(self, effective: dict[str, ParamValue]) -> dict[str, Any]:
        """The CreateAction of the workflow run."""
        ex = self.ex
        run: dict[str, Any] = {
            "@id": frag(ex.id),
            "@type": "CreateAction",
            "name": f"Run {ex.id} of workflow {ex.workflow.name}",
            "description": f"jupyter_stax execution {ex.id} on cluster {ex.cluster}: "
            f"{ex.state.value}"
            + ("; steps that did not run: " + ", ".join(self.not_run) if self.not_run else ""),
            "instrument": ref(WORKFLOW_FILE),
            "startTime": iso(ex.created_at),
            "actionStatus": status(ex.state),
            "location": self.cluster(ex.cluster),
            "object": [ref(frag(ex.id, "param", n)) for n in effective],
            "result": self.run_results,
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
        self.add(run)
        return run

    def engine(self, run: dict[str, Any]) -> dict[str, Any]:
        """The OrganizeAction of the engine (jupyter_stax with PSI/J, recorded versions)."""
        ex = self.ex
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
            if self.software.get(key):
                entity["softwareVersion"] = self.software[key]
            else:
                entity["description"] = (
                    entity.get("description", entity["name"])
                    + "; its version was not recorded (the execution was stored by a "
                    "jupyter_stax that did not record versions)"
                )
        self.add(engine)
        self.add(psij)
        organize: dict[str, Any] = {
            "@id": frag(ex.id, "engine"),
            "@type": "OrganizeAction",
            "name": f"jupyter_stax engine run of execution {ex.id}",
            "instrument": ref(ENGINE_ID),
            "object": self.controls,
            "result": ref(run["@id"]),
            "startTime": iso(ex.created_at),
            "actionStatus": status(ex.state),
        }
        if ex.finished_at is not None:
            organize["endTime"] = iso(ex.finished_at)
        if "error" in run:
            organize["error"] = run["error"]
        self.add(organize)
        return organize

    # ------------------------------------------------------------------ the whole
    def build(self, exported_at: datetime, license: str | None) -> CratePlan:
        ex, wf = self.ex, self.ex.workflow
        effective = self.parameters()
        for i, s in enumerate(ex.steps):
            self.step(i, s, effective)
        run = self.run(effective)
        organize = self.engine(run)
        version = self.software.get("jupyter_stax")
        self.add(
            {
                "@id": LANGUAGE_ID,
                "@type": "ComputerLanguage",
                "name": "jupyter_stax workflow",
                "alternateName": "StaX workflow YAML",
                "description": "steps (bash or Python scripts with {{param}} placeholders), "
                "their order (after), parameters, resources and StaX images",
                **({"version": version} if version else {}),
            }
        )
        for pid, (name, v) in PROFILES.items():
            self.add({"@id": pid, "@type": "CreativeWork", "name": name, "version": v})
        workflow: dict[str, Any] = {
            "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
            "name": wf.name,
            "encodingFormat": "application/yaml",
            "programmingLanguage": ref(LANGUAGE_ID),
            "input": [ref(i) for i in self.wf_inputs.values()],
            "hasPart": self.tools_run,
            "step": self.how_to_steps,
            "connection": self.connections,
        }
        if wf.description:
            workflow["description"] = wf.description
        if not license:
            self.add(
                {
                    "@id": NO_LICENSE_ID,
                    "@type": "CreativeWork",
                    "name": "no license given",
                    "description": "the export named no license (jupyter stax export "
                    "--license URL|SPDX-ID names one); ask the author of the run before reusing "
                    "it",
                }
            )
        root = {
            "license": license or ref(NO_LICENSE_ID),
            "name": f"Run {ex.id} of workflow {wf.name}",
            "description": f"Workflow Run Crate of jupyter_stax execution {ex.id} "
            f"({ex.state.value} on cluster {ex.cluster}), exported {exported_at.isoformat()}",
            "datePublished": exported_at.isoformat(),
            "conformsTo": [ref(p) for p in PROFILES],
            "mentions": [ref(run["@id"]), *self.mentioned, ref(organize["@id"])],
        }
        return CratePlan(root=root, workflow=workflow, files=self.files, entities=self.entities)
