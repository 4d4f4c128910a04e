"""Building a recipe's variants: plan (every check before any build), then build each variant
with a real builder, label it, and keep what was built.

:func:`plan_build` reads the recipe, picks the variants (all, ``--variant k=v``, or the one a
cluster's traits fit), finds the base for this machine's architecture and the builder, and
computes each variant's build key; an error there stops everything before a build starts.
:func:`run_plan` builds the variants one after another: an unchanged variant (same key, image
still there) is not rebuilt unless ``force``; a failing one is FAILED with the builder's last
lines and the others go on. The builder's log of each variant is ``OUTPUT/.stax-build/
VARIANT.log``; what was built is ``OUTPUT/.stax-build/VARIANT.json`` (the cache's record).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ...core.errors import StaxError
from ...core.images import ClusterTraits, norm_cpu
from ...core.recipe import (
    FORMATS,
    InvalidRecipe,
    LoadedRecipe,
    base_for,
    build_key,
    expand,
    for_cluster,
    load_recipe,
    parse_selection,
    select,
    variant_labels,
    variant_name,
    with_base,
)
from . import outputs
from .bases import Base, complete_metadata, locate, staged_with_metadata, unpack_oci
from .builders import Builder, BuilderMissing, BuildFailed, get_builder, tail

STATE_DIR = ".stax-build"
Phase = Literal["importing", "building", "converting", "cached", "finished", "failed"]


class VariantResult(BaseModel):
    """One variant's outcome (the summary table's row; the cache's record)."""

    name: str
    values: dict[str, str] = Field(default_factory=dict)
    status: Literal["built", "cached", "failed"]
    labels: dict[str, str] = Field(default_factory=dict)
    reference: str | None = None
    digest: str | None = None
    size: int | None = Field(None, description="bytes")
    seconds: float | None = None
    builder_seconds: float | None = Field(
        None, description="of ``seconds``, the time the builder itself ran"
    )
    log: str
    message: str | None = None
    key: str | None = Field(None, description="the build key (recipe, args, base)")


class BuildReport(BaseModel):
    stax: str
    recipe: str
    format: str
    cpu: str
    results: list[VariantResult] = Field(default_factory=list)
    catalog: str | None = Field(None, description="the catalog file the variants were added to")
    note: str | None = None

    @property
    def failed(self) -> list[VariantResult]:
        return [r for r in self.results if r.status == "failed"]


@dataclass(frozen=True)
class Progress:
    variant: str
    phase: Phase
    message: str = ""


@dataclass
class VariantPlan:
    name: str
    values: dict[str, str]
    key: str
    dest: Path
    log: Path
    record: Path


@dataclass
class Plan:
    loaded: LoadedRecipe
    cpu: str
    base: Base
    fmt: str
    force: bool
    builder: Builder
    variants: list[VariantPlan] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.loaded.output / STATE_DIR


def build_cpu() -> str:
    return norm_cpu(platform.machine()) or platform.machine()


def plan_build(
    recipe: str | Path | LoadedRecipe,
    *,
    cluster: tuple[str, ClusterTraits] | None = None,
    variants: Sequence[str] = (),
    force: bool = False,
    fmt: str = "ch",
    builder: str | None = None,
    storage: Path | None = None,
) -> Plan:
    """Every check before a build (see the module's docstring); InvalidRecipe, BuilderMissing."""
    lr = recipe if isinstance(recipe, LoadedRecipe) else load_recipe(recipe)
    r = lr.recipe
    if fmt not in FORMATS:
        raise InvalidRecipe(f"unknown output format {fmt!r}; one of {', '.join(FORMATS)}")
    cpu = build_cpu()
    chosen = select(r, expand(r), parse_selection(list(variants)))
    if cluster is not None:
        chosen = [for_cluster(r, chosen, cluster[0], cluster[1], cpu)]
    base = locate(base_for(r, cpu), lr.folder, lr.output / STATE_DIR / "base-digests.json")
    if fmt == "sif" and outputs.sif_problem():
        raise BuilderMissing(outputs.sif_problem() or "")  # before any build, naming the tool
    b = get_builder(builder, storage)
    plan = Plan(lr, cpu, base, fmt, force, b)
    for values in chosen:
        name = variant_name(r.stax, cpu, values)
        plan.variants.append(
            VariantPlan(
                name=name,
                values=values,
                key=build_key(r, lr.containerfile_text, values, base.digest, fmt),
                dest=lr.output / (name + ".sif" if fmt == "sif" else name),
                log=plan.state_dir / f"{name}.log",
                record=plan.state_dir / f"{name}.json",
            )
        )
    return plan


def _cached(v: VariantPlan) -> VariantResult | None:
    try:
        old = VariantResult.model_validate_json(v.record.read_text())
    except (OSError, ValueError):
        return None
    if old.key != v.key or old.status == "failed" or not v.dest.exists():
        return None
    return old.model_copy(update={"status": "cached", "seconds": 0.0})


def _prepare_base(plan: Plan, emit: Callable[[Progress], None]) -> str:
    """The base imported into the builder (once per content); its name there."""
    base = plan.base
    name = base.import_name
    src = base.path
    if base.kind == "oci":
        src = unpack_oci(base, plan.state_dir / "bases" / name)
    elif base.kind == "dir" and not complete_metadata(base.path):
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(plan.cpu, plan.cpu)
        src = staged_with_metadata(base.path, plan.state_dir / "bases" / name, arch)
    emit(Progress("(base)", "importing", f"{base.spec} as {name}"))
    plan.builder.import_base(src, name, plan.state_dir / "base.log")
    return name


def run_plan(plan: Plan, emit: Callable[[Progress], None] | None = None) -> BuildReport:
    """Build every planned variant (see the module's docstring)."""
    say = emit or (lambda p: None)
    lr, r = plan.loaded, plan.loaded.recipe
    report = BuildReport(stax=r.stax, recipe=lr.path, format=plan.fmt, cpu=plan.cpu)
    plan.state_dir.mkdir(parents=True, exist_ok=True)
    todo = []
    for v in plan.variants:
        hit = None if plan.force else _cached(v)
        if hit is not None:
            say(Progress(v.name, "cached", hit.reference or ""))
            report.results.append(hit)
        else:
            todo.append(v)
    if not todo:
        return report
    base_name: str | None = None
    base_error: str | None = None
    try:
        base_name = _prepare_base(plan, say)
    except StaxError as e:
        base_error = e.message
    containerfile = plan.state_dir / "Containerfile"
    if base_name is not None:
        containerfile.write_text(with_base(lr.containerfile_text, plan.builder.base_ref(base_name)))
    for v in todo:
        report.results.append(_one(plan, v, containerfile, base_error, say))
    order = {v.name: i for i, v in enumerate(plan.variants)}
    report.results.sort(key=lambda x: order[x.name])
    return report


def _one(
    plan: Plan,
    v: VariantPlan,
    containerfile: Path,
    base_error: str | None,
    say: Callable[[Progress], None],
) -> VariantResult:
    r = plan.loaded.recipe
    v.log.parent.mkdir(parents=True, exist_ok=True)
    v.log.write_text("")
    v.record.unlink(missing_ok=True)
    t0 = time.monotonic()
    res = VariantResult(name=v.name, values=v.values, status="failed", log=str(v.log), key=v.key)
    try:
        if base_error is not None:
            raise BuildFailed(base_error)
        say(Progress(v.name, "building", str(v.log)))
        tb = time.monotonic()
        root = plan.builder.build(
            containerfile,
            plan.loaded.folder,
            v.values,
            v.name,
            v.log,
            rebuild=plan.force,
        )
        builder_s = round(time.monotonic() - tb, 3)
        say(Progress(v.name, "converting", plan.fmt))
        try:
            m = outputs.inspect_root(root)
            labels = variant_labels(r, v.values, plan.cpu, os_name=m.os, kabi=m.kabi)
            if plan.fmt == "oci":
                ref, digest = outputs.write_oci(root, v.dest, v.name, labels, plan.cpu)
            elif plan.fmt == "sif":
                ref, digest = outputs.write_sif(root, v.dest, labels, v.log)
            else:
                ref, digest = outputs.write_ch(root, v.dest, labels, plan.cpu)
        finally:
            plan.builder.release(v.name)
    except StaxError as e:
        res.message = e.message
        res.seconds = round(time.monotonic() - t0, 3)
        say(Progress(v.name, "failed", e.message))
        if not v.log.read_text().strip():
            v.log.write_text(e.message + "\n")
        return res
    res = res.model_copy(
        update={
            "status": "built",
            "labels": labels,
            "reference": ref,
            "digest": digest,
            "size": outputs.size_of(v.dest),
            "seconds": round(time.monotonic() - t0, 3),
            "builder_seconds": builder_s,
        }
    )
    v.record.write_text(res.model_dump_json(indent=2))
    say(Progress(v.name, "finished", ref))
    return res


__all__ = [
    "BuildReport",
    "Plan",
    "Progress",
    "VariantResult",
    "build_cpu",
    "plan_build",
    "run_plan",
    "tail",
]
