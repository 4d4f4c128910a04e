"""A real run on the local executor AND the real Slurm, exported as a Workflow Run RO-Crate and
read back: the profiles' requirements, the files' sizes and checksums, every attempt of a
retried step, hostile parameter values kept as data, and the refusal of a running execution."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax import __version__
from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.crate import iso
from jupyter_stax.core.errors import Conflict
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.store import Store
from jupyter_stax.operations import Operations

from ..crates import check_crate, ids, types
from ..images import LABELS, busybox_available
from ..roc_validator import RocValidator, Unavailable
from ..roc_validator import roc_validator as roc_validator  # the session's worker
from .conftest import arun, use_scheduler
from .test_stax_live import stax as stax  # the StaX catalog with a busybox image

HOSTILE = "it's \"q\"\n$(touch PWNED) `touch PWNED2` ../../etc/passwd; rm -rf ~ \\ {{x}} é"
WORKFLOW: dict[str, Any] = {
    "name": "provenance",
    "params": {"msg": "default", "n": 2},
    "steps": [
        {"name": "a", "run": "printf '%s' {{msg}}; echo to-stderr >&2"},
        {
            "name": "b.x-y_1",
            "after": ["a"],
            "retries": 1,
            "run": "if [ -e ../flag ]; then echo second; else touch ../flag; echo first; "
            "exit 4; fi",
        },
        {"name": "c", "after": ["b.x-y_1"], "run": "echo failing; exit 3"},
        {"name": "d", "after": ["c"], "run": "echo never"},
    ],
}


def _ops(stax_env: Path) -> Operations:
    store = Store(stax_env / "state" / "stax.sqlite")
    return Operations(lambda: store, ClusterRegistry.load)


def _action(g: dict[str, dict[str, Any]], eid: str, step: str, n: int) -> dict[str, Any]:
    return g[f"#{eid}-{step}-{n}"]


def test_a_real_run_exports_as_a_workflow_run_crate(
    cluster: str,
    engine_factory: Callable[..., Engine],
    stax_env: Path,
    roc_validator: RocValidator | Unavailable,
) -> None:
    """... and roc-validator passes it (a failed step, a retried one, hostile values)."""
    zipped, unpacked = _export_and_check(cluster, engine_factory, stax_env)
    roc_validator.check(zipped)
    if cluster == "local":  # once: the same validator refuses a crate that breaks a MUST
        meta = unpacked / "ro-crate-metadata.json"
        doc = json.loads(meta.read_text())
        for e in doc["@graph"]:
            if e["@id"] == "workflow.yaml":
                e["@type"] = ["File", "SoftwareSourceCode", "HowTo"]  # not a workflow
        meta.write_text(json.dumps(doc))
        roc_validator.refutes(unpacked, "workflow-ro-crate-1.0_2.1")  # Main Workflow type


@pytest.mark.sge
def test_a_grid_engine_run_exports_as_a_workflow_run_crate(
    request: pytest.FixtureRequest, engine_factory: Callable[..., Engine], stax_env: Path
) -> None:
    _export_and_check(use_scheduler(request, "sge"), engine_factory, stax_env)


def _export_and_check(
    cluster: str, engine_factory: Callable[..., Engine], stax_env: Path
) -> tuple[Path, Path]:
    async def main() -> Any:
        async with engine_factory() as eng:
            ex = await eng.submit(WORKFLOW, cluster=cluster, params={"msg": HOSTILE})
            return await eng.wait(ex.id, timeout=180)

    ex = arun(main())
    states = {s.name: s.state.value for s in ex.steps}
    assert states == {"a": "completed", "b.x-y_1": "completed", "c": "failed", "d": "skipped"}
    ops = _ops(stax_env)
    zipped = ops.export_crate(ex.id, stax_env / "out" / "run.crate.zip")
    unpacked = ops.export_crate(ex.id, stax_env / "out" / "dir", as_dir=True)
    for g in (check_crate(zipped), check_crate(unpacked)):
        eid = ex.id
        a = _action(g, eid, "a", 1)
        s_a = ex.step("a")
        assert a["actionStatus"] == "http://schema.org/CompletedActionStatus"
        assert a["startTime"] == iso(s_a.started_at)
        assert a["endTime"] == iso(s_a.finished_at)
        assert g[a["identifier"]["@id"]]["value"] == s_a.native_id
        assert g[a["location"]["@id"]]["name"] == cluster
        values = {g[i]["name"]: g[i].get("value") for i in ids(a["object"])}
        assert values == {"msg": HOSTILE, "n": 2}  # exactly as given: data, never code
        out = [g[i] for i in ids(a["result"]) if "File" in types(g[i])]
        assert sorted(o["@id"] for o in out) == [
            "steps/a/attempt-1/stax.err",
            "steps/a/attempt-1/stax.out",
        ]
        exit_pv = [g[i] for i in ids(a["result"]) if g[i]["@type"] == "PropertyValue"]
        assert [p["value"] for p in exit_pv] == [0]
        # the retried step: one action per attempt, both with their own logs and times
        b = ex.step("b.x-y_1")
        b1, b2 = _action(g, eid, "b.x-y_1", 1), _action(g, eid, "b.x-y_1", 2)
        assert b1["actionStatus"] == "http://schema.org/FailedActionStatus"
        assert "exit code 4" in b1["error"] and "error" not in b2
        assert b1["startTime"] == iso(b.history[0].started_at)
        assert b1["endTime"] <= b2["startTime"] <= b2["endTime"]
        assert g[b1["identifier"]["@id"]]["value"] == b.history[0].native_id
        assert g[b2["identifier"]["@id"]]["value"] == b.native_id
        c = _action(g, eid, "c", 1)
        assert c["actionStatus"] == "http://schema.org/FailedActionStatus"
        assert [g[i]["value"] for i in ids(c["result"]) if "exit-code" in i] == [3]
        assert not any(k.startswith(f"#{eid}-d-") for k in g)  # skipped: no action
        run = g[f"#{eid}"]
        assert "d (skipped" in run["description"] and "c failed" in run["error"]
        assert ids(run["instrument"]) == ["workflow.yaml"]
        engine = g["#jupyter-stax"]
        assert engine["softwareVersion"] == __version__
        assert g["#psij-python"]["softwareVersion"] == metadata.version("psij-python")
        controls = ids(g[f"#{eid}-engine"]["object"])
        assert len(controls) == 4  # a, b twice, c
    root = Path(unpacked)
    assert (root / "steps/b.x-y_1/attempt-1/stax.out").read_text() == "first\n"
    assert (root / "steps/b.x-y_1/attempt-2/stax.out").read_text() == "second\n"
    assert (root / "steps/a/attempt-1/stax.out").read_text() == HOSTILE
    assert (root / "steps/d/stax.step.sh").read_text().startswith("echo never")
    assert "{{msg}}" in (root / "workflow.yaml").read_text()
    assert not list(Path(ex.work_dir).rglob("PWNED*"))
    return Path(zipped), Path(unpacked)


def test_a_running_execution_is_not_exported(
    engine_factory: Callable[..., Engine], stax_env: Path
) -> None:
    async def main() -> None:
        async with engine_factory() as eng:
            ex = await eng.submit(
                {"name": "slow", "steps": [{"name": "s", "run": "sleep 60"}]}, cluster="local"
            )
            with pytest.raises(Conflict, match="still"):
                await asyncio.to_thread(
                    _ops(stax_env).export_crate, ex.id, stax_env / "x.crate.zip"
                )
            await eng.cancel(ex.id)
            await eng.wait(ex.id, timeout=60)

    arun(main())
    assert not (stax_env / "x.crate.zip").exists()


@pytest.mark.skipif(
    not busybox_available() and not os.environ.get("CI"),
    reason="needs ch-run and busybox-static (apt-get install charliecloud-runtime busybox-static)",
)
def test_stax_image_and_software_steps_in_the_crate(
    cluster: str,
    stax: Path,
    engine_factory: Callable[..., Engine],
    stax_env: Path,
    roc_validator: RocValidator | Unavailable,
) -> None:
    software = {
        "execution": {"type": "binary", "binary": "sh", "args": "-c 'echo sw \"$1\"' sh {{who}}"},
    }
    wf = {
        "name": "stax-and-software",
        "params": {"who": "it's me"},
        "steps": [
            {"name": "probe", "image": "busy", "run": "cat /etc/stax-marker"},
            {"name": "sw", "software": software},
        ],
    }

    async def main() -> Any:
        async with engine_factory(clusters=ClusterRegistry.load()) as eng:
            ex = await eng.submit(wf, cluster=cluster)
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    assert ex.state.value == "completed", [(s.name, s.reason) for s in ex.steps]
    crate = _ops(stax_env).export_crate(ex.id, stax_env / "stax.crate.zip")
    g = check_crate(crate)
    action = g[f"#{ex.id}-probe-1"]
    image = g[action["containerImage"]["@id"]]
    props = {g[p["@id"]]["name"]: g[p["@id"]]["value"] for p in image["additionalProperty"]}
    assert {k: props[k] for k in LABELS} == LABELS  # every label, org.hpe.staxs.* included
    assert props["container runtime"] == "charliecloud"
    assert props["image reference"] == str(stax) == image["name"]
    assert props["StaX variant"] == "busy-x86_64" and props["what the step asked for"] == "busy"
    sw = g[f"#{ex.id}-sw-1"]
    assert "containerImage" not in sw
    assert [g[i]["value"] for i in ids(sw["object"])] == ["it's me"]
    out = next(i for i in ids(sw["result"]) if i.endswith("stax.out"))
    assert out == "steps/sw/attempt-1/stax.out"
    script = g["steps/sw/stax.step.sh"]
    assert "SoftwareSourceCode" in types(script)
    roc_validator.check(Path(crate))  # a StaX image and an eFlows4HPC step


def test_staged_inputs_and_kept_outputs_are_described_with_their_checksums(
    engine_factory: Callable[..., Engine],
    stax_env: Path,
    roc_validator: RocValidator | Unavailable,
) -> None:
    """What a step staged in and kept (the data-staging records) is in the crate as data
    entities that stay in the step directory: an absolute ``file:`` URI, the size and sha256 the
    records have (the bytes' own), located at the cluster; inputs are the attempt's objects,
    outputs its results. A retried attempt whose input changed gets its own entity."""
    import hashlib

    from jupyter_stax.core.models import SubmitOptions

    base = stax_env / "inputs"
    base.mkdir()
    (base / "in put.json").write_text('{"v": 1}\n')
    wf = {
        "name": "staged",
        "steps": [
            {
                "name": "a",
                "inputs": ["in put.json"],
                "outputs": ["res/*.txt"],
                "fetch": "manual",
                "run": "mkdir res; cat 'in put.json' > res/copy.txt; echo more > res/b.txt",
            }
        ],
    }

    async def main() -> Any:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="local", options=SubmitOptions(base_dir=str(base)))
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    assert ex.state.value == "completed", [(s.name, s.reason) for s in ex.steps]
    crate = _ops(stax_env).export_crate(ex.id, stax_env / "out" / "s.crate.zip")
    g = check_crate(crate)
    a = _action(g, ex.id, "a", 1)
    d = ex.step("a").directory

    def staged(refs: Any) -> dict[str, dict[str, Any]]:
        return {g[i]["name"]: g[i] for i in ids(refs) if i.startswith("file://")}

    ins, outs = staged(a["object"]), staged(a["result"])
    assert sorted(ins) == ["in put.json"] and sorted(outs) == ["res/b.txt", "res/copy.txt"]
    for name, e in {**ins, **outs}.items():
        data = Path(d, name).read_bytes()
        assert e["@id"] == "file://" + Path(d, name).as_posix().replace(" ", "%20")
        assert (e["contentSize"], e["sha256"]) == (
            str(len(data)), hashlib.sha256(data).hexdigest()
        )
        assert g[e["contentLocation"]["@id"]]["name"] == "local"
        assert e["@id"] in ids(g["./"]["hasPart"])
    assert "staged from" in ins["in put.json"]["description"]
    assert outs["res/copy.txt"]["sha256"] == ins["in put.json"]["sha256"]
    roc_validator.check(Path(crate))  # data entities outside the crate (file: URIs)
