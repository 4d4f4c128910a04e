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
SGE_SCRIPTS = ROOT / "scripts" / "sge"
#: the clusters file entry of the project's Grid Engine (``sge``: all.q, 1 s polls)
SGE_CLUSTER = (
    '  sge:\n    scheduler: sge\n    queue: all.q\n    walltime: "00:10:00"\n    poll_interval: 1\n'
)


# --- the two parts of the suite CI runs side by side (scripts/test.sh) ---------------------------
# FAST PART (the rule): every test under FAST_SUITE not marked with one of FAST_EXCLUDED_MARKS,
# less the files that start a Jupyter server (FAST_SUITE_IGNORE). It needs no scheduler, no sshd and
# no server, and stops nothing shared, so it can run beside the rest in another process: CI runs it
# on Python 3.10, 3.11 and 3.13 beside `--stax-part=rest` (everything else) on 3.11. A new test in
# those folders is in by itself; one that needs a scheduler or sshd carries its marker anyway; a new
# file there that starts a server (uses real_server/RealServer) goes in FAST_SUITE_IGNORE.
FAST_SUITE = ("tests/core", "tests/engine", "tests/cli", "tests/kernel")
FAST_SUITE_IGNORE = (
    "tests/cli/test_cli_server.py",
    "tests/cli/test_param_surfaces.py",
    "tests/cli/test_parity.py",
    "tests/kernel/test_monitor_server.py",
)
FAST_EXCLUDED_MARKS = ("slurm", "sge", "ssh", "slow")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stax-part",
        choices=("all", "fast", "rest"),
        default="all",
        help="run only the fast part of the suite (see tests/conftest.py), only the rest, or all",
    )


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _in_fast_files(rel: str) -> bool:
    return any(rel == d or rel.startswith(d + "/") for d in FAST_SUITE) and not any(
        rel == f for f in FAST_SUITE_IGNORE
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``--stax-part=fast`` does not even collect (import) the files outside the fast part."""
    if config.getoption("--stax-part") != "fast":
        return None
    rel = _rel(collection_path)
    if rel in ("tests", "tests/conftest.py") or any(d.startswith(rel + "/") for d in FAST_SUITE):
        return None  # a folder on the way to a fast folder
    return not _in_fast_files(rel) or None


def in_fast_part(item: pytest.Item) -> bool:
    return _in_fast_files(_rel(item.path)) and not any(
        item.get_closest_marker(m) for m in FAST_EXCLUDED_MARKS
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    part = config.getoption("--stax-part")
    if part == "all":
        return
    keep, drop = [], []
    for item in items:
        (keep if in_fast_part(item) == (part == "fast") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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


def sge_problem() -> str | None:
    """Why the project's Grid Engine is not usable, or None. Starts it (scripts/sge/start-sge.sh,
    idempotent) when SGE_ROOT is unset and we are root."""
    if not os.environ.get("SGE_ROOT") and os.geteuid() == 0:
        r = subprocess.run(
            ["bash", str(SGE_SCRIPTS / "start-sge.sh")], capture_output=True, text=True, timeout=600
        )
        if r.returncode != 0:
            return f"start-sge.sh failed: {r.stderr.strip()[-2000:]}"
        for line in r.stdout.splitlines():  # export SGE_ROOT=... SGE_CELL=...
            if line.startswith("export "):
                for kv in line.split()[1:]:
                    k, _, v = kv.partition("=")
                    os.environ[k] = v
    if not os.environ.get("SGE_ROOT"):
        return "SGE_ROOT is not set (run scripts/sge/start-sge.sh as root)"
    try:
        r = subprocess.run(["qstat", "-f"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"qstat failed: {e}"
    if r.returncode != 0:
        return f"qstat failed: {(r.stdout + r.stderr).strip()}"
    return None


@pytest.fixture(scope="session")
def sge() -> str:
    """SGE_ROOT of the project's real Grid Engine; skips (or fails in CI) when it is not up."""
    problem = sge_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the project's Grid Engine: {problem}")
        pytest.skip(problem)
    return os.environ["SGE_ROOT"]


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
