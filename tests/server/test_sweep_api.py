"""Sweeps over REST on a real Jupyter server (local executor): the step's row carries the
counts, ``GET .../instances`` pages the instances from their records, failed first."""

from __future__ import annotations

from typing import Any

from .conftest import Call, wait_final

SWEEP = {
    "name": "sw",
    "steps": [
        {
            "name": "sim",
            "sweep": {"n": [10, 20, 30], "seed": {"range": [0, 4]}},
            "run": "echo {{n}}-{{seed}}; case $STAX_SWEEP_INDEX in 3|7) exit 5;; esac",
        },
        {"name": "plain", "run": "echo hi"},
    ],
}


async def test_sweep_counts_and_instances_pages_failed_first(api: Call) -> None:
    ex = (await api("POST", "executions", body={"workflow": SWEEP}, expect=201)).body
    done = await wait_final(api, ex["id"])
    sim = next(s for s in done["steps"] if s["name"] == "sim")
    assert sim["state"] == "failed"
    assert sim["sweep"]["counts"] == {"completed": 10, "failed": 2}
    assert [f["index"] for f in sim["sweep"]["failed"]] == [3, 7]
    path = f"executions/{ex['id']}/steps/sim/instances"
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await api("GET", path, params=params)).body
        pages += 1
        assert page["total"] == 12 and page["counts"] == {"completed": 10, "failed": 2}
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [i["index"] for i in seen] == [3, 7, 0, 1, 2, 4, 5, 6, 8, 9, 10, 11]
    assert seen[0] == {
        "index": 3,
        "state": "failed",
        "exit_code": 5,
        "attempt": 1,
        "params": {"n": 10, "seed": 3},
        "directory": seen[0]["directory"],
    }
    assert seen[0]["directory"].endswith("/sim/3")
    failed = (await api("GET", path, params={"state": "failed"})).body
    assert [(i["index"], i["params"]) for i in failed["items"]] == [
        (3, {"n": 10, "seed": 3}),
        (7, {"n": 20, "seed": 3}),
    ]
    assert failed["next_cursor"] is None


async def test_bad_instance_queries_are_400(api: Call) -> None:
    ex = (await api("POST", "executions", body={"workflow": SWEEP}, expect=201)).body
    await wait_final(api, ex["id"])
    base = f"executions/{ex['id']}/steps"
    r = await api("GET", f"{base}/plain/instances", expect=400)
    assert "is not a sweep" in r.body["message"]
    r = await api("GET", f"{base}/sim/instances", params={"state": "bogus"}, expect=400)
    assert "unknown instance state 'bogus'" in r.body["message"]
    r = await api("GET", f"{base}/sim/instances", params={"cursor": "abc"}, expect=400)
    assert "cursor" in r.body["message"]
    await api("GET", f"{base}/nope/instances", expect=404)
