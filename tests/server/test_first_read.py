"""Issue 21 over REST, on a real ``jupyter server`` and the real Slurm: after a detached run
whose jobs all ended while no engine was alive, the server's FIRST answers (``GET executions``
and ``GET executions/{id}``, asked at once while its engine is adopting the execution) are the
true states; when the scheduler does not answer, they say the states are being checked."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.models import UNVERIFIED_WARNING

from ..detached import FINAL, canceled_before_start, failing_chain_ended, unreachable_conf
from .real_server import RealServer

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


def server(stax_env: Path) -> RealServer:
    return RealServer(
        stax_env / "jupyter",
        store=stax_env / "state" / "stax.sqlite",
        work_dir=stax_env / "runs",
        clusters_file=stax_env / "clusters.yaml",
    )


def first_reads(srv: RealServer, eid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``GET executions`` and ``GET executions/{eid}``, sent at the same time as the server's
    first requests after its start (neither waits behind the other)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        page = pool.submit(srv.call, "GET", "executions")
        one = pool.submit(srv.call, "GET", f"executions/{eid}")
        (code_p, body_p), (code_o, body_o) = page.result(), one.result()
    assert code_p == 200 and code_o == 200, (body_p, body_o)
    (item,) = [x for x in body_p["executions"] if x["id"] == eid]
    return item, body_o


def test_first_rest_reads_while_the_server_adopts_are_the_true_states(
    stax_env: Path, slurm: str
) -> None:
    eid = failing_chain_ended(stax_env, stax_env / "state" / "stax.sqlite")
    srv = server(stax_env)
    srv.start()  # its engine adopts the execution: the reads below come during that
    try:
        item, ex = first_reads(srv, eid)
        assert [(s["name"], s["state"]) for s in ex["steps"]] == FINAL, ex
        assert ex["state"] == "failed" and ex["unverified"] is False
        assert UNVERIFIED_WARNING not in ex["warnings"]
        assert item["state"] == "failed" and item["unverified"] is False, item
        assert (item["done"], item["total"]) == (3, 3)
        assert item["counts"] == {"completed": 1, "failed": 1, "skipped": 1}
    finally:
        srv.stop()


def test_first_rest_reads_without_the_scheduler_say_the_states_are_being_checked(
    stax_env: Path, slurm: str
) -> None:
    """The job was scancelled before it started: no exit record, only the scheduler can tell,
    and the server's cannot answer. Its first answers say so instead of presenting the
    submission's ``queued`` as the state now."""
    store = stax_env / "state" / "stax.sqlite"
    eid = canceled_before_start(stax_env, store, stax_env / "clusters.yaml")
    srv = server(stax_env)
    srv.extra_env = {"SLURM_CONF": str(unreachable_conf(stax_env))}
    srv.start()
    try:
        item, ex = first_reads(srv, eid)
        assert ex["state"] == "running" and ex["steps"][0]["state"] == "queued", ex
        assert ex["unverified"] is True and UNVERIFIED_WARNING in ex["warnings"], ex
        assert item["unverified"] is True and UNVERIFIED_WARNING in item["warnings"], item
        assert not Path(ex["steps"][0]["directory"], "stax.exit").exists()  # it never started
        code, again = srv.call("GET", f"executions/{eid}")  # later reads say it too
        assert code == 200 and again["unverified"] is True
    finally:
        srv.stop()
