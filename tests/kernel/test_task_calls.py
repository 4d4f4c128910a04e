"""Function tasks without a cluster: the decorator's checks, step names in a batch, futures
found anywhere in the arguments (edges of the batch, or results of an earlier one), and the
TaskFailed a remote exception becomes. Nothing is submitted here (the kernel tests run them)."""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any

import cloudpickle
import pytest

import jupyter_stax as stax
from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.functask import TaskError
from jupyter_stax.kernel.taskresults import TaskFailed, task_failed
from jupyter_stax.kernel.tasks import TaskFunction, TaskFuture, _Batch


@stax.task
def bare(x: int) -> int:
    return x + 1


@stax.task(cluster="c", gpus=1, time="00:10:00", retries=2, name="my train!")
def configured(x: int) -> int:
    return x


def test_the_decorator() -> None:
    assert isinstance(bare, TaskFunction) and bare.func(1) == 2
    assert bare.__name__ == "bare" and bare.step_name == "bare"
    assert configured.step_name == "my-train"
    st = configured.step_model("my-train", [], None)
    assert (st.language, st.retries, st.resources.gpus, st.resources.time) == (
        "python", 2, 1, "00:10:00"
    )
    assert st.sweep is None
    mapped = configured.step_model("my-train", [], 7)
    assert mapped.sweep == {"stax_index": {"range": [0, 7, 1]}, "zip": False}
    # a task function inside another task's pickle is its plain function (by value: the
    # module's attribute of that name is the TaskFunction, not the function)
    plain = pickle.loads(cloudpickle.dumps(bare))
    assert not isinstance(plain, TaskFunction) and plain(4) == 5


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"time": "soon"}, "time"),
        ({"retries": -1}, "retries"),
        ({"pack": 0}, "pack"),
        ({"memory": "lots"}, "memory"),
        ({"env": {"1BAD": "x"}}, "1BAD"),
    ],
)
def test_a_bad_option_fails_at_the_decorator(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidWorkflow, match=words):
        stax.task(**kw)(lambda: None)


@dataclass
class Holder:
    inner: Any


def test_futures_anywhere_in_the_arguments_are_edges() -> None:
    b = _Batch()
    a = b.add(bare, [((1,), {})], mapped=False)
    a2 = b.add(bare, [((2,), {})], mapped=False)
    m = b.add(configured, [((i,), {}) for i in range(3)], mapped=True)
    assert (a, a2, m) == ("bare", "bare-2", "my-train")
    fa, fa2 = TaskFuture(b, a, None, "bare"), TaskFuture(b, a2, None, "bare")
    fm = TaskFuture(b, m, 2, "my-train")
    earlier = TaskFuture(_Batch(), "old", None, "old")
    args = ([fa, {"k": (fa2, Holder(fm))}], {"x": earlier})
    c = b.add(bare, [args], mapped=False)
    ext: dict[int, TaskFuture[Any]] = {}
    blob, after = b._pickle(b._call(c), ext, probe=True)
    assert after == {"bare", "bare-2", "my-train"}
    assert list(ext.values()) == [earlier]

    seen: list[Any] = []

    class Loader(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            seen.append(pid)
            return f"<{pid[1]}>"

    func, calls = Loader(io.BytesIO(blob)).load()
    assert func(1) == 2
    ((a_args, a_kw),) = calls
    assert a_args[0] == "<bare>" and a_args[1]["k"][1].inner == "<my-train>"
    assert a_kw == {"x": "<old>"}
    assert ("step", "my-train", 2) in seen

    self_ref = b.add(bare, [((), {})], mapped=False)
    b.calls[-1].calls = [((TaskFuture(b, self_ref, None, "bare"),), {})]
    with pytest.raises(InvalidWorkflow, match="its own future"):
        b._pickle(b.calls[-1], {}, probe=True)


class CustomInit(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(a, b)


@pytest.mark.parametrize(
    ("type_name", "also"),
    [
        ("builtins.ValueError", ValueError),
        ("builtins.KeyError", KeyError),
        ("json.decoder.JSONDecodeError", None),  # an __init__ of its own: TaskFailed only
        (f"{__name__}.CustomInit", None),
        ("nosuch.module.Error", None),
        ("builtins.OSError", OSError),
    ],
)
def test_task_failed_is_also_the_remote_class_when_it_can(
    type_name: str, also: type[BaseException] | None
) -> None:
    err = TaskError("exception", type_name, "went wrong", "Traceback ...\nX: went wrong\n")
    e = task_failed(err, "t", "e1")
    assert isinstance(e, TaskFailed)
    assert e.remote_traceback.endswith("went wrong\n") and "remote traceback:" in str(e)
    assert e.remote_type_name == type_name
    if also is not None:
        assert isinstance(e, also)
    assert str(e).startswith("task 't' (execution e1) raised ")
