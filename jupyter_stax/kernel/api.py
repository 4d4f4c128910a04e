"""The public Python API of notebooks (the magics are a thin layer over it):

>>> import jupyter_stax as stax
>>> wf = stax.Workflow("sums")
>>> wf.step("make", "seq {{n}} > numbers.txt", time="00:05:00")
>>> wf.step("total", "awk '{s+=$1} END {print s}' ../make/numbers.txt", after="make")
>>> run = wf.submit(cluster="slurm", params={"n": 10})
>>> run.wait().logs("total")
'55\\n'

:func:`connect` picks the service: the Jupyter server's engine when this process runs under a
server with jupyter_stax (kernels get ``$JUPYTER_STAX_SERVER_URL``; a server found through its
runtime file that serves the same store counts too), else the store on this machine with its
background engine (started on demand, it outlives the kernel: a kernel restart loses nothing
either way).
"""

from __future__ import annotations

import glob
import threading
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import ValidationError

from ..core import models
from ..core.errors import InvalidWorkflow, NotFound, StaxError
from ..core.models import ParamValue, StepRun, SubmitOptions
from ..core.staging import OUTPUTS_DIR, FetchResult, fetch_request
from ..core.states import StepState
from ..follow import FollowTimeout, Poll, read_all, wait_final
from ..service import StaxService, step_of

if TYPE_CHECKING:
    from .monitor import Monitor

__all__ = ["Execution", "ExecutionFailed", "Workflow", "connect", "set_service"]

_service: StaxService | None = None
_service_lock = threading.Lock()

#: keyword arguments of :meth:`Workflow.step` that go into ``Step.resources``
RESOURCE_KEYS = ("nodes", "ntasks", "cpus_per_task", "gpus", "memory", "time")


class ExecutionFailed(StaxError):
    """``wait()`` saw the execution end without completing; ``execution`` is the final one."""

    http_status = 409

    def __init__(self, message: str, execution: Execution, details: Iterable[str] = ()) -> None:
        super().__init__(message, details=list(details))
        self.execution = execution


def connect(*, refresh: bool = False) -> StaxService:
    """The service this process talks to (found once, then reused; ``refresh`` looks again)."""
    global _service
    with _service_lock:
        if _service is None or refresh:
            from ..client import find_server
            from ..engine.store import default_store_path
            from ..service import LocalService

            svc: StaxService | None = find_server(default_store_path())
            _service = svc if svc is not None else LocalService()
        return _service


def set_service(service: StaxService | None) -> None:
    """Use ``service`` from now on (None: find one again on next use)."""
    global _service
    with _service_lock:
        _service = service


def _resolve(service: StaxService | None) -> StaxService:
    return service if service is not None else connect()


def _checked(
    wf: models.Workflow,
    params: Mapping[str, ParamValue] | None,
    steps: Iterable[str] | None,
) -> models.Workflow:
    from ..core.dag import check, select

    wf = select(wf, steps)
    check(wf, dict(params or {}))
    return wf


def _step_error(name: str, e: ValidationError) -> InvalidWorkflow:
    problems = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"] if x != "resources")
        msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}" if loc else msg)
    return InvalidWorkflow(f"step {name!r} is not valid: " + "; ".join(problems))


class Workflow:
    """Steps defined one at a time (what ``%%stax_task`` cells build). Redefining a step
    replaces it in place; nothing is checked as a whole until :meth:`check` or
    :meth:`submit`."""

    def __init__(
        self,
        name: str = "notebook",
        *,
        params: Mapping[str, ParamValue] | None = None,
        description: str | None = None,
        on_failure: str = "continue",
    ) -> None:
        self.name = name
        self.params: dict[str, ParamValue] = dict(params or {})
        self.description = description
        if on_failure not in ("continue", "stop"):
            raise InvalidWorkflow(f"on_failure must be continue or stop, not {on_failure!r}")
        self.on_failure: models.OnFailure = "stop" if on_failure == "stop" else "continue"
        self._steps: dict[str, models.Step] = {}

    # ------------------------------------------------------------------ building
    def step(
        self,
        name: str,
        run: str | None = None,
        *,
        after: str | Iterable[str] = (),
        python: bool = False,
        image: str | None = None,
        cluster: str | None = None,
        launcher: str | None = None,
        retries: int = 0,
        env: Mapping[str, str] | None = None,
        params: Mapping[str, ParamValue] | None = None,
        nodes: int | None = None,
        ntasks: int | None = None,
        cpus_per_task: int | None = None,
        gpus: int | None = None,
        memory: str | None = None,
        time: str | None = None,
        sweep: Mapping[str, Any] | None = None,
        max_parallel: int | None = None,
        pack: int | str | None = None,
        inputs: Iterable[str | Mapping[str, str]] = (),
        outputs: Iterable[str] = (),
        fetch: str | None = None,
        **extra: Any,
    ) -> models.Step:
        """Define (or redefine) the step ``name`` running ``run`` (bash; Python with
        ``python=True``). InvalidWorkflow with every problem of the step in one line.

        ``sweep={"n": [1, 2, 4], "seed": range(100)}`` runs it once per combination (a
        ``range`` is kept as a range; ``"zip": True`` pairs the lists), at most
        ``max_parallel`` at once, ``pack`` instances per scheduler job (see core/sweep.py).
        ``inputs``: notebook-side paths/globs/directories, or ``{"from": STEP, "path": GLOB}``,
        copied into the step directory before it is submitted; ``outputs``: patterns of the
        step's files fetched back (``fetch="manual"``: only on request)."""
        if sweep is not None:
            extra["sweep"] = {
                k: {"range": [v.start, v.stop, v.step]} if isinstance(v, range) else v
                for k, v in sweep.items()
            }
        extra.update(max_parallel=max_parallel, pack=pack)
        resources = {
            k: v
            for k, v in dict(
                nodes=nodes,
                ntasks=ntasks,
                cpus_per_task=cpus_per_task,
                gpus=gpus,
                memory=memory,
                time=time,
            ).items()
            if v is not None
        }
        data: dict[str, Any] = {
            "name": name,
            "run": run if run is not None else "",
            "after": [after] if isinstance(after, str) else list(after),
            "language": "python" if python else "bash",
            "image": image,
            "cluster": cluster,
            "retries": retries,
            "env": dict(env or {}),
            "params": dict(params or {}),
            "resources": resources,
            "inputs": [i if isinstance(i, str) else dict(i) for i in inputs],
            "outputs": list(outputs),
            **{k: v for k, v in {**extra, "fetch": fetch}.items() if v is not None},
        }
        if launcher is not None:
            data["launcher"] = launcher
        try:
            step = models.Step.model_validate(data)
        except ValidationError as e:
            raise _step_error(name, e) from None
        self._steps[step.name] = step
        return step

    def remove(self, name: str) -> None:
        if name not in self._steps:
            raise KeyError(name)
        del self._steps[name]

    def clear(self) -> None:
        self._steps.clear()

    @property
    def steps(self) -> list[models.Step]:
        return list(self._steps.values())

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    def __len__(self) -> int:
        return len(self._steps)

    def __getitem__(self, name: str) -> models.Step:
        return self._steps[name]

    # ------------------------------------------------------------------ whole workflow
    def model(self) -> models.Workflow:
        """The workflow model (InvalidWorkflow when there is no step yet)."""
        if not self._steps:
            raise InvalidWorkflow(
                f"workflow {self.name!r} has no steps yet: define one with %%stax_task NAME "
                "(or Workflow.step)"
            )
        try:
            return models.Workflow(
                name=self.name,
                description=self.description,
                params=self.params,
                steps=self.steps,
                on_failure=self.on_failure,
            )
        except ValidationError as e:
            raise InvalidWorkflow(
                f"workflow {self.name!r} is not valid: "
                + "; ".join(str(err["msg"]) for err in e.errors())
            ) from None

    def check(
        self,
        params: Mapping[str, ParamValue] | None = None,
        steps: Iterable[str] | None = None,
    ) -> models.Workflow:
        """Check ``steps`` and what they depend on (all steps when None) as :meth:`submit`
        would: unknown steps, cycles, unknown steps in ``after``, missing params, placeholders;
        the model of what would be submitted. Nothing is submitted."""
        return _checked(self.model(), params, steps)

    def copy(self, name: str | None = None) -> Workflow:
        """A workflow with the same steps and parameters (``name``: another name)."""
        wf = Workflow(
            name or self.name,
            params=self.params,
            description=self.description,
            on_failure=self.on_failure,
        )
        wf._steps = dict(self._steps)
        return wf

    def submit(
        self,
        cluster: str | None = None,
        *,
        params: Mapping[str, ParamValue] | None = None,
        steps: Iterable[str] | None = None,
        detach: bool = False,
        on_failure: str | None = None,
        service: StaxService | None = None,
    ) -> Execution:
        """Submit ``steps`` and everything they depend on (all steps when None) to
        ``cluster`` (None: the service's default); returns at once with the Execution. What
        would be submitted is checked first: nothing is submitted when something is wrong
        (the cluster is checked by the service)."""
        svc = _resolve(service)
        names = list(steps) if steps else None
        wf = self.model()
        _checked(wf, params, names)
        try:
            opts = SubmitOptions.model_validate({"detached": detach, "on_failure": on_failure})
        except ValidationError:
            raise InvalidWorkflow(
                f"on_failure must be continue or stop, not {on_failure!r}"
            ) from None
        ex = svc.submit(wf, cluster=cluster, params=dict(params or {}), options=opts, steps=names)
        return Execution(svc, ex)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """The workflow as a workflow file holds it (defaults left out)."""
        data: dict[str, Any] = self.model().model_dump(
            mode="json", exclude_defaults=True, exclude_none=True, by_alias=True
        )
        data.setdefault("name", self.name)
        return data

    def to_yaml(self) -> str:
        """The workflow file's text; scripts as literal blocks (``run: |``)."""
        import yaml

        class Dumper(yaml.SafeDumper):
            pass

        def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
            style = "|" if "\n" in value and not value.startswith(" ") else None
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

        Dumper.add_representer(str, text)
        return str(yaml.dump(self.to_dict(), Dumper=Dumper, sort_keys=False, allow_unicode=True))

    def export(self, path: str | Path) -> Path:
        """Write the workflow file ``path`` (``jupyter stax run PATH`` runs it); the path."""
        p = Path(path).expanduser()
        p.write_text(self.to_yaml())
        return p

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> Workflow:
        """A builder holding the steps of a workflow file (or YAML text, or a mapping)."""
        from ..core.documents import load_workflow

        model = load_workflow(dict(source) if isinstance(source, Mapping) else source)
        wf = cls(
            model.name,
            params=model.params,
            description=model.description,
            on_failure=model.on_failure,
        )
        for s in model.steps:
            wf._steps[s.name] = s
        return wf

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {len(self)} step(s): {', '.join(self._steps)}>"

    def _repr_html_(self) -> str:
        from html import escape

        if not self._steps:
            return f"<i>workflow {escape(self.name)}: no steps yet</i>"
        rows = "".join(
            f"<tr><td><b>{escape(s.name)}</b></td><td>{escape(', '.join(s.after) or '-')}</td>"
            f"<td>{escape(step_summary(s))}</td></tr>"
            for s in self.steps
        )
        return (
            f"<div class='stax-workflow'><b>{escape(self.name)}</b>"
            "<table><tr><th>step</th><th>after</th><th>runs</th></tr>"
            f"{rows}</table></div>"
        )


def step_summary(step: models.Step) -> str:
    """One line: what the step asks for (``bash, 5 lines; ntasks=1, time=00:05:00``)."""
    lines = len(step.run.strip().splitlines())
    parts = [f"{step.language}, {lines} line{'s' if lines != 1 else ''}"]
    if step.notebook is not None:
        parts = [f"notebook {step.notebook}"]
    if step.software is not None:
        what = step.software if isinstance(step.software, str) else "inline"
        parts = [
            f"eFlows4HPC software {Path(what).name if isinstance(step.software, str) else what}"
        ]
    res = step.resources.model_dump(exclude_none=True)
    if res:
        parts.append(", ".join(f"{k}={v}" for k, v in res.items()))
    for key in ("image", "cluster", "launcher"):
        value = getattr(step, key, None)
        if value:
            parts.append(f"{key}={value}")
    if step.retries:
        parts.append(f"retries={step.retries}")
    if step.sweep is not None:
        from ..core.sweep import spec

        sw = spec(step.sweep)
        parts.append(f"sweep {sw.describe()} = {len(sw):,} instances")
    if step.params:
        parts.append("params: " + ", ".join(step.params))
    if step.env:
        parts.append("env: " + ", ".join(step.env))
    return "; ".join(parts)


class Execution:
    """A submitted workflow, as this process last saw it. Every method reads the service
    again; ``model`` is the last :class:`~jupyter_stax.core.models.Execution` read."""

    def __init__(self, service: StaxService, model: models.Execution) -> None:
        self.service = service
        self.model = model
        #: the execution count of the cell whose magic displayed a monitor of this execution
        self._shown_in: int | None = None
        self._monitors: weakref.WeakSet[Monitor] = weakref.WeakSet()

    @classmethod
    def attach(cls, execution_id: str, service: StaxService | None = None) -> Execution:
        """An execution submitted earlier (by any client), by id or unique prefix."""
        svc = _resolve(service)
        return cls(svc, svc.get(execution_id))

    # ------------------------------------------------------------------ reading
    @property
    def id(self) -> str:
        return self.model.id

    @property
    def state(self) -> str:
        return self.model.state.value

    @property
    def cluster(self) -> str:
        return self.model.cluster

    @property
    def steps(self) -> list[StepRun]:
        return self.model.steps

    @property
    def final(self) -> bool:
        return self.model.state.final

    def step(self, name: str) -> StepRun:
        return step_of(self.model, name)

    def refresh(self) -> Execution:
        self.model = self.service.get(self.model.id)
        return self

    def executed_notebook(self, step: str | None = None) -> Path | None:
        """A notebook step's executed copy here (see :mod:`.notebooks`); None until it ended."""
        from ..core.notebooks import executed_notebook

        return executed_notebook(self.model, step)

    def wait(
        self, timeout: float | None = None, *, check: bool = True, interval: float = 0.5
    ) -> Execution:
        """Block until the execution is final (looking at most every ``interval`` seconds);
        ``self``. ExecutionFailed (naming the steps that did not complete and why) when it did
        not complete and ``check``; TimeoutError after ``timeout`` seconds."""
        self._follow(timeout, interval, None)
        return self._ended(check)

    async def wait_async(
        self, timeout: float | None = None, *, check: bool = True, interval: float = 0.5
    ) -> Execution:
        """:meth:`wait` for ``await`` in a notebook: the kernel's event loop (and so the live
        monitors) keeps running meanwhile; cancelling the await stops the wait at once."""
        import asyncio

        stop = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._follow, timeout, interval, stop)
        finally:
            stop.set()  # the worker thread ends now, also when the await was cancelled
        return self._ended(check)

    def _follow(self, timeout: float | None, interval: float, stop: threading.Event | None) -> None:
        """Follow until final (``model`` is every look); TimeoutError after ``timeout``."""

        def saw(ex: models.Execution) -> None:
            self.model = ex

        try:
            wait_final(
                self.service,
                self.id,
                timeout=timeout,
                poll=Poll.up_to(interval),
                stop=stop,
                on_look=saw,
            )
        except FollowTimeout as e:
            self.model = e.execution
            raise

    def _ended(self, check: bool) -> Execution:
        """After the wait: the monitors of this execution show the end now (a blocking wait
        held the kernel's loop, so their own polling could not), then the check."""
        for m in list(self._monitors):
            if m.closed:
                continue
            try:
                m.wait(timeout=30)
            except Exception:
                pass  # the monitor shows its own error line
            m.send_all()
        if check and self.state != "completed":
            raise self._failure()
        return self

    def _failure(self) -> ExecutionFailed:
        bad = [s for s in self.steps if s.state is not StepState.COMPLETED]
        details = []
        for s in bad:
            what = s.state.value
            if s.reason:
                what += f": {s.reason}"
            elif s.exit_code is not None:
                what += f", exit code {s.exit_code}"
            details.append(f"{s.name}: {what}")
        return ExecutionFailed(
            f"execution {self.id} {self.state}: "
            + ", ".join(f"{s.name} {s.state.value}" for s in bad)
            + f" (logs: %stax logs {self.id} STEP --stderr)",
            self,
            details,
        )

    def result(
        self, step: str, index: int | None = None, *, timeout: float | None = None
    ) -> Any:
        """The return value of the function task ``step`` (``index``: of that element of a
        map), read from its step directory: also after a kernel restart, from an execution
        found with :meth:`attach`. Waits until the step is final; TaskFailed (with the remote
        traceback) when it raised, UpstreamFailed when an upstream task failed (see
        :mod:`jupyter_stax.kernel.tasks`)."""
        from .taskresults import load_result

        return load_result(self, step, index, timeout)

    def logs(self, step: str, stream: str = "stdout", *, attempt: int | None = None) -> str:
        """The whole output of a step so far (``stream``: stdout or stderr)."""
        return "".join(read_all(self.service, self.id, step, stream, attempt))

    # ------------------------------------------------------------------ files
    def fetch(
        self, step: str | None = None, pattern: str | None = None, *,
        to: str | Path | None = None, overwrite: bool = False,
    ) -> list[Path]:
        """Bring outputs here (every step's, or ``step``'s; ``pattern``: other files of its
        directory); the local path of each file. Files of a cluster that shares this file
        system stay where they are (``to``: copy them there). A different local file is kept
        unless ``overwrite``. Raises when a fetch failed (the reason, and what to do)."""
        res = self.fetch_result(step, pattern, to=to, overwrite=overwrite)
        failed = [s for s in res.steps if s.fetch == "failed"]
        if failed:
            raise StaxError("; ".join(s.warning or f"step {s.step}: failed" for s in failed))
        return [Path(p) for p in res.paths()]

    def fetch_result(
        self, step: str | None = None, pattern: str | None = None, *,
        to: str | Path | None = None, overwrite: bool = False,
    ) -> FetchResult:
        """What :meth:`fetch` did, step by step (files, sizes, sha256, notes)."""
        req = fetch_request(step=step, pattern=pattern, to=None if to is None else str(to),
                            overwrite=overwrite)
        res = self.service.fetch(self.id, req)
        self.refresh()
        return res

    def open(self, step: str, path: str, mode: str = "r") -> IO[Any]:
        """One file of a step's directory, opened here (``mode`` "r" or "rb"): fetched alone
        through the cluster's transport (not the whole directory), or read in place, e.g.
        ``pd.read_csv(run.open("sim", "results/a.csv"))``."""
        if mode not in ("r", "rb"):
            raise ValueError("mode must be 'r' or 'rb'")
        sr = step_of(self.model, step)
        to = None
        if any(c.name == sr.cluster and c.remote for c in self.service.clusters()):
            # a private copy, always the step's current file (the user's copies are untouched)
            opts = self.model.options
            root = Path(opts.outputs_dir or Path(opts.base_dir or ".") / OUTPUTS_DIR)
            to = root / self.id / ".open" / step
        # the name is literal: its glob characters ([, ], *, ?) match only themselves
        res = self.fetch_result(step, glob.escape(path), to=to, overwrite=True)
        wanted = path.strip("/").removeprefix("./")
        for s in res.steps:
            for f in s.files:
                if f.path == wanted and f.local:
                    return open(f.local, mode)
            if s.warning:
                raise StaxError(f"step {step!r}: {path}: {s.warning}")
        raise NotFound(f"step {step!r} has no file {path!r} (a regular file in its directory)")

    # ------------------------------------------------------------------ acting
    def cancel(self) -> Execution:
        self.model = self.service.cancel(self.id)
        return self

    def retry(self) -> Execution:
        """Run the failed, lost, canceled and skipped steps again."""
        self.model = self.service.retry(self.id)
        return self

    def export_crate(
        self,
        to: str | Path | None = None,
        *,
        dir: str | Path | None = None,
        license: str | None = None,
    ) -> Path:
        """Write this finished execution as a Workflow Run RO-Crate: a zip (``to``, default
        ``./WORKFLOW-ID.crate.zip``) or a new directory (``dir``); ``license``: a URL or SPDX
        id the crate states. Conflict while it runs."""
        if dir is not None:
            return self.service.export_crate(self.id, Path(dir), as_dir=True, license=license)
        if to is None:
            from ..operations.crate import crate_file_name

            to = crate_file_name(self.model)
        return self.service.export_crate(self.id, Path(to), license=license)

    def monitor(self, interval: float = 1.0) -> Monitor:
        """A live widget of this execution (display it)."""
        from .monitor import Monitor

        m = Monitor(self.service, self.id, interval=interval, execution=self.model)
        self._monitors.add(m)
        return m

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        done, total = self.model.progress
        return f"<Execution {self.id} on {self.cluster}: {self.state}, {done}/{total} steps done>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from .display import execution_text

        p.text(execution_text(self.model))

    def _repr_html_(self) -> str:
        from .display import execution_html

        return execution_html(self.model)

    def _ipython_display_(self) -> None:
        """In a kernel: a live monitor (nothing when a magic of the same cell showed one
        already); elsewhere the text and HTML status."""
        from .ipython import in_kernel, shell, show

        if in_kernel():
            if self._shown_in is None or self._shown_in != shell().execution_count:
                self.show_monitor()
            return
        self.refresh()
        show({"text/plain": self._text(), "text/html": self._repr_html_()}, raw=True)

    def show_monitor(self, interval: float = 1.0) -> None:
        """Display a live monitor of this execution (in a kernel); displaying the Execution
        as the result of the same cell then shows nothing more."""
        from .ipython import shell, show

        sh = shell()
        self._shown_in = sh.execution_count if sh is not None else None
        show(self.monitor(interval=interval))

    def _text(self) -> str:
        from .display import execution_text

        return execution_text(self.model)
