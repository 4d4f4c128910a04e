"""The environment the engine gives a function task it hands to the warm worker itself
(``jobscript.direct_task_env``) is the one the task's job script would have given it: the
real job script, run by bash with its step script replaced by ``env -0``, against the direct
environment (over the same parent environment); and which steps may go direct at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.functask import TASK_MARK
from jupyter_stax.core.jobscript import (
    JOB_SCRIPT,
    STEP_SCRIPT,
    direct_task_env,
    render_job_script,
)
from jupyter_stax.core.models import Cluster, Step

#: set by bash itself, not by the job script
BASH_OWN = {"SHLVL", "_", "OLDPWD"}


def task_step(**kw: Any) -> Step:
    data: dict[str, Any] = {
        "name": "t", "language": "python", "run": TASK_MARK + "pass\n",
        "env": {"STAX_TASK_WORKER": "1", "ODD": "a b $(x) 'q' \"d\"\\n"},
    }
    data.update(kw)
    return Step(**data)


def test_the_direct_environment_is_the_job_scripts(tmp_path: Path) -> None:
    (tmp_path / "run dir" / "t").mkdir(parents=True)
    (tmp_path / "link").symlink_to("run dir")  # the job's `cd -P`: PWD is the real path
    step_dir = tmp_path / "link" / "t"
    cluster = Cluster(name="local", env={"FROM_CLUSTER": "c", "ODD": "overridden"})
    step = task_step()
    params = {"a": "$(id)", "n": 3, "f": 1.5, "b": True, "none": None}
    common: dict[str, Any] = dict(
        execution_id="e1", step=step, attempt=2, cluster=cluster, params=params,
        step_dir=step_dir, execution_dir=tmp_path / "run dir",
    )
    (step_dir / JOB_SCRIPT).write_text(render_job_script(**common))
    (step_dir / STEP_SCRIPT).write_text(f"env -0 > {str(tmp_path / 'env')!r}\n")
    parent = {"PATH": os.environ["PATH"], "HOME": "/nowhere", "ODD": "parent"}
    subprocess.run(["/bin/bash", str(step_dir / JOB_SCRIPT)], env=parent, cwd="/", check=True)
    seen = dict(
        item.split("=", 1) for item in (tmp_path / "env").read_text().split("\0") if item
    )
    direct = direct_task_env(**common)
    assert direct is not None
    want = {**parent, **direct}
    for k in BASH_OWN:
        seen.pop(k, None)
    assert seen == want


@pytest.mark.parametrize(
    ("what", "step_kw", "cluster_kw", "extra"),
    [
        ("a function task on local", {}, {}, {}),
        ("worker not allowed", {"env": {"STAX_TASK_WORKER": "0"}}, {}, {}),
        ("worker not asked for", {"env": {}}, {}, {}),
        ("a bash step", {"language": "bash", "run": "true"}, {}, {}),
        ("a plain python step", {"run": "print(1)\n"}, {}, {}),
        ("a cluster setup", {}, {"setup": "module load x"}, {}),
        ("another scheduler", {}, {"scheduler": "slurm"}, {}),
        ("upstream checks (detached)", {}, {}, {"require_completed": [Path("/x")]}),
        ("a launcher", {"launcher": "srun"}, {}, {}),
    ],
)
def test_which_steps_go_direct(
    what: str, step_kw: dict[str, Any], cluster_kw: dict[str, Any], extra: dict[str, Any]
) -> None:
    step = task_step(**step_kw)
    cluster = Cluster(name="c", **cluster_kw)
    env = direct_task_env(
        execution_id="e", step=step, attempt=1, cluster=cluster, params={},
        step_dir=Path("/s"), execution_dir=Path("/"), **extra,
    )
    assert (env is not None) == (what == "a function task on local"), what
