"""Matching StaX variants to clusters: a table over variants x cluster traits, the best-variant
choice for a family, and no-fit errors that name the failing rule."""

from __future__ import annotations

import pytest

from jupyter_stax.core.images import (
    LISTING,
    ClusterTraits,
    ImageMismatch,
    ImageNotFound,
    Need,
    StaxImage,
    StaxLabels,
    judge,
    resolve,
)
from jupyter_stax.core.models import Cluster


def variant(name: str, **labels: str) -> StaxImage:
    return StaxImage(
        name=name, family="gromacs", reference=f"/img/{name}.sif", labels=StaxLabels(**labels)
    )


X86_CPU = variant("x86-cpu", cpu="x86_64", gpu="none", mpi="mpich", kabi="2.28")
X86_CUDA = variant("x86-cuda", cpu="x86_64", gpu="cuda", mpi="mpich", kabi="2.28")
X86_OMPI = variant("x86-ompi", cpu="x86_64", gpu="none", mpi="openmpi", kabi="2.34")
ARM_CPU = variant("arm-cpu", cpu="aarch64", gpu="none", mpi="mpich", kabi="2.28")
X86_ROCM_OLD = variant("x86-rocm", cpu="x86_64", gpu="rocm", mpi="mpich", kabi="2.17")

PERLMUTTER = ClusterTraits(cpu="x86_64", gpu=["cuda"], mpi="cray-mpich", glibc="2.31")
GRACE = ClusterTraits(cpu="aarch64", gpu=["cuda"], mpi="openmpi", glibc="2.34")
FRONTIER = ClusterTraits(cpu="amd64", gpu="rocm", mpi="cray-mpich", glibc="2.31")
LAPTOP = ClusterTraits(cpu="x86_64")
SINGLE = Need(hybrid_mpi=False)
HYBRID = Need(hybrid_mpi=True)

# variant, traits, need, host_mpi injected, fits, the failing rule's message (or None)
TABLE = [
    (X86_CPU, PERLMUTTER, SINGLE, False, True, None),
    (
        X86_CPU,
        PERLMUTTER,
        HYBRID,
        True,
        False,
        "kabi 2.28 < host glibc 2.31 (host MPI cray-mpich injected)",
    ),
    (X86_CPU, PERLMUTTER, HYBRID, False, True, None),
    (
        X86_CUDA,
        PERLMUTTER,
        SINGLE,
        False,
        False,
        "kabi 2.28 < host glibc 2.31 (cuda driver libraries injected)",
    ),
    (X86_CUDA, LAPTOP, SINGLE, False, False, "gpu cuda not offered (cluster offers: none)"),
    (X86_OMPI, PERLMUTTER, SINGLE, False, True, None),
    (
        X86_OMPI,
        PERLMUTTER,
        HYBRID,
        False,
        False,
        "mpi openmpi is not compatible with host MPI "
        "cray-mpich (Open MPI cannot use the MPICH-ABI host MPI)",
    ),
    (ARM_CPU, PERLMUTTER, SINGLE, False, False, "cpu aarch64 != x86_64"),
    (ARM_CPU, GRACE, SINGLE, False, True, None),
    (
        ARM_CPU,
        GRACE,
        HYBRID,
        False,
        False,
        "mpi mpich is not compatible with host MPI openmpi "
        "(the host's Open MPI cannot stand in for the MPICH ABI)",
    ),
    (X86_CPU, GRACE, SINGLE, False, False, "cpu x86_64 != aarch64"),
    (
        X86_ROCM_OLD,
        FRONTIER,
        SINGLE,
        False,
        False,
        "kabi 2.17 < host glibc 2.31 (rocm driver libraries injected)",
    ),
    (X86_ROCM_OLD, PERLMUTTER, SINGLE, False, False, "gpu rocm not offered (cluster offers: cuda)"),
    (X86_OMPI, LAPTOP, HYBRID, False, True, None),  # host MPI unknown: unchecked, not refused
]


@pytest.mark.parametrize(
    ("image", "traits", "need", "host_mpi", "fits", "failure"),
    TABLE,
    ids=[f"{t[0].name}-{i}" for i, t in enumerate(TABLE)],
)
def test_rules_over_variants_and_cluster_traits(
    image: StaxImage,
    traits: ClusterTraits,
    need: Need,
    host_mpi: bool,
    fits: bool,
    failure: str | None,
) -> None:
    fit = judge(image, "c", traits, need, host_mpi=host_mpi)
    assert fit.fits is fits, fit.rules
    assert fit.reason() == (failure or "fits")


def test_unknown_traits_are_unchecked_and_said() -> None:
    fit = judge(X86_OMPI, "c", ClusterTraits(), HYBRID)
    outcomes = {r.rule: (r.outcome, r.message) for r in fit.rules}
    assert fit.fits
    assert outcomes["cpu"] == ("unchecked", "cluster 'c' does not say its cpu (traits.cpu)")
    assert outcomes["mpi"][0] == "unchecked"


def test_listing_turns_hybrid_only_problems_into_notes() -> None:
    fit = judge(X86_OMPI, "perlmutter", PERLMUTTER, LISTING)
    assert fit.fits
    assert [r.message for r in fit.rules if r.outcome == "note"] == [
        "not for hybrid MPI steps: mpi openmpi is not compatible with host MPI cray-mpich "
        "(Open MPI cannot use the MPICH-ABI host MPI)"
    ]


FAMILY = [X86_CPU, X86_CUDA, X86_OMPI, ARM_CPU]


@pytest.mark.parametrize(
    ("traits", "need", "chosen"),
    [
        (
            ClusterTraits(cpu="x86_64", gpu="cuda", mpi="mpich", glibc="2.17"),
            Need(gpus=True),
            "x86-cuda",
        ),
        (ClusterTraits(cpu="x86_64", gpu="cuda", mpi="mpich", glibc="2.17"), SINGLE, "x86-cpu"),
        (ClusterTraits(cpu="x86_64", mpi="openmpi"), HYBRID, "x86-ompi"),
        (ClusterTraits(cpu="x86_64", mpi="cray-mpich"), HYBRID, "x86-cpu"),
        (GRACE, SINGLE, "arm-cpu"),
    ],
)
def test_a_family_resolves_to_the_best_fitting_variant(
    traits: ClusterTraits, need: Need, chosen: str
) -> None:
    assert resolve("gromacs", FAMILY, "c", traits, need).image.name == chosen


def test_no_fit_error_names_every_variant_and_its_rule() -> None:
    with pytest.raises(ImageMismatch) as e:
        resolve("gromacs", [ARM_CPU], "perlmutter", PERLMUTTER, SINGLE)
    assert e.value.message == (
        "no variant of StaX 'gromacs' fits cluster 'perlmutter': cpu aarch64 != x86_64 "
        "(variants: arm-cpu)"
    )
    with pytest.raises(ImageMismatch) as e:
        resolve("gromacs", [ARM_CPU, X86_OMPI], "perlmutter", PERLMUTTER, HYBRID)
    assert e.value.details == [
        "arm-cpu: cpu aarch64 != x86_64",
        "x86-ompi: mpi openmpi is not compatible with host MPI cray-mpich (Open MPI cannot use "
        "the MPICH-ABI host MPI)",
    ]
    assert e.value.http_status == 400


def test_a_named_variant_must_fit_and_an_unknown_name_gets_a_hint() -> None:
    with pytest.raises(ImageMismatch, match="StaX image 'arm-cpu' does not fit cluster 'p': cpu"):
        resolve("arm-cpu", FAMILY, "p", PERLMUTTER, SINGLE)
    assert resolve("/img/x86-cpu.sif", FAMILY, "p", PERLMUTTER, SINGLE).image is X86_CPU
    with pytest.raises(
        ImageNotFound,
        match=r"unknown StaX image 'gromac' \(did you mean "
        r"'gromacs'\?\); StaX families: gromacs",
    ):
        resolve("gromac", FAMILY, "p", PERLMUTTER, SINGLE)


def test_labels_parse_both_spellings_and_keep_unknown_ones() -> None:
    lab = StaxLabels.parse(
        {
            "org.hpe.staxs.cpu": "amd64",
            "mpi": "Cray-MPICH",
            "org.hpe.staxs.colour": "blue",
            "maintainer": "me",
            "kabi": 2.28,
        }
    )
    assert (lab.cpu, lab.mpi, lab.kabi) == ("x86_64", "cray-mpich", "2.28")
    assert lab.other == {"org.hpe.staxs.colour": "blue", "maintainer": "me"}
    assert StaxLabels.parse(lab.as_labels()) == lab


def test_cluster_traits_in_the_clusters_file_are_typed_and_checked() -> None:
    c = Cluster.model_validate(
        {
            "name": "p",
            "traits": {"cpu": "x86_64", "gpu": "cuda, rocm", "glibc": "2.31"},
            "container_runtime": "Apptainer",
            "container_options": {"binds": ["/a:/b:ro"]},
        }
    )
    assert c.traits.gpu == ["cuda", "rocm"] and c.container_runtime == "apptainer"
    with pytest.raises(ValueError, match="not a version number"):
        Cluster.model_validate({"name": "p", "traits": {"glibc": "new"}})
    with pytest.raises(ValueError, match="use SRC, SRC:DST or SRC:DST:ro"):
        Cluster.model_validate({"name": "p", "container_options": {"binds": ["/a:/b:rx"]}})
    with pytest.raises(ValueError, match="Extra inputs"):
        Cluster.model_validate({"name": "p", "traits": {"cpus": "x86_64"}})


def test_local_cluster_detects_its_traits_and_runtime() -> None:
    import platform
    import shutil

    from jupyter_stax.core.clusters import ClusterRegistry

    local = ClusterRegistry().get("local")
    assert local.traits.cpu == platform.machine()
    assert local.traits.glibc == platform.libc_ver()[1]
    if shutil.which("ch-run") and not shutil.which("apptainer"):
        assert local.container_runtime == "charliecloud"
    # configured traits win over detected ones
    mine = ClusterRegistry([Cluster(name="local", traits={"gpu": "cuda"})]).get("local")
    assert mine.traits.gpu == ["cuda"] and mine.traits.cpu == platform.machine()
