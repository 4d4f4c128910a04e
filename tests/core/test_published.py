"""Published workflows and re-runs, the pure parts: declared inputs, the ONE check of a
trigger's inputs (every problem listed), command-line typing of inputs, versions, and the image
a re-run pins (or the family's fitting variant, with the reason)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from jupyter_stax.core.errors import BadRequest, Conflict, InvalidWorkflow
from jupyter_stax.core.images import ClusterTraits, ImageMismatch, Need, ResolvedImage, StaxImage
from jupyter_stax.core.models import Workflow
from jupyter_stax.core.published import (
    InputDecl,
    InputSpec,
    PublishedWorkflow,
    check_inputs,
    declare_inputs,
    next_version,
    parse_input_text,
    split_document,
)
from jupyter_stax.core.rerun import RegistryRef, pinned_reference, registry_reference, repin

WF = Workflow.model_validate(
    {
        "name": "sums",
        "params": {"n": 10, "scale": 1.5, "who": "world", "loud": False},
        "steps": [{"name": "a", "run": "seq {{n}} {{tag}}; echo {{who}} {{scale}} {{loud}}"}],
    }
)


def published(specs: dict[str, InputSpec] | None = None) -> PublishedWorkflow:
    return PublishedWorkflow(
        name="sums",
        version="1",
        inputs=declare_inputs(WF, specs or {}),
        workflow=WF,
        published_at=datetime.now(timezone.utc),
    )


def test_inputs_are_declared_from_params_and_placeholders() -> None:
    got = {i.name: (i.type, i.required, i.default) for i in published().inputs}
    assert got == {
        "n": ("integer", False, 10),
        "scale": ("number", False, 1.5),
        "who": ("string", False, "world"),
        "loud": ("boolean", False, False),
        "tag": ("string", True, None),  # a placeholder without a default: required
    }
    swept = Workflow.model_validate(
        {"name": "s", "steps": [{"name": "a", "run": "echo {{x}} {{y}}", "sweep": {"x": [1, 2]}}]}
    )
    assert [i.name for i in declare_inputs(swept, {})] == ["y"]  # a sweep's own values: no input
    p = published({"tag": InputSpec(type="integer", description="a tag")})
    tag = p.input("tag")
    assert tag is not None and tag.line() == "tag (integer, required): a tag"


@pytest.mark.parametrize(
    ("specs", "problem"),
    [
        ({"n": InputSpec(type="string")}, "the default of input 'n' must be a string, not integer"),
        ({"x": InputSpec(required=False)}, "input 'x' is optional but has no default"),
        ({"1x": InputSpec()}, "input name '1x' is not an identifier"),
    ],
)
def test_declarations_that_do_not_fit_are_refused(
    specs: dict[str, InputSpec], problem: str
) -> None:
    with pytest.raises(InvalidWorkflow) as e:
        declare_inputs(WF, specs)
    assert any(problem in d for d in e.value.details), e.value.details


@pytest.mark.parametrize(
    ("given", "params", "problems"),
    [
        (
            {"tag": "t"},
            {"n": 10, "scale": 1.5, "who": "world", "loud": False, "tag": "t"},
            [],
        ),
        (  # an integer for a number input is a number; text is data, whatever it holds
            {"tag": "$(id); rm -rf /", "scale": 2, "loud": True},
            {"n": 10, "scale": 2.0, "who": "world", "loud": True, "tag": "$(id); rm -rf /"},
            [],
        ),
        (  # every problem at once
            {"n": "10", "loud": 1, "bogus": 1, "scale": None},
            None,
            [
                "unknown input 'bogus'; the inputs of sums: n, scale, who, loud, tag",
                "input 'n' must be an integer, not string '10'",
                "input 'scale' must be a number, not null None",
                "input 'loud' must be a boolean, not integer 1",
                "missing required input tag (string, required)",
            ],
        ),
        ({"tag": "t", "n": True}, None, ["input 'n' must be an integer, not boolean True"]),
        ({"tag": "t", "n": 1.0}, None, ["input 'n' must be an integer, not number 1.0"]),
        ({"tag": ["a"]}, None, ["input 'tag' must be a string, not array ['a']"]),
        ({"tag": {"a": 1}}, None, ["input 'tag' must be a string, not object {'a': 1}"]),
        ({"tag": "a\x00b"}, None, ["input 'tag' contains a NUL character"]),
        ({"tag": "t", "scale": float("inf")}, None, ["input 'scale' must be a finite number"]),
    ],
)
def test_check_inputs(
    given: dict[str, Any], params: dict[str, Any] | None, problems: list[str]
) -> None:
    p = published()
    if params is not None:
        assert check_inputs(p, given) == params
        return
    with pytest.raises(BadRequest) as e:
        check_inputs(p, given)
    assert len(e.value.details) == len(problems), e.value.details
    for want, got in zip(problems, e.value.details, strict=True):
        assert got.startswith(want), (want, got)
    assert f"{len(problems)} problem" in e.value.message


@pytest.mark.parametrize(
    ("type_", "text", "value"),
    [
        ("string", "10", "10"),  # a string input keeps text that looks like a number
        ("string", "true", "true"),
        ("integer", "10", 10),
        ("integer", "x", "x"),  # left as text: check_inputs names the problem
        ("number", "2", 2.0),
        ("number", "2.5", 2.5),
        ("boolean", "true", True),
        ("boolean", "yes", "yes"),
        (None, "10", 10),  # an unknown input: typed by the rule of --param
    ],
)
def test_parse_input_text(type_: str | None, text: str, value: Any) -> None:
    decl = None if type_ is None else InputDecl(name="v", type=type_, required=True)  # type: ignore[arg-type]
    got = parse_input_text(decl, text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("versions", "next_"),
    [([], "1"), (["1", "2"], "3"), (["1", "beta", "7"], "8"), (["beta"], "1")],
)
def test_next_version(versions: list[str], next_: str) -> None:
    assert next_version(versions) == next_


def test_a_document_splits_into_workflow_and_inputs() -> None:
    wf, inputs = split_document({"name": "w", "steps": [], "inputs": {"n": {"type": "integer"}}})
    assert wf == {"name": "w", "steps": []} and inputs == {"n": {"type": "integer"}}
    with pytest.raises(InvalidWorkflow):
        split_document({"inputs": ["n"]})


# ---------------------------------------------------------------------- re-pinning
def image(name: str, cpu: str, gpu: str = "none", digest: str | None = None) -> StaxImage:
    return StaxImage.model_validate(
        {
            "name": name,
            "family": "gromacs",
            "reference": f"/images/{name}",
            "digest": digest,
            "labels": {"cpu": cpu, "gpu": gpu, "mpi": "none"},
        }
    )


CATALOG = [
    image("gromacs-x86-cuda", "x86_64", "cuda", "sha256:aa"),
    image("gromacs-x86", "x86_64", digest="sha256:bb"),
    image("gromacs-arm", "aarch64", digest="sha256:cc"),
]
X86_GPU = ClusterTraits(cpu="x86_64", gpu=["cuda"])
ARM = ClusterTraits(cpu="aarch64")


def pin(img: StaxImage, digest: str | None = None) -> ResolvedImage:
    r = ResolvedImage.of("gromacs", img, "charliecloud")
    return r.model_copy(update={"digest": digest}) if digest else r


@pytest.mark.parametrize(
    ("pinned", "traits", "catalog", "want", "change"),
    [
        # the variant the run used fits: pinned again, nothing said
        (pin(CATALOG[0]), X86_GPU, CATALOG, "gromacs-x86-cuda", None),
        # found by digest even when the catalog renamed it
        (
            pin(CATALOG[0]),
            X86_GPU,
            [CATALOG[0].model_copy(update={"name": "gmx-cuda"}), *CATALOG[1:]],
            "gmx-cuda",
            None,
        ),
        # another cpu: the family's fitting variant, and why
        (
            pin(CATALOG[0]),
            ARM,
            CATALOG,
            "gromacs-arm",
            "step 'md': gromacs-x86-cuda -> gromacs-arm: cpu x86_64 != aarch64; gpu cuda not "
            "offered (cluster offers: none)",
        ),
        # a crate from another machine whose variant is in no catalog here
        (
            pin(image("gromacs-x86-elsewhere", "x86_64"), "sha256:ff"),
            X86_GPU,
            CATALOG,
            "gromacs-x86-cuda",
            "step 'md': gromacs-x86-elsewhere -> gromacs-x86-cuda: not in this machine's catalog",
        ),
    ],
)
def test_repin(
    pinned: ResolvedImage,
    traits: ClusterTraits,
    catalog: list[StaxImage],
    want: str,
    change: str | None,
) -> None:
    got = repin("md", pinned, catalog, "c", traits, Need(gpus=True))
    assert (got.image, got.change) == (want, change)


def test_repin_a_reference_no_catalog_lists_runs_as_it_is_where_it_fits() -> None:
    own = pin(image("mine", "x86_64"))
    assert repin("md", own, [], "c", X86_GPU, Need(), reference_usable=True).image == own.reference
    with pytest.raises(ImageMismatch, match="no catalog here has a variant of its family"):
        repin("md", own, [], "c", ARM, Need(), reference_usable=True)


def test_repin_refuses_a_variant_whose_digest_changed() -> None:
    with pytest.raises(Conflict, match="has digest sha256:bb now; the run used sha256:99"):
        repin("md", pin(CATALOG[1], "sha256:99"), CATALOG, "c", X86_GPU, Need())


D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("reference", "split"),
    [
        ("docker://ghcr.io/o/gmx:2024", RegistryRef("docker://", "ghcr.io/o/gmx", "2024", None)),
        ("docker://busybox:1.36", RegistryRef("docker://", "busybox", "1.36", None)),  # Docker Hub
        ("docker://library/busybox", RegistryRef("docker://", "library/busybox", None, None)),
        (f"docker://ghcr.io/o/x@{D1}", RegistryRef("docker://", "ghcr.io/o/x", None, D1)),
        ("ghcr.io/org/gmx:2024", RegistryRef("", "ghcr.io/org/gmx", "2024", None)),
        ("localhost:5000/stax/x", RegistryRef("", "localhost:5000/stax/x", None, None)),
        ("reg.example.org:5000/a/b:1.0", RegistryRef("", "reg.example.org:5000/a/b", "1.0", None)),
        # not registry references: paths, other transports, a name without its registry host
        ("/images/gmx", None),
        ("./images/gmx", None),
        ("~/images/gmx.sif", None),
        ("org/gmx:1", None),  # a relative path for the runtimes that take names as they are
        ("oci:/images/layout:tag", None),
        ("library://org/x:1", None),
        ("docker://x@sha256:12", None),  # not a digest
        ("ghcr.io/Org/x:1", None),  # repositories are lower case
        ("docker://", None),
    ],
)
def test_registry_reference(reference: str, split: RegistryRef | None) -> None:
    assert registry_reference(reference) == split


@pytest.mark.parametrize(
    ("reference", "digest", "pinned"),
    [
        ("docker://ghcr.io/org/gmx:2024", D1, f"docker://ghcr.io/org/gmx@{D1}"),  # tag dropped
        ("ghcr.io/org/gmx:2024", D1, f"ghcr.io/org/gmx@{D1}"),
        ("docker://busybox", D1, f"docker://busybox@{D1}"),
        (f"docker://ghcr.io/o/x@{D1}", D1, f"docker://ghcr.io/o/x@{D1}"),  # pinned already
        ("docker://ghcr.io/org/gmx:2024", None, None),  # no digest recorded
        ("docker://ghcr.io/org/gmx:2024", "sha256:aa", None),  # not a digest
        ("/images/gmx", D1, None),  # a path: run as it is
    ],
)
def test_pinned_reference(reference: str, digest: str | None, pinned: str | None) -> None:
    assert pinned_reference(reference, digest) == pinned


def registry_image(name: str, cpu: str, tag: str = "2024", digest: str | None = D1) -> StaxImage:
    return image(name, cpu, digest=digest).model_copy(
        update={"reference": f"docker://ghcr.io/org/{name}:{tag}"}
    )


REG = [registry_image("gmx-x86", "x86_64"), registry_image("gmx-arm", "aarch64", digest=D2)]


@pytest.mark.parametrize(
    ("pinned", "traits", "catalog", "want", "change"),
    [
        # a catalog variant from a registry: the same image, by the digest the run recorded
        (
            pin(REG[0]),
            X86_GPU,
            REG,
            (f"docker://ghcr.io/org/gmx-x86@{D1}",) * 2,
            "step 'md': gmx-x86 pinned to the digest the run recorded: "
            f"docker://ghcr.io/org/gmx-x86:2024 -> docker://ghcr.io/org/gmx-x86@{D1}",
        ),
        # a registry reference in no catalog (a crate from elsewhere, an image: reference)
        (
            pin(registry_image("elsewhere", "x86_64")),
            X86_GPU,
            [],
            (f"docker://ghcr.io/org/elsewhere@{D1}",) * 2,
            "step 'md': docker://ghcr.io/org/elsewhere:2024 pinned to the digest the run "
            f"recorded: docker://ghcr.io/org/elsewhere:2024 -> docker://ghcr.io/org/elsewhere@{D1}",
        ),
        # no digest recorded: by its tag, and said
        (
            pin(registry_image("gmx-x86", "x86_64", digest=None)),
            X86_GPU,
            [registry_image("gmx-x86", "x86_64", digest=None)],
            ("gmx-x86", "docker://ghcr.io/org/gmx-x86:2024"),
            "step 'md': gmx-x86 runs by its tag (docker://ghcr.io/org/gmx-x86:2024): the run "
            "recorded no digest, so the image may differ from the one it ran",
        ),
        # pinned by digest already: nothing to say
        (
            pin(
                registry_image("gmx-x86", "x86_64").model_copy(
                    update={"reference": f"docker://ghcr.io/org/gmx-x86@{D1}"}
                )
            ),
            X86_GPU,
            [],
            (f"docker://ghcr.io/org/gmx-x86@{D1}",) * 2,
            None,
        ),
        # does not fit: the family's variant that does (its reference for a container)
        (
            pin(REG[0]),
            ARM,
            REG,
            ("gmx-arm", "docker://ghcr.io/org/gmx-arm:2024"),
            "step 'md': gmx-x86 -> gmx-arm: cpu x86_64 != aarch64",
        ),
        # a path variant: its name, its path
        (pin(CATALOG[2]), ARM, CATALOG, ("gromacs-arm", "/images/gromacs-arm"), None),
    ],
)
def test_repin_registry_images(
    pinned: ResolvedImage,
    traits: ClusterTraits,
    catalog: list[StaxImage],
    want: tuple[str, str],
    change: str | None,
) -> None:
    got = repin("md", pinned, catalog, "c", traits, Need())
    assert (got.image, got.reference, got.change) == (*want, change)


def test_the_readme_example_publishes() -> None:
    import re
    from pathlib import Path

    import yaml

    from jupyter_stax.core.dag import check

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    (block,) = [b for b in blocks if b.startswith("# sums.yaml")]
    data, specs = split_document(yaml.safe_load(block))
    wf = Workflow.model_validate(data)
    inputs = declare_inputs(wf, {k: InputSpec.model_validate(v) for k, v in specs.items()})
    assert [(i.name, i.type, i.required) for i in inputs] == [
        ("n", "integer", False),
        ("label", "string", True),
    ]
    check(wf, {"n": 10, "label": "x"})
