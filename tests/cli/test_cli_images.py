"""``jupyter stax images`` and StaX steps from the command line (through the store and the
background engine, as a user without a Jupyter server)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..images import MARKER, busybox_available, charliecloud_image
from ..proc import kill

JUPYTER = shutil.which("jupyter") or f"{sys.executable} -m jupyter"


def stax(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JUPYTER.split(), "stax", "--no-server", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def catalog(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    img = charliecloud_image(stax_env / "busy")
    f = stax_env / "images.yaml"
    f.write_text(
        f"stax:\n  busy:\n    variants:\n      - image: {img}\n"
        "      - {name: busy-arm, image: /nowhere, labels: {cpu: aarch64, mpi: openmpi}}\n"
    )
    monkeypatch.setenv("JUPYTER_STAX_IMAGES", f"{f};docker://example.org/x:1")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no skopeo here either way
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    return f


def test_images_lists_fit_and_reasons_per_cluster(stax_env: Path, catalog: Path) -> None:
    r = stax(stax_env, "images", "--cluster", "local")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("cluster local: runtime ") and "cpu=x86_64" in lines[0]
    assert lines[1].split() == ["STAX", "VARIANT", "FITS", "CPU", "GPU", "MPI", "KABI", "REFERENCE"]
    rows = {ln.split()[1]: ln for ln in lines[2:]}
    assert rows["busy-x86_64"].split()[2] == "yes"
    assert "NO: cpu aarch64 != x86_64" in rows["busy-arm"]
    # the registry source cannot be read here: said once, on stderr, not an error
    assert r.stderr.count("skopeo is not installed") == 1 and "Traceback" not in r.stderr
    data = json.loads(stax(stax_env, "images", "--json").stdout)
    assert {i["name"] for i in data["images"]} == {"busy-x86_64", "busy-arm"}
    assert data["cluster"] is None and all(i["fits"] is None for i in data["images"])
    r = stax(stax_env, "images", "--cluster", "nope")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown cluster 'nope'")


def test_run_a_step_in_a_stax_and_a_no_fit_error(stax_env: Path, catalog: Path) -> None:
    (stax_env / "bad.yaml").write_text(
        "name: bad\nsteps:\n  - {name: a, image: busy-arm, run: 'true'}\n"
    )
    r = stax(stax_env, "run", "bad.yaml", "--cluster", "local")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == (
        "error: step 'a': StaX image 'busy-arm' does not fit cluster 'local': cpu aarch64 != x86_64"
    )
    if not busybox_available():
        pytest.skip("ch-run is not installed")
    (stax_env / "ok.yaml").write_text(
        "name: ok\nsteps:\n  - {name: a, image: busy, run: 'cat /etc/stax-marker'}\n"
    )
    try:
        r = stax(stax_env, "run", "ok.yaml", "--cluster", "local", "--wait")
        assert r.returncode == 0, r.stderr
        eid = r.stdout.split()[1]
        assert stax(stax_env, "logs", eid, "a").stdout == MARKER + "\n"
        st = json.loads(stax(stax_env, "status", eid, "--json").stdout)
        assert st["steps"][0]["resolved_image"]["labels"]["org.hpe.staxs.cpu"] == "x86_64"
    finally:
        out = subprocess.run(
            ["pgrep", "-f", f"jupyter_stax.engine.daemon --store {stax_env / 'state'}"],
            capture_output=True,
            text=True,
        ).stdout
        kill([int(p) for p in out.split()])
