"""PSI/J's internals that jupyter_stax relies on (engine/psij_compat.py) are where we expect them.
A PSI/J release that moves one fails here, naming it, instead of somewhere deep in a run."""

from __future__ import annotations

import importlib
import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from jupyter_stax.engine import psij_compat

ROOT = Path(__file__).resolve().parents[2]
WHY = {p: w for _, p, w in psij_compat.INTERNALS}


def _resolve(module: str, path: str) -> object:
    obj: object = importlib.import_module(module)
    parts = path.split(".")
    for i, part in enumerate(parts):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        # an instance attribute: set in the class's __init__
        if i == len(parts) - 1 and inspect.isclass(obj):
            src = inspect.getsource(obj.__init__)
            if re.search(rf"self\.{re.escape(part)}\s*[:=]", src):
                return src
        raise AssertionError(
            f"PSI/J internal {module}.{path} is gone (psij-python {version('psij-python')}); "
            f"jupyter_stax used it to {WHY.get(path, '(not listed)')}: "
            "update jupyter_stax/engine/psij_compat.py"
        )
    return obj


@pytest.mark.parametrize(
    ("module", "path"),
    [(m, p) for m, p, _ in psij_compat.INTERNALS],
    ids=[p for _, p, _ in psij_compat.INTERNALS],
)
def test_internal_exists(module: str, path: str) -> None:
    _resolve(module, path)


def test_a_moved_internal_fails_naming_it() -> None:
    with pytest.raises(AssertionError, match=r"psij\._plugins\._get_plugin_klass is gone"):
        _resolve("psij._plugins", "_get_plugin_klass")
    with pytest.raises(AssertionError, match=r"_QueuePollThread\.stopped is gone"):
        _resolve("psij.executors.batch.batch_scheduler_executor", "_QueuePollThread.stopped")


def _source(module: str, path: str) -> str:
    obj = _resolve(module, path)
    return obj if isinstance(obj, str) else inspect.getsource(obj)  # type: ignore[arg-type]


BSE = "psij.executors.batch.batch_scheduler_executor"


@pytest.mark.parametrize(
    ("path", "needle", "why"),
    [
        (
            "BatchSchedulerExecutor.submit",
            "self._run_command(",
            "sbatch goes through the transport",
        ),
        ("BatchSchedulerExecutor.cancel", "self._run_command(", "scancel goes through it"),
        ("_QueuePollThread._poll", "exec._run_command(", "the status poll goes through it"),
        ("_QueuePollThread._poll", "exec.parse_status_output(", "poll errors are counted by us"),
        (
            "BatchSchedulerExecutor.submit",
            "self.get_submit_command(job, submit_file_path)",
            "the submit script is copied to the cluster there",
        ),
        (
            "BatchSchedulerExecutor.submit",
            "self._create_script_context(job)",
            "psij.script_dir is set there",
        ),
        ("BatchSchedulerExecutor._create_script_context", "'script_dir'", "the helper dir key"),
        ("BatchSchedulerExecutor.__init__", "self._queue_poll_thread =", "stop_polling finds it"),
        (
            "BatchSchedulerExecutor.submit",
            "except subprocess.CalledProcessError",
            "a batch's recording pass stops submit with Recorded, which must pass through",
        ),
        (
            "BatchSchedulerExecutor.submit",
            "self._check_job(job)",
            "the replay pass runs submit again on the recorded job (executor reset first)",
        ),
        ("_QueuePollThread.run", "while not self.done", "stop_polling ends the loop"),
    ],
)
def test_psij_calls_the_hooks_we_override(path: str, needle: str, why: str) -> None:
    src = _source(BSE, path)
    assert needle in src, (
        f"PSI/J's {path} no longer has {needle!r} (psij-python {version('psij-python')}); "
        f"jupyter_stax relies on it: {why}. Update jupyter_stax/engine/psij_compat.py"
    )


def test_a_job_is_submitted_again_once_its_executor_is_reset() -> None:
    """The record/replay of a batch (``Backend.submit_many``) runs PSI/J's submit twice on one
    job: PSI/J refuses a job bound to an executor, and sets no other state before the submit
    command."""
    src = _source("psij.job_executor", "JobExecutor._check_job")
    assert "job.executor is not None" in src and "job.executor = self" in src, (
        "PSI/J's _check_job changed: update Backend.submit_many (jupyter_stax/engine/backend.py)"
    )


def test_slurm_reasons_map_is_a_mapping_of_messages() -> None:
    from psij.executors.batch.slurm import SlurmJobExecutor

    assert isinstance(SlurmJobExecutor._REASONS_MAP, dict)
    assert psij_compat.slurm_failure_message("NoSuchReasonAtAll") == "NoSuchReasonAtAll"
    assert psij_compat.slurm_failure_message("") is None
    known = next(iter(SlurmJobExecutor._REASONS_MAP))
    assert psij_compat.slurm_failure_message(known) == SlurmJobExecutor._REASONS_MAP[known]


def test_plugin_class_loads_without_instantiating_and_names_what_psij_knows() -> None:
    cls = psij_compat.plugin_class("pbs")
    assert inspect.isclass(cls) and cls.__name__.lower().startswith("pbs")
    from jupyter_stax.core.errors import StaxError

    with pytest.raises(StaxError, match=r"PSI/J knows: .*slurm"):
        psij_compat.plugin_class("no-such-scheduler")


def test_installed_and_tested_psij_are_within_the_pinned_range() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(r'"psij-python>=([0-9.]+),<([0-9.]+)"', text)
    assert m, "pyproject.toml pins psij-python to a range"
    low, high = (tuple(int(x) for x in v.split(".")) for v in m.groups())
    installed = tuple(int(x) for x in version("psij-python").split(".")[:3])
    assert low <= installed < high
    assert low <= tuple(int(x) for x in psij_compat.TESTED_VERSION.split(".")) < high


def test_psij_deploys_its_launcher_scripts_through_the_method_we_replace() -> None:
    src = _source(
        "psij.launchers.script_based_launcher", "ScriptBasedLauncher._ensure_launcher_deployed"
    )
    assert "self._deploy_files(" in src, (
        "PSI/J's launchers no longer deploy their scripts through _deploy_files; "
        "install_atomic_launcher_deploy in jupyter_stax/engine/psij_compat.py replaces nothing"
    )


def test_the_engine_deploys_launcher_scripts_atomically(tmp_path: Path) -> None:
    """After the engine made an executor, PSI/J's launchers use the atomic deploy."""
    import subprocess
    import sys

    code = (
        "import pathlib\n"
        "from jupyter_stax.engine import psij_compat\n"
        "from jupyter_stax.engine.backend import Backend\n"
        "from jupyter_stax.engine.transport import LocalTransport\n"
        "from jupyter_stax.core.models import Cluster\n"
        "from psij.launchers.script_based_launcher import ScriptBasedLauncher as L\n"
        "assert L._deploy_files.__module__ != psij_compat.__name__\n"
        f"d = pathlib.Path({str(tmp_path)!r})\n"
        "c = Cluster.model_validate({'name': 'here', 'scheduler': 'local'})\n"
        "Backend(c, d, lambda u: None, LocalTransport(d))\n"
        "print(L._deploy_files.__module__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == psij_compat.__name__
