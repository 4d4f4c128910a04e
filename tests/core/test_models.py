"""Validation of user documents: every mistake is a clear error before anything runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.dag import check, downstream, topological_order
from jupyter_stax.core.documents import load_workflow, schema_json
from jupyter_stax.core.errors import InvalidClusterConfig, InvalidWorkflow, UnknownCluster
from jupyter_stax.core.states import ExecutionState, StepState, execution_state
from jupyter_stax.core.units import format_walltime, parse_memory, parse_walltime

ROOT = Path(__file__).resolve().parents[2]

README = (ROOT / "README.md").read_text()


def _readme_yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, re.S)


def test_readme_yaml_examples_are_the_shipped_ones_and_valid(tmp_path: Path) -> None:
    blocks = _readme_yaml_blocks()
    workflows = [b for b in blocks if b.startswith("name:")]
    clusters = [b for b in blocks if b.startswith("clusters:")]
    assert workflows and clusters
    demo = (ROOT / "examples" / "demo.yaml").read_text()
    assert workflows[0] in demo, "README's workflow differs from examples/demo.yaml"
    for w in workflows:
        check(load_workflow(w))
    for i, c in enumerate(clusters):
        f = tmp_path / f"clusters{i}.yaml"
        f.write_text(c)
        assert len(ClusterRegistry.load(f).names()) >= 2


def _wf(*steps: dict[str, object], **kw: object) -> dict[str, object]:
    return {"name": "t", "steps": list(steps), **kw}


def test_readme_workflow_loads_and_checks() -> None:
    wf = load_workflow((ROOT / "examples" / "demo.yaml").read_text())
    check(wf)
    assert [s.name for s in wf.steps] == ["make", "total"]
    assert wf.step("total").resources.time_seconds == 300
    assert topological_order(wf) == ["make", "total"]


def test_cycle_is_named() -> None:
    wf = load_workflow(
        _wf(
            {"name": "a", "run": "x", "after": ["c"]},
            {"name": "b", "run": "x", "after": ["a"]},
            {"name": "c", "run": "x", "after": ["b"]},
        )
    )
    with pytest.raises(InvalidWorkflow) as e:
        check(wf)
    msg = str(e.value)
    assert "cycle" in msg
    cyc = msg.split("cycle: ")[1].split(";")[0].split(" -> ")
    assert cyc[0] == cyc[-1] and set(cyc) == {"a", "b", "c"}


def test_unknown_dependency_duplicate_and_missing_param_all_reported() -> None:
    wf = load_workflow(
        _wf(
            {"name": "make", "run": "seq {{n}} {{m}}"},
            {"name": "make", "run": "x"},
            {"name": "use", "run": "x", "after": ["mkae"]},
            params={"m": 1},
        )
    )
    with pytest.raises(InvalidWorkflow) as e:
        check(wf)
    text = str(e.value)
    assert "'make' is used more than once" in text
    assert "unknown step 'mkae' (did you mean 'make'?)" in text
    assert "{{n}} but no value is given" in text and "--param n=VALUE" in text
    assert "{{m}}" not in text.replace("{{n}} {{m}}", "")


def test_submission_params_satisfy_placeholders() -> None:
    wf = load_workflow(_wf({"name": "a", "run": "echo {{who}}"}))
    check(wf, {"who": "world"})


def test_unknown_field_and_bad_values_name_the_step() -> None:
    with pytest.raises(InvalidWorkflow) as e:
        load_workflow(
            _wf(
                {"name": "a", "run": "x", "afer": ["b"]},
                {"name": "b", "run": "x", "resources": {"ntasks": 0, "time": "soon"}},
            )
        )
    text = str(e.value)
    assert "steps['a'].afer: unknown field" in text
    assert "steps['b'].resources.ntasks" in text
    assert "walltime 'soon' is not a time" in text


def test_yaml_syntax_error_has_line_number() -> None:
    with pytest.raises(InvalidWorkflow, match="at line 5, column 3"):
        load_workflow('name: x\nsteps:\n  - name: a\n    run: [unclosed, "x"\n  - name: b\n')


def test_bad_step_names_are_refused() -> None:
    for bad in ["../etc", "a b", "", ".hidden", "x" * 65]:
        with pytest.raises(InvalidWorkflow, match=r"not allowed|at least"):
            load_workflow(_wf({"name": bad, "run": "x"}))


def test_downstream() -> None:
    wf = load_workflow(
        _wf(
            {"name": "a", "run": "x"},
            {"name": "b", "run": "x", "after": "a"},
            {"name": "c", "run": "x", "after": ["b"]},
            {"name": "d", "run": "x"},
        )
    )
    assert downstream(wf, ["a"]) == {"b", "c"}


def test_readme_clusters_file(tmp_path: Path) -> None:
    f = tmp_path / "clusters.yaml"
    f.write_text(
        "clusters:\n  slurm:\n    scheduler: slurm\n    queue: debug\n"
        '    walltime: "00:10:00"\n    poll_interval: 1\n'
    )
    reg = ClusterRegistry.load(f)
    assert reg.names() == ["local", "slurm"]
    c = reg.get("slurm")
    assert (c.scheduler, c.queue, c.walltime, c.effective_poll_interval) == (
        "slurm",
        "debug",
        "00:10:00",
        1.0,
    )
    assert reg.get("local").scheduler == "local"


def test_unknown_cluster_suggests_and_lists(tmp_path: Path) -> None:
    reg = ClusterRegistry()
    with pytest.raises(UnknownCluster) as e:
        reg.get("locla")
    assert "did you mean 'local'" in str(e.value) and "known clusters: local" in str(e.value)


def test_bad_clusters_files(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("clusters:\n  x:\n    scheduler: sge\n")
    assert ClusterRegistry.load(f).get("x").scheduler == "sge"  # Grid Engine is known now
    f.write_text("clusters:\n  x:\n    scheduler: nosuch\n")
    with pytest.raises(InvalidClusterConfig, match=r"unknown scheduler 'nosuch'.*sge"):
        ClusterRegistry.load(f)
    f.write_text("clusters:\n  local:\n    scheduler: slurm\n")
    with pytest.raises(InvalidClusterConfig, match="must use scheduler 'local'"):
        ClusterRegistry.load(f)
    f.write_text("clusters:\n  x:\n    scheduler: slurm\n    qeue: debug\n")
    with pytest.raises(InvalidClusterConfig, match="qeue: unknown field"):
        ClusterRegistry.load(f)
    with pytest.raises(InvalidClusterConfig, match="does not exist"):
        ClusterRegistry.load(tmp_path / "missing.yaml")
    f.write_text("clusters:\n  pbs1:\n    scheduler: pbspro\n")
    assert ClusterRegistry.load(f).get("pbs1").scheduler == "pbs"


@pytest.mark.parametrize(
    ("yaml", "scheduler", "pe", "memory_complex"),
    [
        ("scheduler: sge", "sge", None, None),
        ("scheduler: gridengine", "sge", None, None),
        ("scheduler: GridEngine", "sge", None, None),
        ("scheduler: sge\n    pe: mpi", "sge", "mpi", None),
        (
            "scheduler: sge\n    pe: orte.2\n    memory_complex: mem_free",
            "sge",
            "orte.2",
            "mem_free",
        ),
    ],
)
def test_sge_clusters(
    tmp_path: Path, yaml: str, scheduler: str, pe: str | None, memory_complex: str | None
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(f"clusters:\n  g:\n    {yaml}\n")
    c = ClusterRegistry.load(f).get("g")
    assert (c.scheduler, c.pe, c.memory_complex) == (scheduler, pe, memory_complex)


@pytest.mark.parametrize(
    ("field", "value"),
    [("pe", "smp 4"), ("pe", "-pe"), ("pe", 'a"b'), ("memory_complex", "h_vmem=1G"), ("pe", "")],
)
def test_sge_settings_refused(tmp_path: Path, field: str, value: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(f"clusters:\n  g:\n    scheduler: sge\n    {field}: '{value}'\n")
    with pytest.raises(InvalidClusterConfig, match="is not a Grid Engine name"):
        ClusterRegistry.load(f)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10", 600),
        ("05:30", 330),
        ("01:00:00", 3600),
        ("2-00", 172800),
        ("1-02:03:04", 93784),
        (15, 900),
    ],
)
def test_walltimes(text: str | int, seconds: int) -> None:
    assert parse_walltime(text) == seconds


def test_walltime_errors_and_format() -> None:
    for bad in ["", "1:2:3:4", "abc", "0", "-5"]:
        with pytest.raises(ValueError):
            parse_walltime(bad)
    assert format_walltime(93784) == "26:03:04"


def test_memory() -> None:
    assert parse_memory("4G") == 4 * 1024**3
    assert parse_memory("512M") == 512 * 1024**2
    assert parse_memory("2GiB") == 2 * 1024**3
    assert parse_memory(100) == 100 * 1024**2
    with pytest.raises(ValueError, match="not a size"):
        parse_memory("lots")


def test_state_transitions() -> None:
    assert StepState.PENDING.can_become(StepState.RUNNING)
    assert StepState.QUEUED.can_become(StepState.COMPLETED)
    assert not StepState.RUNNING.can_become(StepState.QUEUED)
    assert not StepState.COMPLETED.can_become(StepState.FAILED)
    assert not StepState.FAILED.can_become(StepState.PENDING)
    assert execution_state([StepState.PENDING] * 2) is ExecutionState.PENDING
    assert execution_state([StepState.COMPLETED, StepState.RUNNING]) is ExecutionState.RUNNING
    assert execution_state([StepState.COMPLETED, StepState.SKIPPED, StepState.FAILED]) is (
        ExecutionState.FAILED
    )
    assert execution_state([StepState.CANCELED, StepState.COMPLETED]) is ExecutionState.CANCELED


def test_committed_schema_matches_models() -> None:
    committed = (ROOT / "docs" / "workflow.schema.json").read_text()
    assert committed == schema_json(), (
        "docs/workflow.schema.json drifted from the models; regenerate it with "
        "`jupyter stax schema > docs/workflow.schema.json`"
    )
    schema = json.loads(committed)
    assert "steps" in schema["properties"] and "Step" in schema["$defs"]


def test_core_imports_nothing_heavy() -> None:
    code = (
        "import sys, jupyter_stax, jupyter_stax.core.models, jupyter_stax.core.dag, "
        "jupyter_stax.core.documents, jupyter_stax.core.clusters, jupyter_stax.core.jobscript\n"
        "bad = [m for m in ('psij', 'tornado', 'IPython', 'ipywidgets', 'jupyter_server', "
        "'sqlite3') if m in sys.modules]\nprint(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_arithmetic_use_needs_an_integer_value_before_submission() -> None:
    wf = load_workflow(_wf({"name": "loop", "run": "for ((i = 0; i < {{n}}; i++)); do :; done"}))
    check(wf, {"n": "10"})
    with pytest.raises(InvalidWorkflow) as e:
        check(wf, {"n": "a[$(touch PWNED)]"})
    assert "must be an integer" in str(e.value) and "step 'loop'" in str(e.value)


def test_non_string_walltime_and_memory_are_invalid_not_crashes() -> None:
    with pytest.raises(InvalidWorkflow) as e:
        load_workflow(
            _wf({"name": "a", "run": "x", "resources": {"memory": {"a": 1}, "time": [1]}})
        )
    assert "memory" in str(e.value) and "time" in str(e.value)
