"""``jupyter stax build`` for real (ch-image, offline, a busybox-static base): progress and a
summary table, a failing variant reported with the builder's last lines while the other builds
(exit 1), the built variant catalogued and listed by ``jupyter stax images`` as fitting, a cache
hit on the second run, and clear errors (exit 2) before any build."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ..images import BUSYBOX
from ..recipes import make_recipe
from .test_cli_images import stax

pytestmark = pytest.mark.skipif(
    not (shutil.which("ch-image") and BUSYBOX.exists()) and not os.environ.get("CI"),
    reason="needs ch-image and busybox-static",
)


def test_build_catalogue_list(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CH_IMAGE_STORAGE", str(stax_env / "ch-storage"))
    recipe = make_recipe(stax_env / "r")
    catalog = stax_env / "cat" / "images.yaml"
    monkeypatch.setenv("JUPYTER_STAX_IMAGES", str(catalog))
    p = stax(
        recipe.parent, "build", "stax.yaml", "--variant", "mpi=mpich", "--catalog", str(catalog)
    )
    assert p.returncode == 1, p.stderr  # one variant failed
    table = p.stdout.splitlines()
    assert table[0].split() == ["VARIANT", "STATUS", "LABELS", "SIZE", "TIME", "DIGEST"]
    assert table[1].split()[:4] == ["solver-x86_64-mpich-none", "built", "mpi=mpich", "gpu=none"]
    assert table[2].split()[:2] == ["solver-x86_64-mpich-cuda", "failed"]
    assert f"catalogued in {catalog}" in p.stdout
    assert "solver-x86_64-mpich-none: building" in p.stderr  # progress
    assert "solver-x86_64-mpich-cuda FAILED" in p.stderr
    assert "no CUDA for MPICH here" in p.stderr  # the builder's last lines

    again = stax(
        recipe.parent,
        "build",
        "stax.yaml",
        "--variant",
        "mpi=mpich",
        "--variant",
        "gpu=none",
        "--catalog",
        str(catalog),
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1].split()[:2] == ["solver-x86_64-mpich-none", "cached"]

    listed = stax(recipe.parent, "images", "--cluster", "local")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "solver-x86_64-mpich-none" in line)
    assert row.split()[:6] == [
        "solver",
        "solver-x86_64-mpich-none",
        "yes",
        "x86_64",
        "none",
        "mpich",
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--variant", "network=ofi"], "unknown matrix key 'network'"),
        (["--for", "nowhere"], "nowhere"),
        (["--variant", "mpich"], "KEY=VALUE"),
    ],
)
def test_errors_before_any_build(stax_env: Path, args: list[str], says: str) -> None:
    recipe = make_recipe(stax_env / "r")
    p = stax(recipe.parent, "build", "stax.yaml", *args)
    assert p.returncode == 2 and says in p.stderr, (p.returncode, p.stderr)
    assert not (recipe.parent / "images").exists()


def test_builder_missing(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = make_recipe(stax_env / "r")
    bindir = stax_env / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    p = stax(recipe.parent, "build", "stax.yaml")
    assert p.returncode == 1 and "apt-get install charliecloud-builders" in p.stderr, p.stderr


def test_sif_refused_before_any_build_naming_what_to_install(stax_env: Path) -> None:
    """No apptainer or singularity here (Debian 12 has neither): --format sif is refused
    before the builder is even looked for, saying what to install; nothing is built."""
    from jupyter_stax.engine.builds.outputs import sif_tool

    if sif_tool() is not None:
        pytest.skip(f"{sif_tool()} is installed here: SIF can be made")
    recipe = make_recipe(stax_env / "r")
    p = stax(recipe.parent, "build", "stax.yaml", "--format", "sif")
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "--format sif needs apptainer" in p.stderr and "install Apptainer" in p.stderr
    assert not (recipe.parent / "images").exists()
