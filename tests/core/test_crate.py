"""The pure mapping execution -> Workflow Run RO-Crate entities (jupyter_stax.core.crate),
table-driven over hand-made execution records: no run, no files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from jupyter_stax.core import crate
from jupyter_stax.core.crate_plan import plan
from jupyter_stax.core.errors import Conflict
from jupyter_stax.core.images import ResolvedImage
from jupyter_stax.core.models import AttemptRecord, Execution, StepRun, Workflow
from jupyter_stax.core.states import ExecutionState, StepState

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SHA = "a" * 64


def t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def step_run(name: str, **kw: Any) -> StepRun:
    d = f"/runs/e1/{name}"
    base: dict[str, Any] = {
        "name": name,
        "cluster": "hpc",
        "directory": d,
        "script": d + "/stax.step.sh",
        "stdout": d + "/stax.out",
        "stderr": d + "/stax.err",
    }
    return StepRun(**{**base, **kw})


def done(name: str, attempt: int = 1, code: int = 0, **kw: Any) -> StepRun:
    return step_run(
        name,
        state=StepState.COMPLETED if code == 0 else StepState.FAILED,
        attempt=attempt,
        native_id=f"{100 + attempt}",
        exit_code=code,
        reason=None if code == 0 else f"exit code {code}",
        submitted_at=t(0),
        started_at=t(1),
        finished_at=t(2),
        **kw,
    )


def execution(steps: list[StepRun], state: ExecutionState, **wf: Any) -> Execution:
    workflow = Workflow.model_validate(
        {
            "name": "wf",
            "steps": [
                {"name": s.name, "run": "echo {{p}}" if "p" in wf.get("params", {}) else "true"}
                for s in steps
            ],
            **wf,
        }
    )
    return Execution(
        id="e1",
        workflow=workflow,
        cluster="hpc",
        state=state,
        created_at=T0,
        finished_at=t(9) if state.final else None,
        work_dir="/runs/e1",
        steps=steps,
    )


def all_found(ex: Execution) -> dict[str, crate.FileFacts | None]:
    return {w.path: crate.FileFacts(3, SHA) for w in crate.wanted_files(ex)}


def graph(ex: Execution, files: dict[str, crate.FileFacts | None] | None = None) -> dict[str, Any]:
    p = plan(ex, all_found(ex) if files is None else files, {"jupyter_stax": "9"}, t(99))
    return {e["@id"]: e for e in p.entities} | {"workflow.yaml": p.workflow, "./": p.root}


RETRIED = done(
    "b",
    attempt=2,
    history=[
        AttemptRecord(
            attempt=1, state=StepState.FAILED, native_id="7", exit_code=4,
            reason="exit code 4", submitted_at=t(0), started_at=t(0.5), finished_at=t(1),
        )
    ],
)


@pytest.mark.parametrize(
    ("steps", "state", "actions", "files"),
    [
        ([done("a")], ExecutionState.COMPLETED, {"#e1-a-1": "Completed"},
         ["steps/a/stax.step.sh", "steps/a/attempt-1/stax.out", "steps/a/attempt-1/stax.err"]),
        ([done("a", code=3)], ExecutionState.FAILED, {"#e1-a-1": "Failed"},
         ["steps/a/stax.step.sh", "steps/a/attempt-1/stax.out", "steps/a/attempt-1/stax.err"]),
        ([RETRIED], ExecutionState.COMPLETED, {"#e1-b-1": "Failed", "#e1-b-2": "Completed"},
         ["steps/b/stax.step.sh", "steps/b/attempt-1/stax.out", "steps/b/attempt-1/stax.err",
          "steps/b/attempt-2/stax.out", "steps/b/attempt-2/stax.err"]),
        ([done("a", code=1), step_run("z", state=StepState.SKIPPED, reason="a failed")],
         ExecutionState.FAILED, {"#e1-a-1": "Failed"},
         ["steps/a/stax.step.sh", "steps/a/attempt-1/stax.out", "steps/a/attempt-1/stax.err",
          "steps/z/stax.step.sh"]),
        ([step_run("c", state=StepState.CANCELED, attempt=1, native_id="5",
                   reason="canceled by the user", submitted_at=t(0), finished_at=t(1))],
         ExecutionState.CANCELED, {"#e1-c-1": "Failed"},
         ["steps/c/stax.step.sh", "steps/c/attempt-1/stax.out", "steps/c/attempt-1/stax.err"]),
    ],
    ids=["completed", "failed", "retried", "skipped", "canceled"],
)
def test_one_action_per_attempt_that_ran(
    steps: list[StepRun], state: ExecutionState, actions: dict[str, str], files: list[str]
) -> None:
    ex = execution(steps, state)
    assert [w.path for w in crate.wanted_files(ex)] == files
    g = graph(ex)
    got = {
        k: e["actionStatus"].rsplit("/", 1)[-1].removesuffix("ActionStatus")
        for k, e in g.items()
        if e.get("@type") == "CreateAction" and k != "#e1"
    }
    assert got == actions
    for k, status in actions.items():
        assert ("error" in g[k]) == (status == "Failed")
        assert g[f"{k}-control"]["object"] == {"@id": k}
    assert g["#e1"]["actionStatus"].endswith(
        "CompletedActionStatus" if state is ExecutionState.COMPLETED else "FailedActionStatus"
    )
    assert [m["@id"] for m in g["./"]["mentions"]] == ["#e1", *actions, "#e1-engine"]


def test_an_attempt_says_times_job_exit_code_and_cluster() -> None:
    g = graph(execution([RETRIED], ExecutionState.COMPLETED))
    first, second = g["#e1-b-1"], g["#e1-b-2"]
    assert (first["startTime"], first["endTime"]) == (
        "2026-01-02T03:04:05.500+00:00", "2026-01-02T03:04:06.000+00:00",
    )
    assert (second["startTime"], second["endTime"]) == (crate.iso(t(1)), crate.iso(t(2)))
    assert first["error"] == "failed: exit code 4"
    assert g[first["identifier"]["@id"]]["value"] == "7"
    assert g[second["identifier"]["@id"]]["value"] == "102"
    assert g["#e1-b-1-exit-code"]["value"] == 4
    assert g[first["location"]["@id"]] == {
        "@id": "#cluster-hpc", "@type": "Place", "name": "hpc",
        "description": "the jupyter_stax cluster 'hpc' (clusters file entry)",
    }
    assert [r["@id"] for r in first["result"]] == [
        "steps/b/attempt-1/stax.out", "steps/b/attempt-1/stax.err", "#e1-b-1-exit-code",
    ]


def test_parameter_values_are_property_values_of_formal_parameters() -> None:
    hostile = "a'b\"c\n$(rm -rf ~) ../../x"
    wf_params = {"p": "default", "n": 1, "f": 0.5, "ok": True, "none": None}
    ex = execution([done("a")], ExecutionState.COMPLETED, params=wf_params)
    ex.params = {"p": hostile}
    g = graph(ex)
    wf_fps = {g[i["@id"]]["name"]: g[i["@id"]] for i in g["workflow.yaml"]["input"]}
    assert {k: v["additionalType"] for k, v in wf_fps.items()} == {
        "p": "Text", "n": "Integer", "f": "Float", "ok": "Boolean", "none": "Text",
    }
    assert wf_fps["p"]["defaultValue"] == "default" and wf_fps["n"]["defaultValue"] == "1"
    run_values = {g[i["@id"]]["name"]: g[i["@id"]].get("value") for i in g["#e1"]["object"]}
    assert run_values == {"p": hostile, "n": 1, "f": 0.5, "ok": True, "none": None}
    pv = g["#e1-a-1-param-p"]
    assert pv["value"] == hostile
    tool_fp = g[pv["exampleOfWork"]["@id"]]
    assert tool_fp["@type"] == "FormalParameter" and tool_fp["name"] == "p"
    conn = g["#connection-a-p"]
    assert conn["sourceParameter"] == {"@id": "workflow.yaml#param-p"}
    assert conn["targetParameter"] == {"@id": "steps/a/stax.step.sh#param-p"}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("docker://ghcr.io/org/gromacs:2024@sha256:" + SHA,
         {"registry": "ghcr.io", "name": "org/gromacs", "tag": "2024", "sha256": SHA,
          "additionalType": {"@id": crate.WFRUN + "DockerImage"}}),
        ("docker://ubuntu:22.04",
         {"registry": "docker.io", "name": "ubuntu", "tag": "22.04",
          "additionalType": {"@id": crate.WFRUN + "DockerImage"}}),
        ("localhost:5000/img", {"registry": "localhost:5000", "name": "img",
                                "additionalType": {"@id": crate.WFRUN + "DockerImage"}}),
        ("/images/gromacs.sif", {"name": "/images/gromacs.sif",
                                 "additionalType": {"@id": crate.WFRUN + "SIFImage"}}),
        ("oras://reg.io/x.sif:1", {"name": "oras://reg.io/x.sif:1",
                                   "additionalType": {"@id": crate.WFRUN + "SIFImage"}}),
        ("/var/ch/img/busybox", {"name": "/var/ch/img/busybox"}),
    ],
)
def test_image_references(reference: str, expected: dict[str, Any]) -> None:
    assert crate.parse_reference(reference) == expected


def test_the_container_image_carries_digest_every_label_and_the_runtime() -> None:
    labels = {"org.hpe.staxs.cpu": "x86_64", "org.hpe.staxs.gpu": "none", "odd \"key\"\n": "v"}
    img = ResolvedImage(
        requested="gromacs", name="gromacs-x86", family="gromacs",
        reference="docker://reg.io/gromacs:1", digest="sha256:" + SHA, labels=labels,
        runtime="apptainer", source="catalog.yaml",
    )
    g = graph(execution([done("a", resolved_image=img)], ExecutionState.COMPLETED))
    image = g[g["#e1-a-1"]["containerImage"]["@id"]]
    assert image["@type"] == "ContainerImage" and image["sha256"] == SHA
    props = {g[p["@id"]]["name"]: g[p["@id"]]["value"] for p in image["additionalProperty"]}
    assert {k: props[k] for k in labels} == labels
    assert props["container runtime"] == "apptainer"
    assert props["image reference"] == "docker://reg.io/gromacs:1"
    assert all(p["@id"].startswith("#image-a-") for p in image["additionalProperty"])
    assert "%22" in next(p["@id"] for p in image["additionalProperty"] if "odd" in p["@id"])


def test_hostile_step_names_never_become_paths_and_stay_quoted_in_ids() -> None:
    names = ["../../etc", 'q"uote\nline', "/abs", "ok-name"]
    steps = [done(n) for n in names]
    wf = Workflow.model_construct(
        name="wf", description=None, params={}, on_failure="continue",
        steps=[Workflow.model_validate({"steps": [{"name": "x", "run": "true"}]}).steps[0]
               .model_copy(update={"name": n}) for n in names],
    )
    ex = Execution(
        id="e1", workflow=wf, cluster="hpc", state=ExecutionState.COMPLETED, created_at=T0,
        finished_at=t(9), work_dir="/runs/e1", steps=steps,
    )
    paths = [w.path for w in crate.wanted_files(ex)]
    assert {p.split("/")[1] for p in paths} == {"step-1", "step-2", "step-3", "ok-name"}
    assert all(".." not in p.split("/") and not p.startswith("/") for p in paths)
    g = graph(ex)
    assert g["#step-..%2F..%2Fetc"]["name"] == "../../etc"
    assert g["#step-q%22uote%0Aline"]["name"] == 'q"uote\nline'
    assert all("\n" not in k and '"' not in k for k in g)


def test_missing_files_are_left_out_and_said() -> None:
    ex = execution([done("a")], ExecutionState.COMPLETED)
    files = all_found(ex)
    files["steps/a/attempt-1/stax.err"] = None
    p = plan(ex, files, {}, t(99))
    assert "steps/a/attempt-1/stax.err" not in p.files
    assert p.files["steps/a/attempt-1/stax.out"]["sha256"] == SHA
    g = {e["@id"]: e for e in p.entities}
    assert "not found at export): stderr" in g["#e1-a-1"]["description"]
    assert "was not recorded" in g["#jupyter-stax"]["description"]  # no versions recorded
    assert p.root["license"] == {"@id": crate.NO_LICENSE_ID}  # the store records no license
    assert g[crate.NO_LICENSE_ID]["name"] == "no license given"
    licensed = plan(ex, files, {}, t(99), license="https://spdx.org/licenses/CC0-1.0")
    assert licensed.root["license"] == "https://spdx.org/licenses/CC0-1.0"
    assert crate.NO_LICENSE_ID not in {e["@id"] for e in licensed.entities}


@pytest.mark.parametrize("state", [ExecutionState.PENDING, ExecutionState.RUNNING])
def test_an_unfinished_execution_is_refused(state: ExecutionState) -> None:
    ex = execution([step_run("a", state=StepState.RUNNING, attempt=1)], state)
    with pytest.raises(Conflict, match=r"still .*wait for it"):
        plan(ex, {}, {}, t(99))
