"""``%load_ext jupyter_stax``: the notebook magics, a thin layer over :mod:`.api`.

* ``%%stax_task NAME [options]`` defines (or redefines) a step of the notebook's workflow from
  the cell body; it runs nothing and shows a one-line summary.
* ``%stax_submit [STEP ...] [--cluster C] [--param K=V] [--detach] [--wait]`` submits the named
  steps and everything they depend on (all steps when none is named), returns the Execution
  at once and shows a live monitor; ``%stax_submit --notebook FILE.ipynb`` runs a notebook.
* ``%stax SUBCOMMAND``: clusters, images, list, status, watch, cancel, retry, logs, export,
  show, remove, reset, picker, help.

Bad input (an unknown option, a cycle, an unknown cluster, a missing parameter ...) is one line
(IPython's ``UsageError``), never a traceback, and nothing is submitted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from IPython.core.error import UsageError

from ..core import text
from ..core.assignments import AssignmentError, parse_assignments, text_assignments
from ..core.errors import StaxError
from ..core.models import ParamValue
from ..service import StaxService
from .api import Execution, Workflow, connect, step_summary
from .ipython import in_kernel, show

__all__ = ["StaxMagics", "load_ipython_extension"]

HELP = """\
jupyter_stax magics

%%stax_task NAME [options]        define (or redefine) step NAME from the cell body (bash)
    --python                      the body is Python (placeholders become stax_param('name'))
    --after A,B                   run after steps A and B complete
    --cluster C  --image I        per-step cluster / StaX image
    --nodes N --ntasks N --cpus-per-task N --gpus N --mem 4G --time HH:MM:SS
    --launcher single|srun|mpirun --retries N
    --sweep NAME=1,2,4 | NAME=0..99 (repeatable; a grid, --sweep zip pairs the lists)
    --max-parallel N --pack auto|N  (sweep: running instances cap, instances per job)
    --env K=V  --param K=V        (repeatable) environment variables / step parameters
    --software FILE               an eFlows4HPC software description (no body; the line
                                  form %stax_task NAME --software FILE works too)
    --input PATH  --from STEP:GLOB  (repeatable) files copied into the step directory first:
                                  notebook-side paths/globs/directories, an upstream step's
    --output GLOB  --fetch auto|manual  files kept and fetched back (to stax-outputs/ID/STEP)

run = %stax_submit [STEP ...] [--cluster C] [--param K=V ...] [--name N]
                   [--on-failure continue|stop] [--detach] [--wait] [--timeout S]
    submit STEP and everything it depends on (all steps when none is named); returns the
    Execution at once and shows a live monitor. --wait blocks until the end and fails when a
    step did not complete. Values are text for the shell-like option line: quote spaces and
    quotes, e.g. --param msg='a b', or from Python: --param msg={shlex.quote(msg)}.
    Whatever the value, a step gets it as data (never run as code).
run = %stax_submit --notebook FILE.ipynb [--param K=V ...] [--cluster C] [--image I]
                   [--cpus-per-task N] [--gpus N] [--mem 4G] [--time HH:MM:SS] [--wait]
    run a whole notebook on the cluster (papermill), --param values injected after its
    cell tagged `parameters`; the executed copy comes back as FILE.<execution id>.ipynb

%stax clusters [NAME]             the clusters you can submit to; NAME: its live numbers
                                  (and a remote cluster's SSH connection)
%stax images [--cluster C]        StaX images, and whether they fit cluster C
%stax build RECIPE [--for C] [--variant K=V] [--force] [--format ch|oci|sif] [--builder B]
            [--catalog F]
    build a recipe's StaX variants here (ch-image) and add them to the catalog
%stax list [--state S] [--limit N]
%stax status [ID]                 (ID: an execution id or a unique prefix; default: the last
%stax watch [ID]                   one this kernel submitted or watched)
%stax cancel [ID] | retry [ID]
%stax logs [ID] STEP [--stderr] [--attempt N]
%stax fetch [ID] [STEP [PATTERN]] [--to DIR] [--overwrite]
                                  outputs here (stax-outputs/ID/STEP; in place on a cluster
                                  that shares this file system); a different local file is kept
%stax show                        the notebook's workflow as a workflow file (YAML)
%stax export FILE [--param K=V]   write it (jupyter stax run FILE runs it), with defaults
%stax export FILE --task NAME [--param K=V]
                                  the @stax.task function NAME as a workflow file (its
                                  arguments are the workflow's parameters)
%stax export-crate [ID] [--to FILE.zip | --dir DIR] [--license URL|SPDX]
                                  a finished execution as a Workflow Run RO-Crate
%stax remove STEP | reset         forget one step / every step
%stax picker                      a form: pick cluster and image, fill resources, submit
%stax help
"""


class _Exit(Exception):
    """argparse's exit after --help (nothing else to do)."""


class MagicParser(argparse.ArgumentParser):
    """argparse whose errors are one-line UsageErrors naming the magic."""

    def __init__(self, magic: str, **kw: Any) -> None:
        super().__init__(prog=magic, add_help=True, allow_abbrev=False, **kw)
        self.magic = magic

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.magic}: {message} (see %stax help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message, file=sys.stderr)
        raise _Exit()


def _params(items: Sequence[str] | None, magic: str) -> dict[str, ParamValue]:
    """``--param`` values, typed as on every surface (:mod:`jupyter_stax.core.assignments`)."""
    try:
        return parse_assignments(items or ())
    except AssignmentError as e:
        raise UsageError(f"{magic}: --param expects KEY=VALUE, got {e.item!r}") from None


def _env(items: Sequence[str] | None, magic: str) -> dict[str, str]:
    try:
        return text_assignments(items or ())
    except AssignmentError as e:
        raise UsageError(f"{magic}: --env expects KEY=VALUE, got {e.item!r}") from None


def _sweep(items: Sequence[str], max_parallel: int | None, pack: str | None) -> dict[str, Any]:
    """``--sweep``, ``--max-parallel`` and ``--pack`` as Step fields (see core/sweep.py)."""
    from ..core.sweep import SweepError, parse_sweep_option

    try:
        out: dict[str, Any] = {"sweep": parse_sweep_option(items)}
    except SweepError as e:
        raise UsageError(f"%%stax_task: {e}") from None
    if max_parallel is not None:
        out["max_parallel"] = max_parallel
    if pack is not None:
        out["pack"] = pack if pack == "auto" else _int_option(pack, "--pack", "auto or N")
    return out


def _int_option(text: str, option: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"%%stax_task: {option} takes {what}, got {text!r}") from None


def _from(item: str) -> dict[str, str]:
    step, sep, glob = item.partition(":")
    if not sep or not step or not glob:
        raise UsageError(
            f"%%stax_task: --from {item!r}: write it STEP:GLOB (e.g. prep:parts/*.bin)"
        )
    return {"from": step, "path": glob}


def _split(line: str, magic: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UsageError(f"{magic}: cannot read the options: {e}") from None


def _task_parser() -> MagicParser:
    p = MagicParser("%%stax_task")
    p.add_argument("name", help="step name")
    p.add_argument("--python", action="store_true", help="the body is Python source")
    p.add_argument("--after", action="append", default=[], metavar="A,B")
    p.add_argument("--image")
    p.add_argument("--cluster")
    p.add_argument("--nodes", type=int)
    p.add_argument("--ntasks", type=int)
    p.add_argument("--cpus-per-task", type=int)
    p.add_argument("--gpus", type=int)
    p.add_argument("--mem", dest="memory")
    p.add_argument("--time")
    p.add_argument("--retries", type=int, default=0)
    p.add_argument("--launcher", choices=("single", "srun", "mpirun"))
    p.add_argument("--env", action="append", metavar="K=V")
    p.add_argument("--param", action="append", metavar="K=V")
    p.add_argument("--software", metavar="FILE")
    p.add_argument("--sweep", action="append", metavar="NAME=VALUES")
    p.add_argument("--max-parallel", type=int)
    p.add_argument("--pack")
    p.add_argument("--input", action="append", default=[], metavar="PATH",
                   help="a notebook-side file, directory or glob copied into the step directory")
    p.add_argument("--from", dest="from_", action="append", default=[], metavar="STEP:GLOB",
                   help="an upstream step's files copied into the step directory")
    p.add_argument("--output", action="append", default=[], metavar="GLOB",
                   help="files of the step directory kept and fetched back")
    p.add_argument("--fetch", choices=("auto", "manual"))
    return p


def _submit_parser() -> MagicParser:
    p = MagicParser("%stax_submit")
    p.add_argument("steps", nargs="*", metavar="STEP")
    p.add_argument("--cluster")
    p.add_argument("--param", action="append", metavar="K=V")
    p.add_argument("--name", help="workflow name of this submission")
    p.add_argument("--on-failure", choices=("continue", "stop"))
    p.add_argument("--detach", action="store_true")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=float, help="seconds --wait waits at most")
    p.add_argument("--no-monitor", action="store_true", help="do not show the live monitor")
    nb = p.add_argument_group("a notebook as the step (see jupyter_stax.core.notebooks)")
    nb.add_argument("--notebook", metavar="FILE.ipynb")
    nb.add_argument("--image")
    nb.add_argument("--cpus-per-task", type=int)
    nb.add_argument("--gpus", type=int)
    nb.add_argument("--mem", dest="memory")
    nb.add_argument("--time")
    return p


#: options of %stax_submit that only a --notebook submission takes
_NOTEBOOK_ONLY = ("image", "cpus_per_task", "gpus", "memory", "time")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _one_line(e: StaxError) -> str:
    return " ".join("; ".join([e.message, *e.details]).split())


class StaxMagics:
    """The magics; ``workflow`` is the notebook's :class:`~.api.Workflow`, ``last`` the last
    execution submitted or watched (the default ID of ``%stax`` subcommands)."""

    def __init__(self, shell: Any, service: StaxService | None = None) -> None:
        self.shell = shell
        self.workflow = Workflow("notebook")
        self._service = service
        self.last: Execution | None = None

    def register(self) -> None:
        """Register the magics with the shell (plain functions: IPython's decorators are typed
        differently from one major version to the next)."""
        add: Any = self.shell.register_magic_function
        add(self.stax_task, "line_cell", "stax_task")
        add(self.stax_submit, "line", "stax_submit")
        add(self.stax, "line", "stax")

    @property
    def service(self) -> StaxService:
        return self._service if self._service is not None else connect()

    def _guard(self, magic: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _Exit:
            return None
        except StaxError as e:
            raise UsageError(f"{magic}: {_one_line(e)}") from None

    # ------------------------------------------------------------------ %%stax_task
    def stax_task(self, line: str, cell: str | None = None) -> None:
        """Define (or redefine) a step from the cell body; see ``%stax help``. The line form
        (``%stax_task NAME --software FILE``) is for steps with no body (IPython refuses a cell
        magic whose body is empty)."""
        if cell is None and "--software" not in line:
            raise UsageError(
                "%stax_task: a step's script is the cell body: use %%stax_task NAME (two %) "
                "in a cell of its own, or %stax_task NAME --software FILE"
            )
        self._guard("%%stax_task", lambda: self._task(line, cell or ""))

    def _task(self, line: str, cell: str) -> None:
        a = _task_parser().parse_args(_split(line, "%%stax_task"))
        after = [x.strip() for item in a.after for x in item.split(",") if x.strip()]
        extra: dict[str, Any] = {}
        if a.software:
            extra["software"] = self._software(a.software)
        if a.sweep:
            extra.update(_sweep(a.sweep, a.max_parallel, a.pack))
        elif a.max_parallel is not None or a.pack is not None:
            raise UsageError("%%stax_task: --max-parallel and --pack apply to a --sweep step")
        extra["inputs"] = list(a.input) + [_from(x) for x in a.from_]
        extra["outputs"] = list(a.output)
        extra["fetch"] = a.fetch
        if a.software and cell.strip():
            raise UsageError(
                "%%stax_task: --software takes the step from the file; leave the cell body empty"
            )
        redefined = a.name in self.workflow
        step = self.workflow.step(
            a.name,
            cell,
            after=after,
            python=a.python,
            image=a.image,
            cluster=a.cluster,
            launcher=a.launcher,
            retries=a.retries,
            env=_env(a.env, "%%stax_task"),
            params=_params(a.param, "%%stax_task"),
            nodes=a.nodes,
            ntasks=a.ntasks,
            cpus_per_task=a.cpus_per_task,
            gpus=a.gpus,
            memory=a.memory,
            time=a.time,
            **extra,
        )
        note = ""
        missing = [x for x in step.after if x not in self.workflow]
        if missing:
            note = f"  (not defined yet: {', '.join(missing)})"
        verb = "redefined" if redefined else "defined"
        after_text = f" after {', '.join(step.after)}" if step.after else ""
        print(
            f"step {step.name} {verb}{after_text}: {step_summary(step)}{note}\n"
            f"workflow {self.workflow.name!r}: {len(self.workflow)} step(s): "
            + ", ".join(s.name for s in self.workflow.steps)
        )

    def _software(self, path: str) -> Any:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UsageError(f"%%stax_task: --software {path}: no such file")
        return str(p.absolute())

    # ------------------------------------------------------------------ %stax_submit
    def stax_submit(self, line: str) -> Execution | None:
        """Submit the notebook's workflow (or some steps and what they need); see
        ``%stax help``."""
        result: Execution | None = self._guard("%stax_submit", lambda: self._submit(line))
        return result

    def _submit(self, line: str) -> Execution:
        a = _submit_parser().parse_args(_split(line, "%stax_submit"))
        if a.notebook is not None:
            ex = self._submit_notebook(a)
        else:
            given = [f"--{k.replace('_', '-')}" for k in _NOTEBOOK_ONLY if getattr(a, k)]
            if given:
                raise UsageError(
                    f"%stax_submit: {', '.join(given)} go with --notebook; a step of the "
                    "notebook's workflow sets its own (%%stax_task --image ...)"
                )
            wf = self.workflow.copy(a.name) if a.name else self.workflow
            ex = wf.submit(
                a.cluster,
                params=_params(a.param, "%stax_submit"),
                steps=a.steps or None,
                detach=a.detach,
                on_failure=a.on_failure,
                service=self.service,
            )
        self.last = ex
        if not a.no_monitor:
            self._show_monitor(ex)
        if a.wait:
            ex.wait(a.timeout)  # ExecutionFailed -> one line
        return ex

    def _submit_notebook(self, a: argparse.Namespace) -> Execution:
        """``%stax_submit --notebook FILE.ipynb``: the notebook as a one-step workflow."""
        from .notebooks import run_notebook

        if a.steps or a.detach or a.on_failure:
            raise UsageError(
                "%stax_submit: --notebook runs that notebook alone: drop STEP names, --detach "
                "and --on-failure"
            )
        return run_notebook(
            a.notebook,
            cluster=a.cluster,
            params=_params(a.param, "%stax_submit"),
            image=a.image,
            name=a.name,
            cpus_per_task=a.cpus_per_task,
            gpus=a.gpus,
            memory=a.memory,
            time=a.time,
            service=self.service,
        )

    def _show_monitor(self, ex: Execution) -> None:
        if in_kernel():
            ex.show_monitor()
        else:
            n = len(ex.steps)
            print(
                f"submitted {ex.id} ({n} step{'s' if n != 1 else ''} on {ex.cluster}); "
                f"%stax status {ex.id} shows how it goes"
            )

    # ------------------------------------------------------------------ %stax
    def stax(self, line: str) -> Any:
        """``%stax help`` lists the subcommands."""
        args = _split(line, "%stax")
        if not args or args[0] in ("help", "-h", "--help"):
            print(HELP)
            return None
        sub, rest = args[0], args[1:]
        handler = getattr(self, f"_cmd_{sub.replace('-', '_')}", None)
        if handler is None:
            raise UsageError(
                f"%stax: unknown subcommand {sub!r}; subcommands: "
                + ", ".join(_SUBCOMMANDS)
                + " (see %stax help)"
            )
        return self._guard(f"%stax {sub}", lambda: handler(rest))

    def _execution(
        self, sub: str, args: list[str], parser: MagicParser | None = None
    ) -> tuple[argparse.Namespace, Execution]:
        """``%stax SUB [ID] ...``: the parsed options and the execution (ID, else the last
        one this kernel submitted or watched)."""
        p = parser or MagicParser(f"%stax {sub}")
        p.add_argument("id", nargs="?")
        a = p.parse_args(args)
        return a, Execution.attach(self._id(a.id, sub), self.service)

    def _id(self, given: str | None, sub: str) -> str:
        if given:
            return given
        if self.last is None:
            raise UsageError(f"%stax {sub}: which execution? give its ID (see %stax list)")
        return self.last.id

    def _cmd_clusters(self, args: list[str]) -> None:
        p = MagicParser("%stax clusters")
        p.add_argument("name", nargs="?")
        a = p.parse_args(args)
        if a.name:  # one cluster: live numbers, and a remote one's connection
            from ..core.cluster_text import detail_text

            print(detail_text(self.service.cluster(a.name)))
            return
        clusters = self.service.clusters()
        print(text.format_table(text.CLUSTER_HEADERS, text.cluster_rows(clusters)))

    def _cmd_images(self, args: list[str]) -> Any:
        p = MagicParser("%stax images")
        p.add_argument("--cluster")
        a = p.parse_args(args)
        listing = self.service.images(a.cluster)
        print(text.images_text(listing))
        for problem in listing.problems:
            print(f"warning: {problem}", file=sys.stderr)
        return None

    def _cmd_build(self, args: list[str]) -> Any:
        from ..core.clusters import ClusterRegistry
        from ..operations.builds import SUMMARY_HEADERS, BuildRequest, build_now, summary_rows

        p = MagicParser("%stax build")
        p.add_argument("recipe")
        p.add_argument("--for", dest="cluster")
        p.add_argument("--variant", action="append", default=[])
        p.add_argument("--force", action="store_true")
        p.add_argument("--format", choices=["ch", "oci", "sif"], default="ch")
        p.add_argument("--catalog")
        p.add_argument("--builder")
        a = p.parse_args(args)
        req = BuildRequest(
            recipe=a.recipe,
            cluster=a.cluster,
            variants=a.variant,
            force=a.force,
            format=a.format,
            catalog=a.catalog,
            builder=a.builder,
        )
        report = build_now(
            ClusterRegistry.load(), req, lambda e: print(f"{e.variant}: {e.phase}", flush=True)
        )
        print(text.format_table(SUMMARY_HEADERS, summary_rows(report)))
        for r in report.failed:
            print(f"{r.name} FAILED (log: {r.log}):\n{r.message}", file=sys.stderr)
        if report.catalog:
            print(f"catalogued in {report.catalog}")
        return report

    def _cmd_list(self, args: list[str]) -> None:
        p = MagicParser("%stax list")
        p.add_argument("--state")
        p.add_argument("--limit", type=int, default=20)
        a = p.parse_args(args)
        items, _cursor = self.service.list(a.state, a.limit)
        if not items:
            print("no executions" + (f" in state {a.state}" if a.state else ""))
            return
        print(text.format_table(text.LIST_HEADERS, text.list_rows(items, _now())))

    def _cmd_status(self, args: list[str]) -> None:
        _, ex = self._execution("status", args)
        print(text.status_text(ex.model, _now()))

    def _cmd_watch(self, args: list[str]) -> Execution:
        p = MagicParser("%stax watch")
        p.add_argument("--interval", type=float, default=1.0)
        a, ex = self._execution("watch", args, p)
        self.last = ex
        if in_kernel():
            ex.show_monitor(a.interval)
        else:
            print(text.status_text(ex.model, _now()))
        return ex

    def _cmd_cancel(self, args: list[str]) -> None:
        ex = self._execution("cancel", args)[1].cancel()
        said = ex.state if ex.final else "cancel requested"
        print(f"execution {ex.id}: {said}")

    def _cmd_retry(self, args: list[str]) -> None:
        ex = self._execution("retry", args)[1].retry()
        again = [s.name for s in ex.steps if not s.state.final]
        print(f"retrying {len(again)} step(s) of {ex.id}: {', '.join(again)}")

    def _cmd_logs(self, args: list[str]) -> None:
        p = MagicParser("%stax logs")
        p.add_argument("ids", nargs="+", metavar="[ID] STEP")
        p.add_argument("--stderr", action="store_true")
        p.add_argument("--attempt", type=int)
        a = p.parse_args(args)
        if len(a.ids) > 2:
            p.error("expected [ID] STEP")
        eid, step = (a.ids[0], a.ids[1]) if len(a.ids) == 2 else (None, a.ids[0])
        ex = Execution.attach(self._id(eid, "logs"), self.service)
        data = ex.logs(step, "stderr" if a.stderr else "stdout", attempt=a.attempt)
        sys.stdout.write(data if data.endswith("\n") or not data else data + "\n")

    def _cmd_fetch(self, args: list[str]) -> None:
        from ..core.staging import fetch_text

        p = MagicParser("%stax fetch")
        p.add_argument("ids", nargs="*", metavar="[ID] [STEP [PATTERN]]")
        p.add_argument("--to", metavar="DIR")
        p.add_argument("--overwrite", action="store_true")
        a = p.parse_args(args)
        if len(a.ids) > 3:
            p.error("expected [ID] [STEP [PATTERN]]")
        ids = list(a.ids)
        eid = ids.pop(0) if len(ids) == 3 or (ids and self._looks_like_id(ids[0])) else None
        step, pattern = [*ids, None, None][:2]
        ex = Execution.attach(self._id(eid, "fetch"), self.service)
        print(fetch_text(ex.fetch_result(step, pattern, to=a.to, overwrite=a.overwrite)))

    def _looks_like_id(self, word: str) -> bool:
        try:
            self.service.get(word)
        except StaxError:
            return False
        return True

    def _cmd_show(self, args: list[str]) -> None:
        MagicParser("%stax show").parse_args(args)
        print(self.workflow.to_yaml(), end="")

    def _cmd_export(self, args: list[str]) -> None:
        p = MagicParser("%stax export")
        p.add_argument("file")
        p.add_argument("--param", action="append", metavar="K=V", help="default values")
        p.add_argument("--task", metavar="NAME", help="a @stax.task function of the notebook")
        a = p.parse_args(args)
        if a.task is not None:
            from .taskexport import export
            from .tasks import TaskFunction

            fn = self.shell.user_ns.get(a.task)
            if not isinstance(fn, TaskFunction):
                raise UsageError(f"%stax export --task: {a.task!r} is not a @stax.task function")
            path = export(fn, a.file, params=_params(a.param, "%stax export"))
            print(f"wrote {path}; run it with: jupyter stax run {path} --param NAME=VALUE ...")
            return
        wf = self.workflow.copy()
        wf.params.update(_params(a.param, "%stax export"))
        try:
            wf.check(params={})
            hint = ""
        except StaxError as e:
            if not all("no value is given" in d for d in e.details):
                raise
            hint = " --param NAME=VALUE ..."  # placeholders without a default: give them there
        path = wf.export(a.file)
        print(f"wrote {path} ({len(wf)} steps); run it with: jupyter stax run {path}{hint}")

    def _cmd_export_crate(self, args: list[str]) -> None:
        p = MagicParser("%stax export-crate")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--to", metavar="FILE")
        where.add_argument("--dir", metavar="DIR")
        p.add_argument("--license", metavar="URL|SPDX")
        a, ex = self._execution("export-crate", args, p)
        path = ex.export_crate(a.to, dir=a.dir, license=a.license)
        print(f"wrote the Workflow Run RO-Crate of {ex.id} to {path}")

    def _cmd_remove(self, args: list[str]) -> None:
        p = MagicParser("%stax remove")
        p.add_argument("step")
        a = p.parse_args(args)
        if a.step not in self.workflow:
            raise UsageError(
                f"%stax remove: no step {a.step!r}; steps: "
                + (", ".join(s.name for s in self.workflow.steps) or "none")
            )
        self.workflow.remove(a.step)
        print(f"removed step {a.step}; {len(self.workflow)} left")

    def _cmd_reset(self, args: list[str]) -> None:
        MagicParser("%stax reset").parse_args(args)
        self.workflow.clear()
        print("the notebook's workflow has no steps now")

    def _cmd_picker(self, args: list[str]) -> Any:
        MagicParser("%stax picker").parse_args(args)
        from .picker import Picker

        picker = Picker(self.workflow, self.service, on_submit=self._picked)
        show(picker)
        return None

    def _picked(self, ex: Execution) -> None:
        self.last = ex


_SUBCOMMANDS = [name[len("_cmd_") :] for name in vars(StaxMagics) if name.startswith("_cmd_")] + [
    "help"
]


def load_ipython_extension(ipython: Any) -> None:
    StaxMagics(ipython).register()


def unload_ipython_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        for name in ("stax", "stax_submit", "stax_task"):
            magics[kind].pop(name, None)
