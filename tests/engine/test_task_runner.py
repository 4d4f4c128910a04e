"""Function tasks whose step names the runner by digest, run by the real engine on ``local``:
the engine puts the runner into the job script; a step that carries the runner itself (stored
by an earlier version) runs as before; one naming a runner this version does not have fails
before submission with the reason, and the others of the workflow still run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import cloudpickle

from jupyter_stax.core.functask import (
    RUNNER_SOURCE,
    call_header,
    read_result_file,
    result_file,
    runner_ref,
    task_source,
)
from jupyter_stax.core.models import StepState
from jupyter_stax.engine.engine import Engine

from .conftest import arun


def _double(x: int) -> int:
    return 2 * x


def test_tasks_by_runner_digest_on_the_engine(engine_factory: Callable[..., Engine]) -> None:
    def source(step: str, x: int, ref: bool) -> str:
        call = call_header(step, None) + cloudpickle.dumps((_double, [((x,), {})]))
        return task_source(call, ref=ref)

    new, old = source("new", 3, True), source("old", 4, False)
    assert RUNNER_SOURCE not in new and old.startswith(RUNNER_SOURCE)
    bad = runner_ref("f" * 64) + new[len(runner_ref()):]
    env = {"STAX_PYTHON": sys.executable, "STAX_TASK_WORKER": "0"}
    wf = {
        "name": "tasks",
        "steps": [
            {"name": n, "run": run, "language": "python", "env": env}
            for n, run in (("new", new), ("old", old), ("bad", bad))
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="local")
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    steps = {s.name: s for s in ex.steps}  # type: ignore[attr-defined]
    assert steps["new"].state is StepState.COMPLETED, steps["new"].reason
    assert steps["old"].state is StepState.COMPLETED, steps["old"].reason
    script = Path(steps["new"].directory, "stax.step.sh").read_text()
    assert RUNNER_SOURCE in script  # the engine put it in
    for name, want in (("new", 6), ("old", 8)):
        d = Path(steps[name].directory)
        assert cloudpickle.loads(read_result_file(d / result_file(name), d.parent)) == want
    b = steps["bad"]
    assert b.state is StepState.FAILED and not b.native_id
    assert "names the function-task runner sha256 ffffffffffffffff" in (b.reason or "")
    assert "another version of jupyter_stax" in (b.reason or "")
