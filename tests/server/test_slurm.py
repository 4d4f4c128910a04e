"""Over REST to the project's real Slurm: a workflow completes and its events arrive in order;
the cluster's live numbers come from sinfo/squeue."""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import slurm_nodes
from .conftest import Call, check_event_order, events_delivered, wait_final
from .test_events import listen

pytestmark = pytest.mark.slurm

CHAIN = {
    "name": "chain",
    "params": {"n": 4},
    "steps": [
        {"name": "make", "run": "seq {{n}} > numbers.txt; hostname"},
        {
            "name": "sum",
            "after": ["make"],
            "run": "awk '{s+=$1} END {print s}' ../make/numbers.txt",
            "resources": {"ntasks": 1, "time": "00:02:00"},
        },
    ],
}


async def test_workflow_over_rest_on_slurm_with_events_in_order(
    slurm: str, api: Call, jp_serverapp: Any
) -> None:
    got = listen(jp_serverapp)
    ex = (
        await api("POST", "executions", body={"workflow": CHAIN, "cluster": "slurm"}, expect=201)
    ).body
    assert ex["cluster"] == "slurm"
    done = await wait_final(api, ex["id"], timeout=180)
    assert done["state"] == "completed", done["steps"]
    for s in done["steps"]:
        assert s["native_id"] and s["native_id"].isdigit() and s["exit_code"] == 0
    await events_delivered(got, ex["id"])
    check_event_order(got, ex["id"], ["make", "sum"])
    log = (await api("GET", f"executions/{ex['id']}/steps/sum/log")).body
    assert log["data"] == "10\n" and log["eof"]
    page = (await api("GET", "executions", params={"state": "completed"})).body
    assert [e["id"] for e in page["executions"]] == [ex["id"]]


async def test_slurm_cluster_summary_is_live(slurm: str, api: Call) -> None:
    body = (await api("GET", "clusters/slurm")).body
    s = body["summary"]
    assert s["scheduler"] == "slurm" and s["partition"] == "debug"
    assert s["nodes"]["total"] == slurm_nodes()
    assert (
        s["nodes"]["idle"] + s["nodes"]["allocated"] + s["nodes"]["unavailable"]
        == (s["nodes"]["total"])
    )
    assert set(s["jobs"]) == {"queued", "running", "completing"}
