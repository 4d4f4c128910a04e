"""Parsers and guards of the scheduler backend, on recorded scheduler output."""

from __future__ import annotations

import logging

import pytest

from jupyter_stax.engine.backend import Health, shell_safe
from jupyter_stax.engine.schedulers import is_transient
from jupyter_stax.engine.schedulers.slurm import parse_squeue

# recorded from `squeue --me -t all -h -o '%i|%t|%r'` on Slurm 22.05, plus lines PSI/J's own
# parser chokes on (an OOM state, a reason with spaces, a garbage line)
SQUEUE = """\
101|PD|Resources
102|R|None
103|CG|None
104|CD|None
105|CA|None
106|F|NonZeroExitCode
107|TO|TimeLimit
108|OOM|OutOfMemory
109|PD|Dependency
110|PD|(ReqNodeNotAvail, UnavailableNodes:node1)
garbage without separators
111|XX|Whatever
"""


def test_parse_squeue_maps_states_and_skips_bad_lines(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        r = parse_squeue(SQUEUE)
    assert {k: v[0] for k, v in r.items()} == {
        "101": "QUEUED",
        "102": "ACTIVE",
        "103": "ACTIVE",
        "104": "COMPLETED",
        "105": "CANCELED",
        "106": "FAILED",
        "107": "FAILED",
        "108": "FAILED",
        "109": "QUEUED",
        "110": "QUEUED",
    }
    assert r["110"][1] == "(ReqNodeNotAvail, UnavailableNodes:node1)"
    assert "garbage" in caplog.text and "'XX'" in caplog.text


def test_transient_submit_errors() -> None:
    assert is_transient(
        "sbatch: error: Batch job submission failed: Unable to contact slurm "
        "controller (connect failure)"
    )
    assert not is_transient("sbatch: error: invalid partition specified: nope")


def test_shell_safe() -> None:
    assert shell_safe("/home/u/stax-runs/ab12/step_1")
    assert not shell_safe("/home/u/my runs")
    assert not shell_safe("/tmp/it's")


def test_health_warning() -> None:
    h = Health()
    assert h.warning("slurm") is None
    h.failed("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
    h.failed("again")
    w = h.warning("slurm")
    assert w and "2 tries" in w and "not answering" in w and "retrying" in w
    h.ok()
    assert h.warning("slurm") is None
