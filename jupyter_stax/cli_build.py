"""``jupyter stax build RECIPE``: build a recipe's StaX variants here with a real builder
(Charliecloud's ``ch-image``), with a progress line per step, the builder's log kept per variant,
a summary table, and the built variants added to a catalog file.

Builds run on this machine (the builder and its storage are here), through the operations layer
(:func:`jupyter_stax.operations.builds.build_now`), whether or not a Jupyter server runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from .core import text
from .engine.builds.run import Progress
from .operations.builds import SUMMARY_HEADERS, summary_rows


def add_parser(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    sp = cmd("build", cmd_build, "build a recipe's StaX variants and add them to the catalog")
    sp.add_argument("recipe", help="the recipe file (YAML next to a Containerfile)")
    sp.add_argument(
        "--for",
        dest="cluster",
        metavar="CLUSTER",
        default=None,
        help="build only the variant that fits this cluster's traits",
    )
    sp.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="build only the variants with this matrix value (repeatable)",
    )
    sp.add_argument("--force", action="store_true", help="rebuild unchanged variants")
    sp.add_argument("--format", choices=["ch", "oci", "sif"], default="ch", help="output format")
    sp.add_argument(
        "--builder", default=None, help="ch-image or buildah (default: the first installed)"
    )
    sp.add_argument(
        "--catalog",
        metavar="FILE",
        default=None,
        help="catalog file to add the variants to (default: stax/images.yaml in the Jupyter "
        "config directory)",
    )
    sp.add_argument("--json", action="store_true", help="print the build report as JSON")


def progress(out: Any = sys.stderr) -> Callable[[Progress], None]:
    t0 = time.monotonic()

    def show(p: Progress) -> None:
        detail = f"  {p.message}" if p.message and p.phase != "failed" else ""
        print(f"[{time.monotonic() - t0:6.1f} s] {p.variant}: {p.phase}{detail}", file=out)
        out.flush()

    return show


def cmd_build(args: argparse.Namespace, ctx: Any) -> int:
    from .core.clusters import ClusterRegistry
    from .operations.builds import BuildRequest, build_now

    req = BuildRequest(
        recipe=args.recipe,
        cluster=args.cluster,
        variants=args.variant,
        force=args.force,
        format=args.format,
        catalog=args.catalog,
        builder=args.builder,
    )
    # the clusters file only for --for (a cached build of every variant needs none of it)
    registry = ClusterRegistry.load(ctx.clusters_file) if args.cluster else None
    report = build_now(registry, req, None if args.json else progress())
    if args.json:
        print(report.model_dump_json(indent=2))
        return 1 if report.failed else 0
    print(text.format_table(SUMMARY_HEADERS, summary_rows(report)))
    for r in report.failed:
        print(f"\n{r.name} FAILED (log: {r.log}):\n{r.message}", file=sys.stderr)
    if report.catalog:
        print(f"catalogued in {report.catalog} (jupyter stax images --cluster NAME)")
    if report.note:
        print(f"note: {report.note}", file=sys.stderr)
    return 1 if report.failed else 0
