"""Function tasks: ``@stax.task`` turns a Python function into a task whose calls run on a
cluster and return futures.

>>> @stax.task(cluster="slurm", time="00:10:00")
... def train(cfg, data): ...
>>> m = train({"lr": 0.1}, prepare(1000))   # a future at once; prepare's future is an edge
>>> m.result()                               # the return value (or TaskFailed)

How calls become executions: the calls made in one notebook cell (or in a ``with
stax.batch():`` block) form ONE execution, submitted when the cell ends (or when a result of
it is asked for first). Each call is a step (named after the function: ``train``, ``train-2``,
...); a future among the arguments, also nested in lists, dicts or any object, is an edge of
that execution (the upstream result is read on the cluster, never sent through the notebook).
A future of an EARLIER batch is a result that exists or will: the new batch is submitted once
that task has ended (at once when it has; meanwhile by a thread of this kernel), and the
value goes by the path of its result file when both clusters share this file system, else by
value. ``f.map(xs)`` is one sweep step (:mod:`jupyter_stax.core.sweep`): few scheduler jobs
for many elements, a future per element. Outside IPython every call is its own batch unless
it is made inside ``with stax.batch():``.

The first batch for a cluster (and image) runs a probe of its Python first, once per kernel
(:mod:`.probe`): another Python version or no cloudpickle there is a clear error instead of an
unpickling traceback from a job.

Threading contract: calls, ``result()`` and ``batch()`` are for the kernel's thread (any one
thread); a batch waiting for an earlier batch's task is submitted by its own daemon thread,
which touches only that batch.
"""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import operator
import pickle
import re
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ..core import models
from ..core.errors import InvalidWorkflow, StaxError
from ..core.functask import RUNNER_SOURCE, call_header, result_file, task_source
from ..core.models import SubmitOptions
from ..core.states import StepState
from ..core.taskworker import WORKER_ENV
from .taskresults import TaskFailed, UpstreamFailed, load_result, wait_step, wait_steps

if TYPE_CHECKING:
    from ..service import StaxService
    from .api import Execution

__all__ = [
    "TaskFailed",
    "TaskFunction",
    "TaskFuture",
    "UpstreamFailed",
    "batch",
    "futures_execution",
    "gather",
    "task",
]

P = ParamSpec("P")
R = TypeVar("R")

#: the workflow name of a batch's execution
WORKFLOW_NAME = "tasks"
_STEP_RE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class TaskOptions:
    """Where and with what a task runs (the decorator's arguments)."""

    cluster: str | None = None
    image: str | None = None
    retries: int = 0
    resources: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    pack: int | str | None = None
    max_parallel: int | None = None
    expected_seconds: float | None = None


# ---------------------------------------------------------------------- the decorator
def task(
    func: Callable[P, R] | None = None,
    *,
    cluster: str | None = None,
    image: str | None = None,
    gpus: int | None = None,
    time: str | None = None,
    retries: int = 0,
    nodes: int | None = None,
    ntasks: int | None = None,
    cpus_per_task: int | None = None,
    memory: str | None = None,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
    pack: int | str | None = None,
    max_parallel: int | None = None,
    expected_seconds: float | None = None,
) -> Any:
    """``@stax.task`` or ``@stax.task(cluster=..., image=..., gpus=..., time=..., retries=...)``:
    calls of the function return :class:`TaskFuture` s and run on ``cluster`` (None: the
    service's default) in ``image`` (None: the cluster's Python). ``name``: the step name
    (default: the function's). ``pack``, ``max_parallel``, ``expected_seconds``: how
    :meth:`TaskFunction.map` packs elements into scheduler jobs. The options are checked
    here: a wrong one is an error at the decorator, not at the first call."""
    resources = {
        k: v
        for k, v in dict(
            nodes=nodes, ntasks=ntasks, cpus_per_task=cpus_per_task, gpus=gpus,
            memory=memory, time=time,
        ).items()
        if v is not None
    }
    opts = TaskOptions(
        cluster=cluster, image=image, retries=retries, resources=resources,
        env=dict(env or {}), name=name, pack=pack, max_parallel=max_parallel,
        expected_seconds=expected_seconds,
    )

    def wrap(f: Callable[P, R]) -> TaskFunction[P, R]:
        tf = TaskFunction(f, opts)
        tf.step_model(tf.step_name, [], 2)  # InvalidWorkflow now for a bad option
        return tf

    return wrap(func) if func is not None else wrap


class TaskFunction(Generic[P, R]):
    """A function whose calls run as tasks (``__call__``: one task; :meth:`map`: one per
    element); ``.func`` is the plain function (call it to run it here)."""

    def __init__(self, func: Callable[P, R], options: TaskOptions) -> None:
        self.func = func
        self.options = options
        functools.update_wrapper(self, func)

    @property
    def step_name(self) -> str:
        raw = str(self.options.name or getattr(self.func, "__name__", None) or "task")
        name = _STEP_RE.sub("-", raw).strip("-._") or "task"
        return name[:48]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]:
        b = _batch_for_call()
        step = b.add(self, [(args, dict(kwargs))], mapped=False)
        fut: TaskFuture[R] = TaskFuture(b, step, None, self.step_name)
        b.futures.append(fut)
        _after_call(b)
        return fut

    def map(self, *iterables: Iterable[Any]) -> list[TaskFuture[R]]:
        """One task per element (``f.map(xs, ys)`` calls ``f(x, y)`` pairwise, as ``map``
        does), run as ONE sweep step: elements share scheduler jobs (``pack``), a future per
        element."""
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
            (tuple(a), {}) for a in zip(*iterables, strict=False)
        ]
        if not calls:
            return []
        b = _batch_for_call()
        step = b.add(self, calls, mapped=True)
        futs: list[TaskFuture[R]] = [
            TaskFuture(b, step, i, self.step_name) for i in range(len(calls))
        ]
        b.futures += futs
        _after_call(b)
        return futs

    def __reduce__(self) -> tuple[Any, ...]:
        # inside another task (on the cluster) a task function is its plain function; this
        # reduces to it without importing jupyter_stax there
        return (operator.getitem, ([self.func], 0))

    def step_model(
        self, name: str, inputs: list[Any], count: int | None, after: Iterable[str] = (),
        cluster: str | None = None, source: str = RUNNER_SOURCE, python: str | None = None,
        warm: bool = False,
    ) -> models.Step:
        """The step of a call (``source``: the runner with the call, :func:`task_source`);
        ``count``: a map's elements; ``python``: the interpreter the probe found (the task's
        own ``env`` may still name another in ``STAX_PYTHON``); ``warm``: its job may hand it
        to the warm task worker (:mod:`jupyter_stax.core.taskworker`; the task's own ``env``
        may say ``STAX_TASK_WORKER=0``)."""
        o = self.options
        env = {**({"STAX_PYTHON": python} if python else {}), **({WORKER_ENV: "1"} if warm else {})}
        data: dict[str, Any] = {
            "name": name,
            "run": source,
            "language": "python",
            "image": o.image,
            "cluster": cluster,
            "retries": o.retries,
            "resources": dict(o.resources),
            "env": {**env, **o.env},
            "inputs": inputs,
            "after": list(after),
        }
        if count is not None:
            data["sweep"] = {"stax_index": {"range": [0, count]}}
            for k in ("pack", "max_parallel", "expected_seconds"):
                if getattr(o, k) is not None:
                    data[k] = getattr(o, k)
        from pydantic import ValidationError

        try:
            return models.Step.model_validate(data)
        except ValidationError as e:
            from .api import _step_error

            raise _step_error(self.step_name, e) from None

    def __repr__(self) -> str:
        where = self.options.cluster or "the default cluster"
        return f"<task {self.step_name} on {where}>"


# ---------------------------------------------------------------------- futures
class TaskFuture(Generic[R]):
    """The result-to-be of one task call (of one element of a map: ``index``).

    ``result(timeout=None)`` blocks until it is there (``await fut`` does not block the
    kernel's loop); ``execution`` is the :class:`~jupyter_stax.kernel.api.Execution` that
    runs it (monitor, cancel, retry, logs); ``step`` its step name there."""

    def __init__(self, b: _Batch, step: str, index: int | None, task: str) -> None:
        self._batch = b
        self.step = step
        self.index = index
        self.task = task

    @property
    def execution(self) -> Execution:
        """The execution running this task (submits the batch now if it is still open; waits
        while it waits for an earlier batch's task)."""
        return self._batch.submitted_execution()

    def result(self, timeout: float | None = None) -> R:
        """The task's return value. TaskFailed carrying the remote traceback when it raised
        (also an instance of the remote exception's class when that imports here);
        UpstreamFailed when it did not run because a task it takes a value from failed;
        TimeoutError after ``timeout`` seconds."""
        return self._load(timeout=timeout)

    def _load(self, timeout: float | None = None, wait: bool = True) -> R:
        ex = self._batch.submitted_execution()
        value: R = load_result(ex, self.step, self.index, timeout, wait=wait)
        return value

    def done(self) -> bool:
        """Whether the task has ended (result() returns or raises at once)."""
        b = self._batch
        if b.error is not None:
            return True
        if b.execution is None:
            return False
        ex = b.execution.refresh()
        return ex.step(self.step).state.final or ex.final

    def wait(self, timeout: float | None = None) -> None:
        wait_step(self._batch.submitted_execution(), self.step, timeout)

    def __await__(self) -> Generator[Any, None, R]:
        self._batch.flush()
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self.result).__await__()

    def _key(self) -> str:
        return self.step if self.index is None else f"{self.step}[{self.index}]"

    def __repr__(self) -> str:
        b = self._batch
        if b.error is not None:
            state = f"not submitted: {b.error}"
        elif b.execution is None:
            state = "waiting to be submitted"
        else:
            sr = b.execution.model.step(self.step)
            state = f"execution {b.execution.id}, {sr.state.value}"
        return f"<TaskFuture {self._key()}: {state}>"

    def _ipython_display_(self) -> None:
        """The live monitor of its execution (submitting the batch now if needed)."""
        from .ipython import show

        try:
            ex = self.execution
        except StaxError:
            show({"text/plain": repr(self)}, raw=True)
            return
        ex._ipython_display_()


def futures_execution(fut: TaskFuture[Any]) -> Execution:
    """The Execution behind a future: monitor, cancel, retry, logs."""
    if not isinstance(fut, TaskFuture):
        raise TypeError(f"expected a TaskFuture, got {type(fut).__name__}")
    return fut.execution


def gather(*futures: TaskFuture[Any] | Iterable[TaskFuture[Any]], timeout: float | None = None
           ) -> list[Any]:
    """The results of ``futures`` in order (a list of futures counts as its elements, so
    ``gather(f.map(xs))`` works). The first failure raises."""
    flat: list[TaskFuture[Any]] = []
    for f in futures:
        flat.extend([f] if isinstance(f, TaskFuture) else list(f))
    batches = {id(f._batch): f._batch for f in flat}.values()
    for b in batches:
        b.flush()
    for b in batches:  # one wait per execution, not one per future
        mine = [f for f in flat if f._batch is b]
        wait_steps(b.submitted_execution(), {f.step for f in mine}, timeout)
    return [f._load(wait=False) for f in flat]


# ---------------------------------------------------------------------- batches
@dataclass
class _Call:
    fn: TaskFunction[Any, Any]
    step: str
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
    mapped: bool


class _Batch:
    """The calls that become one execution. States: open (taking calls) -> flushing ->
    submitted (``execution``) or failed (``error``: every future raises it)."""

    def __init__(self, service: StaxService | None = None) -> None:
        self.service = service
        self.calls: list[_Call] = []
        self.futures: list[TaskFuture[Any]] = []
        self.names: set[str] = set()
        self.open = True
        self.execution: Execution | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.id = uuid.uuid4().hex[:12]

    def add(self, fn: TaskFunction[Any, Any], calls: list[Any], mapped: bool) -> str:
        base = fn.step_name
        name = base
        for k in itertools.count(2):
            if name not in self.names:
                break
            name = f"{base}-{k}"
        self.names.add(name)
        self.calls.append(_Call(fn, name, calls, mapped))
        return name

    def flush(self) -> None:
        """Submit the calls (no-op once done); errors go to the futures, never lost."""
        global _current
        with self.lock:
            if not self.open:
                return
            self.open = False
            if _current is self:
                _current = None
        try:
            self._submit()
        except BaseException as e:
            self.error = e
            self.done.set()

    def submitted_execution(self) -> Execution:
        self.flush()
        self.done.wait()
        if self.error is not None:
            if isinstance(self.error, StaxError | TimeoutError):
                raise self.error
            raise StaxError(f"the tasks were not submitted: {self.error}") from self.error
        assert self.execution is not None
        return self.execution

    # ------------------------------------------------------------------ submission
    def _submit(self) -> None:
        from .api import _resolve

        svc = _resolve(self.service)
        self.service = svc
        ext: dict[int, TaskFuture[Any]] = {}
        blobs = {c.step: self._pickle(c, ext, probe=True) for c in self.calls}
        if not ext:
            self._finish(svc, blobs)
            return
        ups = list(ext.values())
        if all(f._batch.execution is not None and f.done() for f in ups):
            self._resolve_upstream(svc, ups)
            return

        def later() -> None:
            try:
                for f in ups:
                    f.wait()
                self._resolve_upstream(svc, ups)
            except BaseException as e:
                self.error = e
                self.done.set()

        threading.Thread(target=later, name=f"stax-batch-{self.id}", daemon=True).start()

    def _resolve_upstream(self, svc: StaxService, ups: list[TaskFuture[Any]]) -> None:
        """Earlier batches' tasks have ended: check they completed, then submit with their
        results by path (or value)."""
        for f in ups:
            self._check_upstream(f)
        ext: dict[int, TaskFuture[Any]] = {}
        self._finish(svc, {c.step: self._pickle(c, ext) for c in self.calls})

    def _finish(self, svc: StaxService, blobs: dict[str, tuple[bytes, set[str]]]) -> None:
        from .api import Execution
        from .probe import ensure_python

        where = {(c.fn.options.cluster, c.fn.options.image) for c in self.calls}
        pythons = {(cl, im): ensure_python(svc, cl, im).executable for cl, im in where}
        warm = _warm_worker(svc, where)
        main = self.calls[0].fn.options.cluster
        steps = []
        for c in self.calls:
            blob, after = blobs[c.step]
            try:
                source = task_source(
                    call_header(c.step, len(c.calls) if c.mapped else None) + blob, ref=True
                )
            except ValueError as e:
                raise InvalidWorkflow(f"task {c.step!r}: {e}") from None
            mine = c.fn.options.cluster
            inputs: list[Any] = []
            for up in sorted(after):
                upc = self._call(up)
                if upc.fn.options.cluster != mine:  # another cluster: its result comes along
                    pat = ("*/" if upc.mapped else "") + result_file(up)
                    inputs.append({"from": up, "path": pat})
            steps.append(
                c.fn.step_model(
                    c.step, inputs, len(c.calls) if c.mapped else None, after=sorted(after),
                    cluster=mine if mine != main else None, source=source,
                    python=pythons[(mine, c.fn.options.image)],
                    warm=(mine, c.fn.options.image) in warm,
                )
            )
        try:
            wf = models.Workflow(name=WORKFLOW_NAME, steps=steps)
        except Exception as e:
            raise InvalidWorkflow(f"the tasks do not form a workflow: {e}") from None
        opts = SubmitOptions(base_dir=str(Path.cwd()))
        ex = svc.submit(wf, cluster=main, options=opts)
        self.execution = Execution(svc, ex)
        self.done.set()

    def _call(self, step: str) -> _Call:
        for c in self.calls:
            if c.step == step:
                return c
        raise KeyError(step)

    def _check_upstream(self, f: TaskFuture[Any]) -> None:
        """An earlier batch's task this batch takes a value from must have completed."""
        b = f._batch
        ex = b.submitted_execution()
        sr = ex.refresh().step(f.step)
        ok = sr.state is StepState.COMPLETED
        if not ok and f.index is not None:
            try:
                f.result(0)
                ok = True
            except (TaskFailed, StaxError, TimeoutError):
                ok = False
        if not ok:
            raise UpstreamFailed(
                f"these tasks were not submitted: their upstream task {f._key()!r} (execution "
                f"{ex.id}) {sr.state.value}" + (f": {sr.reason}" if sr.reason else ""),
                upstream=f._key(),
                execution_id=ex.id,
                kind="upstream",
            )

    def _pickle(
        self, c: _Call, ext: dict[int, TaskFuture[Any]], probe: bool = False
    ) -> tuple[bytes, set[str]]:
        """The call's pickle and the steps of this batch it depends on; futures of other
        batches go into ``ext`` (``probe``: only to find them, their values not needed)."""
        import cloudpickle

        after: set[str] = set()
        batch = self
        sink: Any = io.BytesIO()

        class _Pickler(cloudpickle.CloudPickler):  # type: ignore[misc]
            def persistent_id(self, obj: Any) -> Any:
                if not isinstance(obj, TaskFuture):
                    return None
                if obj._batch is batch:
                    after.add(obj.step)
                    return ("step", obj.step, obj.index)
                ext[id(obj)] = obj
                if probe:
                    return ("step", obj.step, obj.index)
                return batch._external_ref(obj)

        _Pickler(sink, protocol=pickle.DEFAULT_PROTOCOL).dump((c.fn.func, c.calls))
        if c.step in after:
            raise InvalidWorkflow(f"task {c.step!r} cannot take its own future as an argument")
        return sink.getvalue(), after

    def _external_ref(self, f: TaskFuture[Any]) -> Any:
        """How a finished task of another batch reaches this one: the path of its result file
        when both clusters see this file system, else its value (through the notebook)."""
        ex = f._batch.submitted_execution()
        sr = ex.step(f.step)
        remote = {c.name for c in ex.service.clusters() if c.remote}
        mine = {c.fn.options.cluster for c in self.calls}
        if sr.cluster not in remote and not (mine & remote) and None not in mine:
            return ("path", str(Path(sr.directory) / result_file(f.step, f.index)))
        return ("value", f.result())


def _warm_worker(
    svc: StaxService, where: set[tuple[str | None, str | None]]
) -> set[tuple[str | None, str | None]]:
    """The (cluster, image) pairs whose tasks may use the warm task worker: no image, and a
    cluster of this machine whose scheduler is ``local`` (the worker is a process here)."""
    from .probe import probed_cluster

    if not any(im is None for _, im in where):
        return set()
    try:
        local = {c.name for c in svc.clusters() if c.scheduler == "local" and not c.remote}
    except StaxError:  # the tasks run as well without it
        return set()
    return {(cl, im) for cl, im in where if im is None and probed_cluster(svc, cl, im) in local}


# the open batch of this kernel (None: none)
_current: _Batch | None = None
_explicit = 0
_hooked = False
_state_lock = threading.Lock()


def _batch_for_call() -> _Batch:
    global _current, _hooked
    with _state_lock:
        if _current is None or not _current.open:
            _current = _Batch()
        b = _current
    if not _hooked and "IPython" in sys.modules:  # never imported: not in IPython
        from .ipython import shell

        sh = shell()
        if sh is not None:
            sh.events.register("post_run_cell", _end_of_cell)
            _hooked = True
    return b


def _after_call(b: _Batch) -> None:
    """Outside a cell (no IPython) and outside ``batch()``: submit now."""
    if _explicit or _hooked:
        return
    b.flush()


def _end_of_cell(*_: Any) -> None:
    """IPython's post_run_cell: the cell's calls go as one execution now. A problem is said
    here once (the futures raise it too)."""
    if _explicit:
        return
    b = _current
    if b is None:
        return
    b.flush()
    if b.error is not None:
        print(f"jupyter_stax: the cell's tasks were not submitted: {b.error}", file=sys.stderr)


@contextmanager
def batch() -> Iterator[None]:
    """Calls made inside go as one execution, submitted at the end of the block."""
    global _explicit, _current
    with _state_lock:
        _explicit += 1
        if _current is None or not _current.open:
            _current = _Batch()
        b = _current
    try:
        yield
    finally:
        with _state_lock:
            _explicit -= 1
            depth = _explicit
        if depth == 0:
            b.flush()
