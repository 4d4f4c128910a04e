"""Parsers of scheduler output (recorded from Slurm 22.05 and 23.11 sites), and the command
runner's failures."""

from __future__ import annotations

import pytest

from jupyter_stax.core.errors import SchedulerUnavailable
from jupyter_stax.core.models import Execution
from jupyter_stax.engine.schedulers import run_checked
from jupyter_stax.engine.schedulers.local import active_steps
from jupyter_stax.engine.schedulers.slurm import parse_sinfo, parse_squeue_states
from jupyter_stax.engine.transport import LocalTransport


def run_command(argv: list[str], timeout: float = 10.0) -> str:
    return run_checked(LocalTransport(), argv, timeout)

# `sinfo -h -o '%D|%T'` on this project's two-node Slurm 22.05
SINFO_LOCAL = "2|idle\n"
# ... on a busy site (one line per partition and state; flags: * not responding, ~ powered off,
# - planned, # powering up)
SINFO_SITE = """\
12|mixed
30|allocated
4|idle
3|idle~
1|idle#
2|drained
1|down*
1|draining
1|completing
2|reserved
1|mixed-
1|idle*
1|mixed+drain
"""


def test_sinfo_local() -> None:
    n = parse_sinfo(SINFO_LOCAL)
    assert (n.total, n.idle, n.allocated, n.unavailable) == (2, 2, 0, 0)
    assert n.by_state == {"idle": 2}


def test_sinfo_site_buckets() -> None:
    n = parse_sinfo(SINFO_SITE)
    assert n.total == 60
    assert n.idle == 4 + 3 + 1  # idle, idle~ (powered off, started on demand), idle# (booting)
    assert n.allocated == 12 + 30 + 1 + 1  # mixed, allocated, completing, mixed- (planned)
    assert n.unavailable == 2 + 1 + 1 + 2 + 1 + 1  # drained down* draining reserved idle* mix+drain
    assert n.idle + n.allocated + n.unavailable == n.total
    assert n.by_state["down*"] == 1 and n.by_state["mixed"] == 12


def test_sinfo_repeated_states_add_up_and_noise_is_skipped() -> None:
    out = "2|idle\n3|IDLE\n\nsinfo: warning: something\nx|idle\n1|\n"
    n = parse_sinfo(out)
    assert n.idle == 5 and n.by_state == {"idle": 5, "": 1} and n.unavailable == 1


def test_sinfo_empty() -> None:
    n = parse_sinfo("")
    assert (n.total, n.idle, n.allocated, n.unavailable, n.by_state) == (0, 0, 0, 0, {})


def test_squeue_states() -> None:
    j = parse_squeue_states("PD\nPD\nR\nCG\nR\nR\n")
    assert (j.queued, j.running, j.completing) == (2, 3, 1)
    assert parse_squeue_states("") == parse_squeue_states("\n\n")
    assert parse_squeue_states("CD\nF\n").model_dump() == {
        "queued": 0,
        "running": 0,
        "completing": 0,
    }


def test_run_command_failures_are_scheduler_unavailable() -> None:
    with pytest.raises(SchedulerUnavailable, match="not installed"):
        run_command(["stax-no-such-command-xyz"])
    with pytest.raises(SchedulerUnavailable, match=r"failed \(exit 3\): boom"):
        run_command(["sh", "-c", "echo boom >&2; exit 3"])
    with pytest.raises(SchedulerUnavailable, match=r"did not answer within 0\.2 s"):
        run_command(["sleep", "5"], timeout=0.2)
    with pytest.raises(SchedulerUnavailable, match="export SLURM_CONF"):
        run_command(
            [
                "sh",
                "-c",
                "echo 'sinfo: fatal: Could not establish a configuration source' >&2; exit 1",
            ]
        )
    assert run_command(["echo", "ok"]) == "ok\n"


def test_active_steps_counts_only_this_clusters_active_steps() -> None:
    ex = Execution.model_validate(
        {
            "id": "x",
            "workflow": {"steps": [{"name": n, "run": "true"} for n in "abcd"]},
            "cluster": "local",
            "created_at": "2024-01-01T00:00:00Z",
            "work_dir": "/w",
            "steps": [
                {
                    "name": "a",
                    "cluster": "local",
                    "state": "running",
                    "directory": "/w/a",
                    "script": "s",
                    "stdout": "o",
                    "stderr": "e",
                },
                {
                    "name": "b",
                    "cluster": "local",
                    "state": "queued",
                    "directory": "/w/b",
                    "script": "s",
                    "stdout": "o",
                    "stderr": "e",
                },
                {
                    "name": "c",
                    "cluster": "local",
                    "state": "completed",
                    "directory": "/w/c",
                    "script": "s",
                    "stdout": "o",
                    "stderr": "e",
                },
                {
                    "name": "d",
                    "cluster": "other",
                    "state": "running",
                    "directory": "/w/d",
                    "script": "s",
                    "stdout": "o",
                    "stderr": "e",
                },
            ],
        }
    )
    assert active_steps([ex], "local") == 2 and active_steps([ex], "other") == 1
