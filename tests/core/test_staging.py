"""Data in and out (issue 14), the pure parts: step fields, patterns, matching, where inputs
land, hostile names (data or refused with a clear message)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_stax.core.documents import load_workflow
from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.models import Step, SubmitOptions
from jupyter_stax.core.staging import (
    FromStep,
    InputError,
    TreeEntry,
    anchor_and_rest,
    check_destinations,
    check_pattern,
    list_local_tree,
    local_inputs,
    matches,
    outputs_of,
    select,
    unmatched,
)

HOSTILE = [
    "a b.csv",
    "it's.csv",
    'say "hi".csv',
    "line\nbreak.csv",
    "$(touch pwned).csv",
    "-rf.csv",
    "`id`.csv",
    "semi;colon.csv",
]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("/etc/passwd", "absolute"),
        ("~/x", "absolute"),
        ("../x", "'..' is refused"),
        ("a/../../x", "'..' is refused"),
        ("results/..", "'..' is refused"),
        ("a\0b", "NUL"),
    ],
)
def test_patterns_that_leave_the_step_directory_are_refused(pattern: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    ["*.csv", "results/*.csv", "**/*.h5", "a..b", "..hidden", "x/./y", *HOSTILE],
)
def test_patterns_inside_the_step_directory_are_data(pattern: str) -> None:
    assert check_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("*.csv", "a.csv", True),
        ("*.csv", "results/a.csv", False),  # * stays in one component
        ("results/*.csv", "results/a.csv", True),
        ("results", "results/a.csv", True),  # a directory takes what is below it
        ("results", "results/deep/b.txt", True),
        ("results", "resultsX/a.csv", False),
        ("**/*.csv", "a.csv", True),
        ("**/*.csv", "x/y/z.csv", True),
        ("x/**", "x/y/z.csv", True),
        ("x/**/z.csv", "x/z.csv", True),
        ("?.txt", "a.txt", True),
        ("?.txt", "ab.txt", False),
        ("[ab].txt", "b.txt", True),
        ("*", ".hidden", False),  # as in a shell: hidden files only by name
        (".hidden", ".hidden", True),
        ("summary.json", "summary.json", True),
        ("summary.json", "summary.jsonx", False),
        ("a b.csv", "a b.csv", True),
        ("$(touch pwned).csv", "$(touch pwned).csv", True),
        ("*", "line\nbreak.csv", True),
        ("-rf.csv", "-rf.csv", True),
    ],
)
def test_matching(pattern: str, path: str, hit: bool) -> None:
    assert matches(pattern, path) is hit


def test_select_and_unmatched() -> None:
    files = ["results/a.csv", "results/b.csv", "summary.json", "log.txt"]
    assert select(["results/*.csv", "summary.json", "results/a.csv"], files) == [
        "results/a.csv",
        "results/b.csv",
        "summary.json",
    ]
    assert unmatched(["*.csv", "*.json", "*.png"], files) == ["*.csv", "*.png"]


def test_outputs_skip_links_dirs_specials_and_the_engines_files() -> None:
    tree = [
        TreeEntry("results", 0, "d"),
        TreeEntry("results/a.csv", 3, "f"),
        TreeEntry("results/out.csv", 0, "l"),
        TreeEntry("results/fifo.csv", 0, "o"),
        TreeEntry("stax.out", 9, "f"),
    ]
    files, notes = outputs_of(["results", "*.out"], tree, ignore=["stax.out"])
    assert [f.path for f in files] == ["results/a.csv"]
    assert notes == [
        "results/fifo.csv is not a regular file: not taken",
        "results/out.csv is a symbolic link: not taken (links are never followed)",
    ]


@pytest.mark.parametrize(
    ("spec", "anchor", "rest"),
    [
        ("config.json", "", "config.json"),
        ("data/mesh-*.h5", "", "data/mesh-*.h5"),
        ("./data//x.h5", "", "data/x.h5"),
        ("/scratch/big.h5", "/scratch", "big.h5"),
        ("/scratch/run-*/out.h5", "/scratch", "run-*/out.h5"),
        ("../shared/*.json", "../shared", "*.json"),
        ("../shared/cfg", "../shared", "cfg"),
        ("/big.h5", "/", "big.h5"),
        ("~/data/x", "~/data", "x"),
    ],
)
def test_where_an_input_lands(spec: str, anchor: str, rest: str) -> None:
    assert anchor_and_rest(spec) == (anchor, rest)


def _tree(root: Path) -> None:
    (root / "data").mkdir()
    (root / "data" / "mesh-1.h5").write_bytes(b"1")
    (root / "data" / "mesh-2.h5").write_bytes(b"22")
    (root / "data" / "other.txt").write_text("x")
    (root / "config.json").write_text("{}")
    for n in HOSTILE:
        (root / "data" / n).write_text(n)


def test_local_inputs_files_globs_directories_and_hostile_names(tmp_path: Path) -> None:
    _tree(tmp_path)
    got = local_inputs("config.json", tmp_path)
    assert [(f.dest, f.size) for f in got] == [("config.json", 2)]
    got = local_inputs("data/mesh-*.h5", tmp_path)
    assert [(f.dest, f.size) for f in got] == [("data/mesh-1.h5", 1), ("data/mesh-2.h5", 2)]
    got = local_inputs("data", tmp_path)
    assert sorted(f.dest for f in got) == sorted(
        ["data/mesh-1.h5", "data/mesh-2.h5", "data/other.txt"] + [f"data/{n}" for n in HOSTILE]
    )
    got = local_inputs(str(tmp_path / "data" / "*.csv"), Path("/nonexistent"))
    assert sorted(f.dest for f in got) == sorted(HOSTILE)
    for n in HOSTILE:  # a hostile name is a literal path, found as it is
        (f,) = local_inputs(f"data/{n}", tmp_path)
        assert f.dest == f"data/{n}" and f.source.read_text() == n


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.json", r"input 'missing.json': no such file"),
        ("data/*.nc", r"input 'data/\*.nc' matches no file"),
        ("nodir/*.nc", r"matches no file"),
        ("/nonexistent-dir/*.nc", r"no such directory"),
        ("empty", r"directory .* has no files"),
    ],
)
def test_missing_inputs_say_what_is_missing(tmp_path: Path, spec: str, message: str) -> None:
    _tree(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=message):
        local_inputs(spec, tmp_path)


def test_list_local_tree_does_not_follow_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    step = tmp_path / "step"
    (step / "results").mkdir(parents=True)
    (step / "results" / "a.csv").write_text("abc")
    os.symlink(outside, step / "escape")
    os.symlink(outside / "secret", step / "results" / "secret.csv")
    kinds = {e.path: (e.kind, e.size) for e in list_local_tree(step)}
    assert kinds == {
        "results": ("d", 0),
        "results/a.csv": ("f", 3),
        "results/secret.csv": ("l", 0),
        "escape": ("l", 0),
    }
    files, notes = outputs_of(["**"], list_local_tree(step))
    assert [f.path for f in files] == ["results/a.csv"]
    assert len(notes) == 2
    assert list_local_tree(tmp_path / "missing") == []


def test_two_inputs_onto_one_path_are_refused() -> None:
    problems = check_destinations("sim", [("a.json", "a.json"), ("a.json", "/x/a.json")])
    assert problems and "both land on 'a.json'" in problems[0]
    assert check_destinations("sim", [("a.json", "a.json"), ("a.json", "a.json")]) == []


# ---------------------------------------------------------------------- the step's fields
def test_step_fields_from_the_workflow_file(tmp_path: Path) -> None:
    f = tmp_path / "wf.yaml"
    f.write_text(
        """
name: data
steps:
  - name: prepare
    run: mkdir -p parts && echo x > parts/a.bin
    outputs: parts
    fetch: manual
  - name: sim
    run: cat parts/a.bin config.json > results.csv
    inputs:
      - config.json
      - data/mesh-*.h5
      - {from: prepare, path: "parts/*.bin"}
    outputs: ["results*.csv", "summary.json"]
"""
    )
    wf = load_workflow(f)
    prep, sim = wf.steps
    assert prep.outputs == ["parts"] and prep.fetch == "manual" and prep.inputs == []
    assert sim.fetch == "auto"
    assert sim.inputs == [
        "config.json",
        "data/mesh-*.h5",
        FromStep(step="prepare", path="parts/*.bin"),
    ]
    assert sim.after == ["prepare"]  # an input from a step makes it a dependency


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"outputs": ["../x"]}, "reaches outside the step directory"),
        ({"outputs": ["/abs/*.csv"]}, "is absolute"),
        ({"inputs": [{"from": "a", "path": "../../etc/passwd"}]}, "reaches outside"),
        ({"inputs": [{"from": "a", "path": "/etc/passwd"}]}, "is absolute"),
        ({"inputs": [""]}, "an input path is empty"),
        ({"inputs": [{"from": "a"}]}, "path: Field required"),
        (
            {"inputs": [{"from": "a", "path": "x", "to": "y"}]},
            "to: unknown field (only 'from' and 'path')",
        ),
        ({"fetch": "sometimes"}, "'auto' or 'manual'"),
    ],
)
def test_bad_step_fields_are_refused_with_a_clear_message(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidWorkflow) as e:
        load_workflow(
            {
                "name": "w",
                "steps": [{"name": "a", "run": "true"}, {"name": "b", "run": "x", **fields}],
            }
        )
    assert message in "\n".join(e.value.details)


def test_an_input_from_an_unknown_step_is_a_workflow_error() -> None:
    from jupyter_stax.core.dag import check

    wf = load_workflow(
        {
            "name": "w",
            "steps": [{"name": "b", "run": "x", "inputs": [{"from": "nope", "path": "*"}]}],
        }
    )
    with pytest.raises(InvalidWorkflow) as e:
        check(wf)
    assert "depends on unknown step 'nope'" in "\n".join(e.value.details)


def test_single_values_and_options() -> None:
    s = Step.model_validate({"name": "a", "run": "x", "inputs": "cfg.json", "outputs": "*.csv"})
    assert s.inputs == ["cfg.json"] and s.outputs == ["*.csv"]
    o = SubmitOptions(base_dir="/home/u/nb", outputs_dir="/home/u/out")
    assert o.model_dump()["outputs_dir"] == "/home/u/out"


def test_python_api_and_magic_options_build_the_same_step() -> None:
    from jupyter_stax.kernel.api import Workflow
    from jupyter_stax.kernel.magics import _from, _task_parser

    wf = Workflow("w")
    wf.step("prep", "true", outputs=["parts"])
    a = _task_parser().parse_args(
        ["sim", "--input", "cfg.json", "--input", "data/*.h5", "--from", "prep:parts/*.bin",
         "--output", "*.csv", "--fetch", "manual"]
    )
    sim = wf.step(
        "sim", "true", inputs=[*a.input, *(_from(x) for x in a.from_)], outputs=a.output,
        fetch=a.fetch,
    )
    assert sim.inputs == ["cfg.json", "data/*.h5", FromStep(step="prep", path="parts/*.bin")]
    assert sim.after == ["prep"] and sim.outputs == ["*.csv"] and sim.fetch == "manual"
    text = wf.to_yaml()
    assert "from: prep" in text
    again = load_workflow(text)
    assert again.step("sim") == sim
