"""Shared fixtures: isolated stores and work directories, and the project's real Slurm.

Slurm tests need ``SLURM_CONF`` pointing at the cluster started by
``scripts/slurm/start-slurm.sh`` (``.ci/run`` starts it). Outside CI they are skipped when it is
missing; in CI (``CI`` set) a missing Slurm is an error, so they can never silently not run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import Cluster

if TYPE_CHECKING:
    from .server.real_server import RealServer
    from .ssh.sshd import Sshd

ROOT = Path(__file__).resolve().parents[1]
#: the README's example workflow, also shipped as examples/demo.yaml (test_models checks both)
DEMO_WORKFLOW = (ROOT / "examples" / "demo.yaml").read_text()
SLURM_SCRIPTS = ROOT / "scripts" / "slurm"


def slurm_problem() -> str | None:
    conf = os.environ.get("SLURM_CONF")
    if not conf or not Path(conf).exists():
        return "SLURM_CONF is not set to an existing slurm.conf (run scripts/slurm/start-slurm.sh)"
    try:
        out = subprocess.run(
            ["scontrol", "ping"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"scontrol ping failed: {e}"
    if "UP" not in out:
        return f"slurmctld is not up: {out.strip()}"
    return None


@pytest.fixture(scope="session")
def slurm() -> str:
    """The path of the real Slurm's slurm.conf; skips (or fails in CI) when it is not up."""
    problem = slurm_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the project's Slurm: {problem}")
        pytest.skip(problem)
    return os.environ["SLURM_CONF"]


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    """The project's test login node (scripts/ssh/start-sshd.sh: started, or re-used when
    scripts/test.sh started it); skips when it cannot run here (not root), fails in CI."""
    from .ssh.sshd import Sshd, sshd_problem

    problem = sshd_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the SSH tests: {problem}")
        pytest.skip(problem)
    return Sshd(os.environ.get("STAX_SSHD_BASE", "/tmp/stax-sshd")).start()


def slurm_nodes() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout
    return len(set(out.split()))


@pytest.fixture
def stax_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated store, work directory and clusters file (with a 'slurm' cluster)."""
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(
        "clusters:\n"
        "  slurm:\n"
        "    scheduler: slurm\n"
        "    queue: debug\n"
        '    walltime: "00:10:00"\n'
        "    poll_interval: 1\n"
    )
    monkeypatch.setenv("JUPYTER_STAX_STORE", str(tmp_path / "state" / "stax.sqlite"))
    monkeypatch.setenv("JUPYTER_STAX_WORK_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("JUPYTER_STAX_CLUSTERS", str(clusters))
    yield tmp_path


@pytest.fixture
def real_server(stax_env: Path) -> Iterator[RealServer]:
    """A real ``jupyter server`` process (127.0.0.1, a token) with jupyter_stax on the
    ``stax_env`` store, work directory and clusters file."""
    from .server.real_server import RealServer

    srv = RealServer(
        stax_env / "jupyter",
        store=stax_env / "state" / "stax.sqlite",
        work_dir=stax_env / "runs",
        clusters_file=stax_env / "clusters.yaml",
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def clusters(stax_env: Path) -> ClusterRegistry:
    return ClusterRegistry.load()


@pytest.fixture
def store_path(stax_env: Path) -> Path:
    return stax_env / "state" / "stax.sqlite"


def slurm_cluster(name: str = "slurm", **kw: object) -> Cluster:
    return Cluster.model_validate(
        {
            "name": name,
            "scheduler": "slurm",
            "queue": "debug",
            "walltime": "00:10:00",
            "poll_interval": 1,
            **kw,
        }
    )
