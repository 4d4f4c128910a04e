"""A sweep from the real ``jupyter stax`` command: run, the one-row status with counts, and
the instances listing (failed first, paged)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_cli import Stax, kill

SWEEP = """\
name: sw
steps:
  - name: sim
    sweep:
      n: [1, 2]
      seed: {range: [0, 30]}
    max_parallel: 4
    run: |
      echo {{n}} {{seed}} > out.txt
      case $STAX_SWEEP_INDEX in 4|40) exit 9;; esac
"""


@pytest.fixture
def cli(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stax]:
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    monkeypatch.delenv("COLUMNS", raising=False)
    stax = Stax(stax_env, stax_env / "state" / "stax.sqlite")
    yield stax
    kill(stax.daemon_pids())


def test_sweep_status_is_one_row_and_instances_list_failed_first(cli: Stax) -> None:
    cli.write("sw.yaml", SWEEP)
    r = cli("run", "sw.yaml", "--cluster", "local", "--wait")
    eid = r.stdout.split()[1]
    r = cli("status", eid)
    sim = [line for line in r.stdout.splitlines() if line.startswith("sim ")]
    assert len(sim) == 1, r.stdout  # one row for 60 instances
    assert "58/60 done, 2 failed;" in sim[0]  # the reason follows, cut to the width
    st = json.loads(cli("status", eid, "--json").stdout)["steps"][0]
    assert st["reason"] == "2 of 60 instances did not complete: 4 (exit 9), 40 (exit 9)"
    assert st["sweep"]["counts"] == {"completed": 58, "failed": 2}
    r = cli("status", eid, "--instances", "sim", "--limit", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "60 instances: 58 completed, 2 failed"
    assert lines[2].split() == ["4", "failed", "9", "1", "n=1", "seed=4"]
    assert lines[3].split() == ["40", "failed", "9", "1", "n=2", "seed=10"]
    assert lines[4].split() == ["0", "completed", "0", "1", "n=1", "seed=0"]
    assert "3 shown" in lines[-1]
    r = cli("status", eid, "--instances", "sim", "--all", "--limit", "7", "--json")
    page = json.loads(r.stdout)
    assert len(page["items"]) == 60 and page["next_cursor"] is None
    r = cli("status", eid, "--instances", "sim", "--state", "failed")
    assert [ln.split()[0] for ln in r.stdout.splitlines()[2:]] == ["4", "40"]

