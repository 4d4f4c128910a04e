"""``jupyter stax doctor`` on a healthy environment (the real Slurm) and on broken ones: each
problem is a FAIL line naming what is wrong and the fix, and the exit status is 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_stax.cli", "doctor", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "JUPYTER_STAX_NO_SERVER": "1", **env},
        timeout=120,
    )


@pytest.mark.slurm
def test_healthy(stax_env: Path, slurm: str) -> None:
    done = doctor()
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert any(ln.startswith("ok    cluster slurm (slurm): Slurmctld(primary)") for ln in lines)
    assert any(ln.startswith("ok    cluster local (local): PSI/J's local executor") for ln in lines)
    assert any(ln.startswith("ok    typeguard: 4.") for ln in lines)
    assert any(ln.startswith("ok    server extension: enabled") for ln in lines)
    assert not any(ln.startswith("FAIL") for ln in lines)
    findings = json.loads(doctor("--json").stdout)
    assert {f["level"] for f in findings} <= {"ok", "warn"}


def test_broken_environment(stax_env: Path, tmp_path: Path) -> None:
    clusters = tmp_path / "broken.yaml"
    clusters.write_text(
        "clusters:\n"
        "  hpc:\n    scheduler: pbs\n"
        "  sl:\n    scheduler: slurm\n"
        "  boxed:\n    scheduler: local\n    container_runtime: apptainer\n"
    )
    done = doctor(
        JUPYTER_STAX_CLUSTERS=str(clusters),
        SLURM_CONF=str(tmp_path / "missing.conf"),
        JUPYTER_STAX_STORE="/etc/hostname/stax.sqlite",
        PATH="/usr/bin:/bin:" + str(Path(sys.executable).parent),
    )
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL  store: /etc/hostname/stax.sqlite: /etc/hostname is not a directory" in out
    if not any(Path(d, "qsub").exists() for d in ("/usr/bin", "/bin")):
        assert "FAIL  cluster hpc (pbs): commands not found: qsub, qstat, qdel" in out
    assert f"FAIL  cluster sl (slurm): SLURM_CONF={tmp_path}/missing.conf does not exist" in out
    if not Path("/usr/bin/apptainer").exists():
        assert "FAIL  cluster boxed (local) runtime: apptainer: apptainer not found here" in out
    assert out.count("      fix: ") >= out.count("FAIL  ")
    assert "problem(s)" in out.splitlines()[-1]


def test_bad_clusters_file(stax_env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters: [1, 2\n")
    done = doctor(JUPYTER_STAX_CLUSTERS=str(bad))
    assert done.returncode == 1
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("FAIL  clusters file")]
    assert str(bad) in line
