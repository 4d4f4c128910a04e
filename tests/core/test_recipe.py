"""Build recipes: the model, matrix expansion with exclude, variant selection, per-architecture
bases, the labels a built variant gets, the variant a cluster's traits fit, and the clear errors
before any build (tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.images import ClusterTraits, StaxLabels
from jupyter_stax.core.recipe import (
    InvalidRecipe,
    base_for,
    build_key,
    containerfile_args,
    containerfile_from,
    expand,
    for_cluster,
    glibc_version,
    load_recipe,
    parse_os_release,
    parse_recipe,
    parse_selection,
    select,
    variant_labels,
    variant_name,
    with_base,
)

CF = "FROM base\nARG mpi=none\nARG gpu\nRUN echo $mpi $gpu > /etc/v\n"
RECIPE: dict[str, Any] = {
    "stax": "solver",
    "base": {"x86_64": "ch:/images/base-x86", "arm64": "oci:/images/base-arm"},
    "matrix": {"mpi": ["none", "mpich", "openmpi"], "gpu": ["none", "cuda"]},
    "exclude": [{"mpi": "none", "gpu": "cuda"}],
    "labels": {"framework": "psij", "platform": "jupyter"},
}


def recipe(**over: Any) -> Any:
    return parse_recipe({**RECIPE, **over}, CF)


def test_expand_with_exclude_keeps_order() -> None:
    got = [tuple(v.values()) for v in expand(recipe())]
    assert got == [
        ("none", "none"),
        ("mpich", "none"),
        ("mpich", "cuda"),
        ("openmpi", "none"),
        ("openmpi", "cuda"),
    ]


@pytest.mark.parametrize(
    ("matrix", "exclude", "count"),
    [
        ({}, [], 1),  # no matrix: one variant
        ({"mpi": ["a"]}, [], 1),
        ({"mpi": ["a", "b"], "gpu": ["x", "y"]}, [], 4),
        ({"mpi": ["a", "b"], "gpu": ["x", "y"]}, [{"mpi": "a"}], 2),
        ({"mpi": ["a", "b"], "gpu": ["x", "y"]}, [{"mpi": "a", "gpu": "x"}, {"gpu": "y"}], 1),
        ({"mpi": [1, 2.5, True]}, [], 3),  # YAML scalars become text
    ],
)
def test_expand_counts(matrix: dict[str, Any], exclude: list[dict[str, str]], count: int) -> None:
    cf = "FROM b\nARG mpi gpu\n"
    r = parse_recipe({"stax": "s", "base": "ch:/b", "matrix": matrix, "exclude": exclude}, cf)
    assert len(expand(r)) == count
    assert all(isinstance(x, str) for v in expand(r) for x in v.values())


@pytest.mark.parametrize(
    ("over", "cf", "says"),
    [
        ({"matrix": {"mpi": ["none"], "python": ["3.11"]}}, CF, "'python' is not declared"),
        ({"exclude": [{"network": "ofi"}]}, CF, "'network', which is not a matrix key"),
        ({"exclude": [{"mpi": "intel"}]}, CF, "mpi='intel' is not a value"),
        ({"matrix": {"mpi": []}}, CF, "has no values"),
        ({"matrix": {"mpi": ["a", "a"]}}, CF, "repeats a value"),
        ({"matrix": {"mpi": ["a b"]}}, CF, "letters, digits"),
        ({"stax": "my solver"}, CF, "letters, digits"),
        ({"bogus": 1}, CF, "bogus"),
        ({}, "RUN true\n", "no FROM line"),
        ({"base": {}}, CF, "names no image"),
    ],
)
def test_recipe_errors(over: dict[str, Any], cf: str, says: str) -> None:
    with pytest.raises(InvalidRecipe) as e:
        parse_recipe({**RECIPE, **over}, cf)
    assert says in str(e.value)


def test_missing_base_key_is_an_error() -> None:
    data = dict(RECIPE)
    del data["base"]
    with pytest.raises(InvalidRecipe, match="base"):
        parse_recipe(data, CF)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("FROM b\nARG mpi\n", {"mpi"}),
        ("FROM b\nARG mpi=none gpu=cuda\n", {"mpi", "gpu"}),
        ("FROM b\narg x='a b'\n", {"x"}),
        ("FROM b\nARG a \\\n  b=1\n", {"a", "b"}),
        ("FROM b\n# ARG no\nRUN echo ARG no\n", set()),
        ("FROM b\nARG x # comment\n", {"x"}),
        ("FROM b\nARG x='unbalanced\n", {"x"}),
    ],
)
def test_containerfile_args(text: str, names: set[str]) -> None:
    assert containerfile_args(text) == names


@pytest.mark.parametrize(
    ("text", "base", "want_from", "after"),
    [
        ("FROM base\nRUN x\n", "stax-base-1", "base", "FROM stax-base-1\nRUN x\n"),
        ("# c\nfrom  base AS b\n", "n", "base", "# c\nfrom  n AS b\n"),
        ("FROM --platform=x a\nFROM b\n", "n", "a", "FROM --platform=x n\nFROM b\n"),
    ],
)
def test_from_replaced(text: str, base: str, want_from: str, after: str) -> None:
    assert containerfile_from(text) == want_from
    assert with_base(text, base) == after


@pytest.mark.parametrize(
    ("want", "count", "says"),
    [
        ({"mpi": "mpich"}, 2, None),
        ({"mpi": "mpich", "gpu": "cuda"}, 1, None),
        ({}, 5, None),
        ({"network": "ofi"}, 0, "unknown matrix key 'network'"),
        ({"mpi": "intel"}, 0, "'intel' is not a value of 'mpi'"),
        ({"mpi": "none", "gpu": "cuda"}, 0, "excluded by the recipe"),
    ],
)
def test_select(want: dict[str, str], count: int, says: str | None) -> None:
    r = recipe()
    if says is None:
        got = select(r, expand(r), want)
        assert len(got) == count
        assert all(v[k] == x for v in got for k, x in want.items())
    else:
        with pytest.raises(InvalidRecipe, match=says):
            select(r, expand(r), want)


@pytest.mark.parametrize(
    ("items", "want"),
    [(["mpi=mpich"], {"mpi": "mpich"}), (["a=1", "b = 2"], {"a": "1", "b": "2"}), ([], {})],
)
def test_parse_selection(items: list[str], want: dict[str, str]) -> None:
    assert parse_selection(items) == want


def test_parse_selection_error() -> None:
    with pytest.raises(InvalidRecipe, match="KEY=VALUE"):
        parse_selection(["mpich"])


@pytest.mark.parametrize(
    ("base", "cpu", "want"),
    [
        ({"x86_64": "ch:/a", "arm64": "ch:/b"}, "amd64", "ch:/a"),
        ({"x86_64": "ch:/a", "arm64": "ch:/b"}, "aarch64", "ch:/b"),
        ("ch:/one", "ppc64le", "ch:/one"),
        ({"x86_64": "ch:/a"}, "aarch64", None),
    ],
)
def test_base_for(base: Any, cpu: str, want: str | None) -> None:
    r = recipe(base=base)
    if want is None:
        with pytest.raises(InvalidRecipe, match="no base for aarch64"):
            base_for(r, cpu)
    else:
        assert base_for(r, cpu) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian"\n',
            "Debian GNU/Linux 12 (bookworm)",
        ),
        ("NAME=BusyBox\nVERSION_ID=1.35\n", "BusyBox 1.35"),
        ("# nothing\n", None),
        ("NAME='Alpine Linux'\n", "Alpine Linux"),
    ],
)
def test_os_release(text: str, want: str | None) -> None:
    assert parse_os_release(text) == want


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b"\x00GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.\n", "2.36"),
        (b"xx GLIBC_2.2.5\x00 GLIBC_2.17\x00 GLIBC_2.28\x00 GLIBC_PRIVATE\x00", "2.28"),
        (b"musl libc", None),
        (b"", None),
    ],
)
def test_glibc_version(data: bytes, want: str | None) -> None:
    assert glibc_version(data) == want


def test_glibc_of_this_machine() -> None:
    import platform

    libc = next((p for p in Path("/lib").glob("*-linux-gnu/libc.so.6")), Path("/lib64/libc.so.6"))
    if not libc.exists():
        pytest.skip("no glibc here")
    assert glibc_version(libc.read_bytes()) == ".".join(platform.libc_ver()[1].split(".")[:2])


def test_variant_labels_are_what_the_catalog_matches() -> None:
    r = parse_recipe(
        {**RECIPE, "matrix": {**RECIPE["matrix"], "python": ["3.11"]}},
        CF + "ARG python\n",
    )
    labels = variant_labels(
        r,
        {"mpi": "mpich", "gpu": "cuda", "python": "3.11"},
        "x86_64",
        os_name="BusyBox",
        kabi="2.36",
    )
    assert labels == {
        "org.hpe.staxs.cpu": "x86_64",
        "org.hpe.staxs.gpu": "cuda",
        "org.hpe.staxs.mpi": "mpich",
        "org.hpe.staxs.kabi": "2.36",
        "org.hpe.staxs.os": "BusyBox",
        "org.hpe.staxs.framework": "psij",
        "org.hpe.staxs.platform": "jupyter",
        "org.hpe.staxs.python": "3.11",
        "org.opencontainers.image.title": "solver",
    }
    parsed = StaxLabels.parse(labels)
    assert (parsed.cpu, parsed.gpu, parsed.mpi, parsed.kabi) == ("x86_64", "cuda", "mpich", "2.36")
    # no glibc in the image: no kabi label (never guessed)
    assert "org.hpe.staxs.kabi" not in variant_labels(r, {"mpi": "none"}, "x86_64")


@pytest.mark.parametrize(
    ("traits", "want", "says"),
    [
        (ClusterTraits(cpu="x86_64"), {"mpi": "none", "gpu": "none"}, None),
        (ClusterTraits(cpu="x86_64", mpi="cray-mpich"), {"mpi": "mpich", "gpu": "none"}, None),
        (ClusterTraits(cpu="x86_64", mpi="openmpi"), {"mpi": "openmpi", "gpu": "none"}, None),
        (
            ClusterTraits(cpu="x86_64", gpu=["cuda"], mpi="openmpi"),
            {"mpi": "openmpi", "gpu": "cuda"},
            None,
        ),
        (ClusterTraits(cpu=None, gpu=["cuda"]), {"mpi": "mpich", "gpu": "cuda"}, None),
        (ClusterTraits(cpu="aarch64"), None, "builds x86_64 only"),
    ],
)
def test_for_cluster(traits: ClusterTraits, want: dict[str, str] | None, says: str | None) -> None:
    r = recipe()
    if says:
        with pytest.raises(InvalidRecipe, match=says):
            for_cluster(r, expand(r), "c", traits, "x86_64")
    else:
        assert for_cluster(r, expand(r), "c", traits, "x86_64") == want


def test_for_cluster_none_fits() -> None:
    r = recipe(matrix={"mpi": ["mpich"], "gpu": ["cuda"]}, exclude=[])
    with pytest.raises(InvalidRecipe, match="no variant of recipe 'solver' fits cluster 'c'") as e:
        for_cluster(r, expand(r), "c", ClusterTraits(cpu="x86_64"), "x86_64")
    assert any("gpu cuda not offered" in d for d in e.value.details)


def test_build_key_changes_with_each_input() -> None:
    r = recipe()
    k = build_key(r, CF, {"mpi": "a"}, "sha256:1", "ch")
    assert k == build_key(recipe(description="other words"), CF, {"mpi": "a"}, "sha256:1", "ch")
    others = {
        build_key(recipe(labels={"framework": "x"}), CF, {"mpi": "a"}, "sha256:1", "ch"),
        build_key(r, CF + "RUN x\n", {"mpi": "a"}, "sha256:1", "ch"),
        build_key(r, CF, {"mpi": "b"}, "sha256:1", "ch"),
        build_key(r, CF, {"mpi": "a"}, "sha256:2", "ch"),
        build_key(r, CF, {"mpi": "a"}, "sha256:1", "oci"),
    }
    assert k not in others and len(others) == 5


def test_variant_name() -> None:
    assert variant_name("solver", "x86_64", {"mpi": "mpich", "gpu": "none"}) == (
        "solver-x86_64-mpich-none"
    )


def test_load_recipe_reads_files(tmp_path: Path) -> None:
    (tmp_path / "Containerfile").write_text(CF)
    (tmp_path / "stax.yaml").write_text(
        "stax: solver\nbase: ch:base\nmatrix: {mpi: [none, mpich]}\noutput: out\n"
    )
    lr = load_recipe(tmp_path / "stax.yaml")
    assert lr.output == tmp_path / "out"
    assert lr.containerfile_text == CF
    (tmp_path / "bad.yaml").write_text("stax: s\nbase: b\ncontainerfile: Nope\n")
    with pytest.raises(InvalidRecipe, match="cannot read its Containerfile"):
        load_recipe(tmp_path / "bad.yaml")
    with pytest.raises(InvalidRecipe, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- stax\n")
    with pytest.raises(InvalidRecipe, match="must be a mapping"):
        load_recipe(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("stax: [\n")
    with pytest.raises(InvalidRecipe, match="not valid YAML"):
        load_recipe(tmp_path / "broken.yaml")


def test_readme_recipe_example_is_valid() -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    (block,) = [b for b in blocks if b.startswith("# solver.yaml")]
    import yaml

    r = parse_recipe(yaml.safe_load(block), "FROM base\nARG mpi gpu\n")
    assert len(expand(r)) == 5 and base_for(r, "aarch64") == "oci:/images/base-arm"
