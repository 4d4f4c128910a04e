"""StaX variants built for real with Charliecloud's ch-image, offline, from a busybox-static base
the tests make: a 2 x 2 matrix whose RUN line writes the ARG values into the image, one variant
failing while the other three build, the labels written into each image, the build cache and
--force, an OCI base and OCI output, and the errors found before any build."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import Execution
from jupyter_stax.core.recipe import InvalidRecipe
from jupyter_stax.engine.builds import outputs
from jupyter_stax.engine.builds.builders import BuilderMissing
from jupyter_stax.engine.builds.run import Progress, plan_build, run_plan
from jupyter_stax.engine.catalog import Catalog
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.image_sources import CharliecloudDir, OciLayout

from ..images import BUSYBOX, charliecloud_image
from ..recipes import CONTAINERFILE, make_base, make_recipe
from .conftest import arun

pytestmark = pytest.mark.skipif(
    not (shutil.which("ch-image") and BUSYBOX.exists()) and not os.environ.get("CI"),
    reason="needs ch-image and busybox-static (apt-get install charliecloud-builders "
    "busybox-static)",
)


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    assert shutil.which("ch-image"), "CI needs ch-image (charliecloud-builders)"
    return tmp_path / "ch-storage"


def test_matrix_builds_with_one_failure_then_cache_and_force(tmp_path: Path, storage: Path) -> None:
    recipe = make_recipe(tmp_path / "r")
    seen: list[Progress] = []
    report = run_plan(plan_build(recipe, storage=storage), seen.append)
    by = {r.name: r for r in report.results}
    assert list(by) == [
        "solver-x86_64-none-none",
        "solver-x86_64-none-cuda",
        "solver-x86_64-mpich-none",
        "solver-x86_64-mpich-cuda",
    ]
    bad = by.pop("solver-x86_64-mpich-cuda")
    assert bad.status == "failed" and bad.message is not None
    assert "no CUDA for MPICH here" in bad.message  # the builder's last lines
    assert "no CUDA for MPICH here" in Path(bad.log).read_text()
    for name, r in by.items():
        assert r.status == "built", (name, r.message)
        mpi, gpu = name.split("-")[2:]
        img = Path(str(r.reference))
        # the RUN line ran in the image with the matrix values as build ARGs
        assert (img / "etc" / "stax-variant").read_text() == f"mpi={mpi} gpu={gpu}\n"
        assert "RUN echo" in Path(r.log).read_text()  # the builder's log, per variant
        meta = json.loads((img / "ch" / "metadata.json").read_text())
        assert meta["labels"] == r.labels
        assert r.labels["org.hpe.staxs.mpi"] == mpi and r.labels["org.hpe.staxs.gpu"] == gpu
        assert r.labels["org.hpe.staxs.cpu"] == "x86_64"
        assert r.labels["org.hpe.staxs.os"] == "BusyBox 1.35"  # from the image's os-release
        assert "org.hpe.staxs.kabi" not in r.labels  # busybox-static: no glibc, no guess
        assert r.labels["org.hpe.staxs.framework"] == "psij"
        assert r.size and r.size > 100_000 and r.digest and r.digest.startswith("sha256:")
        # the catalog's Charliecloud source reads the labels back
        read = CharliecloudDir(str(img)).images()[0]
        assert (read.labels.cpu, read.labels.mpi, read.labels.gpu) == ("x86_64", mpi, gpu)
    phases = [(p.variant, p.phase) for p in seen]
    assert ("solver-x86_64-none-none", "building") in phases
    assert ("solver-x86_64-mpich-cuda", "failed") in phases

    # unchanged: nothing is rebuilt (the failed one is tried again and fails again)
    again = run_plan(plan_build(recipe, storage=storage))
    assert [r.status for r in again.results] == ["cached", "cached", "cached", "failed"]
    assert [r.digest for r in again.results[:3]] == [r.digest for r in by.values()]

    # --force rebuilds; --variant picks
    forced = run_plan(plan_build(recipe, storage=storage, force=True, variants=["mpi=mpich"]))
    assert [(r.name, r.status) for r in forced.results] == [
        ("solver-x86_64-mpich-none", "built"),
        ("solver-x86_64-mpich-cuda", "failed"),
    ]

    # a changed Containerfile rebuilds
    cf = recipe.parent / "Containerfile"
    cf.write_text(CONTAINERFILE + "RUN echo changed > /etc/changed\n")
    changed = run_plan(plan_build(recipe, storage=storage, variants=["mpi=none", "gpu=none"]))
    assert [r.status for r in changed.results] == ["built"]
    assert (Path(str(changed.results[0].reference)) / "etc" / "changed").exists()


def test_oci_base_and_oci_output(tmp_path: Path, storage: Path) -> None:
    rootfs = make_base(tmp_path / "rootfs")
    layout = tmp_path / "base-oci"
    outputs.write_oci(rootfs, layout, "v1", {}, "x86_64")
    recipe = make_recipe(tmp_path / "r", base=f"{{x86_64: 'oci:{layout}:v1'}}")
    report = run_plan(plan_build(recipe, storage=storage, fmt="oci", variants=["mpi=mpich"]))
    r = report.results[0]
    assert (r.name, r.status) == ("solver-x86_64-mpich-none", "built"), r.message
    assert r.reference == f"oci:{recipe.parent / 'images' / r.name}:{r.name}"
    read = OciLayout(str(r.reference)).images()[0]
    assert read.digest == r.digest
    assert (read.labels.cpu, read.labels.mpi, read.labels.os) == ("x86_64", "mpich", "BusyBox 1.35")
    assert read.family == "solver"


def test_base_with_partial_charliecloud_metadata(tmp_path: Path, storage: Path) -> None:
    """A Charliecloud directory whose ch/metadata.json has only arch and labels (written by
    hand, as catalogs' images often are; ch-image's import fails on it) is staged once with the
    metadata ch-image needs; the base itself is left as it was. With a glibc in the base, the
    variant gets its kabi label."""
    base = charliecloud_image(tmp_path / "r" / "base")
    (base / "etc" / "os-release").write_text("NAME=BusyBox\n")
    # this host's glibc in the image: the variant's kabi label is its version
    libc = next(iter(Path("/lib").glob("*-linux-gnu/libc.so.6")), None)
    if libc is not None:
        (base / "lib" / libc.parent.name).mkdir(parents=True)
        shutil.copy2(libc, base / "lib" / libc.parent.name / "libc.so.6")
    before = (base / "ch" / "metadata.json").read_text()
    recipe = make_recipe(tmp_path / "r")
    report = run_plan(plan_build(recipe, storage=storage, variants=["mpi=none", "gpu=none"]))
    assert report.results[0].status == "built", report.results[0].message
    assert (base / "ch" / "metadata.json").read_text() == before
    img = Path(str(report.results[0].reference))
    assert (img / "etc" / "stax-variant").read_text() == "mpi=none gpu=none\n"
    if libc is not None:
        import platform

        want = ".".join(platform.libc_ver()[1].split(".")[:2])
        assert report.results[0].labels["org.hpe.staxs.kabi"] == want
        assert CharliecloudDir(str(img)).images()[0].labels.kabi == want


@pytest.mark.skipif(
    not shutil.which("buildah") or os.geteuid() != 0, reason="needs buildah, run as root"
)
def test_buildah_builder(tmp_path: Path, storage: Path) -> None:
    """The second built-in builder: the same recipe with buildah (chroot isolation, vfs)."""
    recipe = make_recipe(tmp_path / "r")
    plan = plan_build(
        recipe, storage=tmp_path / "buildah", builder="buildah", variants=["gpu=none"]
    )
    report = run_plan(plan)
    for r in report.results:
        assert r.status == "built", r.message
        mpi = r.values["mpi"]
        img = Path(str(r.reference))
        assert (img / "etc" / "stax-variant").read_text() == f"mpi={mpi} gpu=none\n"
        assert CharliecloudDir(str(img)).images()[0].labels.mpi == mpi
    assert "buildah" in Path(report.results[0].log).read_text()


@pytest.mark.parametrize(
    ("base", "error", "says"),
    [
        ("ch:nope", InvalidRecipe, "base 'ch:nope' does not exist"),
        ("docker://busybox", InvalidRecipe, "builds are offline"),
        ("{aarch64: 'ch:base'}", InvalidRecipe, "no base for x86_64"),
        ("oci:nope:v1", InvalidRecipe, "no OCI image layout"),
    ],
)
def test_errors_before_any_build(
    tmp_path: Path, storage: Path, base: str, error: type[Exception], says: str
) -> None:
    recipe = make_recipe(tmp_path / "r", base=base)
    with pytest.raises(error, match=says):
        plan_build(recipe, storage=storage)
    assert not (tmp_path / "r" / "images").exists()


def test_builder_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: Path) -> None:
    recipe = make_recipe(tmp_path / "r")
    if outputs.sif_tool() is None:
        with pytest.raises(BuilderMissing, match=r"needs apptainer .* install Apptainer"):
            plan_build(recipe, storage=storage, fmt="sif")
    with pytest.raises(InvalidRecipe, match="unknown output format 'tar'"):
        plan_build(recipe, storage=storage, fmt="tar")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuilderMissing, match="apt-get install charliecloud-builders"):
        plan_build(recipe, storage=storage)


# ---------------------------------------------------------------------- catalogued and run
@pytest.fixture
def built_catalog(
    stax_env: Path, storage: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list[str]]:
    """The recipe built for 'local' (one variant) and then its gpu=none variants (the one
    built before is cached), added to a catalog file that $JUPYTER_STAX_IMAGES names; a
    Slurm cluster whose host MPI is MPICH, with Charliecloud."""
    from jupyter_stax.engine.builds.catalogue import add_variants, visibility_note

    (stax_env / "clusters.yaml").write_text(
        "clusters:\n"
        "  local:\n"
        "    scheduler: local\n"
        "    traits: {mpi: none}\n"  # whatever MPI this machine has
        "  slurm:\n"
        "    scheduler: slurm\n"
        "    queue: debug\n"
        '    walltime: "00:10:00"\n'
        "    poll_interval: 1\n"
        "    container_runtime: charliecloud\n"
        "    traits: {cpu: x86_64, mpi: mpich}\n"
    )
    recipe = make_recipe(stax_env / "r")
    local = ClusterRegistry.load().get("local")
    built = run_plan(plan_build(recipe, storage=storage, cluster=("local", local.traits)))
    assert [(r.name, r.status) for r in built.results] == [("solver-x86_64-none-none", "built")]
    report = run_plan(plan_build(recipe, storage=storage, variants=["gpu=none"]))
    assert [r.status for r in report.results] == ["cached", "built"]
    catalog = stax_env / "catalog" / "images.yaml"
    assert visibility_note(catalog) is not None  # not configured yet: the CLI says so
    names = add_variants(report, catalog, "a solver, for tests")
    assert add_variants(report, catalog) == names  # again: replaced, not doubled
    monkeypatch.setenv("JUPYTER_STAX_IMAGES", str(catalog))
    assert visibility_note(catalog) is None
    return catalog, names


def test_a_step_runs_in_the_fitting_built_variant(
    cluster: str,
    stax_env: Path,
    built_catalog: tuple[Path, list[str]],
    engine_factory: Callable[..., Engine],
) -> None:
    wf = {
        "name": "built",
        "steps": [{"name": "probe", "image": "solver", "run": "cat /etc/stax-variant"}],
    }

    async def main() -> Execution:
        async with engine_factory(clusters=ClusterRegistry.load()) as eng:
            ex = await eng.submit(wf, cluster=cluster)
            return await eng.wait(ex.id, timeout=300)  # a shared, busy Slurm may queue it

    if cluster == "local":  # the catalog, once
        _, names = built_catalog
        assert names == ["solver-x86_64-none-none", "solver-x86_64-mpich-none"]
        cat = Catalog.load()
        assert cat.problems == []
        assert [(i.name, i.family, i.labels.mpi) for i in cat.images] == [
            ("solver-x86_64-none-none", "solver", "none"),
            ("solver-x86_64-mpich-none", "solver", "mpich"),
        ]
        assert all(i.digest and i.labels.os == "BusyBox 1.35" for i in cat.images)
        # the family names the recipe it was built from ("Build for cluster..." in the sidebar)
        assert {i.recipe for i in cat.images} == {str(stax_env / "r" / "stax.yaml")}
        listing = cat.listing(ClusterRegistry.load().get("slurm"))
        assert [i.fits for i in listing.images] == [True, True]
    ex = arun(main())
    probe = ex.step("probe")
    assert ex.state.value == "completed", (probe.state, probe.reason)
    # local names no host MPI: the variant without MPI; the Slurm cluster's host MPI is MPICH
    want = "mpi=none gpu=none" if cluster == "local" else "mpi=mpich gpu=none"
    assert Path(probe.stdout).read_text() == want + "\n"
    assert probe.resolved_image is not None
    assert probe.resolved_image.name == f"solver-x86_64-{want[4:].split()[0]}-none"


def test_a_distribution_python_tool_runs_with_the_distribution_python(tmp_path: Path) -> None:
    """Debian's ch-image (``#!/usr/bin/env python3``) runs with /usr/bin/python3 even when the
    first python3 on the PATH is another one (a venv's or pyenv's 3.13 broke it); other tools
    and tools outside /usr/bin run as they are."""
    from jupyter_stax.engine.builds.builders import distribution_tool

    exe = shutil.which("ch-image")
    assert exe is not None
    assert distribution_tool("ch-image") == ["/usr/bin/python3", exe]
    assert distribution_tool("ls") == ["ls"]  # not a Python script
    assert distribution_tool("no-such-tool-here") == ["no-such-tool-here"]
    mine = tmp_path / "bin" / "ch-image"
    mine.parent.mkdir()
    mine.write_text("#!/usr/bin/env python3\nprint('mine')\n")
    mine.chmod(0o755)
    os.environ["PATH"] = f"{mine.parent}:{os.environ['PATH']}"
    try:
        assert distribution_tool("ch-image") == ["ch-image"]  # not the distribution's: as it is
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(":", 1)[1]
