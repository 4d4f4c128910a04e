"""``jupyter stax``: the command line, a client like the magics.

Every command goes through a :class:`~jupyter_stax.service.StaxService`: the REST API of a
Jupyter server that runs jupyter_stax on the same store when one is found
(:func:`~jupyter_stax.client.find_server`; one dim line on stderr says so), else the SQLite store
directly, with the engine daemon (:mod:`jupyter_stax.engine.daemon`) started on demand to drive
executions. ``--no-server`` (or ``$JUPYTER_STAX_NO_SERVER=1``) always uses the store. ``run
--detach`` queues a whole workflow with scheduler dependencies (Slurm, Grid Engine), so no
Python process has to survive it.

Every :class:`~jupyter_stax.core.errors.StaxError` becomes one ``error: ...`` line on stderr:
exit status 2 for invalid input (workflow, clusters, usage), 1 for everything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli_follow import dim, drain, follow, now, tail, until_final, width
from .client import ENV_NO_SERVER
from .core import text
from .core.assignments import AssignmentError, parse_value, split_assignment
from .core.errors import (
    InvalidClusterConfig,
    InvalidWorkflow,
    NotFound,
    StaxError,
    UnknownCluster,
)
from .core.models import Execution, ParamValue, SubmitOptions
from .core.published import InvalidInputs
from .core.states import RETRYABLE, ExecutionState
from .service import CANCEL_TIMEOUT, Listed, LocalService, StaxService, step_of

#: errors in what the user gave us: exit status 2, like usage errors (a trigger's inputs too)
INVALID_INPUT = (InvalidWorkflow, InvalidClusterConfig, UnknownCluster, InvalidInputs)
#: the most executions one ``GET executions`` returns (PAGE_LIMIT_MAX of the API)
PAGE = 500


@dataclass
class Context:
    """What every command needs, created lazily (``schema`` and ``validate`` need no service)."""

    store_path: Path
    clusters_file: Path | None
    no_server: bool = False
    _service: StaxService | None = None

    def service(self) -> StaxService:
        """The Jupyter server that serves our store if one runs (and --no-server is not
        given), else the store itself with its background engine."""
        if self._service is None:
            svc: StaxService | None = None
            if not self.no_server:
                from .client import find_server

                svc = find_server(self.store_path)
            if svc is not None:
                note = " (--clusters is ignored: the server's clusters apply)"
                dim(f"using the Jupyter {svc.describe()}" + (note if self.clusters_file else ""))
            else:
                svc = LocalService(self.store_path, self.clusters_file, notify=dim)
            self._service = svc
        return self._service


def _param(value: str) -> tuple[str, ParamValue]:
    """``--param NAME=VALUE``, typed as everywhere (:mod:`jupyter_stax.core.assignments`)."""
    try:
        name, text = split_assignment(value)
    except AssignmentError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name, parse_value(text)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _follow_hint(eid: str) -> None:
    print(f"  status:  jupyter stax status {eid}")
    print(f"  logs:    jupyter stax logs {eid} STEP --follow")


# ---------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    params: dict[str, ParamValue] = dict(args.param or [])
    options = SubmitOptions(detached=args.detach, on_failure=args.on_failure)
    svc = ctx.service()
    ex = svc.submit(Path(args.file), args.cluster, params, options, args.step or None)
    if args.quiet:
        print(ex.id, flush=True)
        return follow(svc, ex.id) if args.wait else 0
    if args.detach:
        print(
            f"submitted {ex.id} ({ex.workflow.name}, {len(ex.steps)} steps on {ex.cluster}, "
            "detached: queued with scheduler dependencies, nothing needs to keep running)"
        )
        for s in ex.steps:
            print(f"  {s.name}  job {s.native_id or '-'}  {s.state.value}")
        print(f"  status:  jupyter stax status {ex.id}  (reconciles its state)")
        return 0
    print(f"submitted {ex.id} ({ex.workflow.name}, {len(ex.steps)} steps on {ex.cluster})")
    if not args.wait:
        _follow_hint(ex.id)
    sys.stdout.flush()
    return follow(svc, ex.id) if args.wait else 0


def _started(svc: StaxService, ex: Execution, args: argparse.Namespace, what: str) -> int:
    """What ``run`` prints for a new execution (``-q``: only its id), then ``--wait``."""
    if args.quiet:
        print(ex.id, flush=True)
        return follow(svc, ex.id) if args.wait else 0
    print(f"submitted {ex.id} ({what}, {len(ex.steps)} steps on {ex.cluster})")
    for change in ex.origin.changes if ex.origin else []:
        print(f"  changed: {change}")
    if not args.wait:
        _follow_hint(ex.id)
    sys.stdout.flush()
    return follow(svc, ex.id) if args.wait else 0


def cmd_rerun(args: argparse.Namespace, ctx: Context) -> int:
    svc = ctx.service()
    ex = svc.rerun(args.source, args.cluster, dict(args.param or []))
    origin = ex.origin.rerun_of if ex.origin else args.source
    return _started(svc, ex, args, f"{ex.workflow.name}, a re-run of {origin}")


def cmd_publish(args: argparse.Namespace, ctx: Context) -> int:
    from .core.published import InputSpec
    from .operations.workflows import load_document

    req = load_document(Path(args.file))
    for name, words in args.describe or []:
        spec = req.inputs.get(name) or InputSpec()
        req.inputs[name] = spec.model_copy(update={"description": words})
    req = req.model_copy(
        update={"name": args.name, "version": args.version, "cluster": args.cluster}
    )
    p = ctx.service().publish(req)
    print(f"published {p.name} version {p.version} ({len(p.workflow.steps)} steps)")
    print(_workflow_text(p))
    print(f"  trigger: jupyter stax workflows trigger {p.name} --input NAME=VALUE ...")
    return 0


def _workflow_text(p: Any) -> str:
    lines = [f"{p.name} version {p.version}" + (f": {p.description}" if p.description else "")]
    lines.append(f"  versions: {', '.join(p.versions or [p.version])}")
    lines.append(f"  default cluster: {p.default_cluster or '(the server default)'}")
    lines.append("  inputs:" if p.inputs else "  inputs: none")
    lines += [f"    {i.line()}" for i in p.inputs]
    return "\n".join(lines)


def _input(value: str) -> tuple[str, str]:
    """``--input NAME=VALUE``: typed later, as the input is declared."""
    try:
        return split_assignment(value)
    except AssignmentError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_workflows(args: argparse.Namespace, ctx: Context) -> int:
    svc = ctx.service()
    action = args.action or "list"
    if action == "list":
        items = svc.workflows()
        if args.json:
            _print_json([i.model_dump(mode="json") for i in items])
        elif not items:
            print("no published workflows (jupyter stax publish FILE publishes one)")
        else:
            rows = [
                [i.name, i.version, str(len(i.versions)), ", ".join(x.name for x in i.inputs)
                 or "-", i.default_cluster or "-", i.description or ""]
                for i in items
            ]
            headers = ["NAME", "VERSION", "VERSIONS", "INPUTS", "CLUSTER", "DESCRIPTION"]
            print(text.format_table(headers, rows, width()))
        return 0
    if not args.name:
        print(f"error: jupyter stax workflows {action} NAME: which workflow?", file=sys.stderr)
        return 2
    p = svc.workflow(args.name)
    if action == "show":
        print(p.model_dump_json(indent=2) if args.json else _workflow_text(p))
        return 0
    from .core.published import parse_input_text

    inputs = {k: parse_input_text(p.input(k), v) for k, v in args.input or []}
    ex = svc.trigger(p.name, inputs, args.cluster, p.version)
    return _started(svc, ex, args, f"{p.name} version {p.version}")


def cmd_wait(args: argparse.Namespace, ctx: Context) -> int:
    svc = ctx.service()
    return follow(svc, svc.get(args.id).id)


def _listed(
    svc: StaxService, state: str | None, limit: int, workflow: str | None = None
) -> list[Listed]:
    out: list[Listed] = []
    cursor = None
    while len(out) < limit:
        page, cursor = svc.list(state, min(limit - len(out), PAGE), cursor, workflow)
        out += page
        if cursor is None or not page:
            break
    return out


def _list_rows(items: list[Listed]) -> list[list[str]]:
    return text.list_rows(items, now())


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    svc = ctx.service()
    items = _listed(svc, args.state, args.limit, args.workflow)
    if args.json:
        full = [x if isinstance(x, Execution) else svc.get(x.id) for x in items]
        _print_json([ex.model_dump(mode="json") for ex in full])
    elif items:
        print(text.format_table(text.LIST_HEADERS, _list_rows(items), width()))
    else:
        print("no executions" + (f" in state {args.state}" if args.state else ""))
    return 0


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    if args.instances:
        return _instances(args, ctx)
    ex = ctx.service().get(args.id)
    if args.json:
        _print_json(ex.model_dump(mode="json"))
    else:
        print(text.status_text(ex, now(), width()))
    return 0


def _instances(args: argparse.Namespace, ctx: Context) -> int:
    """``status ID --instances STEP``: a sweep's instances, the ones that did not complete
    first (``--state``, ``--limit``; ``--all`` pages through every one)."""
    svc = ctx.service()
    cursor: str | None = None
    items = []
    while True:
        page = svc.instances(args.id, args.instances, args.state, cursor, args.limit)
        items += page.items
        cursor = page.next_cursor
        if cursor is None or not args.all:
            break
    if args.json:
        _print_json(page.model_copy(update={"items": items}).model_dump(mode="json"))
        return 0
    rows = [
        [
            str(i.index),
            i.state,
            "-" if i.exit_code is None else str(i.exit_code),
            str(i.attempt or "-"),
            " ".join(f"{k}={v}" for k, v in i.params.items()),
        ]
        for i in items
    ]
    counts = ", ".join(f"{n:,} {st}" for st, n in sorted(page.counts.items()))
    print(f"{page.total:,} instances: {counts}")
    print(text.format_table(["INDEX", "STATE", "EXIT", "ATTEMPT", "VALUES"], rows, width()))
    if cursor is not None:
        print(f"({len(rows)} shown, those that did not complete first; --all lists every one)")
    return 0


def cmd_cancel(args: argparse.Namespace, ctx: Context) -> int:
    svc = ctx.service()
    deadline = time.monotonic() + CANCEL_TIMEOUT
    ex = svc.cancel(args.id)
    if not ex.state.final:
        ex = until_final(svc, ex.id, deadline - time.monotonic())
    print(text.status_text(ex, now(), width()))
    if not ex.state.final:
        print(
            f"error: cancel requested, but execution {ex.id} is still {ex.state.value} after "
            f"{CANCEL_TIMEOUT:g} s; see `jupyter stax status {ex.id}`",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_retry(args: argparse.Namespace, ctx: Context) -> int:
    svc = ctx.service()
    ex = svc.get(args.id)
    eid = ex.id
    again = [s for s in ex.steps if s.state in RETRYABLE]
    svc.retry(eid)  # the service checks the precondition (operations.check_retry)
    print(f"retrying {len(again)} step(s) of {eid}:")
    for s in again:
        print(f"  {s.name}  (attempt {s.attempt + 1})")
    if not args.wait:
        _follow_hint(eid)
    sys.stdout.flush()
    return follow(svc, eid) if args.wait else 0


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    svc = ctx.service()
    if args.dir:
        out = svc.export_crate(args.id, Path(args.dir), as_dir=True, license=args.license)
    else:
        to = args.to
        if to is None:
            from .operations.crate import crate_file_name

            to = crate_file_name(svc.get(args.id))
        out = svc.export_crate(args.id, Path(to), license=args.license)
    print(out)
    return 0


def cmd_logs(args: argparse.Namespace, ctx: Context) -> int:
    svc = ctx.service()
    ex = svc.get(args.id)
    s = step_of(ex, args.step)
    want: int | None = args.attempt
    if want is not None and not 1 <= want <= max(s.attempt, 1):
        raise NotFound(
            f"step {s.name!r} has no attempt {want}"
            + (f"; attempts: 1..{s.attempt}" if s.attempt else " (it has not started)")
        )
    stream = "stderr" if args.stderr else "stdout"
    out = sys.stdout.buffer
    if args.follow and (want is None or want >= s.attempt):
        return tail(svc, ex.id, s.name, stream, want, out)
    drain(svc, ex.id, s.name, stream, want if want and want <= s.attempt else None, out)
    out.flush()
    return 0


def cmd_fetch(args: argparse.Namespace, ctx: Context) -> int:
    from .cli_progress import TerminalBar
    from .core.staging import fetch_request, fetch_text

    req = fetch_request(step=args.step, pattern=args.pattern, to=args.to, overwrite=args.overwrite)
    svc = ctx.service()
    shown = args.progress if args.progress is not None else sys.stderr.isatty()
    meter = TerminalBar() if shown else None
    try:
        result = svc.fetch(svc.get(args.id).id, req, progress=meter)
    finally:
        if meter is not None:
            meter.close()
    if args.json:
        _print_json(result.model_dump(mode="json"))
    else:
        print(fetch_text(result))
    return 1 if any(s.fetch == "failed" for s in result.steps) else 0


def cmd_clusters(args: argparse.Namespace, ctx: Context) -> int:
    if args.name:
        from .core.cluster_text import detail_text

        detail = ctx.service().cluster(args.name)
        print(detail.model_dump_json(indent=2) if args.json else detail_text(detail))
        return 0
    clusters = ctx.service().clusters()
    if args.json:
        _print_json([c.model_dump(mode="json") for c in clusters])
        return 0
    print(text.format_table(text.CLUSTER_HEADERS, text.cluster_rows(clusters)))
    return 0


def cmd_images(args: argparse.Namespace, ctx: Context) -> int:
    listing = ctx.service().images(args.cluster)
    if args.json:
        print(listing.model_dump_json(indent=2))
        return 0
    print(text.images_text(listing))
    for p in listing.problems:
        print(f"warning: {p}", file=sys.stderr)
    return 0


def cmd_doctor(args: argparse.Namespace, ctx: Context) -> int:
    from . import doctor

    findings = doctor.diagnose(ctx.store_path, ctx.clusters_file)
    print(doctor.as_json(findings) if args.json else doctor.report(findings))
    return 1 if any(f.level == "fail" for f in findings) else 0


def cmd_schema(args: argparse.Namespace, ctx: Context) -> int:
    from .core.documents import schema_json

    sys.stdout.write(schema_json())
    return 0


def cmd_validate(args: argparse.Namespace, ctx: Context) -> int:
    from .core.dag import check, topological_order
    from .core.documents import load_workflow

    wf = load_workflow(Path(args.file))
    check(wf, dict(args.param or []))
    n = len(wf.steps)
    print(f"ok: {n} step{'s' if n != 1 else ''} ({' -> '.join(topological_order(wf))})")
    return 0


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        type=Path,
        default=argparse.SUPPRESS,
        help="SQLite store (default: $JUPYTER_STAX_STORE or the Jupyter data dir)",
    )
    common.add_argument(
        "--clusters",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="clusters file (default: $JUPYTER_STAX_CLUSTERS or the Jupyter config dir)",
    )
    common.add_argument(
        "--no-server",
        action="store_true",
        default=argparse.SUPPRESS,
        help="work on the store even when a Jupyter server serves it (also: "
        "$JUPYTER_STAX_NO_SERVER=1)",
    )
    p = argparse.ArgumentParser(
        prog="jupyter stax",
        description="Run workflows of bash steps on Slurm, PBS, Flux or the local machine.",
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, func: Callable[..., int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    def params(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--param",
            "-p",
            action="append",
            type=_param,
            metavar="NAME=VALUE",
            help="parameter value (repeatable): JSON numbers and true/false are typed, "
            'a "quoted" JSON string is its text, anything else is text as given',
        )

    sp = cmd("run", cmd_run, "submit a workflow file")
    sp.add_argument("file", help="workflow file (YAML or JSON)")
    sp.add_argument(
        "--cluster",
        "-c",
        default=None,
        help="cluster name (default: local, or the Jupyter server's default cluster)",
    )
    params(sp)
    sp.add_argument(
        "--step",
        action="append",
        metavar="NAME",
        help="run only these steps and what they depend on (repeatable)",
    )
    sp.add_argument("--on-failure", choices=["continue", "stop"], default=None)
    sp.add_argument("--quiet", "-q", action="store_true", help="print only the execution id")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--wait", "-w", action="store_true", help="follow it until it ends")
    how.add_argument(
        "--detach",
        action="store_true",
        help="queue every step at once with scheduler dependencies (Slurm, Grid Engine); "
        "no engine needs to run",
    )

    sp = cmd(
        "export",
        cmd_export,
        "write a finished execution as a Workflow Run RO-Crate (a zip, or a directory)",
    )
    sp.add_argument("id", help="execution id or a unique prefix of one")
    where = sp.add_mutually_exclusive_group()
    where.add_argument(
        "--to", metavar="FILE", help="the zip to write (default: ./WORKFLOW-ID.crate.zip)"
    )
    where.add_argument("--dir", metavar="DIR", help="write the crate into this new directory")
    sp.add_argument(
        "--license",
        metavar="URL|SPDX",
        help="the crate's license, e.g. https://spdx.org/licenses/CC-BY-4.0 (default: the "
        "crate says that no license was given)",
    )

    sp = cmd(
        "rerun",
        cmd_rerun,
        "run a recorded run again (an execution, or a crate from any machine): same workflow "
        "and parameters, images pinned by digest; on a cluster the pinned variant does not fit, "
        "its family's fitting variant (and it says why)",
    )
    sp.add_argument("source", metavar="ID|CRATE", help="execution id, or a .crate.zip / crate dir")
    sp.add_argument(
        "--cluster", "-c", default=None, help="where to run (default: where it ran, if known here)"
    )
    params(sp)
    sp.add_argument("--quiet", "-q", action="store_true", help="print only the execution id")
    sp.add_argument("--wait", "-w", action="store_true", help="follow it until it ends")

    sp = cmd(
        "publish",
        cmd_publish,
        "publish a workflow file as a named, versioned workflow end users trigger with inputs",
    )
    sp.add_argument("file", help="workflow file (YAML or JSON; may hold an 'inputs:' block)")
    sp.add_argument("--name", help="default: the workflow's name")
    sp.add_argument("--version", help="default: the next integer version")
    sp.add_argument("--cluster", "-c", default=None, help="the default cluster of its triggers")
    sp.add_argument(
        "--describe",
        action="append",
        type=_input,
        metavar="INPUT=TEXT",
        help="an input's description (repeatable)",
    )

    sp = cmd(
        "workflows",
        cmd_workflows,
        "published workflows: list, show NAME, trigger NAME --input K=V ...",
    )
    sp.add_argument("action", nargs="?", choices=["list", "show", "trigger"], default="list")
    sp.add_argument("name", nargs="?", metavar="NAME[@VERSION]")
    sp.add_argument(
        "--input",
        "-i",
        action="append",
        type=_input,
        metavar="NAME=VALUE",
        help="trigger: an input value (repeatable), typed as the input is declared",
    )
    sp.add_argument("--cluster", "-c", default=None, help="trigger: where to run")
    sp.add_argument("--quiet", "-q", action="store_true", help="trigger: print only the id")
    sp.add_argument("--wait", "-w", action="store_true", help="trigger: follow it to the end")
    sp.add_argument("--json", action="store_true")

    sp = cmd("wait", cmd_wait, "follow an execution until it ends")
    sp.add_argument("id")

    sp = cmd("list", cmd_list, "list executions, newest first")
    sp.add_argument("--state", choices=[s.value for s in ExecutionState])
    sp.add_argument(
        "--workflow",
        metavar="NAME[@VERSION]",
        help="only executions triggered from this published workflow",
    )
    sp.add_argument("--limit", "-n", type=int, default=20)
    sp.add_argument("--json", action="store_true")

    sp = cmd("status", cmd_status, "show an execution and its steps")
    sp.add_argument("id", help="execution id or a unique prefix of one")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--instances", metavar="STEP", help="list a sweep step's instances")
    sp.add_argument(
        "--state",
        choices=["waiting", "running", "completed", "failed", "lost", "canceled"],
        help="with --instances: only those in this state",
    )
    sp.add_argument("--limit", type=int, default=50, help="with --instances: at most this many")
    sp.add_argument("--all", action="store_true", help="with --instances: every one (paged)")

    sp = cmd("cancel", cmd_cancel, "cancel an execution's jobs and pending steps")
    sp.add_argument("id")

    sp = cmd("retry", cmd_retry, "run the failed, lost, canceled and skipped steps again")
    sp.add_argument("id")
    sp.add_argument("--wait", "-w", action="store_true", help="follow it until it ends")

    sp = cmd("logs", cmd_logs, "print a step's output")
    sp.add_argument("id")
    sp.add_argument("step")
    sp.add_argument("--stderr", "-e", action="store_true", help="stderr instead of stdout")
    sp.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="every attempt from the first, then as it grows until the step ends",
    )
    sp.add_argument("--attempt", type=int, metavar="N", help="an earlier attempt's output")

    sp = cmd("fetch", cmd_fetch, "bring steps' outputs to this side (and record their sha256)")
    sp.add_argument("id")
    sp.add_argument("step", nargs="?", help="one step (default: every step with outputs)")
    sp.add_argument("pattern", nargs="?", help="files of the step directory (default: its outputs)")
    sp.add_argument(
        "--to", metavar="DIR", help="copy here (default: <outputs dir>/ID/STEP for remote "
        "clusters; in place for clusters sharing this file system)"
    )
    sp.add_argument("--overwrite", action="store_true", help="replace local files that differ")
    sp.add_argument("--json", action="store_true")
    sp.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="a progress bar on stderr (bytes, rate) while files move (default: on a terminal; "
        "this machine's engine only: through a server, the server moves them)",
    )

    sp = cmd("clusters", cmd_clusters, "list the clusters you can run on; with NAME, one "
             "cluster's live numbers (and a remote one's connection)")
    sp.add_argument("name", nargs="?", metavar="NAME", help="one cluster, in detail")
    sp.add_argument("--json", action="store_true")

    sp = cmd("images", cmd_images, "list StaX images; with --cluster, whether each one fits there")
    sp.add_argument("--cluster", "-c", default=None, help="judge each image for this cluster")
    sp.add_argument("--json", action="store_true")

    from .cli_build import add_parser as build_parser_of

    build_parser_of(cmd)

    cmd("schema", cmd_schema, "print the JSON Schema of workflow files")

    sp = cmd("doctor", cmd_doctor, "check the environment and say what to fix")
    sp.add_argument("--json", action="store_true")

    sp = cmd("validate", cmd_validate, "check a workflow file without running it")
    sp.add_argument("file")
    params(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .engine.store import default_store_path

    store = getattr(args, "store", None) or default_store_path()
    # only an explicit --clusters must exist; otherwise $JUPYTER_STAX_CLUSTERS or the default
    # file (missing = only 'local'), which the daemon finds the same way
    clusters = getattr(args, "clusters", None)
    no_server = getattr(args, "no_server", False) or os.environ.get(ENV_NO_SERVER, "") not in (
        "",
        "0",
    )
    ctx = Context(
        Path(store).expanduser().absolute(), clusters and clusters.expanduser(), no_server
    )
    try:
        return int(args.func(args, ctx))
    except StaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, INVALID_INPUT) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `jupyter stax logs ... | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit flush
        return 0


if __name__ == "__main__":
    sys.exit(main())
