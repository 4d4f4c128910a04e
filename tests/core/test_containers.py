"""Golden tests: the exact command every container runtime renders, and the job script lines
that wrap a step in an image (single task, and hybrid MPI with the launcher on the host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_stax.core import jobscript as js
from jupyter_stax.core.containers import ContainerRun, builtin_runtimes, runtime_name, step_command
from jupyter_stax.core.images import Bind, ResolvedImage
from jupyter_stax.core.models import Cluster, Step

BINDS = (Bind("/scratch/runs", "/scratch/runs"), Bind("/data", "/in", readonly=True))
CMD = ["bash", "./stax.step.sh"]


def run(**kw: object) -> ContainerRun:
    base: dict[str, object] = {
        "image": "/img/app.sif",
        "command": CMD,
        "binds": BINDS,
        "workdir": "/scratch/runs/e1/s",
        "env": ("STAX_STEP", "STAX_PARAM_n"),
    }
    base.update(kw)
    return ContainerRun(**base)  # type: ignore[arg-type]


GOLDEN = {
    # runtime: (plain, cuda gpu, rocm gpu, hybrid with host MPI)
    "apptainer": (
        "apptainer exec -B /scratch/runs:/scratch/runs -B /data:/in:ro --pwd /scratch/runs/e1/s"
        " /img/app.sif bash ./stax.step.sh",
        "apptainer exec --nv -B /scratch/runs:/scratch/runs -B /data:/in:ro"
        " --pwd /scratch/runs/e1/s /img/app.sif bash ./stax.step.sh",
        "apptainer exec --rocm -B /scratch/runs:/scratch/runs -B /data:/in:ro"
        " --pwd /scratch/runs/e1/s /img/app.sif bash ./stax.step.sh",
        "apptainer exec -B /scratch/runs:/scratch/runs -B /data:/in:ro --pwd /scratch/runs/e1/s"
        " /img/app.sif bash ./stax.step.sh",
    ),
    "singularity": (
        "singularity exec -B /scratch/runs:/scratch/runs -B /data:/in:ro"
        " --pwd /scratch/runs/e1/s /img/app.sif bash ./stax.step.sh",
        "singularity exec --nv -B /scratch/runs:/scratch/runs -B /data:/in:ro"
        " --pwd /scratch/runs/e1/s /img/app.sif bash ./stax.step.sh",
        "singularity exec --rocm -B /scratch/runs:/scratch/runs -B /data:/in:ro"
        " --pwd /scratch/runs/e1/s /img/app.sif bash ./stax.step.sh",
        "singularity exec -B /scratch/runs:/scratch/runs -B /data:/in:ro"
        " --pwd /scratch/runs/e1/s /img/app.sif bash ./stax.step.sh",
    ),
    "charliecloud": (
        "ch-run -b /scratch/runs:/scratch/runs -b /data:/in -c /scratch/runs/e1/s /img/app.sif"
        " -- bash ./stax.step.sh",
    )
    * 4,  # no GPU flag (ch-fromhost injects GPU libraries beforehand), no MPI flag
    "podman": (
        "podman run --rm -v /scratch/runs:/scratch/runs -v /data:/in:ro -w /scratch/runs/e1/s"
        " -e STAX_STEP -e STAX_PARAM_n /img/app.sif bash ./stax.step.sh",
        "podman run --rm --device nvidia.com/gpu=all -v /scratch/runs:/scratch/runs"
        " -v /data:/in:ro -w /scratch/runs/e1/s -e STAX_STEP -e STAX_PARAM_n /img/app.sif"
        " bash ./stax.step.sh",
        "podman run --rm --device /dev/kfd --device /dev/dri -v /scratch/runs:/scratch/runs"
        " -v /data:/in:ro -w /scratch/runs/e1/s -e STAX_STEP -e STAX_PARAM_n /img/app.sif"
        " bash ./stax.step.sh",
        "podman run --rm -v /scratch/runs:/scratch/runs -v /data:/in:ro -w /scratch/runs/e1/s"
        " -e STAX_STEP -e STAX_PARAM_n /img/app.sif bash ./stax.step.sh",
    ),
    "podman-hpc": (
        "podman-hpc run --rm -v /scratch/runs:/scratch/runs -v /data:/in:ro"
        " -w /scratch/runs/e1/s -e STAX_STEP -e STAX_PARAM_n /img/app.sif bash ./stax.step.sh",
        "podman-hpc run --rm --gpu -v /scratch/runs:/scratch/runs -v /data:/in:ro"
        " -w /scratch/runs/e1/s -e STAX_STEP -e STAX_PARAM_n /img/app.sif bash ./stax.step.sh",
        "podman-hpc run --rm --gpu -v /scratch/runs:/scratch/runs -v /data:/in:ro"
        " -w /scratch/runs/e1/s -e STAX_STEP -e STAX_PARAM_n /img/app.sif bash ./stax.step.sh",
        "podman-hpc run --rm --mpi -v /scratch/runs:/scratch/runs -v /data:/in:ro"
        " -w /scratch/runs/e1/s -e STAX_STEP -e STAX_PARAM_n /img/app.sif bash ./stax.step.sh",
    ),
    "sarus": (
        "sarus run --mount=type=bind,source=/scratch/runs,destination=/scratch/runs"
        " --mount=type=bind,source=/data,destination=/in,readonly --workdir=/scratch/runs/e1/s"
        " --env=STAX_STEP --env=STAX_PARAM_n /img/app.sif bash ./stax.step.sh",
    )
    * 3
    + (
        "sarus run --mpi --mount=type=bind,source=/scratch/runs,destination=/scratch/runs"
        " --mount=type=bind,source=/data,destination=/in,readonly --workdir=/scratch/runs/e1/s"
        " --env=STAX_STEP --env=STAX_PARAM_n /img/app.sif bash ./stax.step.sh",
    ),
    "shifter": (
        "shifter --image=/img/app.sif --volume=/scratch/runs:/scratch/runs --volume=/data:/in:ro"
        " --workdir=/scratch/runs/e1/s bash ./stax.step.sh",
        "shifter --image=/img/app.sif --module=gpu --volume=/scratch/runs:/scratch/runs"
        " --volume=/data:/in:ro --workdir=/scratch/runs/e1/s bash ./stax.step.sh",
        "shifter --image=/img/app.sif --module=gpu --volume=/scratch/runs:/scratch/runs"
        " --volume=/data:/in:ro --workdir=/scratch/runs/e1/s bash ./stax.step.sh",
        "shifter --image=/img/app.sif --module=mpich --volume=/scratch/runs:/scratch/runs"
        " --volume=/data:/in:ro --workdir=/scratch/runs/e1/s bash ./stax.step.sh",
    ),
    "none": ("bash ./stax.step.sh",) * 4,
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_runtime_renders_the_exact_command(name: str) -> None:
    rt = builtin_runtimes()[name]
    plain, cuda, rocm, hybrid = GOLDEN[name]
    assert rt.render(run()) == plain
    assert rt.render(run(gpu="cuda")) == cuda
    assert rt.render(run(gpu="rocm")) == rocm
    assert rt.render(run(hybrid=True, host_mpi=True)) == hybrid


def test_every_runtime_has_a_golden() -> None:
    assert set(GOLDEN) == set(builtin_runtimes())


def test_hostile_paths_and_flags_are_quoted() -> None:
    r = run(image="/img/it's here; rm -rf ~", binds=(Bind("/a b", "/a b"),), flags=("--x=$(id)",))
    text = builtin_runtimes()["apptainer"].render(r)
    assert text == (
        "apptainer exec -B '/a b:/a b' --pwd /scratch/runs/e1/s '--x=$(id)' "
        "'/img/it'\"'\"'s here; rm -rf ~' bash ./stax.step.sh"
    )


def test_shifter_asks_slurm_for_the_image_and_others_do_not() -> None:
    assert builtin_runtimes()["shifter"].directives(run()) == {"slurm.image": "/img/app.sif"}
    assert builtin_runtimes()["apptainer"].directives(run()) == {}


def test_executable_and_extra_flags_come_from_the_cluster() -> None:
    r = run(executable="/opt/apptainer/bin/apptainer", flags=("--cleanenv",), binds=())
    assert builtin_runtimes()["apptainer"].render(r) == (
        "/opt/apptainer/bin/apptainer exec --pwd /scratch/runs/e1/s --cleanenv /img/app.sif "
        "bash ./stax.step.sh"
    )


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("ch-run", "charliecloud"),
        ("Apptainer", "apptainer"),
        ("podman_hpc", "podman-hpc"),
        (None, "none"),
        ("DOCKER", "podman"),
    ],
)
def test_runtime_spellings(spelling: str | None, name: str) -> None:
    assert runtime_name(spelling) == name


# ---------------------------------------------------------------------- in the job script
def plan(runtime: str, step: Step, cluster: Cluster, tmp: Path) -> js.ContainerPlan:
    image = ResolvedImage(
        requested="gromacs",
        name="gromacs-x86_64-cuda",
        family="gromacs",
        reference="/img/gromacs.sif",
        digest="sha256:abc",
        labels={"org.hpe.staxs.gpu": "cuda"},
        runtime=runtime,
    )
    return js.container_plan(
        builtin_runtimes()[runtime],
        image,
        step=step,
        cluster=cluster,
        params={"n": 1},
        step_dir=tmp / "runs" / "e1" / step.name,
        work_dir=tmp / "runs",
    )


def job(step: Step, cluster: Cluster, p: js.ContainerPlan, tmp: Path) -> list[str]:
    text = js.render_job_script(
        execution_id="e1",
        step=step,
        attempt=1,
        cluster=cluster,
        params={"n": 1},
        step_dir=tmp / "runs" / "e1" / step.name,
        execution_dir=tmp / "runs" / "e1",
        container=p,
    )
    return text.splitlines()


def test_single_task_step_runs_the_step_script_in_the_image(tmp_path: Path) -> None:
    step = Step(name="md", run="gmx mdrun", env={"OMP_NUM_THREADS": "4"})
    cluster = Cluster(
        name="hpc",
        scheduler="slurm",
        container_runtime="apptainer",
        container_options={"binds": ["/lus/data:/data:ro"]},
    )
    p = plan("apptainer", step, cluster, tmp_path)
    assert p.env == (
        *js.STAX_ENV,
        "OMP_NUM_THREADS",
        "STAX_PARAM_n",
    )
    lines = job(step, cluster, p, tmp_path)
    d, w = tmp_path / "runs" / "e1" / "md", tmp_path / "runs"
    inner = " ".join(step_command(js.STEP_SCRIPT))
    assert lines[-4] == (
        f"apptainer exec --nv -B {w}:{w} -B {d}:{d} -B /lus/data:/data:ro --pwd {d} "
        f"/img/gromacs.sif {inner}"
    )
    assert (
        lines[-5] == "# StaX image gromacs-x86_64-cuda (/img/gromacs.sif, sha256:abc) via apptainer"
    )


@pytest.mark.parametrize(("launcher", "prefix"), [("srun", "srun "), ("mpirun", "mpirun -n 4 ")])
def test_hybrid_mpi_keeps_the_launcher_on_the_host(
    launcher: str, prefix: str, tmp_path: Path
) -> None:
    step = Step(name="md", run="gmx_mpi mdrun", launcher=launcher, resources={"ntasks": 4})
    cluster = Cluster(
        name="hpc",
        scheduler="slurm",
        container_runtime="podman-hpc",
        container_options={"host_mpi": True},
    )
    lines = job(step, cluster, plan("podman-hpc", step, cluster, tmp_path), tmp_path)
    assert lines[-4].startswith(prefix + "podman-hpc run --rm --gpu --mpi -v ")


def test_charliecloud_sets_user_before_ch_run(tmp_path: Path) -> None:
    step = Step(name="s", run="true")
    cluster = Cluster(name="c", container_runtime="charliecloud")
    lines = job(step, cluster, plan("charliecloud", step, cluster, tmp_path), tmp_path)
    assert lines[-5] == 'export USER="${USER:-$(id -un)}"  # ch-run needs $USER'
    assert lines[-4].startswith("ch-run -b ")
