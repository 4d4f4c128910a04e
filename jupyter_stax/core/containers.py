"""Container runtimes: the exact command that runs a step (or one rank of it) in an image.

Each runtime renders a :class:`ContainerRun` into shell text: GPU flags, bind mounts (the step
directory and the work directory are always bound), the environment the step needs, the working
directory, and hybrid MPI (the launcher stays on the host and starts one container per rank, so
the runtime command comes AFTER ``srun``/``mpirun``). Every literal is quoted with
:func:`shlex.quote`; the command inside the container is given as shell words already rendered.

Built-in runtimes: apptainer, singularity, charliecloud (``ch-run``), podman, podman-hpc, sarus,
shifter, none. Others come from the entry-point group ``jupyter_stax.container_runtimes`` (a
class or instance with the :class:`ContainerRuntime` interface), loaded by
:mod:`jupyter_stax.engine.plugins`.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .images import Bind

q = shlex.quote


@dataclass(frozen=True)
class ContainerRun:
    """One container invocation. ``command``: shell words (already quoted/rendered)."""

    image: str
    command: Sequence[str]
    binds: Sequence[Bind] = ()
    workdir: str | None = None
    env: Sequence[str] = ()
    """names of environment variables the command needs from the host (values never appear)"""
    gpu: str | None = None
    """cuda or rocm when the image uses GPUs"""
    hybrid: bool = False
    """started once per rank by a launcher on the host"""
    host_mpi: bool = False
    """inject the host MPI (runtimes that can: podman-hpc, sarus, shifter)"""
    flags: Sequence[str] = ()
    executable: str | None = None


@dataclass
class ContainerRuntime:
    """Base class: subclasses set ``name`` and ``executable`` and implement :meth:`argv`."""

    name: str = "none"
    executable: str = ""
    description: str = ""
    passes_host_env: bool = True
    """the runtime passes the host environment into the container by default"""
    extra: dict[str, str] = field(default_factory=dict)

    def argv(self, run: ContainerRun) -> list[str]:
        """Literal words before ``run.command`` (quoted by :meth:`render`)."""
        raise NotImplementedError

    def preamble(self, run: ContainerRun) -> list[str]:
        """Shell lines the job script runs (on the host) before the launcher."""
        return []

    def directives(self, run: ContainerRun) -> dict[str, str]:
        """Scheduler attributes (PSI/J custom attributes) the job needs, e.g. shifter's
        ``#SBATCH --image``."""
        return {}

    def render(self, run: ContainerRun) -> str:
        words = [q(w) for w in self.argv(run)]
        return " ".join([*words, *run.command])

    def exe(self, run: ContainerRun) -> str:
        return run.executable or self.executable


class NoRuntime(ContainerRuntime):
    """``none``: run on the host as if there were no image (the image is only recorded)."""

    def __init__(self) -> None:
        super().__init__("none", "", "run on the host, no container")

    def argv(self, run: ContainerRun) -> list[str]:
        return []


class Apptainer(ContainerRuntime):
    """``apptainer exec [--nv|--rocm] -B SRC:DST[:ro] --pwd DIR IMAGE cmd``; the host environment
    passes through (no ``--cleanenv``)."""

    def __init__(self, name: str = "apptainer") -> None:
        super().__init__(name, name, f"{name} exec")

    def argv(self, run: ContainerRun) -> list[str]:
        out = [self.exe(run), "exec"]
        if run.gpu == "cuda":
            out.append("--nv")
        elif run.gpu == "rocm":
            out.append("--rocm")
        for b in run.binds:
            out += ["-B", f"{b.src}:{b.dst}" + (":ro" if b.readonly else "")]
        if run.workdir:
            out += ["--pwd", run.workdir]
        out += list(run.flags)
        out.append(run.image)
        return out


class Charliecloud(ContainerRuntime):
    """``ch-run -b SRC:DST -c DIR IMAGE -- cmd``. ch-run passes the environment through, binds
    /tmp and $HOME itself, cannot create bind targets in a read-only image (the target must exist
    in the image, or be under /tmp), has no GPU flag (GPU libraries are injected into the image
    beforehand with ch-fromhost) and needs ``$USER``."""

    def __init__(self) -> None:
        super().__init__("charliecloud", "ch-run", "Charliecloud ch-run")

    def argv(self, run: ContainerRun) -> list[str]:
        out = [self.exe(run)]
        for b in run.binds:
            out += ["-b", f"{b.src}:{b.dst}"]
        if run.workdir:
            out += ["-c", run.workdir]
        out += list(run.flags)
        out += [run.image, "--"]
        return out

    def preamble(self, run: ContainerRun) -> list[str]:
        return ['export USER="${USER:-$(id -un)}"  # ch-run needs $USER']


class Podman(ContainerRuntime):
    """``podman run --rm -v SRC:DST[:ro] -w DIR -e NAME IMAGE cmd``; podman-hpc adds ``--gpu``
    and ``--mpi``. The environment does not pass by default: each variable is passed by name
    (``-e NAME`` takes its value from the host)."""

    def __init__(self, name: str = "podman") -> None:
        super().__init__(name, name, f"{name} run", passes_host_env=False)

    def argv(self, run: ContainerRun) -> list[str]:
        out = [self.exe(run), "run", "--rm"]
        hpc = self.name == "podman-hpc"
        if run.gpu:
            if hpc:
                out.append("--gpu")
            elif run.gpu == "cuda":
                out += ["--device", "nvidia.com/gpu=all"]
            else:
                out += ["--device", "/dev/kfd", "--device", "/dev/dri"]
        if hpc and run.hybrid and run.host_mpi:
            out.append("--mpi")
        for b in run.binds:
            out += ["-v", f"{b.src}:{b.dst}" + (":ro" if b.readonly else "")]
        if run.workdir:
            out += ["-w", run.workdir]
        for name in run.env:
            out += ["-e", name]
        out += list(run.flags)
        out.append(run.image)
        return out


class Sarus(ContainerRuntime):
    """``sarus run [--mpi] --mount=type=bind,source=..,destination=.. --workdir=DIR
    --env=NAME IMAGE cmd``; GPUs come through Sarus' NVIDIA hook (no flag)."""

    def __init__(self) -> None:
        super().__init__("sarus", "sarus", "sarus run", passes_host_env=False)

    def argv(self, run: ContainerRun) -> list[str]:
        out = [self.exe(run), "run"]
        if run.hybrid and run.host_mpi:
            out.append("--mpi")
        for b in run.binds:
            m = f"--mount=type=bind,source={b.src},destination={b.dst}"
            out.append(m + (",readonly" if b.readonly else ""))
        if run.workdir:
            out.append(f"--workdir={run.workdir}")
        out += [f"--env={name}" for name in run.env]
        out += list(run.flags)
        out.append(run.image)
        return out


class Shifter(ContainerRuntime):
    """``shifter --image=IMG --volume=SRC:DST --workdir=DIR [--module=gpu|mpich] cmd``, plus
    ``#SBATCH --image=IMG`` so the image is prepared before the job starts."""

    def __init__(self) -> None:
        super().__init__("shifter", "shifter", "shifter")

    def argv(self, run: ContainerRun) -> list[str]:
        out = [self.exe(run), f"--image={run.image}"]
        modules = []
        if run.gpu:
            modules.append("gpu")
        if run.hybrid and run.host_mpi:
            modules.append("mpich")
        if modules:
            out.append("--module=" + ",".join(modules))
        for b in run.binds:
            out.append(f"--volume={b.src}:{b.dst}" + (":ro" if b.readonly else ""))
        if run.workdir:
            out.append(f"--workdir={run.workdir}")
        out += list(run.flags)
        return out

    def directives(self, run: ContainerRun) -> dict[str, str]:
        return {"slurm.image": run.image}


NONE = NoRuntime()
APPTAINER = Apptainer("apptainer")
SINGULARITY = Apptainer("singularity")
CHARLIECLOUD = Charliecloud()
PODMAN = Podman("podman")
PODMAN_HPC = Podman("podman-hpc")
SARUS = Sarus()
SHIFTER = Shifter()


def builtin_runtimes() -> dict[str, ContainerRuntime]:
    return {
        r.name: r
        for r in (NONE, APPTAINER, SINGULARITY, CHARLIECLOUD, PODMAN, PODMAN_HPC, SARUS, SHIFTER)
    }


#: spellings of runtime names accepted in clusters files and eFlows4HPC descriptions
RUNTIME_ALIASES: Mapping[str, str] = {
    "ch-run": "charliecloud",
    "ch": "charliecloud",
    "podman_hpc": "podman-hpc",
    "docker": "podman",
    "": "none",
}


def runtime_name(name: str | None) -> str:
    n = (name or "none").strip().lower()
    return RUNTIME_ALIASES.get(n, n)


#: shell words that run ``stax.step.sh`` inside the image: bash when the image has it, else
#: /bin/sh (busybox or alpine images), with a note on stderr
def step_command(step_script: str) -> list[str]:
    inner = (
        f"if command -v bash >/dev/null 2>&1; then exec bash ./{step_script}; fi; "
        f"echo 'jupyter_stax: no bash in the image; running the step with /bin/sh' >&2; "
        f"exec /bin/sh ./{step_script}"
    )
    return ["/bin/sh", "-c", q(inner)]
