"""Building StaX variants (issue 18) as an operation every surface shares: the CLI's
``jupyter stax build``, the REST API's ``POST stax/api/builds`` (eFlows4HPC's image-creation
shape: an id, then ``PENDING | BUILDING | CONVERTING | FINISHED | FAILED``) and ``%stax build``.

:func:`build_now` plans (every check before any build), builds, and adds the built variants to
a catalog file in one step. :class:`BuildJobs` runs builds in the background for the REST API:
the plan is made (and refused) in the request, the build runs on a thread, one at a time.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import NotFound, StaxError
from ..core.images import LABEL_PREFIX
from ..engine.builds.run import BuildReport, Plan, Progress, VariantResult, plan_build, run_plan

if TYPE_CHECKING:
    from ..core.clusters import ClusterRegistry

BuildState = Literal["PENDING", "BUILDING", "CONVERTING", "FINISHED", "FAILED"]
#: the builder's log lines a background build keeps in memory (the full logs are files)
LOG_LINES = 2000


class BuildRequest(BaseModel):
    """What to build: a recipe file, for a cluster (``machine`` is eFlows4HPC's word for it) or
    every variant, some variants (``k=v``), rebuilt or not, in which format, catalogued where."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    recipe: str = Field(description="the recipe file (YAML); over REST relative to the server root")
    cluster: str | None = Field(
        None, alias="machine", description="build only the variant this cluster's traits fit"
    )
    variants: list[str] = Field(default_factory=list, description="KEY=VALUE choices")
    force: bool = Field(False, description="rebuild unchanged variants")
    format: Literal["ch", "oci", "sif"] = "ch"
    builder: str | None = Field(
        None, description="ch-image or buildah (or a plug-in); default: the first installed"
    )
    catalog: str | None = Field(
        None, description="catalog file to add the variants to (default: the user's default)"
    )


class BuildStatus(BaseModel):
    """A background build (``GET stax/api/builds/{id}``)."""

    model_config = ConfigDict(defer_build=True)

    id: str
    status: BuildState
    message: str = ""
    images: list[str] = Field(default_factory=list, description="references of built variants")
    recipe: str
    variants: list[str] = Field(default_factory=list, description="the planned variants")
    results: list[VariantResult] = Field(default_factory=list)
    catalog: str | None = None
    created: float
    updated: float


class BuildLog(BaseModel):
    model_config = ConfigDict(defer_build=True)

    id: str
    status: BuildState
    text: str = Field(description="progress lines, then each variant's builder log")


SUMMARY_HEADERS = ("VARIANT", "STATUS", "LABELS", "SIZE", "TIME", "DIGEST")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    x = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        x /= 1024
        if x < 1024 or unit == "TB":
            break
    return f"{x:.1f} {unit}"


def _labels(r: VariantResult) -> str:
    keep = [*r.values, "cpu", "os", "kabi"]
    short = {k[len(LABEL_PREFIX) :]: v for k, v in r.labels.items() if k.startswith(LABEL_PREFIX)}
    return " ".join(f"{k}={short[k]}" for k in dict.fromkeys(keep) if k in short) or "-"


def summary_rows(report: BuildReport) -> list[list[str]]:
    return [
        [
            r.name,
            r.status,
            _labels(r),
            _size(r.size),
            "-" if r.seconds is None else f"{r.seconds:.1f} s",
            (r.digest or "-")[:19],
        ]
        for r in report.results
    ]


def plan_request(registry: ClusterRegistry | None, req: BuildRequest) -> Plan:
    """Every check before a build (unknown cluster, recipe errors, base, builder).
    ``registry`` may be None when the request names no cluster (the CLI then reads no
    clusters file)."""
    if req.cluster and registry is None:
        raise ValueError("a build for a cluster needs the cluster registry")
    c = registry.get(req.cluster) if req.cluster and registry is not None else None
    return plan_build(
        req.recipe,
        cluster=(c.name, c.traits) if c else None,
        variants=req.variants,
        force=req.force,
        fmt=req.format,
        builder=req.builder,
    )


def finish(plan: Plan, req: BuildRequest, emit: Callable[[Progress], None] | None) -> BuildReport:
    """Build a plan and add what was built to the catalog file."""
    from ..engine.builds.catalogue import add_variants, default_catalog_file, visibility_note

    report = run_plan(plan, emit)
    file = Path(req.catalog).expanduser().absolute() if req.catalog else default_catalog_file()
    if add_variants(report, file, plan.loaded.recipe.description):
        report.catalog = str(file)
        report.note = visibility_note(file)
    return report


def build_now(
    registry: ClusterRegistry | None,
    req: BuildRequest,
    emit: Callable[[Progress], None] | None = None,
) -> BuildReport:
    return finish(plan_request(registry, req), req, emit)


class BuildJobs:
    """Background builds by id (one builder at a time: builds share the builder's storage)."""

    def __init__(self) -> None:
        self._jobs: dict[str, BuildStatus] = {}
        self._logs: dict[str, list[str]] = {}
        self._files: dict[str, list[Path]] = {}
        self._lock = threading.Lock()
        self._one = threading.Lock()
        self._seq = itertools.count(1)

    def submit(self, registry: ClusterRegistry, req: BuildRequest) -> BuildStatus:
        plan = plan_request(registry, req)  # refused here, before an id exists
        now = time.time()
        bid = f"b{next(self._seq)}-{secrets.token_hex(4)}"
        st = BuildStatus(
            id=bid,
            status="PENDING",
            recipe=plan.loaded.path,
            variants=[v.name for v in plan.variants],
            created=now,
            updated=now,
        )
        with self._lock:
            self._jobs[bid] = st
            self._logs[bid] = []
            self._files[bid] = [v.log for v in plan.variants]
        threading.Thread(
            target=self._run, args=(bid, plan, req), name=f"stax-build-{bid}", daemon=True
        ).start()
        return st.model_copy()

    def _update(self, bid: str, **kw: object) -> None:
        with self._lock:
            st = self._jobs[bid]
            self._jobs[bid] = st.model_copy(update={**kw, "updated": time.time()})

    def _run(self, bid: str, plan: Plan, req: BuildRequest) -> None:
        def emit(p: Progress) -> None:
            with self._lock:
                lines = self._logs[bid]
                lines.append(f"{p.variant}: {p.phase} {p.message}".rstrip())
                del lines[:-LOG_LINES]
            if p.phase in ("importing", "building"):
                self._update(bid, status="BUILDING", message=f"{p.phase} {p.variant}")
            elif p.phase == "converting":
                self._update(bid, status="CONVERTING", message=f"converting {p.variant}")

        try:
            with self._one:
                report = finish(plan, req, emit)
        except StaxError as e:
            self._update(bid, status="FAILED", message=e.message)
            return
        except Exception as e:  # a bug: still a final state, never PENDING forever
            self._update(bid, status="FAILED", message=f"internal error: {e!r}")
            return
        failed = report.failed
        images = [str(r.reference) for r in report.results if r.reference]
        msg = (
            f"{len(failed)} of {len(report.results)} variants failed: "
            + "; ".join(f"{r.name}: {(r.message or '').splitlines()[0]}" for r in failed)
            if failed
            else f"{len(report.results)} variants built or current"
        )
        self._update(
            bid,
            status="FAILED" if failed else "FINISHED",
            message=msg,
            images=images,
            results=report.results,
            catalog=report.catalog,
        )

    def get(self, bid: str) -> BuildStatus:
        with self._lock:
            st = self._jobs.get(bid)
        if st is None:
            raise NotFound(f"no build {bid!r} (builds are kept while the server runs)")
        return st.model_copy()

    def log(self, bid: str) -> BuildLog:
        st = self.get(bid)
        with self._lock:
            parts = ["\n".join(self._logs.get(bid, []))]
            files = list(self._files.get(bid, []))
        for f in files:  # the builder's own output, live while it builds
            try:
                parts.append(f"===== {f.stem} =====\n" + f.read_text(errors="replace"))
            except OSError:
                continue
        return BuildLog(id=bid, status=st.status, text="\n".join(parts))
