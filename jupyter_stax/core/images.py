"""StaX images: labels, variants, cluster traits, and the rules that say which variant fits where.

Pure: no I/O besides :func:`detect_local_traits` (a look at this machine for the ``local``
cluster). Reading catalogs and images is :mod:`jupyter_stax.engine.catalog`'s job.

A StaX is a family of image variants (CPU x GPU x MPI ...) labelled in the ``org.hpe.staxs.``
namespace. A step's ``image`` names a variant (by name or reference) or a family; a family
resolves to the best variant that fits the step's cluster (:func:`resolve`). The rules, each one
a function of the variant's labels, the cluster's traits and the step:

=========  ===============================================================================
cpu        the variant's cpu equals the cluster's (``amd64`` = ``x86_64``, ``arm64`` = ``aarch64``)
gpu        a GPU variant (cuda, rocm) needs the cluster to offer that kind; ``none`` runs anywhere
mpi        hybrid MPI steps (launcher srun/mpirun): the image's MPI must work with the host's:
           the MPICH ABI family (mpich, cray-mpich, intel-mpi, mvapich) with any member of it,
           Open MPI only with Open MPI; an image without MPI is fine
kabi       when host libraries are injected (GPU driver libraries for a GPU variant; the host MPI
           for hybrid MPI steps on a cluster with ``container_options.host_mpi``) the image's
           glibc baseline must be at least the host's
=========  ===============================================================================

A label or trait that is not known is not checked (the result says so), never guessed.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InvalidWorkflow

LABEL_PREFIX = "org.hpe.staxs."
#: the StaX labels with a meaning for matching or display, in display order
KNOWN_LABELS = ("cpu", "gpu", "mpi", "kabi", "network", "os", "framework", "platform")
#: MPI implementations that share the MPICH ABI: one can stand in for another at run time
MPICH_ABI = frozenset({"mpich", "cray-mpich", "intel-mpi", "mvapich", "mvapich2", "impi"})
NO_GPU = "none"

_CPU_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le"}
_MPI_ALIASES = {
    "craympich": "cray-mpich",
    "cray_mpich": "cray-mpich",
    "intelmpi": "intel-mpi",
    "intel_mpi": "intel-mpi",
    "impi": "intel-mpi",
    "mvapich2": "mvapich",
    "open-mpi": "openmpi",
    "ompi": "openmpi",
}


def norm_cpu(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip().lower()
    return _CPU_ALIASES.get(v, v) or None


def norm_mpi(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip().lower()
    return _MPI_ALIASES.get(v, v) or None


def mpi_family(v: str | None) -> str | None:
    """``mpich-abi``, ``openmpi``, ``none`` or the name itself when unknown."""
    v = norm_mpi(v)
    if v is None:
        return None
    if v in MPICH_ABI:
        return "mpich-abi"
    return v


def version_tuple(v: str) -> tuple[int, ...]:
    """``"2.28"`` -> (2, 28); ValueError when it is not dotted numbers."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)*)\s*", str(v))
    if not m:
        raise ValueError(f"not a version number: {v!r}")
    return tuple(int(x) for x in m.group(1).split("."))


class _Model(BaseModel):
    # defer_build: a model's validator is built when it is first used, not at import (a
    # command that uses a few models, e.g. a cached `jupyter stax build`, pays for those only)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class StaxLabels(_Model):
    """The ``org.hpe.staxs.*`` labels of an image; any other label is kept in ``other``."""

    cpu: str | None = Field(None, description="CPU architecture, e.g. x86_64, aarch64")
    gpu: str | None = Field(None, description="none, cuda or rocm")
    mpi: str | None = Field(None, description="MPI inside the image: mpich, openmpi, none ...")
    kabi: str | None = Field(None, description="glibc baseline of the image, e.g. 2.28")
    network: str | None = Field(None, description="interconnect stack: none, ofi, ucx")
    os: str | None = None
    framework: str | None = None
    platform: str | None = None
    other: dict[str, str] = Field(
        default_factory=dict, description="every other label of the image (kept and shown)"
    )

    @field_validator("cpu", mode="after")
    @classmethod
    def _cpu(cls, v: str | None) -> str | None:
        return norm_cpu(v)

    @field_validator("mpi", "gpu", "network", mode="after")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.strip().lower() if v is not None else None

    @field_validator("kabi", mode="before")
    @classmethod
    def _kabi(cls, v: Any) -> Any:
        return None if v is None else str(v)

    @classmethod
    def parse(cls, labels: Mapping[str, Any] | None) -> StaxLabels:
        """From image labels (``org.hpe.staxs.cpu: x86_64``) or the short form (``cpu: x86_64``)
        of catalog files; values become strings."""
        known: dict[str, Any] = {}
        other: dict[str, str] = {}
        for k, v in (labels or {}).items():
            key = str(k)
            short = key[len(LABEL_PREFIX) :] if key.startswith(LABEL_PREFIX) else key
            if short in KNOWN_LABELS and (key.startswith(LABEL_PREFIX) or "." not in key):
                known[short] = None if v is None else str(v)
            elif short == "other" and isinstance(v, Mapping):
                other.update({str(a): str(b) for a, b in v.items()})
            else:
                other[key] = "" if v is None else str(v)
        return cls.model_validate({**known, "other": other})

    def as_labels(self) -> dict[str, str]:
        """Back to image labels: the known ones with their prefix, then the others."""
        out = {
            LABEL_PREFIX + k: str(getattr(self, k))
            for k in KNOWN_LABELS
            if getattr(self, k) is not None
        }
        out.update(self.other)
        return out


class StaxImage(_Model):
    """One variant of a StaX: an image reference a container runtime understands, and labels."""

    name: str = Field(description="variant name, unique in the catalog")
    family: str = Field(description="the StaX this variant belongs to")
    reference: str = Field(
        description="what the runtime runs: a directory, a .sif file, docker://..., oci:DIR:TAG"
    )
    digest: str | None = Field(None, description="content digest (sha256:...) where known")
    labels: StaxLabels = Field(default_factory=StaxLabels)
    source: str = Field("", description="the catalog source it comes from")
    kind: str | None = Field(None, description="dir, oci, sif, docker, squashfs ...")
    description: str | None = None
    recipe: str | None = Field(
        None,
        description="the build recipe file of its StaX family, where its catalog names one "
        "(written by jupyter stax build); a build for another cluster starts from it",
    )


class ResolvedImage(_Model):
    """What a step runs in, as recorded with the step (provenance)."""

    requested: str = Field(description="what the step named: family, variant or reference")
    name: str = Field(description="the variant chosen")
    family: str
    reference: str
    digest: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, description="the image's labels")
    runtime: str = Field(description="the container runtime that runs it")
    source: str = ""

    @classmethod
    def of(cls, requested: str, image: StaxImage, runtime: str) -> ResolvedImage:
        return cls(
            requested=requested,
            name=image.name,
            family=image.family,
            reference=image.reference,
            digest=image.digest,
            labels=image.labels.as_labels(),
            runtime=runtime,
            source=image.source,
        )

    @property
    def stax_labels(self) -> StaxLabels:
        return StaxLabels.parse(self.labels)


class ClusterTraits(_Model):
    """What a cluster's compute nodes offer (the clusters file's ``traits:``). Unset = unknown:
    the rules that need it are not checked (and say so)."""

    cpu: str | None = Field(None, description="CPU architecture of the compute nodes")
    gpu: list[str] = Field(
        default_factory=list, description="GPU kinds offered (cuda, rocm); [] or none: no GPUs"
    )
    mpi: str | None = Field(None, description="host MPI family: cray-mpich, mpich, openmpi ...")
    glibc: str | None = Field(None, description="host glibc version, e.g. 2.31")
    network: str | None = Field(None, description="interconnect: ofi, ucx, none")

    @field_validator("cpu", mode="after")
    @classmethod
    def _cpu(cls, v: str | None) -> str | None:
        return norm_cpu(v)

    @field_validator("mpi", mode="after")
    @classmethod
    def _mpi(cls, v: str | None) -> str | None:
        return norm_mpi(v)

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu(cls, v: Any) -> Any:
        if v is None or v is False:
            return []
        if isinstance(v, str):
            v = [x for x in re.split(r"[,\s]+", v) if x]
        if isinstance(v, list):
            return [str(x).strip().lower() for x in v if str(x).strip().lower() != NO_GPU]
        return v

    @field_validator("glibc", mode="before")
    @classmethod
    def _glibc(cls, v: Any) -> Any:
        if v is None:
            return v
        version_tuple(str(v))
        return str(v)

    def merged(self, detected: ClusterTraits) -> ClusterTraits:
        """These traits, with unset ones taken from ``detected``."""
        data = self.model_dump(exclude_unset=True)
        return detected.model_copy(update=data)


class ContainerOptions(_Model):
    """How the cluster's container runtime is called (the clusters file's
    ``container_options:``)."""

    binds: list[str] = Field(
        default_factory=list,
        description="extra bind mounts, SRC[:DST[:ro]] (the step and work directories are "
        "always bound)",
    )
    flags: list[str] = Field(default_factory=list, description="extra runtime flags")
    host_mpi: bool = Field(
        False,
        description="hybrid MPI steps use the host MPI injected into the container (podman-hpc "
        "/ sarus --mpi); then the image's kabi must be >= the host glibc",
    )
    command: str | None = Field(None, description="the runtime's executable (default: its name)")

    @field_validator("binds", mode="after")
    @classmethod
    def _binds(cls, v: list[str]) -> list[str]:
        for b in v:
            parse_bind(b)
        return v


@dataclass(frozen=True)
class Bind:
    src: str
    dst: str
    readonly: bool = False


def parse_bind(spec: str) -> Bind:
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ValueError(f"bind {spec!r}: use SRC, SRC:DST or SRC:DST:ro")
    src = parts[0]
    dst = parts[1] if len(parts) > 1 and parts[1] else src
    return Bind(src, dst, len(parts) == 3 and parts[2] == "ro")


# ---------------------------------------------------------------------- matching
Outcome = Literal["ok", "fail", "unchecked", "note"]


class RuleResult(_Model):
    rule: Literal["cpu", "gpu", "mpi", "kabi", "network"]
    outcome: Outcome
    message: str


class ImageFit(_Model):
    """A variant judged for one cluster."""

    image: StaxImage
    cluster: str
    fits: bool
    rules: list[RuleResult]

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.rules if r.outcome == "fail"]

    def reason(self) -> str:
        return "; ".join(r.message for r in self.failures) or "fits"


@dataclass(frozen=True)
class Need:
    """What a step asks of an image. ``hybrid_mpi`` None: no step yet (listing): MPI problems
    become notes ("not for hybrid MPI steps") instead of failures."""

    hybrid_mpi: bool | None = False
    gpus: bool = False


LISTING = Need(hybrid_mpi=None)


def judge(
    image: StaxImage,
    cluster: str,
    traits: ClusterTraits,
    need: Need = LISTING,
    *,
    host_mpi: bool = False,
) -> ImageFit:
    """Every rule for ``image`` on a cluster with ``traits``."""
    lab = image.labels
    rules: list[RuleResult] = []

    def add(rule: Any, outcome: Outcome, message: str) -> None:
        rules.append(RuleResult(rule=rule, outcome=outcome, message=message))

    # cpu
    if lab.cpu is None:
        add("cpu", "unchecked", "image has no cpu label")
    elif traits.cpu is None:
        add("cpu", "unchecked", f"cluster {cluster!r} does not say its cpu (traits.cpu)")
    elif lab.cpu == traits.cpu:
        add("cpu", "ok", f"cpu {lab.cpu}")
    else:
        add("cpu", "fail", f"cpu {lab.cpu} != {traits.cpu}")
    # gpu
    gpu = lab.gpu or NO_GPU
    offered = ", ".join(traits.gpu) or "none"
    if gpu == NO_GPU:
        add("gpu", "ok", "no GPU needed")
    elif gpu in traits.gpu:
        add("gpu", "ok", f"gpu {gpu} offered")
    else:
        add("gpu", "fail", f"gpu {gpu} not offered (cluster offers: {offered})")
    # mpi
    img_mpi, host = norm_mpi(lab.mpi), traits.mpi
    mpi_problem: str | None = None
    if img_mpi in (None, "none"):
        add(
            "mpi",
            "ok" if img_mpi else "unchecked",
            "no MPI in the image" if img_mpi else "image has no mpi label",
        )
    elif host in (None, "none"):
        add(
            "mpi",
            "unchecked",
            f"mpi {img_mpi}: cluster {cluster!r} names no host MPI (traits.mpi); "
            "the image's own MPI is used",
        )
    elif mpi_family(img_mpi) == mpi_family(host):
        add("mpi", "ok", f"mpi {img_mpi} works with host {host}")
    else:
        why = (
            "Open MPI cannot use the MPICH-ABI host MPI"
            if mpi_family(img_mpi) == "openmpi"
            else "the host's Open MPI cannot stand in for the MPICH ABI"
            if mpi_family(host) == "openmpi"
            else "different MPI families"
        )
        mpi_problem = f"mpi {img_mpi} is not compatible with host MPI {host} ({why})"
        if need.hybrid_mpi is None:
            add("mpi", "note", f"not for hybrid MPI steps: {mpi_problem}")
        elif need.hybrid_mpi:
            add("mpi", "fail", mpi_problem)
        else:
            add("mpi", "ok", f"single-task step: the image's own {img_mpi} is used")
    # kabi: host libraries injected?
    injected = []
    if gpu != NO_GPU and gpu in traits.gpu:
        injected.append(f"{gpu} driver libraries")
    if host_mpi and need.hybrid_mpi is not False and img_mpi not in (None, "none"):
        injected.append(f"host MPI {host or ''}".strip())
    if not injected:
        add("kabi", "ok", "no host libraries injected")
    elif lab.kabi is None or traits.glibc is None:
        missing = (
            "image has no kabi label"
            if lab.kabi is None
            else (f"cluster {cluster!r} does not say its glibc (traits.glibc)")
        )
        add("kabi", "unchecked", f"{' and '.join(injected)} injected; {missing}")
    else:
        try:
            ok = version_tuple(lab.kabi) >= version_tuple(traits.glibc)
        except ValueError as e:
            add("kabi", "unchecked", str(e))
        else:
            if ok:
                add("kabi", "ok", f"kabi {lab.kabi} >= host glibc {traits.glibc}")
            else:
                msg = (
                    f"kabi {lab.kabi} < host glibc {traits.glibc} "
                    f"({' and '.join(injected)} injected)"
                )
                only_mpi = gpu == NO_GPU
                if only_mpi and need.hybrid_mpi is None:
                    add("kabi", "note", f"not for hybrid MPI steps: {msg}")
                else:
                    add("kabi", "fail", msg)
    # network: informational
    if lab.network and traits.network and lab.network not in ("none", traits.network):
        add("network", "note", f"network {lab.network} in the image, {traits.network} on host")
    fits = not any(r.outcome == "fail" for r in rules)
    return ImageFit(image=image, cluster=cluster, fits=fits, rules=rules)


def _rank(fit: ImageFit, traits: ClusterTraits, need: Need) -> tuple[int, ...]:
    """Higher is better among fitting variants."""
    lab = fit.image.labels
    gpu = lab.gpu or NO_GPU
    checked = sum(1 for r in fit.rules if r.outcome == "ok")
    return (
        # a GPU step prefers a GPU variant, a CPU step a CPU one
        int((gpu != NO_GPU) == need.gpus),
        int(bool(lab.network) and lab.network == traits.network),
        int(norm_mpi(lab.mpi) == traits.mpi and traits.mpi is not None),
        checked,
        *(version_tuple(lab.kabi) if lab.kabi and re.fullmatch(r"[\d.]+", lab.kabi) else (0,)),
    )


class ImageNotFound(InvalidWorkflow):
    """The image named by a step is in no catalog and is no usable reference."""


class ImageMismatch(InvalidWorkflow):
    """No variant of the StaX named by a step can run on its cluster."""


def looks_like_reference(name: str) -> bool:
    """A path or a transport reference rather than a catalog name."""
    return "/" in name or name.startswith((".", "~")) or "://" in name or name.endswith(".sif")


def resolve(
    name: str,
    images: Sequence[StaxImage],
    cluster: str,
    traits: ClusterTraits,
    need: Need,
    *,
    host_mpi: bool = False,
) -> ImageFit:
    """The variant a step's ``image: name`` runs on ``cluster``.

    ``name`` is a variant name, a reference, or a family name. A named variant must fit (a
    clear error says which rule it fails); a family resolves to its best fitting variant, or
    :class:`ImageMismatch` listing every variant and the rule it fails.
    """
    exact = [i for i in images if name in (i.name, i.reference)]
    if exact:
        fit = judge(exact[0], cluster, traits, need, host_mpi=host_mpi)
        if not fit.fits:
            raise ImageMismatch(
                f"StaX image {exact[0].name!r} does not fit cluster {cluster!r}: {fit.reason()}",
                details=[_describe(exact[0])],
            )
        return fit
    family = [i for i in images if i.family == name]
    if not family:
        families = sorted({i.family for i in images})
        import difflib

        close = difflib.get_close_matches(name, families + [i.name for i in images], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(families) if families else "none: no catalog is configured"
        raise ImageNotFound(
            f"unknown StaX image {name!r}{hint}; StaX families: {known}. Name a family, a "
            "variant, or an image path/reference (see `jupyter stax images`)"
        )
    fits = [judge(i, cluster, traits, need, host_mpi=host_mpi) for i in family]
    good = [f for f in fits if f.fits]
    if good:
        return max(good, key=lambda f: _rank(f, traits, need))
    reasons = list(dict.fromkeys(r.message for f in fits for r in f.failures))
    raise ImageMismatch(
        f"no variant of StaX {name!r} fits cluster {cluster!r}: {'; '.join(reasons)} "
        f"(variants: {', '.join(f.image.name for f in fits)})",
        details=[f"{f.image.name}: {f.reason()}" for f in fits],
    )


def _describe(i: StaxImage) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in i.labels.model_dump(exclude={"other"}).items() if v)
    return f"{i.name} ({i.reference}): {labels or 'no StaX labels'}"


def step_need(launcher: str, ntasks: int | None, gpus: int | None) -> Need:
    return Need(hybrid_mpi=launcher in ("srun", "mpirun"), gpus=bool(gpus))


# ---------------------------------------------------------------------- this machine
_RUNTIME_PROBES = (
    ("apptainer", "apptainer"),
    ("singularity", "singularity"),
    ("charliecloud", "ch-run"),
    ("podman-hpc", "podman-hpc"),
    ("sarus", "sarus"),
    ("shifter", "shifter"),
    ("podman", "podman"),
)


def detect_local_traits() -> ClusterTraits:
    """This machine's traits: cpu, glibc, GPU kinds (device files), host MPI (commands)."""
    gpu = []
    if os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0"):
        gpu.append("cuda")
    if os.path.exists("/dev/kfd"):
        gpu.append("rocm")
    mpi = None
    if shutil.which("ompi_info"):
        mpi = "openmpi"
    elif shutil.which("mpichversion"):
        mpi = "mpich"
    libc, version = platform.libc_ver()
    return ClusterTraits(
        cpu=platform.machine() or None,
        gpu=gpu,
        mpi=mpi,
        glibc=version if libc == "glibc" and version else None,
    )


def detect_local_runtime(names: Iterable[str] | None = None) -> str | None:
    """The first container runtime installed here (apptainer, singularity, ch-run, ...)."""
    wanted = set(names) if names is not None else None
    for name, exe in _RUNTIME_PROBES:
        if (wanted is None or name in wanted) and shutil.which(exe):
            return name
    return None
