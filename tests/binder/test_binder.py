"""The Binder set-up, as repo2docker would run it, on this machine: as an UNPRIVILEGED user
with Debian's python3 (no access to the test's Python), ``binder/postBuild`` installs
jupyter-stax from a copy of the checkout into a fresh venv, then ``binder/start`` starts a
one-node Slurm as that user and runs the demos under that environment: the quickstart on
``local`` and the Slurm DAG notebook on the user's own Slurm. Root only (it creates the user);
required in CI."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..unprivileged import UnprivilegedUser, require_root

ROOT = Path(__file__).resolve().parents[2]
USER = UnprivilegedUser("staxbinder")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

RUN_NOTEBOOK = """\
import sys
import nbclient, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
for cell in nb.cells:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            sys.stdout.write(o["text"])
print("NOTEBOOK OK", sys.argv[1])
"""


def as_user(command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return USER.run(command, timeout)


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    require_root("the Binder check")
    h = USER.create()
    as_user("bash repo/scripts/slurm/stop-user-slurm.sh 2>/dev/null")
    USER.kill_all()
    for d in ("repo", "venv", ".stax-binder", "stax-runs", ".local/share/jupyter/stax"):
        shutil.rmtree(h / d, ignore_errors=True)
    # the checkout as a clone would have it, plus the prebuilt JupyterLab extension (so the
    # build hook skips the jlpm build; Binder builds it, with the node of its image)
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            dst = h / "repo" / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    built = ROOT / "jupyter_stax" / "labextension"
    if (built / "static" / "style.js").exists():
        shutil.copytree(built, h / "repo" / "jupyter_stax" / "labextension")
    (h / "run_notebook.py").write_text(RUN_NOTEBOOK)
    USER.chown(h)
    yield h
    as_user("bash repo/scripts/slurm/stop-user-slurm.sh")
    USER.kill_all()


def test_binder_postbuild_and_start(home: Path) -> None:
    venv = as_user("/usr/bin/python3 -m venv ~/venv")
    assert venv.returncode == 0, venv.stderr
    env = "export PATH=$HOME/venv/bin:$PATH PYTHON=$HOME/venv/bin/python; cd ~/repo"
    built = as_user(f"{env}; pip install -q -r binder/requirements.txt && binder/postBuild")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "jupyter-stax 0." in built.stdout and "installed" in built.stdout
    assert "jupyter_stax" in built.stdout and "enabled" in built.stdout  # server extension
    assert "jupyter-stax" in built.stdout  # the lab extension listed

    doctor = as_user(f"{env}; binder/start jupyter stax doctor")
    assert "binder/start: Slurm is up" in doctor.stderr, doctor.stderr
    assert doctor.returncode == 0, doctor.stdout
    assert "ok    cluster slurm (slurm): Slurmctld(primary)" in doctor.stdout

    quick = as_user(f"{env}; binder/start python ~/run_notebook.py notebooks/01_quickstart.ipynb")
    assert quick.returncode == 0, quick.stdout[-3000:] + quick.stderr[-3000:]
    assert "completed\nsum of 1..10 = 55, mean 5.5\n" in quick.stdout
    assert "NOTEBOOK OK" in quick.stdout

    dag = as_user(f"{env}; binder/start python ~/run_notebook.py notebooks/02_slurm_dag.ipynb")
    assert dag.returncode == 0, dag.stdout[-3000:] + dag.stderr[-3000:]
    assert "cluster: slurm" in dag.stdout
    assert "sum of squares 338350, sum of cubes 25502500" in dag.stdout
    # the jobs ran in the user's own Slurm, as the user
    runs = list((home / "stax-runs").glob("*/check/stax.out"))
    assert runs and all(p.owner() == USER.name for p in runs)
