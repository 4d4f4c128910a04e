"""An SGE cluster in the StaX sidebar: a real JupyterLab and browser against the project's real
Grid Engine (scripts/sge/start-sge.sh), its live summary as the sidebar renders it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..waiting import NotYet, wait_for
from .conftest import screenshot
from .lab import LABEXTENSION

pytestmark = [pytest.mark.slow, pytest.mark.sge]

SGE_CLUSTER = '  sge:\n    scheduler: sge\n    queue: all.q\n    walltime: "00:10:00"\n'

#: summaryText's sge branch (labextension/src/widgets/panel.tsx)
SUMMARY = re.compile(
    r"all\.q: (?P<free>\d+) of (?P<slots>\d+) slots free, "
    r"(?P<idle>\d+) of (?P<hosts>\d+) hosts idle"
    r" · my jobs: (?P<queued>\d+) queued, (?P<running>\d+) running"
)

#: jobs this test holds in all.q (``qsub -h``: queued, never started) to see the count move
HELD = 2


@pytest.fixture
def stax_env(stax_env: Path, sge: str) -> Path:
    """The Lab's clusters file with an ``sge`` cluster (all.q) next to ``slurm``."""
    f = stax_env / "clusters.yaml"
    f.write_text(f.read_text() + SGE_CLUSTER)
    return stax_env


def qstat_g_c() -> tuple[int, int]:
    """all.q's (available, total) slots as ``qstat -g c`` reports them."""
    out = subprocess.run(["qstat", "-g", "c"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "all.q":
            return int(f[4]), int(f[5])
    raise AssertionError(f"all.q is not in qstat -g c:\n{out}")


def all_q_hosts() -> set[str]:
    """The hosts of all.q's queue instances (``qstat -f``: ``all.q@HOST``)."""
    out = subprocess.run(["qstat", "-f"], capture_output=True, text=True, check=True).stdout
    return {ln.split()[0].split("@", 1)[1] for ln in out.splitlines() if ln.startswith("all.q@")}


@pytest.fixture
def held_jobs() -> Iterator[list[str]]:
    """Submits nothing yet; deletes whatever job ids the test appends."""
    ids: list[str] = []
    try:
        yield ids
    finally:
        if ids:
            subprocess.run(["qdel", *ids], capture_output=True, text=True)


def test_sidebar_shows_the_live_grid_engine_summary(page: Any, held_jobs: list[str]) -> None:
    # the Lab serves THIS checkout's build (tests/ui/lab.py links it into its data directory)
    loaded = page.evaluate(
        """() => JSON.parse(document.getElementById('jupyter-config-data').textContent)
                 .federated_extensions.filter(e => e.name === 'jupyter-stax').map(e => e.load)"""
    )
    built = json.loads((LABEXTENSION / "package.json").read_text())["jupyterlab"]["_build"]
    assert loaded == [built["load"]], (loaded, built)

    item = page.locator('#jupyter-stax-panel .jp-StaxCluster[data-cluster="sge"]')
    item.wait_for()
    assert item.locator(".jp-StaxChip").inner_text() == "sge"
    assert "queue all.q" in item.inner_text()
    summary = item.locator(".jp-StaxCluster-summary")

    def rendered() -> re.Match[str] | NotYet:
        text = summary.inner_text().strip()
        return SUMMARY.fullmatch(text) or NotYet(text)

    m = wait_for(rendered, 60, "the sge cluster's live summary in the sidebar", interval=0.5)
    assert isinstance(m, re.Match)
    _, total = qstat_g_c()
    hosts = all_q_hosts()
    assert int(m["slots"]) == total, (m.group(0), total)
    assert 0 <= int(m["free"]) <= total
    assert int(m["hosts"]) == len(hosts), (m.group(0), hosts)
    assert 0 <= int(m["idle"]) <= len(hosts)
    screenshot(item, "panel-sge-cluster")

    # the numbers are live: jobs of mine held in all.q show up as queued after a refresh
    for i in range(HELD):
        out = subprocess.run(
            ["qsub", "-terse", "-h", "-b", "y", "-q", "all.q", "-N", f"stax-ui-held-{i}", "true"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        held_jobs.append(out.strip().split(".")[0])
    refresh = page.locator("#jupyter-stax-panel .jp-StaxPanel-header .jp-StaxButton")

    def counts_held() -> re.Match[str] | NotYet:
        refresh.click()
        got = rendered()
        held = isinstance(got, re.Match) and int(got["queued"]) >= HELD
        return got if held else NotYet(summary.inner_text())

    m = wait_for(counts_held, 60, f"my {HELD} held jobs counted as queued", interval=2)
    assert isinstance(m, re.Match)
    assert int(m["slots"]) == total
    screenshot(item, "panel-sge-cluster-held-jobs")
