"""StaX images run for real: Charliecloud's ch-run on a busybox image the tests build, as a
``local`` step, as a Slurm job, and as a 2-rank ``srun`` step on the two-node Slurm (the launcher
on the host, one container per rank). Each step prints the image's marker file, which exists only
inside the image."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.images import ImageMismatch
from jupyter_stax.core.models import StepState
from jupyter_stax.engine.engine import Engine

from ..conftest import slurm_nodes
from ..images import LABELS, MARKER, busybox_available, charliecloud_image, oci_layout
from .conftest import arun

pytestmark = pytest.mark.skipif(
    not busybox_available() and not os.environ.get("CI"),
    reason="needs ch-run and busybox-static (apt-get install charliecloud-runtime busybox-static)",
)


@pytest.fixture
def stax(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A catalog with the StaX 'busy' (an x86_64 variant that runs, an aarch64 one that never
    fits here), the clusters file with charliecloud on Slurm, and the images."""
    assert busybox_available(), "CI needs ch-run and busybox-static"
    img = charliecloud_image(stax_env / "images" / "busy-x86")
    layout, _ = oci_layout(stax_env / "images" / "busy-oci")
    (stax_env / "images.yaml").write_text(
        "stax:\n"
        "  busy:\n"
        "    description: busybox, for tests\n"
        "    variants:\n"
        f"      - image: {img}\n"  # labels read from ch/metadata.json
        "      - name: busy-arm\n"
        f"        image: {img}-arm\n"
        "        labels: {cpu: aarch64, mpi: none}\n"
    )
    monkeypatch.setenv("JUPYTER_STAX_IMAGES", f"{stax_env / 'images.yaml'};oci:{layout}")
    (stax_env / "clusters.yaml").write_text(
        "clusters:\n"
        "  slurm:\n"
        "    scheduler: slurm\n"
        "    queue: debug\n"
        '    walltime: "00:10:00"\n'
        "    poll_interval: 1\n"
        "    container_runtime: charliecloud\n"
        "    traits: {cpu: x86_64, mpi: none}\n"
    )
    monkeypatch.delenv("USER", raising=False)  # the job script sets it for ch-run
    return img


def _run(engine_factory: Callable[..., Engine], wf: dict[str, object], cluster: str) -> object:
    async def main() -> object:
        async with engine_factory(clusters=ClusterRegistry.load()) as eng:
            ex = await eng.submit(wf, cluster=cluster)
            return await eng.wait(ex.id, timeout=120)

    return arun(main())


PROBE = (
    'cat /etc/stax-marker; echo "step={{word}} rank=${SLURM_PROCID:-0}"; '
    "pwd; test -f ../prep/from-host && echo host-file-seen"
)


def test_step_runs_inside_the_image_locally_and_on_slurm(
    cluster: str, stax: Path, engine_factory: Callable[..., Engine]
) -> None:
    wf = {
        "name": "in-stax",
        "params": {"word": "x; echo INJECTED"},
        "steps": [
            {"name": "prep", "run": "touch from-host; test ! -f /etc/stax-marker && echo host"},
            {"name": "probe", "after": ["prep"], "image": "busy", "run": PROBE},
        ],
    }
    ex = _run(engine_factory, wf, cluster)
    assert ex.state.value == "completed", [(s.name, s.state, s.reason) for s in ex.steps]
    prep, probe = ex.step("prep"), ex.step("probe")
    assert Path(prep.stdout).read_text() == "host\n"
    out = Path(probe.stdout).read_text().splitlines()
    assert out[0] == MARKER  # /etc/stax-marker exists only in the image
    assert out[1] == "step=x; echo INJECTED rank=0"
    assert out[2] == probe.directory and out[3] == "host-file-seen"  # step + work dir bound
    # busybox has no bash: the step ran with /bin/sh and said so
    assert "no bash in the image" in Path(probe.stderr).read_text()
    # provenance: the variant chosen for this cluster, its reference and labels
    r = probe.resolved_image
    assert r is not None and r.requested == "busy" and r.name == "busy-x86_64"
    assert r.reference == str(stax) and r.runtime == "charliecloud"
    assert r.labels["org.hpe.staxs.cpu"] == "x86_64" and r.labels == LABELS
    job = Path(probe.directory, "stax.job.sh").read_text()
    assert f"ch-run -b {Path(probe.directory).parents[1]}:" in job
    assert "# StaX image busy-x86_64" in job


@pytest.mark.slurm
def test_two_rank_srun_step_runs_one_container_per_rank(
    slurm: str, stax: Path, engine_factory: Callable[..., Engine]
) -> None:
    if slurm_nodes() < 2:
        pytest.skip("needs the two-node Slurm (SLURM_NODES=2)")
    wf = {
        "name": "hybrid",
        "steps": [
            {
                "name": "ranks",
                "image": "busy",
                "launcher": "srun",
                "resources": {"nodes": 2, "ntasks": 2},
                "run": 'echo "$(cat /etc/stax-marker) rank=$SLURM_PROCID node=$SLURMD_NODENAME '
                'pid=$$"',
            }
        ],
    }
    ex = _run(engine_factory, wf, "slurm")
    s = ex.step("ranks")
    assert s.state is StepState.COMPLETED, (s.reason, Path(s.stderr).read_text())
    lines = sorted(Path(s.stdout).read_text().splitlines())
    assert [ln.split()[:2] for ln in lines] == [[MARKER, "rank=0"], [MARKER, "rank=1"]]
    assert len({ln.split()[2] for ln in lines}) == 2  # two nodes
    job = Path(s.directory, "stax.job.sh").read_text()
    assert "\nsrun ch-run " in job  # the launcher on the host, ch-run per rank


def test_no_fitting_variant_is_refused_before_submission(
    stax: Path, engine_factory: Callable[..., Engine], stax_env: Path
) -> None:
    wf = {"name": "arm", "steps": [{"name": "a", "image": "busy-arm", "run": "true"}]}
    with pytest.raises(ImageMismatch) as e:
        _run(engine_factory, wf, "local")
    assert str(e.value).startswith(
        "step 'a': StaX image 'busy-arm' does not fit cluster 'local': cpu aarch64 != x86_64"
    )
    wf = {"name": "x", "steps": [{"name": "a", "image": "bussy", "run": "true"}]}
    with pytest.raises(InvalidWorkflow, match=r"unknown StaX image 'bussy' \(did you mean"):
        _run(engine_factory, wf, "local")
    assert not list((stax_env / "runs").glob("*/a")) if (stax_env / "runs").exists() else True


def test_a_path_to_an_image_not_in_the_catalog_runs_with_its_own_labels(
    stax: Path, engine_factory: Callable[..., Engine], stax_env: Path
) -> None:
    other = charliecloud_image(
        stax_env / "elsewhere" / "img", labels={"org.hpe.staxs.cpu": "x86_64"}, marker="other"
    )
    wf = {
        "name": "direct",
        "steps": [{"name": "a", "image": str(other), "run": "cat /etc/stax-marker"}],
    }
    ex = _run(engine_factory, wf, "local")
    a = ex.step("a")
    assert a.state is StepState.COMPLETED, a.reason
    assert Path(a.stdout).read_text() == "other\n"
    assert a.resolved_image is not None
    assert a.resolved_image.labels == {"org.hpe.staxs.cpu": "x86_64"}


def test_ch_run_is_on_the_path() -> None:
    assert shutil.which("ch-run")
