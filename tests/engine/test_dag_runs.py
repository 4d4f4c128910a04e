"""Workflows on real schedulers: PSI/J's local executor and the project's Slurm."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_stax.core.models import StepState
from jupyter_stax.engine.engine import Engine, Event

from ..waiting import wait_for, wait_for_async
from .conftest import arun

DIAMOND = {
    "name": "diamond",
    "steps": [
        {"name": "a", "run": "date +%s.%N > t; echo A > out.txt"},
        {
            "name": "b",
            "after": ["a"],
            "run": "date +%s.%N > t; cat ../a/out.txt > out.txt; echo B >> out.txt",
        },
        {
            "name": "c",
            "after": ["a"],
            "run": "date +%s.%N > t; cat ../a/out.txt > out.txt; echo C >> out.txt",
        },
        {"name": "d", "after": ["b", "c"], "run": "date +%s.%N > t; cat ../b/out.txt ../c/out.txt"},
    ],
}


def test_diamond_completes_in_dependency_order(
    cluster: str, engine_factory: Callable[..., Engine]
) -> None:
    events: list[Event] = []

    async def main() -> object:
        async with engine_factory() as eng:
            eng.subscribe(events.append)
            ex = await eng.submit(DIAMOND, cluster=cluster)
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    assert ex.state.value == "completed", [(s.name, s.state, s.reason) for s in ex.steps]
    for s in ex.steps:
        assert s.state is StepState.COMPLETED and s.exit_code == 0 and s.native_id
        assert s.attempt == 1
    t = {s.name: float(Path(s.directory, "t").read_text()) for s in ex.steps}
    assert t["a"] < t["b"] and t["a"] < t["c"] and max(t["b"], t["c"]) < t["d"]
    assert Path(ex.step("d").stdout).read_text() == "A\nB\nA\nC\n"
    # every step went through submitted, and d was submitted only after b and c completed
    order = [(e.step, e.state) for e in events if e.step]
    assert order.index(("d", "submitted")) > max(
        order.index(("b", "completed")), order.index(("c", "completed"))
    )


def test_failed_step_skips_dependants_and_independent_branch_completes(
    cluster: str, engine_factory: Callable[..., Engine]
) -> None:
    wf = {
        "name": "failing",
        "steps": [
            {"name": "bad", "run": "echo 'something broke' >&2; exit 3"},
            {"name": "child", "after": ["bad"], "run": "echo never"},
            {"name": "grandchild", "after": ["child"], "run": "echo never"},
            {"name": "other", "run": "sleep 1; echo fine"},
            {"name": "nocmd", "run": "no-such-program-xyz --flag"},
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=cluster)
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    assert ex.state.value == "failed"
    bad = ex.step("bad")
    assert bad.state is StepState.FAILED and bad.exit_code == 3
    assert "something broke" in Path(bad.stderr).read_text()
    assert "exit code 3" in (bad.reason or "") and "something broke" in (bad.reason or "")
    assert ex.step("child").state is StepState.SKIPPED
    assert "upstream step 'bad' failed" in (ex.step("child").reason or "")
    assert ex.step("grandchild").state is StepState.SKIPPED
    assert ex.step("other").state is StepState.COMPLETED
    assert Path(ex.step("other").stdout).read_text() == "fine\n"
    nocmd = ex.step("nocmd")
    assert nocmd.state is StepState.FAILED and nocmd.exit_code == 127
    assert "command not found" in (nocmd.reason or "") and "no-such-program-xyz" in (
        nocmd.reason or ""
    )


def test_retry_completes_on_second_attempt(
    cluster: str, engine_factory: Callable[..., Engine]
) -> None:
    wf = {
        "name": "flaky",
        "steps": [
            {
                "name": "flaky",
                "retries": 2,
                "run": "n=$(cat ../tries 2>/dev/null || echo 0); echo $((n+1)) > ../tries\n"
                "echo attempt $STAX_ATTEMPT\n[ $n -ge 1 ] || { echo first-fails >&2; exit 1; }",
            },
            {"name": "after", "after": ["flaky"], "run": "echo ok"},
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=cluster)
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    s = ex.step("flaky")
    assert ex.state.value == "completed"
    assert s.state is StepState.COMPLETED and s.attempt == 2 and s.exit_code == 0
    assert [(h.attempt, h.state, h.exit_code) for h in s.history] == [(1, StepState.FAILED, 1)]
    d = Path(s.directory)
    assert (d / "stax.out").read_text() == "attempt 2\n"
    assert (d / "stax.out.1").read_text() == "attempt 1\n"
    assert "first-fails" in (d / "stax.err.1").read_text()
    assert s.history[0].native_id != s.native_id


def _job_alive(cluster: str, native_id: str, marker: str) -> bool:
    if cluster == "slurm":
        out = subprocess.run(
            ["squeue", "-h", "-j", native_id, "-t", "PD,R,CG,S", "-o", "%i"],
            capture_output=True,
            text=True,
        ).stdout
        return native_id in out.split()
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


def test_cancel_stops_running_job_and_marks_pending_canceled(
    cluster: str, engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    marker = f"stax-cancel-{uuid.uuid4().hex}"
    wf = {
        "name": "long",
        "steps": [
            {"name": "sleeper", "run": f"exec -a {marker} sleep 300"},
            {"name": "later", "after": ["sleeper"], "run": "echo never"},
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=cluster)
            s = await wait_for_async(
                lambda: (s := eng.get(ex.id).step("sleeper")).state is StepState.RUNNING and s,
                60,
                "the sleeper to run",
            )
            native = s.native_id
            assert native
            await wait_for_async(
                lambda: _job_alive(cluster, native, marker), 30, f"job {native} to be seen"
            )
            assert _job_alive(cluster, native, marker)
            ex = await eng.cancel(ex.id)
            return ex, native

    ex, native = arun(main())  # type: ignore[misc]
    assert ex.state.value == "canceled"
    assert ex.step("sleeper").state is StepState.CANCELED
    assert ex.step("later").state is StepState.CANCELED
    wait_for(lambda: not _job_alive(cluster, native, marker), 30, f"job {native} to go")
    assert not _job_alive(cluster, native, marker), "the job survived its cancel"


def test_paths_with_spaces_work(
    cluster: str, engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.core.models import Cluster

    work = tmp_path / "my runs" / "it's here"
    reg = ClusterRegistry(
        [
            Cluster(name="local", scheduler="local", work_dir=str(work)),
            Cluster.model_validate(
                {
                    "name": "slurm",
                    "scheduler": "slurm",
                    "queue": "debug",
                    "poll_interval": 1,
                    "work_dir": str(work),
                }
            ),
        ]
    )
    wf = {
        "name": "spaces",
        "steps": [
            {"name": "a", "run": "pwd; echo hello > f.txt"},
            {"name": "b", "after": ["a"], "run": "cat ../a/f.txt"},
        ],
    }

    async def main() -> object:
        async with engine_factory(clusters=reg) as eng:
            ex = await eng.submit(wf, cluster=cluster)
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    assert ex.state.value == "completed", [(s.name, s.reason) for s in ex.steps]
    a = ex.step("a")
    assert Path(a.stdout).read_text().strip() == str(work / ex.id / "a")
    assert Path(ex.step("b").stdout).read_text() == "hello\n"


HOSTILE = [
    "x; rm -rf ~",
    "$(id)",
    "`touch PWNED`",
    "a'b\"c",
    "line1\nline2",
    "-n",
    "*",
    "$HOME",
    "{{v}}",
    "\\",
    " lead and trail ",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_parameter_values_arrive_literally_local(
    value: str, engine_factory: Callable[..., Engine]
) -> None:
    _check_literal("local", value, engine_factory)


@pytest.mark.slurm
def test_hostile_parameter_values_arrive_literally_slurm(
    slurm: str, engine_factory: Callable[..., Engine]
) -> None:
    _check_literal("slurm", "\n".join(HOSTILE), engine_factory)


def _check_literal(cluster: str, value: str, engine_factory: Callable[..., Engine]) -> None:
    wf = {
        "name": "hostile",
        "params": {"v": "placeholder"},
        "steps": [
            {
                "name": "s",
                "run": "printf '%s' {{v}} > plain; printf '%s' \"[{{v}}]\" > dq\n"
                "cat > hd <<EOF\n{{v}}\nEOF",
            }
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=cluster, params={"v": value})
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    d = Path(ex.step("s").directory)
    assert ex.state.value == "completed", ex.step("s").reason
    assert (d / "plain").read_bytes() == value.encode()
    assert (d / "dq").read_bytes() == f"[{value}]".encode()
    assert (d / "hd").read_bytes() == (value + "\n").encode()
    assert not (d / "PWNED").exists()
