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


# --- the parts of the suite CI runs side by side (scripts/test.sh) -------------------------------
# FAST PART (the rule): every test under FAST_SUITE not marked with one of FAST_EXCLUDED_MARKS,
# less the files that start a Jupyter server (FAST_SUITE_IGNORE). It needs no scheduler, no sshd and
# no server, and stops nothing shared, so it can run beside the rest in another process: CI runs it
# on Python 3.10, 3.11 and 3.13 beside the main pytest on 3.11. A new test in those folders is in by
# itself; one that needs a scheduler or sshd carries its marker anyway; a new file there that
# starts a server (uses real_server/RealServer) goes in FAST_SUITE_IGNORE.
FAST_SUITE = ("tests/core", "tests/engine", "tests/cli", "tests/kernel")
FAST_SUITE_IGNORE = (
    "tests/cli/test_cli_server.py",
    "tests/cli/test_param_surfaces.py",
    "tests/cli/test_parity.py",
    "tests/kernel/test_monitor_server.py",
)
FAST_EXCLUDED_MARKS = ("slurm", "sge", "ssh", "slow")

# SIDE PART (the rule): the tests outside the fast part in a file of SIDE_FILES that use neither
# the project's Slurm nor its Grid Engine: no `slurm` or `sge` fixture (directly or through another
# fixture) and no slurm or sge mark (SHARED_SCHEDULER). The main pytest stops slurmctld and
# sge_qmaster for a while (tests/engine/test_recovery.py's scheduler-down tests), counts the jobs
# of the schedulers and kills its engines; none of that touches the side part, whose tests run on
# `local` (in-process, or in a Jupyter server, Lab, kernel or browser of their own, on free ports
# and their own store), on an sshd of their own (tests/ssh/conftest.py's own_sshd, which they may
# stop) or on the shared login node's shell without a scheduler behind it (nothing in the main
# pytest stops that sshd: its outage tests use their own). So CI runs it in a background process
# beside the main pytest (`--stax-part=side`; the main one is `--stax-part=main`). A file lands
# here only by being listed, with its reason: a new test file is in the main pytest by default.
# Checked when it runs: in `--stax-part=side` the slurm and sge fixtures fail (a test that asks for
# them at run time, request.getfixturevalue, belongs to the main part), and CI runs it without
# SLURM_CONF, so a local Slurm command run without the fixture fails too (not one over the shared
# login node, whose sessions get SLURM_CONF: a test that submits there takes the slurm fixture).
SIDE_FILES = {
    # a Jupyter server (in-process or its own process) or Lab on the `local` cluster
    "tests/server/test_api.py": "in-process server; Slurm's answers come from fake commands",
    "tests/server/test_auth.py": "in-process server",
    "tests/server/test_builds_api.py": "in-process server, builds on local",
    "tests/server/test_crate_api.py": "in-process server, runs on local",
    "tests/server/test_events.py": "in-process server, runs on local",
    "tests/server/test_lifecycle.py": "in-process server: start, stop, a broken clusters file",
    "tests/server/test_notebook_api.py": "in-process server",
    "tests/server/test_openapi.py": "the OpenAPI document",
    "tests/server/test_schemathesis.py": "its own server process; submissions run on local",
    "tests/server/test_step_files.py": "in-process server, runs on local",
    "tests/server/test_sweep_api.py": "in-process server, runs on local",
    "tests/server/test_units.py": "pure functions",
    "tests/server/test_workflows_api.py": "in-process server, runs on local",
    "tests/cli/test_cli_server.py": "the CLI through its own server process, runs on local",
    "tests/cli/test_param_surfaces.py": "every surface on local, with its own server process",
    "tests/cli/test_parity.py": "the local and REST services on local, its own server process",
    "tests/kernel/test_monitor_server.py": "a kernel's monitor through its own server, on local",
    "tests/kernel/test_notebook_magic.py": "a kernel of its own, on local",
    "tests/engine/test_notebook_steps.py": "notebook steps on local (papermill kernels)",
    "tests/test_demo.py": "the demo workflows and Lab on local",
    "tests/ui/test_build_ui.py": "its own Lab and browser, a build on local",
    "tests/ui/test_crate_ui.py": "its own Lab and browser, runs on local",
    "tests/ui/test_notebook_run.py": "its own Lab and browser, runs on local",
    # pure functions of the Grid Engine and SSH layers
    "tests/sge/test_parse.py": "pure functions",
    "tests/sge/test_scheduler.py": "pure functions",
    "tests/sge/test_script.py": "pure functions",
    "tests/sge/test_packaging.py": "the PSI/J entry point of the package, no Grid Engine",
    "tests/ssh/test_shell.py": "pure functions",
    "tests/ssh/test_shell_more.py": "pure functions",
    "tests/ssh/test_target.py": "pure functions",
    # an sshd of their own (own_sshd) or the shared login node's shell, no scheduler behind it
    "tests/ssh/test_batches.py": "the shared login node's shell, its own remote directory",
    "tests/ssh/test_connection.py": "own sshd (its sbatch test takes the slurm fixture: main)",
    "tests/ssh/test_faults.py": "own sshd, which it cuts and stops",
    "tests/ssh/test_relay.py": "own sshd behind a delaying relay",
    "tests/ssh/test_remote_surfaces.py": "the shared login node's shell (the rest: main)",
    "tests/ssh/test_remote_sweeps.py": "a workstation on the shared login node (the rest: main)",
    "tests/ssh/test_run_faults.py": "a silent port (the rest: main)",
    "tests/ssh/test_staging.py": "own sshd and the shared login node's shell (the rest: main)",
    "tests/ssh/test_transfer_streams.py": "the shared login node's shell",
    "tests/ssh/test_workstation.py": "a workstation on the shared login node (the rest: main)",
}
#: what a test of the side part must not use: the project's schedulers, which the main pytest stops
SHARED_SCHEDULER = ("slurm", "sge")
PARTS = ("all", "fast", "rest", "main", "side")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stax-part",
        choices=PARTS,
        default="all",
        help="run only one part of the suite (see tests/conftest.py): fast, main or side "
        "(rest: main and side), or all",
    )


def pytest_configure(config: pytest.Config) -> None:
    missing = [f for f in (*FAST_SUITE_IGNORE, *SIDE_FILES) if not (ROOT / f).is_file()]
    if missing:  # a renamed file would silently fall back to the main part
        raise pytest.UsageError(
            f"tests/conftest.py names test files that do not exist: {', '.join(missing)} "
            "(renamed or removed? update FAST_SUITE_IGNORE or SIDE_FILES)"
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


def _on_the_way(rel: str, files: tuple[str, ...] | list[str]) -> bool:
    """``rel`` is the suite's root, its conftest, or a folder holding one of ``files``."""
    return rel in ("tests", "tests/conftest.py") or any(f.startswith(rel + "/") for f in files)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``--stax-part=fast`` and ``side`` do not even collect (import) the files outside them."""
    part = config.getoption("--stax-part")
    rel = _rel(collection_path)
    if part == "fast":
        if _on_the_way(rel, FAST_SUITE):
            return None  # a folder on the way to a fast folder
        return not _in_fast_files(rel) or None
    if part == "side":
        if _on_the_way(rel, list(SIDE_FILES)) or rel.endswith("/conftest.py"):
            return None
        return rel not in SIDE_FILES or None
    return None


def in_fast_part(item: pytest.Item) -> bool:
    return _in_fast_files(_rel(item.path)) and not any(
        item.get_closest_marker(m) for m in FAST_EXCLUDED_MARKS
    )


def uses_shared_scheduler(item: pytest.Item) -> bool:
    """The test asks for the project's Slurm or Grid Engine (a fixture, or a mark)."""
    names = set(getattr(item, "fixturenames", ()))
    return any(s in names or item.get_closest_marker(s) for s in SHARED_SCHEDULER)


def part_of(item: pytest.Item) -> str:
    """The part of the suite ``item`` is in: fast, side or main (the rules above)."""
    if in_fast_part(item):
        return "fast"
    if _rel(item.path) in SIDE_FILES and not uses_shared_scheduler(item):
        return "side"
    return "main"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    part = config.getoption("--stax-part")
    if part == "all":
        return
    wanted = {"fast": {"fast"}, "rest": {"main", "side"}}.get(part, {part})
    keep, drop = [], []
    for item in items:
        (keep if part_of(item) in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _not_in_the_side_part(request: pytest.FixtureRequest, what: str) -> None:
    if request.config.getoption("--stax-part") == "side":
        pytest.fail(
            f"a test uses {what} in the side part of the suite, which runs beside "
            "the main pytest while that one stops the schedulers: a test that needs it belongs to "
            "the main part (take the fixture as an argument, or mark it, so tests/conftest.py's "
            "rule keeps it there; see SIDE_FILES)"
        )


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
def slurm(request: pytest.FixtureRequest) -> str:
    """The path of the real Slurm's slurm.conf; skips (or fails in CI) when it is not up."""
    _not_in_the_side_part(request, "the project's Slurm")
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
def sge(request: pytest.FixtureRequest) -> str:
    """SGE_ROOT of the project's real Grid Engine; skips (or fails in CI) when it is not up."""
    _not_in_the_side_part(request, "the project's Grid Engine")
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
