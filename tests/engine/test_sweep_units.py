"""The pure parts of sweeps on schedulers: Slurm job-array ids, states, limits and the
``--array`` spec (table-driven, on recorded output), and the runner script run by bash."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from jupyter_stax.core import sweep as sw
from jupyter_stax.engine.schedulers import slurm

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
            (d / str(i) / "stax.job.sh").write_text(
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


def test_runner_outside_an_array_element_refuses(tmp_path: Path) -> None:
    d = _fake_sweep(tmp_path, [[0]])
    script = sw.render_runner(
        step_dir=str(d), attempt=1, offset=0, width=1, cpus_per_instance=1, array=True
    )
    r = _run(script, d, {})
    assert r.returncode != 0 and "not an array element" in r.stderr
    assert not (d / "ran.log").exists()
