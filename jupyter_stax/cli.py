"""``jupyter stax``: the command line, a client of the store and the engine.

With no Jupyter server running, the command line works on the SQLite store directly and leaves
the driving of executions to the engine daemon (:mod:`jupyter_stax.engine.daemon`), which it
starts on demand. ``run --detach`` queues a whole workflow with Slurm dependencies instead, so no
Python process has to survive it.

Every :class:`~jupyter_stax.core.errors.StaxError` becomes one ``error: ...`` line on stderr:
exit status 2 for invalid input (workflow, clusters, usage), 1 for everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core import text
from .core.errors import (
    Conflict,
    InvalidClusterConfig,
    InvalidWorkflow,
    NotFound,
    StaxError,
    UnknownCluster,
)
from .core.models import Execution, ParamValue, StepRun
from .core.states import ExecutionState, StepState

if TYPE_CHECKING:
    from .core.clusters import ClusterRegistry
    from .engine.engine import Engine
    from .engine.store import Store

#: errors in what the user gave us: exit status 2, like usage errors
INVALID_INPUT = (InvalidWorkflow, InvalidClusterConfig, UnknownCluster)
POLL = 0.25
LEASE_TIMEOUT = 15.0
CANCEL_TIMEOUT = 60.0


@dataclass
class Context:
    """What every command needs, created lazily (``clusters`` and ``schema`` open no store)."""

    store_path: Path
    clusters_file: Path | None
    _store: Store | None = None
    _last_kick: float = 0.0
    _started: int = 0

    def store(self) -> Store:
        if self._store is None:
            from .engine.store import Store

            self._store = Store(self.store_path)
        return self._store

    def clusters(self) -> ClusterRegistry:
        from .core.clusters import ClusterRegistry

        return ClusterRegistry.load(self.clusters_file)

    def engine(self) -> Engine:
        """An engine that adopts nothing: it drives only what it submits or takes over."""
        from .engine.engine import Engine

        return Engine(store=self.store(), clusters=self.clusters(), adopt=False)

    def ensure_daemon(self) -> int | None:
        from .engine.daemon import ensure_daemon, log_path

        self._last_kick = time.monotonic()  # a new daemon needs a moment to take the lock
        pid = ensure_daemon(self.store_path, self.clusters_file)
        if pid is not None:
            self._started += 1
            if self._started > 1:
                _dim(f"the engine does not stay up; see {log_path(self.store_path)}")
        return pid

    def reconcile(self, every: float = 0.0) -> None:
        """Start the daemon when executions nobody drives exist (detached ones, or after a
        crash). With ``every``, at most once per that many seconds."""
        if every and time.monotonic() - self._last_kick < every:
            return
        self._last_kick = time.monotonic()
        n = self.store().unowned_unfinished(LEASE_TIMEOUT)
        if n and (pid := self.ensure_daemon()) is not None:
            _dim(f"started the engine (pid {pid}) to drive {n} unfinished execution(s)")


# ---------------------------------------------------------------------- output helpers
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _dim(msg: str) -> None:
    tty = sys.stderr.isatty()
    print(f"\x1b[2m{msg}\x1b[0m" if tty else msg, file=sys.stderr)


def _width() -> int | None:
    """Terminal width for cutting long reasons; None (no cutting) when stdout is not a terminal,
    unless $COLUMNS says otherwise."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _param(value: str) -> tuple[str, str]:
    name, eq, val = value.partition("=")
    if not eq or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name.strip(), val


def _step(ex: Execution, name: str) -> StepRun:
    try:
        return ex.step(name)
    except KeyError:
        raise NotFound(
            f"execution {ex.id} has no step {name!r}; steps: " + ", ".join(s.name for s in ex.steps)
        ) from None


# ---------------------------------------------------------------------- following
def follow(ctx: Context, eid: str) -> int:
    """Show progress until the execution is final; then the status table. 0 if completed."""
    store = ctx.store()
    tty = sys.stderr.isatty()
    seen: dict[str, tuple[StepState, int]] = {}
    shown = ""
    try:
        while True:
            ex = store.get(eid)
            now = _now()
            if tty and (line := text.progress_line(ex, now)) != shown:
                print(f"\r{line}\x1b[K", end="", file=sys.stderr, flush=True)
                shown = line
            elif not tty:
                for s in ex.steps:
                    key = (s.state, s.attempt)
                    if seen.get(s.name, (StepState.PENDING, 0)) != key:
                        print(text.step_change_line(s, now), file=sys.stderr, flush=True)
                    seen[s.name] = key
            if ex.state.final:
                break
            ctx.reconcile(every=5.0)
            time.sleep(POLL)
    except KeyboardInterrupt:
        if tty:
            print("\r\x1b[K", end="", file=sys.stderr)
        print(
            f"stopped following; execution {eid} goes on. Re-attach: jupyter stax wait {eid}",
            file=sys.stderr,
        )
        return 130
    if tty:
        print(file=sys.stderr)
    print(text.status_text(ex, _now(), _width()))
    return 0 if ex.state is ExecutionState.COMPLETED else 1


def _follow_hint(eid: str) -> None:
    print(f"  status:  jupyter stax status {eid}")
    print(f"  logs:    jupyter stax logs {eid} STEP --follow")


# ---------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    from .core.models import SubmitOptions

    params: dict[str, ParamValue] = dict(args.param or [])
    options = SubmitOptions(detached=args.detach, on_failure=args.on_failure)
    workflow, steps = Path(args.file), args.step or None
    if args.detach:
        ex = asyncio.run(_submit_detached(ctx, workflow, args.cluster, params, options, steps))
        if args.quiet:
            print(ex.id)
            return 0
        print(
            f"submitted {ex.id} ({ex.workflow.name}, {len(ex.steps)} steps on {ex.cluster}, "
            "detached: queued with scheduler dependencies, nothing needs to keep running)"
        )
        for s in ex.steps:
            print(f"  {s.name}  job {s.native_id or '-'}  {s.state.value}")
        print(f"  status:  jupyter stax status {ex.id}  (reconciles its state)")
        return 0
    store = ctx.store()
    eng = ctx.engine()
    ex = eng.prepare(workflow, args.cluster, params, options, steps, owner=None)
    eng.write_provenance(ex)
    store.insert_execution(ex)
    ctx.ensure_daemon()
    if args.quiet:
        print(ex.id, flush=True)
    else:
        print(f"submitted {ex.id} ({ex.workflow.name}, {len(ex.steps)} steps on {ex.cluster})")
        if not args.wait:
            _follow_hint(ex.id)
        sys.stdout.flush()
    return follow(ctx, ex.id) if args.wait else 0


async def _submit_detached(
    ctx: Context,
    workflow: Path,
    cluster: str,
    params: dict[str, ParamValue],
    options: Any,
    steps: list[str] | None,
) -> Execution:
    async with ctx.engine() as eng:
        ex: Execution = await eng.submit(workflow, cluster, params, options, steps)
    return ex


def cmd_wait(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    ctx.reconcile()
    return follow(ctx, store.resolve_id(args.id))


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    ctx.reconcile()
    items = store.list_executions(state=args.state, limit=args.limit)
    if args.json:
        _print_json([ex.model_dump(mode="json") for ex in items])
    elif items:
        print(text.list_table(items, _now(), _width()))
    else:
        print("no executions" + (f" in state {args.state}" if args.state else ""))
    return 0


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    ctx.reconcile()
    ex = store.get(store.resolve_id(args.id))
    if args.json:
        _print_json(ex.model_dump(mode="json"))
    else:
        print(text.status_text(ex, _now(), _width()))
    return 0


def cmd_cancel(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    eid = store.resolve_id(args.id)
    ex = asyncio.run(_cancel(ctx, eid))
    if not ex.state.final:
        ctx.reconcile()
        print(text.status_text(ex, _now(), _width()))
        print(
            f"error: cancel requested, but execution {eid} is still {ex.state.value} after "
            f"{CANCEL_TIMEOUT:g} s; see `jupyter stax status {eid}`",
            file=sys.stderr,
        )
        return 1
    print(text.status_text(ex, _now(), _width()))
    return 0


async def _cancel(ctx: Context, eid: str) -> Execution:
    async with ctx.engine() as eng:
        await eng.cancel(eid)  # drives it itself if its owner is gone, else asks the owner
        try:
            ex: Execution = await eng.wait(eid, timeout=CANCEL_TIMEOUT)
        except TimeoutError:
            ex = eng.get(eid)
    return ex


def cmd_retry(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    eid = store.resolve_id(args.id)
    ex = store.get(eid)
    if not ex.state.final:
        raise Conflict(f"execution {eid} is still {ex.state.value}; wait for it or cancel it first")
    before = {s.name: s.attempt for s in ex.steps}
    ex = asyncio.run(_retry(ctx, eid))
    ctx.ensure_daemon()
    again = [s for s in ex.steps if s.state is StepState.PENDING]
    print(f"retrying {len(again)} step(s) of {eid}:")
    for s in again:
        print(f"  {s.name}  (attempt {before[s.name] + 1})")
    if not args.wait:
        _follow_hint(eid)
    sys.stdout.flush()
    return follow(ctx, eid) if args.wait else 0


async def _retry(ctx: Context, eid: str) -> Execution:

    # reset only: the daemon adopts and drives the execution when this engine stops, so no job
    # becomes a child of this short-lived process
    async with ctx.engine() as eng:
        ex: Execution = await eng.retry(eid, schedule=False)
    return ex


def cmd_logs(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    eid = store.resolve_id(args.id)
    s = _step(store.get(eid), args.step)
    want: int | None = args.attempt
    if want is not None and not 1 <= want <= max(s.attempt, 1):
        raise NotFound(
            f"step {s.name!r} has no attempt {want}"
            + (f"; attempts: 1..{s.attempt}" if s.attempt else " (it has not started)")
        )
    out = sys.stdout.buffer
    if args.follow and (want is None or want >= s.attempt):
        return _tail(ctx, eid, s.name, args.stderr, want, out)
    try:
        out.write(_output(s, args.stderr, want).read_bytes())
    except FileNotFoundError:
        pass  # no output (yet)
    out.flush()
    return 0


def _output(s: StepRun, stderr: bool, attempt: int | None) -> Path:
    """The output file of the current attempt, or the renamed one of an earlier attempt."""
    p = Path(s.stderr if stderr else s.stdout)
    return p.with_name(f"{p.name}.{attempt}") if attempt and attempt < s.attempt else p


def _tail(ctx: Context, eid: str, name: str, stderr: bool, only: int | None, out: Any) -> int:
    """Print the output as it grows until the step is final (across automatic retries, unless
    ``only`` names one attempt)."""
    store = ctx.store()
    attempt, f, done = 0, None, (-1, 0)  # done: (inode, size) of the file last finished
    try:
        while True:
            s = store.get(eid).step(name)
            final = s.state.final or (only is not None and s.attempt > only)
            if s.attempt != attempt and f is not None and not final:
                out.write(f.read())  # the previous attempt's file (renamed): finish it
                done = (os.fstat(f.fileno()).st_ino, f.tell())
                f.close()
                f = None
                print(f"--- attempt {s.attempt} ---", file=sys.stderr, flush=True)
            attempt = s.attempt if only is None else only
            if f is None:
                try:
                    f = open(_output(s, stderr, attempt), "rb")  # noqa: SIM115 - read in a loop
                except FileNotFoundError:
                    pass
                else:  # opened the file just finished (seen before its attempt was committed)
                    if os.fstat(f.fileno()).st_ino == done[0]:
                        f.seek(done[1])
            if f is not None:
                out.write(f.read())
                out.flush()
            if final:  # read after seeing the final state: nothing more will come
                return 0
            ctx.reconcile(every=5.0)
            time.sleep(POLL)
    except KeyboardInterrupt:
        return 130
    finally:
        if f is not None:
            f.close()


def cmd_clusters(args: argparse.Namespace, ctx: Context) -> int:
    reg = ctx.clusters()
    clusters = [c.model_copy(update={"work_dir": str(reg.work_dir(c))}) for c in reg]
    if args.json:
        _print_json([c.model_dump(mode="json") for c in clusters])
        return 0
    rows = [
        [c.name, c.scheduler, c.queue or "-", c.account or "-", c.walltime, c.launcher, c.work_dir]
        for c in clusters
    ]
    headers = ("NAME", "SCHEDULER", "QUEUE", "ACCOUNT", "WALLTIME", "LAUNCHER", "WORK DIR")
    print(text.format_table(headers, rows))
    return 0


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
            help="parameter value (repeatable; values are strings)",
        )

    sp = cmd("run", cmd_run, "submit a workflow file")
    sp.add_argument("file", help="workflow file (YAML or JSON)")
    sp.add_argument("--cluster", "-c", default="local", help="cluster name (default: local)")
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
        help="queue every step at once with Slurm dependencies; no engine needs to run",
    )

    sp = cmd("wait", cmd_wait, "follow an execution until it ends")
    sp.add_argument("id")

    sp = cmd("list", cmd_list, "list executions, newest first")
    sp.add_argument("--state", choices=[s.value for s in ExecutionState])
    sp.add_argument("--limit", "-n", type=int, default=20)
    sp.add_argument("--json", action="store_true")

    sp = cmd("status", cmd_status, "show an execution and its steps")
    sp.add_argument("id", help="execution id or a unique prefix of one")
    sp.add_argument("--json", action="store_true")

    sp = cmd("cancel", cmd_cancel, "cancel an execution's jobs and pending steps")
    sp.add_argument("id")

    sp = cmd("retry", cmd_retry, "run the failed, lost, canceled and skipped steps again")
    sp.add_argument("id")
    sp.add_argument("--wait", "-w", action="store_true", help="follow it until it ends")

    sp = cmd("logs", cmd_logs, "print a step's output")
    sp.add_argument("id")
    sp.add_argument("step")
    sp.add_argument("--stderr", "-e", action="store_true", help="stderr instead of stdout")
    sp.add_argument("--follow", "-f", action="store_true", help="until the step ends")
    sp.add_argument("--attempt", type=int, metavar="N", help="an earlier attempt's output")

    sp = cmd("clusters", cmd_clusters, "list the clusters you can run on")
    sp.add_argument("--json", action="store_true")

    cmd("schema", cmd_schema, "print the JSON Schema of workflow files")

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
    ctx = Context(Path(store).expanduser().absolute(), clusters and clusters.expanduser())
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
