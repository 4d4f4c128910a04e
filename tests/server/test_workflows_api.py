"""Published workflows and re-runs through the REST API of a real Jupyter server (PSI/J's local
executor): publish (YAML with an ``inputs:`` block, a version conflict, paths on the server
refused), show, list, trigger, and ``POST reruns`` of an execution and of a crate read by the
client."""

from __future__ import annotations

from pathlib import Path

from jupyter_stax.operations.workflows import read_crate
from jupyter_stax.server.app import StaxApp

from .conftest import Call, wait_final

DOC = """\
name: sums
description: adds numbers
params: {n: 3}
inputs:
  n: {description: how many numbers}
  label: {type: string, description: a label, required: true}
steps:
  - name: add
    run: seq {{n}} | awk '{s+=$1} END {print "{{label}}", s}'
"""


async def test_publish_show_trigger_list_and_rerun(
    api: Call, tmp_path: Path, stax_app: StaxApp
) -> None:
    r = await api("POST", "workflows", body={"workflow": DOC, "cluster": "local"}, expect=201)
    assert r.headers["Location"].endswith("/stax/api/workflows/sums")
    assert r.body["version"] == "1" and r.body["default_cluster"] == "local"
    assert [(i["name"], i["type"], i["required"]) for i in r.body["inputs"]] == [
        ("n", "integer", False),
        ("label", "string", True),
    ]
    r = await api("POST", "workflows", body={"workflow": DOC, "version": "1"}, expect=409)
    assert "sums version 1 is published already" in r.body["message"]
    r = await api(
        "POST",
        "workflows",
        body={"workflow": DOC.replace("  - name: add\n", "  - name: add\n    image: /etc\n")},
        expect=400,
    )
    assert "/etc" in str(r.body)
    r = await api("GET", "workflows")
    assert [(w["name"], w["versions"], w["steps"]) for w in r.body] == [("sums", ["1"], 1)]
    r = await api("GET", "workflows/sums", params={"version": "9"}, expect=404)
    assert "versions: 1" in r.body["message"]

    r = await api(
        "POST", "workflows/sums", body={"inputs": {"label": "total is"}}, expect=201
    )
    eid = r.body["id"]
    assert r.headers["Location"].endswith(f"/stax/api/executions/{eid}")
    assert (await wait_final(api, eid))["state"] == "completed"
    log = await api("GET", f"executions/{eid}/steps/add/log")
    assert log.body["data"] == "total is 6\n"
    r = await api("POST", "workflows/sums", body={"inputs": {"n": "x"}}, expect=400)
    assert r.body["details"] == [
        "input 'n' must be an integer, not string 'x'",
        "missing required input label (string, required): a label",
    ]
    r = await api("GET", "executions", params={"workflow": "sums@1"})
    assert [e["id"] for e in r.body["executions"]] == [eid]
    assert r.body["executions"][0]["origin"]["workflow"] == "sums"

    # re-run it by id with a parameter changed
    r = await api("POST", "reruns", body={"execution": eid, "params": {"n": 4}}, expect=201)
    again = r.body["id"]
    assert r.body["origin"]["rerun_of"] == eid
    assert (await wait_final(api, again))["state"] == "completed"
    assert (await api("GET", f"executions/{again}/steps/add/log")).body["data"] == "total is 10\n"
    # and from its crate, read on the client's side and sent as data
    crate = stax_app.operations.export_crate(eid, tmp_path / "sums.crate.zip")
    body = {"crate": read_crate(crate).model_dump(mode="json"), "cluster": "local"}
    r = await api("POST", "reruns", body=body, expect=201)
    assert r.body["origin"]["rerun_of"] == "crate sums.crate.zip"
    assert (await wait_final(api, r.body["id"]))["state"] == "completed"
    r = await api("POST", "reruns", body={"execution": eid, "crate": body["crate"]}, expect=400)
    assert "either an execution or a crate" in r.body["message"]
