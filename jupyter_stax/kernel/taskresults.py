"""The value (or the error) of a function task, read from its step directory: what
``TaskFuture.result()`` and ``Execution.result(step)`` return. Works with nothing held in
memory, so it serves after a kernel restart too (``stax.Execution.attach(id).result(step)``).

Files of a cluster that shares this file system are read in place; a remote cluster's come
through its transport (``Execution.open``: one file fetched, never the whole directory). A
result is unpickled only after :func:`~jupyter_stax.core.functask.read_result_file` checked it.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import StaxError
from ..core.functask import (
    ResultRefused,
    TaskError,
    error_file,
    read_result_file,
    result_file,
)
from ..core.staging import OUTPUTS_DIR
from ..core.states import StepState
from ..follow import Pacer, Poll

if TYPE_CHECKING:
    from .api import Execution

__all__ = ["TaskFailed", "UpstreamFailed", "load_result", "wait_step", "wait_steps"]


class TaskFailed(StaxError):
    """A function task did not return a value. ``remote_traceback``: the traceback text from
    the cluster (empty when the task never ran its function); ``remote_type``: the exception's
    class when it imports here (None otherwise), ``remote_type_name`` its dotted name. When the
    class imports, the error raised is also an instance of it (``except ValueError`` works)."""

    http_status = 409

    def __init__(
        self,
        message: str,
        *,
        task: str = "",
        execution_id: str = "",
        remote_type_name: str = "",
        remote_traceback: str = "",
        kind: str = "",
    ) -> None:
        super().__init__(message)
        self.task = task
        self.execution_id = execution_id
        self.remote_type_name = remote_type_name
        self.remote_traceback = remote_traceback
        self.kind = kind
        self.remote_type = _import_type(remote_type_name) if remote_type_name else None

    def __str__(self) -> str:
        if not self.remote_traceback:
            return self.message
        return f"{self.message}\n\nremote traceback:\n{self.remote_traceback.rstrip()}"


class UpstreamFailed(TaskFailed):
    """The task did not run: a task it takes a value from did not complete (``upstream``)."""

    def __init__(self, message: str, *, upstream: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.upstream = upstream


def _import_type(name: str) -> type[BaseException] | None:
    module, _, qual = name.rpartition(".")
    if not module:
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


_MIXED: dict[type[BaseException], type[TaskFailed]] = {}
_mixed_lock = threading.Lock()


def task_failed(err: TaskError, task: str, execution_id: str) -> TaskFailed:
    """The TaskFailed of an error record; also an instance of the remote exception's class
    when that imports here and can be mixed in."""
    where = f"task {task!r} (execution {execution_id})"
    if err.kind == "exception":
        message = f"{where} raised {err.summary()}"
    else:
        message = f"{where} could not run: {err.summary()}"
    kw: dict[str, Any] = dict(
        task=task,
        execution_id=execution_id,
        remote_type_name=err.type,
        remote_traceback=err.traceback,
        kind=err.kind,
    )
    remote = _import_type(err.type) if err.kind == "exception" else None
    if remote is not None and not issubclass(remote, TaskFailed):
        try:
            with _mixed_lock:
                cls = _MIXED.get(remote)
                if cls is None:
                    cls = type(f"TaskFailed[{remote.__name__}]", (TaskFailed, remote), {})
                    _MIXED[remote] = cls
            return cls(message, **kw)
        except Exception:  # a layout conflict (OSError ...) or an __init__ of its own
            pass
    return TaskFailed(message, **kw)


# ---------------------------------------------------------------------- waiting
def wait_step(ex: Execution, step: str, timeout: float | None = None) -> None:
    """Until the step is final (or the execution: a step that never started ends with it).
    TimeoutError after ``timeout`` seconds."""
    wait_steps(ex, {step}, timeout)


def wait_steps(ex: Execution, steps: set[str], timeout: float | None = None) -> None:
    """Until every step of ``steps`` is final (or the execution), one look for all of them."""
    pacer = Pacer(Poll(0.1, 1.0), timeout=timeout)
    last = None
    while True:
        ex.refresh()
        runs = [ex.step(s) for s in sorted(steps)]
        if ex.final or all(sr.state.final for sr in runs):
            return
        if pacer.expired:
            open_ = [f"{sr.name} {sr.state.value}" for sr in runs if not sr.state.final]
            raise TimeoutError(
                f"task(s) of execution {ex.id} still not done after {timeout:g} s: "
                + ", ".join(open_)
            )
        now = tuple((sr.state, sr.attempt) for sr in runs)
        changed, last = now != last, now
        pacer.pause(changed)


# ---------------------------------------------------------------------- reading
_REMOTE: dict[int, dict[str, bool]] = {}


def _remote(ex: Execution, cluster: str) -> bool:
    """Whether ``cluster`` is remote (asked once per service and cluster name)."""
    known = _REMOTE.setdefault(id(ex.service), {})
    if cluster not in known:
        known.update({c.name: c.remote for c in ex.service.clusters()})
    return known.get(cluster, False)


def _read(ex: Execution, step: str, rel: str) -> bytes | None:
    """The bytes of a file of the step directory (None: absent), read only when
    :func:`read_result_file` accepts it (ResultRefused otherwise)."""
    sr = ex.step(step)
    if not _remote(ex, sr.cluster):
        try:
            return read_result_file(Path(sr.directory) / rel, Path(sr.directory).parent)
        except FileNotFoundError:
            return None
    try:
        f = ex.open(step, rel, "rb")  # this one file, through the cluster's transport
    except StaxError:
        return None
    with f:
        opts = ex.model.options
        root = Path(opts.outputs_dir or Path(opts.base_dir or ".") / OUTPUTS_DIR) / ex.id
        return read_result_file(f.name, root)


def _error(ex: Execution, step: str, index: int | None) -> TaskError | None:
    """The task's error record, read under the same rules as a result (it names a class that
    is imported here): one that others could have written is not believed."""
    try:
        data = _read(ex, step, error_file(step, index))
    except ResultRefused as e:
        return TaskError("refused", "", f"its error record was not read: {e.message}", "")
    return None if data is None else TaskError.parse(data)


def load_result(
    ex: Execution, step: str, index: int | None = None, timeout: float | None = None,
    *, wait: bool = True,
) -> Any:
    """The return value of the task ``step`` (``index``: of that element of a map), waiting
    until it is final. TaskFailed (UpstreamFailed when it did not run because an upstream
    task failed), ResultRefused for a result file this user's job may not have written,
    TimeoutError after ``timeout`` seconds. ``wait=False``: the step is final in
    ``ex.model`` already (the caller waited)."""
    if wait:
        wait_step(ex, step, timeout)
    sr = ex.step(step)
    try:
        sweep = ex.model.workflow.step(step).sweep
    except KeyError:
        sweep = None
    if index is not None and sweep is None:
        raise StaxError(f"task {step!r} is not a map: ask for its result without an index")
    if index is None and sweep is not None:
        raise StaxError(f"task {step!r} is a map: ask for the result of one element (index=)")
    if sr.state is StepState.COMPLETED or index is not None:
        data = _read(ex, step, result_file(step, index))
        if data is not None:
            return pickle.loads(data)
    what = step if index is None else f"{step}[{index}]"
    err = _error(ex, step, index)
    if err is not None:
        raise task_failed(err, what, ex.id)
    if sr.state is StepState.SKIPPED:
        up, why = upstream_failure(ex, step)
        if up is not None:
            raise UpstreamFailed(
                f"task {what!r} (execution {ex.id}) did not run: its upstream task {up!r} "
                f"failed: {why}",
                upstream=up,
                task=what,
                execution_id=ex.id,
                kind="upstream",
            )
    reason = sr.reason or (f"exit code {sr.exit_code}" if sr.exit_code is not None else "")
    raise TaskFailed(
        f"task {what!r} (execution {ex.id}) {sr.state.value}"
        + (f": {reason}" if reason else "")
        + f" and left no result (logs: %stax logs {ex.id} {step} --stderr)",
        task=what,
        execution_id=ex.id,
        kind=sr.state.value,
    )


def upstream_failure(ex: Execution, step: str) -> tuple[str | None, str]:
    """The first upstream task (nearest first) that did not complete, and what it said."""
    wf = ex.model.workflow
    seen: set[str] = set()
    todo = list(wf.step(step).after)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        sr = ex.step(name)
        if sr.state is StepState.SKIPPED:
            todo += wf.step(name).after
            continue
        if sr.state is StepState.COMPLETED and wf.step(name).sweep is None:
            continue
        err = None
        with contextlib.suppress(StaxError, OSError):
            err = _error(ex, name, None)
        if err is not None:
            return name, err.summary()
        if sr.state is StepState.COMPLETED:
            continue
        return name, sr.reason or sr.state.value
    return None, ""
