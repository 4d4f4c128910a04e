"""eFlows4HPC software invocation descriptions: both spellings, golden renderings, and one clear
error for each kind of bad description."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_stax.core.containers import builtin_runtimes
from jupyter_stax.core.dag import check
from jupyter_stax.core.documents import load_workflow
from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.images import Bind
from jupyter_stax.core.models import Step, Workflow
from jupyter_stax.core.params import render_script
from jupyter_stax.core.software import load_software, render, resources

MPMD = {
    "execution": {
        "type": "mpmd_mpi",
        "runner": "mpirun",
        "processes_per_node": "$CPUS_PER_NODE",
        "working_dir": "{{run_dir}}",
        "programs": [
            {"binary": "$FESOM_EXEC", "processes": "$FESOM_PROCS", "args": "-c fesom.cfg"},
            {"binary": "$OIFS_EXEC", "processes": "$OIFS_PROCS", "args": "-e {{exp}}"},
        ],
    },
    "parameters": {"run_dir": "FILE_IN", "exp": "IN"},
}

GROMACS = {
    "execution": {"type": "binary", "binary": "gmx", "args": "mdrun -s {{tpr}} -nb gpu"},
    "container": {"engine": "SINGULARITY", "image": "/path/gromacs.sif"},
    "constraints": {"processors": [{"processorType": "GPU", "computingUnits": 1}]},
}

MPI_SOURCE = {
    "execution": {
        "type": "mpi",
        "runner": "srun",
        "binary": "hostname",
        "args": "-s",
        "processes": 2,
        "processes_per_node": 1,
        "working_dir": "/tmp",
    },
    "prolog": {"binary": "echo", "args": "prolog {{x}}"},
    "epilog": {"binary": "echo", "args": "epilog", "fail_by_exit_value": True},
}
MPI_TUTORIAL = {
    "type": "mpi",
    "properties": {
        "runner": "srun",
        "binary": "hostname",
        "params": "-s",
        "processes": 2,
        "ppn": 1,
        "working_dir": "/tmp",
    },
    "prolog": {"binary": "echo", "params": "prolog {{x}}"},
    "epilog": {"binary": "echo", "params": "epilog", "fail_by_exit_value": True},
}


def program_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    return lines[lines.index("_stax_rc=$?") - 1]


def test_mpmd_renders_to_one_mpirun_line() -> None:
    text = render(load_software(MPMD))
    assert program_line(text) == (
        '"mpirun" -n "$FESOM_PROCS" -ppn "$CPUS_PER_NODE" "$FESOM_EXEC" "-c" "fesom.cfg" : '
        '-n "$OIFS_PROCS" -ppn "$CPUS_PER_NODE" "$OIFS_EXEC" "-e" "{{exp}}"'
    )
    assert 'cd "{{run_dir}}" || exit 126' in text.splitlines()
    # after placeholder substitution, parameters are references, never text
    rendered = render_script(text)
    assert '"-e" "${STAX_PARAM_exp}"' in rendered and "{{" not in rendered


def test_binary_in_singularity_with_a_gpu_renders_singularity_exec_nv() -> None:
    sw = load_software(GROMACS)
    assert program_line(render(sw, runtime=builtin_runtimes()["singularity"])) == (
        'singularity exec --nv /path/gromacs.sif "gmx" "mdrun" "-s" "{{tpr}}" "-nb" "gpu"'
    )
    # in a step, the step and work directories are bound and the step starts in its directory
    line = program_line(
        render(
            sw,
            runtime=builtin_runtimes()["singularity"],
            binds=(Bind("/w", "/w"), Bind("/w/e/s", "/w/e/s")),
            workdir="/w/e/s",
        )
    )
    assert line == (
        "singularity exec --nv -B /w:/w -B /w/e/s:/w/e/s --pwd /w/e/s /path/gromacs.sif "
        '"gmx" "mdrun" "-s" "{{tpr}}" "-nb" "gpu"'
    )
    assert resources(sw) == {"gpus": 1}


def test_both_spellings_read_the_same() -> None:
    assert load_software(MPI_TUTORIAL) == load_software(MPI_SOURCE)
    text = render(load_software(MPI_TUTORIAL))
    assert text.splitlines()[1:] == [
        '"echo" "prolog" "{{x}}"',
        "_rc=$?",
        'if [ "$_rc" -ne 0 ]; then echo "jupyter_stax: prolog failed with exit code $_rc" >&2; '
        'exit "$_rc"; fi',
        'cd "/tmp" || exit 126',
        '"srun" -n "2" "--ntasks-per-node=1" "hostname" "-s"',
        "_stax_rc=$?",
        '"echo" "epilog"',
        "_rc=$?",
        'if [ "$_rc" -ne 0 ]; then echo "jupyter_stax: epilog failed with exit code $_rc" >&2; '
        'exit "$_rc"; fi',
        'exit "$_stax_rc"',
    ]
    assert resources(load_software(MPI_SOURCE)) == {"ntasks": 2, "nodes": 2}


def test_literal_text_stays_literal() -> None:
    sw = load_software(
        {"execution": {"type": "binary", "binary": "echo", "args": "'a b' $HOME `id` \"$(x)\""}}
    )
    assert program_line(render(sw)) == '"echo" "a b" "$HOME" "\\`id\\`" "\\$(x)"'


@pytest.mark.parametrize(
    ("desc", "needle"),
    [
        ({"type": "task", "properties": {}}, "type 'task' (a Python function run by PyCOMPSs)"),
        ({"execution": {"type": "mpi", "binary": "x"}}, "needs 'runner'"),
        ({"execution": {"type": "binary"}}, "needs 'binary'"),
        ({"execution": {"type": "mpmd_mpi", "runner": "mpirun"}}, "needs 'programs'"),
        ({"execution": {"type": "bin"}}, "execution.type: Input should be"),
        ({"prolog": {"binary": "x"}}, "has no 'execution' (or 'type')"),
        (
            {
                "execution": {"type": "binary", "binary": "x"},
                "container": {"engine": "LXC", "image": "i"},
            },
            "unknown engine 'LXC'",
        ),
        ("[1]", "must be a JSON object"),
        ("{not json", "is not valid JSON (line 1, column 2)"),
        ("/nonexistent/desc.json", "cannot read software description '/nonexistent/desc.json'"),
    ],
)
def test_bad_descriptions_get_one_clear_error(desc: object, needle: str) -> None:
    with pytest.raises(InvalidWorkflow) as e:
        load_software(desc)  # type: ignore[arg-type]
    assert needle in str(e.value)


def test_a_software_step_in_a_workflow_file(tmp_path: Path) -> None:
    (tmp_path / "desc.json").write_text(json.dumps(MPI_TUTORIAL))
    (tmp_path / "wf.yaml").write_text(
        "name: sw\nparams: {x: 1}\nsteps:\n  - name: a\n    software: desc.json\n"
    )
    wf = load_workflow(tmp_path / "wf.yaml")
    assert wf.steps[0].software == MPI_TUTORIAL  # inlined: the stored workflow carries it
    check(wf)
    with pytest.raises(InvalidWorkflow, match=r"uses \{\{x\}\} but no value is given"):
        check(Workflow(name="w", steps=[Step(name="a", software=MPI_SOURCE)]))
    with pytest.raises(ValueError, match="either 'run' or 'software'"):
        Step(name="a", run="x", software=MPI_SOURCE)
    with pytest.raises(ValueError, match="needs 'run'"):
        Step(name="a")


def test_rest_clients_inline_description_files(tmp_path: Path) -> None:
    from jupyter_stax.core.software import inline_mapping

    (tmp_path / "d.json").write_text(json.dumps(GROMACS))
    wf = {"name": "w", "steps": [{"name": "a", "software": "d.json"}, {"name": "b", "run": "x"}]}
    out = inline_mapping(wf, tmp_path)
    assert out["steps"][0]["software"] == GROMACS and out["steps"][1] == {"name": "b", "run": "x"}
    with pytest.raises(InvalidWorkflow, match="cannot read software description"):
        inline_mapping({"steps": [{"name": "a", "software": "nope.json"}]}, tmp_path)
