"""The StaX catalog: every configured source read into one list of images, and the
resolution of a step's ``image`` for its cluster.

Sources are specs (see :mod:`.image_sources`) from ``StaxApp.image_catalogs``, else
``$JUPYTER_STAX_IMAGES``, else ``stax/images.yaml`` in the Jupyter config directory when it
exists. A source that cannot be read is reported once in :attr:`Catalog.problems` and the
others still count.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.api import ImageInfo, ImageList, ImageSourceStatus
from ..core.containers import ContainerRuntime
from ..core.errors import InvalidWorkflow, StaxError
from ..core.images import (
    LISTING,
    ImageFit,
    Need,
    ResolvedImage,
    StaxImage,
    judge,
    looks_like_reference,
    resolve,
)
from ..core.models import Cluster
from . import plugins
from .image_sources import SourceUnavailable, env_specs, source_classes, source_for

log = logging.getLogger("jupyter_stax.catalog")

DEFAULT_FILE = "images.yaml"


def default_specs() -> list[str]:
    env = env_specs()
    if env is not None:
        return env
    from jupyter_core.paths import jupyter_config_dir

    f = Path(jupyter_config_dir()) / "stax" / DEFAULT_FILE
    return [str(f)] if f.exists() else []


@dataclass
class Catalog:
    images: list[StaxImage] = field(default_factory=list)
    sources: list[ImageSourceStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, specs: Sequence[str] | None = None) -> Catalog:
        cat = cls()
        source_classes()  # load the plug-ins now: a broken one is reported below
        seen: dict[str, str] = {}
        for spec in default_specs() if specs is None else specs:
            src_cls = source_for(spec)
            status = ImageSourceStatus(spec=spec, kind=src_cls.kind if src_cls else None)
            cat.sources.append(status)
            if src_cls is None:
                status.problem = (
                    f"no image source reads {spec!r}: use a catalog file (.yaml), oci:DIR, "
                    "ch:DIR, sif:PATH or docker://REF"
                )
                cat.problems.append(status.problem)
                continue
            try:
                src = src_cls(spec)
                found = src.images()
                for problem in src.problems:
                    status.problem = problem
                    cat.problems.append(problem)
            except StaxError as e:
                status.problem = e.message
                cat.problems.append(e.message)
                continue
            except Exception as e:  # a plug-in's bug must not break the catalog
                status.problem = f"image source {src_cls.kind} failed on {spec!r}: {e}"
                log.exception("%s", status.problem)
                cat.problems.append(status.problem)
                continue
            for img in found:
                if img.name in seen:
                    cat.problems.append(
                        f"variant name {img.name!r} of {spec!r} is already used by "
                        f"{seen[img.name]!r}; the second one is left out"
                    )
                    continue
                seen[img.name] = spec
                cat.images.append(img)
                status.images += 1
        cat.problems = list(dict.fromkeys(cat.problems + plugins.problems()))
        return cat

    # ------------------------------------------------------------------ matching
    def lookup(self, name: str) -> list[StaxImage]:
        """The catalog's images, plus ``name`` read directly when it is a reference that is not
        in the catalog (a path to a Charliecloud directory, an OCI layout, a SIF file ...)."""
        if any(name in (i.name, i.reference, i.family) for i in self.images):
            return self.images
        pinned = self._pinned(name)
        if pinned is not None:
            return [*self.images, pinned]
        if not looks_like_reference(name):
            return self.images
        src_cls = source_for(name)
        img: StaxImage | None = None
        if src_cls is not None:
            try:
                img = src_cls(name).inspect(name)
            except SourceUnavailable:
                img = None
        if img is None:
            img = StaxImage(name=name, family=name, reference=name, source="(step)")
        img = img.model_copy(update={"name": name}) if img.reference != name else img
        return [*self.images, img]

    def _pinned(self, name: str) -> StaxImage | None:
        """The catalog's variant a registry reference pinned by digest names (what a re-run
        writes, ``REPO@sha256:..``: :func:`~..core.rerun.pinned_reference`), with that
        reference: the re-run keeps the variant's name, family and labels."""
        from ..core.rerun import registry_reference

        ref = registry_reference(name)
        if ref is None or ref.digest is None:
            return None
        for img in self.images:
            mine = registry_reference(img.reference)
            if img.digest == ref.digest and mine is not None and mine.repository == ref.repository:
                return img.model_copy(update={"reference": name})
        return None

    def resolve(
        self, name: str, cluster: Cluster, need: Need, runtime: str
    ) -> tuple[ResolvedImage, ImageFit]:
        fit = resolve(
            name,
            self.lookup(name),
            cluster.name,
            cluster.traits,
            need,
            host_mpi=cluster.container_options.host_mpi,
        )
        return ResolvedImage.of(name, fit.image, runtime), fit

    def listing(self, cluster: Cluster | None) -> ImageList:
        infos = []
        for img in self.images:
            info = ImageInfo.model_validate(img.model_dump())
            if cluster is not None:
                fit = judge(
                    img,
                    cluster.name,
                    cluster.traits,
                    LISTING,
                    host_mpi=cluster.container_options.host_mpi,
                )
                info.fits, info.rules = fit.fits, fit.rules
            infos.append(info)
        note = None
        if not self.sources:
            note = (
                "no image catalog is configured: set c.StaxApp.image_catalogs, "
                "$JUPYTER_STAX_IMAGES, or write stax/images.yaml in the Jupyter config directory"
            )
        return ImageList(
            cluster=cluster.name if cluster else None,
            runtime=cluster.container_runtime if cluster else None,
            traits=cluster.traits if cluster else None,
            images=infos,
            sources=self.sources,
            problems=self.problems,
            note=note,
        )


def runtime_for(cluster: Cluster, name: str | None = None) -> ContainerRuntime:
    """The container runtime object of ``name`` (default: the cluster's), or InvalidWorkflow
    saying how to configure one."""
    rt_name = name or cluster.container_runtime
    if rt_name is None:
        raise InvalidWorkflow(
            f"cluster {cluster.name!r} has no container runtime: set container_runtime "
            f"(one of {', '.join(sorted(plugins.runtimes()))}) in the clusters file"
        )
    rt = plugins.runtime(rt_name)
    if rt is None:
        raise InvalidWorkflow(
            f"cluster {cluster.name!r}: unknown container runtime {rt_name!r}; known: "
            f"{', '.join(sorted(plugins.runtimes()))}"
        )
    return rt
