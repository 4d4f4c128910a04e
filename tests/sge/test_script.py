"""The generated submit script (golden files) and what the executor refuses before submitting.
No Grid Engine needed: the executor is built but never polls (no job is registered)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psij
import pytest

from jupyter_stax.psij_sge import SgeExecutorConfig
from jupyter_stax.psij_sge.executor import SgeJobExecutor

DATA = Path(__file__).parent / "data"
#: set to regenerate the golden files after a deliberate change of the template
REGENERATE = os.environ.get("STAX_REGENERATE_GOLDEN") == "1"


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[SgeJobExecutor]:
    ex = SgeJobExecutor(config=SgeExecutorConfig(work_directory=tmp_path / "work"))
    yield ex
    ex._queue_poll_thread.done = True


def script(ex: SgeJobExecutor, spec: psij.JobSpec, tmp_path: Path) -> str:
    job = psij.Job(spec)
    out = io.StringIO()
    ex.generate_submit_script(job, ex._create_script_context(job), out)
    text = out.getvalue().replace(str(tmp_path), "<TMP>").replace(job.id, "<JOB>")
    # the launcher's directory is named after a hash of PSI/J's launcher scripts
    return "\n".join(
        " ".join("<LAUNCHER>" if w.endswith("_launch.sh") else w for w in line.split(" "))
        for line in text.splitlines()
    )


def spec(tmp_path: Path, **kw: Any) -> psij.JobSpec:
    attrs = kw.pop("attributes", {})
    return psij.JobSpec(
        executable="/bin/echo",
        arguments=["hello world", "$HOME"],
        directory=kw.pop("directory", tmp_path / "step dir"),
        name=kw.pop("name", "my step"),
        stdout_path=tmp_path / "out.txt",
        stderr_path=tmp_path / "err.txt",
        launcher="single",
        attributes=psij.JobAttributes(**attrs),
        **kw,
    )


CASES: dict[str, dict[str, Any]] = {
    "minimal": {"attributes": {"duration": timedelta(minutes=10)}},
    # a sweep's array (engine.schedulers.sge.array_attributes): tasks 1-8, at most 3 running
    "array": {
        "attributes": {
            "duration": timedelta(minutes=10),
            "custom_attributes": {"sge.t": "1-8", "sge.tc": "3"},
        }
    },
    "full": {
        "attributes": {
            "duration": timedelta(hours=26, seconds=5),
            "queue_name": "all.q",
            "account": "stax",
            "reservation_id": "7",
            "custom_attributes": {
                "sge.l": "arch=lx-amd64",
                "sge.notify": "",
                "gridengine.ac": "x=$(touch /tmp/never)",
                "slurm.qos": "ignored",
            },
        },
        "resources": psij.ResourceSpecV1(process_count=2, cpu_cores_per_process=2, memory=2**32),
        "environment": {"GREETING": "it's a $VAR", "N": "1"},
        "inherit_environment": False,
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_script(case: str, executor: SgeJobExecutor, tmp_path: Path) -> None:
    got = script(executor, spec(tmp_path, **CASES[case]), tmp_path) + "\n"
    golden = DATA / f"golden-{case}.sh"
    if REGENERATE:
        golden.write_text(got)
    assert got == golden.read_text()


def test_settings_change_pe_and_memory_complex(tmp_path: Path) -> None:
    ex = SgeJobExecutor(
        config=SgeExecutorConfig(
            work_directory=tmp_path / "w", parallel_environment="mpi", memory_complex="mem_free"
        )
    )
    try:
        s = spec(tmp_path, resources=psij.ResourceSpecV1(process_count=4, memory=4 * 2**30))
        text = script(ex, s, tmp_path)
    finally:
        ex._queue_poll_thread.done = True
    assert "#$ -pe mpi 4\n" in text
    assert "#$ -l mem_free=1048576K\n" in text
    assert "#$ -cwd" not in text


def test_no_directory_means_cwd(executor: SgeJobExecutor, tmp_path: Path) -> None:
    text = script(executor, spec(tmp_path, directory=None), tmp_path)
    assert "#$ -cwd\n" in text
    assert "-wd" not in text
    assert "-pe" not in text  # one slot: no PE


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"attributes": {"custom_attributes": {"sge.l": "h_rt=1\ntouch /tmp/x"}}}, "control"),
        ({"attributes": {"custom_attributes": {"sge.l\n#$ -q evil": "x"}}}, "not a qsub option"),
        ({"attributes": {"custom_attributes": {"sge.N": "a#b"}}}, "'#'"),
        ({"attributes": {"queue_name": "all.q\n"}}, "queue"),
        ({"attributes": {"account": "it's"}}, "account"),
        ({"directory": Path('/tmp/q"x')}, "working directory"),
        ({"environment": {"A B": "1"}}, "environment variable name"),
    ],
)
def test_refused_before_submitting(
    kw: dict[str, Any], match: str, executor: SgeJobExecutor, tmp_path: Path
) -> None:
    job = psij.Job(spec(tmp_path, **kw))
    with pytest.raises(psij.InvalidJobException, match=match):
        executor.submit(job)
    assert job.native_id is None


def test_process_cancel_output() -> None:
    from psij.executors.batch.batch_scheduler_executor import InvalidJobStateError

    ex = SgeJobExecutor.__new__(SgeJobExecutor)
    with pytest.raises(InvalidJobStateError):  # the job has ended anyway
        ex.process_cancel_command_output(1, (DATA / "qdel-unknown.txt").read_text())
    with pytest.raises(psij.SubmitException, match="denied"):
        ex.process_cancel_command_output(1, "denied: not an owner of job 42")
