"""The pure parts of sweeps on schedulers: Slurm job-array ids, states, limits and the
``--array`` spec (table-driven, on recorded output), and the runner script run by bash."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core import sweep as sw
from jupyter_stax.engine import schedulers, sweeps
from jupyter_stax.engine.schedulers import pbs, sge, slurm

SQUEUE = """\
12_0|R|None
12_[1-9%2]|PD|JobArrayTaskLimit
13|PD|Priority
14_1|CD|
14_2|F|NonZeroExitCode
15_[0-3]|PD|Priority
16_0|CD|
16_1|CA|
17_0|CD|
17_1|CD|
18_[0-2]|PD|PartitionConfig
"""


def test_array_elements_are_summed_up_under_the_array_id() -> None:
    jobs, blocked = slurm.parse_status(SQUEUE)
    assert jobs["12_0"] == ("ACTIVE", "None")  # elements stay
    expected = {
        "12": "ACTIVE",  # one runs, the rest wait for the cap
        "13": "QUEUED",  # not an array
        "14": "FAILED",
        "15": "QUEUED",
        "16": "CANCELED",
        "17": "COMPLETED",
        "18": "QUEUED",
    }
    assert {k: jobs[k][0] for k in expected} == expected
    assert blocked["18"].startswith("PartitionConfig")


@pytest.mark.parametrize(
    "native_id,base",
    [
        ("123", "123"),
        ("123_4", "123"),
        ("123_[5-9%2]", "123"),
        ("123_[0,3]", "123"),
        ("x_1", "x_1"),
    ],
)
def test_array_base(native_id: str, base: str) -> None:
    assert slurm.array_base(native_id) == base


@pytest.mark.parametrize(
    "count,cap,spec",
    [(1, None, "0"), (10, None, "0-9"), (10, 3, "0-9%3"), (10, 10, "0-9"), (10, 20, "0-9")],
)
def test_array_spec(count: int, cap: int | None, spec: str) -> None:
    assert slurm.array_spec(count, cap) == spec


def test_array_attributes_and_empty_arrays() -> None:
    assert slurm.array_attributes(5, 2) == {"slurm.array": "0-4%2", "slurm.open-mode": "append"}
    with pytest.raises(ValueError):
        slurm.array_spec(0, None)


@pytest.mark.parametrize(
    "count,limit,chunks",
    [
        (10, 1001, [(0, 10)]),
        (10, 3, [(0, 3), (3, 3), (6, 3), (9, 1)]),
        (2002, 1001, [(0, 1001), (1001, 1001)]),
        (1, 1, [(0, 1)]),
    ],
)
def test_split_array(count: int, limit: int, chunks: list[tuple[int, int]]) -> None:
    assert slurm.split_array(count, limit) == chunks


@pytest.mark.parametrize(
    "out,size",
    [
        ("MaxArraySize            = 1001\nMaxJobCount = 10000\n", 1001),
        ("MaxArraySize = 40001\n", 40001),
        ("MaxJobCount = 10000\n", slurm.DEFAULT_MAX_ARRAY_SIZE),
        ("MaxArraySize = lots\n", slurm.DEFAULT_MAX_ARRAY_SIZE),
        ("", slurm.DEFAULT_MAX_ARRAY_SIZE),
    ],
)
def test_parse_max_array_size(out: str, size: int) -> None:
    assert slurm.parse_max_array_size(out) == size


@pytest.mark.parametrize("out,cpus", [("2\n2\n", 2), ("16+\n8\n", 8), ("", None), ("N/A\n", None)])
def test_parse_node_cpus(out: str, cpus: int | None) -> None:
    assert slurm.parse_node_cpus(out) == cpus


def test_job_ids_of_arrays_found_by_name() -> None:
    assert slurm.parse_job_ids("12_[3-9]\n12_1\n12_2\n") == "12"
    assert slurm.parse_all_job_ids("12_1\n13_[0-2]\n12_2\n9\n") == ["9", "12", "13"]
    assert slurm.parse_job_ids("") is None


def _fake_sweep(tmp_path: Path, elements: list[list[int]], attempt: int = 1) -> Path:
    d = tmp_path / "step dir"  # a space: paths are quoted
    for e in elements:
        for i in e:
            (d / str(i)).mkdir(parents=True)
            (d / str(i) / "stax.job.sh").write_text(  # it enters its directory, as the real one
                f'cd -P -- "{d / str(i)}" || exit 126\n'
                'echo "$PWD" >> ../ran.log; echo out-$STAX_X; echo err >&2\n'
            )
    (d / f"stax.elements.{attempt}").write_text(sw.elements_text(elements))
    return d


def _run(script: str, d: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = d / "runner.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path)], env={**os.environ, "STAX_X": "x", **env}, capture_output=True,
        text=True, timeout=60,
    )


def test_runner_runs_only_its_array_element(tmp_path: Path) -> None:
    d = _fake_sweep(tmp_path, [[0, 1], [2, 3], [4]])
    script = sw.render_runner(
        step_dir=str(d), attempt=1, offset=1, width=2, cpus_per_instance=1, array=True
    )
    r = _run(script, d, {"SLURM_ARRAY_TASK_ID": "1", "SLURM_CPUS_ON_NODE": "2"})
    assert r.returncode == 0, r.stderr
    ran = sorted(Path(p).name for p in (d / "ran.log").read_text().split("\n") if p)
    assert ran == ["4"]  # offset 1 + element 1 = line 3
    assert (d / "4" / "stax.out").read_text() == "out-x\n"
    assert (d / "4" / "stax.err").read_text() == "err\n"


def test_runner_of_one_job_runs_every_element(tmp_path: Path) -> None:
    d = _fake_sweep(tmp_path, [[0, 1, 2, 3, 4]])
    script = sw.render_runner(
        step_dir=str(d), attempt=1, offset=0, width=3, cpus_per_instance=None, array=False
    )
    assert "_stax_par=3\n" in script
    r = _run(script, d, {})
    assert r.returncode == 0, r.stderr
    ran = sorted(Path(p).name for p in (d / "ran.log").read_text().split("\n") if p)
    assert ran == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize("array", [True, False])
def test_runner_lanes_run_each_instance_once_with_its_own_exit_status(
    tmp_path: Path, array: bool
) -> None:
    """Four lanes over 60 instances (ranges and single indices): each instance runs once, in
    its directory, and its exit record holds its own process's status, whether its script
    returned, called ``exit`` or ``exec``-ed a program; the claims are gone afterwards."""
    ids = [*range(0, 40), 45, *range(50, 69)]
    d = tmp_path / "step dir"
    for i in ids:
        (d / str(i)).mkdir(parents=True)
        tail = {0: "exit 3", 1: "exec sh -c 'exit 4'", 2: "false"}.get(i % 4, "true")
        (d / str(i) / "stax.job.sh").write_text(
            f'cd -P -- "{d / str(i)}" || exit 126\n'
            f"echo {i} >> ../ran.log\n{tail}\n"
        )
    (d / "stax.elements.1").write_text(sw.elements_text([ids]))
    assert (d / "stax.elements.1").read_text() == "0-39 45 50-68\n"
    script = sw.render_runner(
        step_dir=str(d), attempt=1, offset=0, width=4,
        cpus_per_instance=1 if array else None, array=array, claims_in_step_dir=not array,
    )
    env = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_CPUS_ON_NODE": "4"} if array else {}
    r = _run(script, d, env)
    assert r.returncode == 0, r.stderr
    ran = [x for x in (d / "ran.log").read_text().split("\n") if x]
    assert sorted(map(int, ran)) == ids  # each once, and nothing else written
    for i in ids:
        code = {0: 3, 1: 4, 2: 1}.get(i % 4, 0)
        assert (d / str(i) / "stax.exit").read_text().split()[:2] == ["1", str(code)], i
    assert not list(d.glob(".stax.claims.*"))


@pytest.mark.parametrize(
    "kw,got",
    [
        # local: max_parallel, else this machine's CPUs (at least 2); no CPU count at run time
        ({"local": True, "max_parallel": 3}, (3, None)),
        ({"local": True}, (2, None)),
        ({"local": True, "here_cpus": 16}, (16, None)),
        # a remote workstation: max_parallel, else its own CPUs, counted by the runner there
        ({"local": True, "remote": True, "max_parallel": 5}, (5, None)),
        ({"local": True, "remote": True}, (sweeps.REMOTE_WIDTH, 1)),
        ({"local": True, "remote": True, "cpus_per_task": 4}, (sweeps.REMOTE_WIDTH, 4)),
        # an array element: pack, max_parallel, PACK_WIDTH and the smallest node's CPUs
        ({"array": True, "pack": 5000, "node_cpus": 2}, (2, 1)),
        ({"array": True, "pack": 5000, "node_cpus": 16}, (sweeps.PACK_WIDTH, 1)),
        ({"array": True, "pack": 3, "node_cpus": 16}, (3, 1)),
        ({"array": True, "pack": 100, "node_cpus": 16, "cpus_per_task": 4}, (4, 4)),
        ({"array": True, "pack": 100, "node_cpus": None, "max_parallel": 6}, (1, 1)),
        # one job of another scheduler: max_parallel instances' CPUs (at most PACK_WIDTH)
        ({"count": 50}, (1, 1)),
        ({"count": 50, "max_parallel": 20}, (sweeps.PACK_WIDTH, 1)),
        ({"count": 3, "max_parallel": 20}, (3, 1)),
    ],
)
def test_lanes(kw: dict[str, Any], got: tuple[int, int | None]) -> None:
    args: dict[str, Any] = {
        "local": False, "remote": False, "array": False, "pack": 1, "count": 10,
        "max_parallel": None, "node_cpus": 2, "cpus_per_task": None, "here_cpus": 2, **kw,
    }
    assert sweeps.lanes(**args) == got


def test_runner_outside_an_array_element_refuses(tmp_path: Path) -> None:
    d = _fake_sweep(tmp_path, [[0]])
    script = sw.render_runner(
        step_dir=str(d), attempt=1, offset=0, width=1, cpus_per_instance=1, array=True
    )
    r = _run(script, d, {})
    assert r.returncode != 0 and "not an array element" in r.stderr
    assert not (d / "ran.log").exists()


@pytest.mark.parametrize(
    "scheduler,env",
    [
        ("slurm", {"SLURM_ARRAY_TASK_ID": "1"}),
        ("sge", {"SGE_TASK_ID": "2", "NSLOTS": "2"}),  # Grid Engine numbers tasks from 1
        ("pbs", {"PBS_ARRAY_INDEX": "1", "PBS_NCPUS": "2"}),
    ],
)
def test_runner_picks_its_element_on_each_scheduler(
    tmp_path: Path, scheduler: str, env: dict[str, str]
) -> None:
    style = schedulers.array_style(scheduler)
    assert style is not None
    d = _fake_sweep(tmp_path, [[0, 1], [2, 3], [4]])
    script = sw.render_runner(
        step_dir=str(d), attempt=1, offset=0, width=2, cpus_per_instance=1, array=style.index
    )
    r = _run(script, d, {"SLURM_CPUS_ON_NODE": "2", **env} if scheduler == "slurm" else env)
    assert r.returncode == 0, r.stderr
    ran = sorted(Path(p).name for p in (d / "ran.log").read_text().split("\n") if p)
    assert ran == ["2", "3"]  # element 1 (0-based)
    assert schedulers.array_style("local") is None  # a sweep there is one job


def test_runner_skips_its_instances_when_an_upstream_step_did_not_complete(
    tmp_path: Path,
) -> None:
    up_ok, up_bad = tmp_path / "ok", tmp_path / "bad"
    for i in range(3):
        (up_ok / str(i)).mkdir(parents=True)
        (up_ok / str(i) / "stax.exit").write_text("1 0 1.0\n")
    up_bad.mkdir()
    (up_bad / "stax.exit").write_text("1 2 1.0\n")
    d = _fake_sweep(tmp_path, [[0, 1], [2]])

    def run(required: list[Path | tuple[Path, int]]) -> subprocess.CompletedProcess[str]:
        script = sw.render_runner(
            step_dir=str(d), attempt=1, offset=0, width=2, cpus_per_instance=None,
            array=sw.SLURM_INDEX, required=required,
        )
        return _run(script, d, {"SLURM_ARRAY_TASK_ID": "0"})

    r = run([(up_ok, 3)])  # every upstream instance completed: element 0 runs
    assert r.returncode == 0, r.stderr
    assert len((d / "ran.log").read_text().splitlines()) == 2
    (d / "ran.log").unlink()
    (up_ok / "1" / "stax.exit").unlink()  # instance 1 of the upstream sweep never ended
    r = run([(up_ok, 3)])
    assert "instance 1 of upstream sweep ok did not complete (exit record: none)" in r.stderr
    assert not (d / "ran.log").exists()
    assert [(d / str(i) / "stax.exit").read_text().split()[:2] for i in (0, 1)] == [
        ["1", "skipped"]
    ] * 2
    assert not (d / "2" / "stax.exit").exists()  # another element's instance: untouched
    r = run([up_bad])
    assert "upstream step bad did not complete (exit record: 2)" in r.stderr


@pytest.mark.parametrize(
    "count,cap,attrs",
    [
        (10, None, {"sge.t": "1-10"}),
        (10, 3, {"sge.t": "1-10", "sge.tc": "3"}),
        (1, 5, {"sge.t": "1-1"}),
    ],
)
def test_sge_array_attributes(count: int, cap: int | None, attrs: dict[str, str]) -> None:
    assert sge.array_attributes(count, cap) == attrs


@pytest.mark.parametrize(
    "out,size",
    [
        ("max_aj_instances             2000\nmax_aj_tasks                 75000\n", 75000),
        ("max_aj_tasks                 50\n", 50),
        ("max_aj_tasks                 0\n", 10**9),  # 0: no limit
        ("", sge.DEFAULT_MAX_ARRAY_SIZE),
    ],
)
def test_sge_parse_max_array_size(out: str, size: int) -> None:
    assert sge.parse_max_array_size(out) == size


@pytest.mark.parametrize(
    "count,cap,spec",
    [(10, None, "0-9"), (10, 4, "0-9%4"), (1, None, "0-1"), (2, 2, "0-1")],
)
def test_pbs_array_attributes(count: int, cap: int | None, spec: str) -> None:
    assert pbs.array_attributes(count, cap) == {"pbs.J": spec}


def test_pbs_array_script_through_psij_pbs_executor(tmp_path: Path) -> None:
    """PBS cannot run here: the submit script PSI/J's PBS executor writes for a sweep's
    array carries ``-J`` (and the runner reads ``$PBS_ARRAY_INDEX``, tested above)."""
    import io
    from datetime import timedelta

    import psij
    from psij.executors.batch.pbs_base import PBSExecutorConfig

    ex = psij.JobExecutor.get_instance(
        "pbs", config=PBSExecutorConfig(work_directory=tmp_path)
    )
    try:
        spec = psij.JobSpec(
            executable="/bin/bash",
            arguments=[str(tmp_path / "stax.array.1.0.sh")],
            directory=tmp_path,
            name="sim",
            attributes=psij.JobAttributes(
                duration=timedelta(minutes=5),
                custom_attributes=pbs.array_attributes(10, 4),
            ),
            launcher="single",
        )
        job = psij.Job(spec)
        out = io.StringIO()
        ex.generate_submit_script(job, ex._create_script_context(job), out)
    finally:
        ex._queue_poll_thread.done = True
    script = out.getvalue()
    assert '#PBS -J "0-9%4"' in script.splitlines()
    assert "stax.array.1.0.sh" in script


@pytest.mark.parametrize(
    "out,waiting",
    [
        # two elements run, the rest waits behind the %2 cap (squeue's own lines)
        ("12_[2-9%2]|PD|JobArrayTaskLimit\n12_0|R|None\n12_1|R|None\n", {"12": set(range(2, 10))}),
        ("12_[0,3-5,7]|PD|Priority\n", {"12": {0, 3, 4, 5, 7}}),
        ("12_[0-8:4]|PD|Priority\n", {"12": {0, 4, 8}}),
        ("12_4|PD|Resources\n13_[1-2]|PD|Priority\n", {"12": {4}, "13": {1, 2}}),
        ("12_0|R|None\n12_1|CD|None\n7|PD|Priority\n", {}),  # none waiting; 7 is no array
    ],
)
def test_pending_elements_of_arrays(out: str, waiting: dict[str, set[int]]) -> None:
    jobs, _ = slurm.parse_status(out)
    assert slurm.pending_elements(jobs) == waiting
