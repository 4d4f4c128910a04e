"""A StaX build recipe the build tests make: a busybox-static base directory (no network), a
Containerfile whose RUN line writes the matrix values (build ARGs) into the image and fails for
mpi=mpich x gpu=cuda, and a 2 x 2 matrix."""

from __future__ import annotations

import shutil
from pathlib import Path

from .images import charliecloud_image

CONTAINERFILE = """\
FROM base
ARG mpi=none
ARG gpu=none
RUN echo "mpi=$mpi gpu=$gpu" > /etc/stax-variant
RUN if [ "$mpi-$gpu" = mpich-cuda ]; then echo "no CUDA for MPICH here" >&2; exit 3; fi
"""


def make_base(d: Path) -> Path:
    """A busybox-static root file system directory with an /etc/os-release (no glibc)."""
    charliecloud_image(d)
    shutil.rmtree(d / "ch")  # a plain root file system, as a user's base directory is
    (d / "etc" / "os-release").write_text('NAME="BusyBox"\nVERSION_ID=1.35\n')
    return d


def make_recipe(d: Path, base: str = "ch:base", extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "base").exists():
        make_base(d / "base")
    (d / "Containerfile").write_text(CONTAINERFILE)
    (d / "stax.yaml").write_text(
        "stax: solver\n"
        "description: a solver, for tests\n"
        f"base: {base}\n"
        "matrix:\n  mpi: [none, mpich]\n  gpu: [none, cuda]\n"
        "labels: {framework: psij, platform: jupyter}\n"
        "output: images\n" + extra
    )
    return d / "stax.yaml"
