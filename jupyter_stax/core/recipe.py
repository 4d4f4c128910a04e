"""StaX build recipes: one YAML file next to a Containerfile, a build matrix, labels.

Pure (no I/O besides :func:`load_recipe` reading the recipe and its Containerfile). Building
is :mod:`jupyter_stax.engine.builds`' job. A recipe::

    stax: solver
    description: my solver
    containerfile: Containerfile        # Dockerfile syntax; matrix values arrive as build ARGs
    base: {x86_64: "ch:/images/base-x86", aarch64: "oci:/images/base-arm"}   # or one base
    matrix:
      mpi: [none, mpich, openmpi]
      gpu: [none, cuda]
    exclude: [{mpi: none, gpu: cuda}]
    labels: {framework: psij, platform: jupyter}
    output: images/                     # relative to the recipe's folder

Each variant (a point of the matrix minus the excluded ones) is one image, labelled with the
matrix values, ``cpu`` (the build architecture), ``os`` (the image's ``/etc/os-release``),
``kabi`` (the image's glibc, when it has one) and the recipe's ``labels``: the labels of
:mod:`jupyter_stax.core.images`, so the catalog matches built variants with no hand-editing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .documents import parse_yaml, to_model
from .errors import InvalidWorkflow
from .images import (
    LABEL_PREFIX,
    LISTING,
    NO_GPU,
    ClusterTraits,
    ImageFit,
    StaxImage,
    StaxLabels,
    judge,
    mpi_family,
    norm_cpu,
    norm_mpi,
)

#: the output formats a build can write
FORMATS = ("ch", "oci", "sif")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class InvalidRecipe(InvalidWorkflow):
    """A build recipe (or a variant asked of it) that cannot be built; says what to change."""


class Recipe(BaseModel):
    """A build recipe as written (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid")

    stax: str = Field(description="the StaX family the variants belong to")
    description: str | None = None
    containerfile: str = Field("Containerfile", description="relative to the recipe's folder")
    base: str | dict[str, str] = Field(
        description="the base image (ch:DIR, oci:DIR[:TAG], a directory or a .tar.gz), or one "
        "per CPU architecture"
    )
    matrix: dict[str, list[str]] = Field(default_factory=dict)
    exclude: list[dict[str, str]] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    output: str = Field("images", description="where built images go (relative to the recipe)")

    @field_validator("stax")
    @classmethod
    def _stax(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("letters, digits, '.', '_' and '-' only (it names images)")
        return v

    @field_validator("matrix", mode="before")
    @classmethod
    def _matrix(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {
                str(k): [_text(x) for x in (xs if isinstance(xs, list) else [xs])]
                for k, xs in v.items()
            }
        return v

    @field_validator("exclude", mode="before")
    @classmethod
    def _exclude(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [
                {str(k): _text(x) for k, x in e.items()} if isinstance(e, dict) else e for e in v
            ]
        return v

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        return {str(k): _text(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("base", mode="before")
    @classmethod
    def _base(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(norm_cpu(str(k))): str(x) for k, x in v.items()}
        return v


def _text(v: Any) -> Any:
    """YAML scalars as the text a build ARG gets (``true`` -> ``true``, ``2.28`` -> ``2.28``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return v


class LoadedRecipe(BaseModel):
    """A recipe with where it lives and its Containerfile's text."""

    model_config = ConfigDict(extra="forbid")

    recipe: Recipe
    path: str = Field(description="the recipe file")
    containerfile_text: str

    @property
    def folder(self) -> Path:
        return Path(self.path).parent

    @property
    def containerfile_path(self) -> Path:
        return self.folder / self.recipe.containerfile

    @property
    def output(self) -> Path:
        p = Path(self.recipe.output).expanduser()
        return p if p.is_absolute() else self.folder / p


def parse_recipe(data: Any, containerfile_text: str, *, source: str = "recipe") -> Recipe:
    """A recipe from parsed YAML, checked against its Containerfile (every error at once is
    not needed: the first one says what to change)."""
    if not isinstance(data, dict):
        raise InvalidRecipe(f"{source} must be a mapping with stax, base and matrix")
    r = to_model(Recipe, data, source=source, error=InvalidRecipe)
    check_recipe(r, containerfile_text, source=source)
    return r


def load_recipe(path: str | Path) -> LoadedRecipe:
    """Read a recipe file and its Containerfile; InvalidRecipe saying what is wrong."""
    p = Path(path).expanduser().absolute()
    try:
        text = p.read_text()
    except OSError as e:
        raise InvalidRecipe(f"cannot read recipe {str(p)!r}: {e.strerror}") from None
    source = f"recipe {str(p)!r}"
    data = parse_yaml(text, source=source, error=InvalidRecipe)
    if not isinstance(data, dict):
        raise InvalidRecipe(f"{source} must be a mapping with stax, base and matrix")
    cf = p.parent / str(data.get("containerfile", "Containerfile"))
    try:
        cf_text = cf.read_text()
    except OSError as e:
        raise InvalidRecipe(
            f"{source}: cannot read its Containerfile {str(cf)!r}: {e.strerror} (set "
            "'containerfile:' to the file next to the recipe)"
        ) from None
    return LoadedRecipe(
        recipe=parse_recipe(data, cf_text, source=source), path=str(p), containerfile_text=cf_text
    )


# ---------------------------------------------------------------------- Containerfile
def containerfile_args(text: str) -> set[str]:
    """The names the Containerfile declares with ``ARG NAME[=default]`` (continuation lines
    joined, comments skipped)."""
    joined = re.sub(r"\\\r?\n", " ", text)
    names: set[str] = set()
    for line in joined.splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0].upper() == "ARG":
            try:
                items = shlex.split(words[1], comments=True)
            except ValueError:  # an unbalanced quote: the names are still the words
                items = words[1].split()
            for item in items:
                names.add(item.split("=", 1)[0])
    return names


def containerfile_from(text: str) -> str | None:
    """The image of the first ``FROM`` line, or None."""
    m = _FROM.search(text)
    return m.group(2) if m else None


_FROM = re.compile(r"^(\s*FROM\s+(?:--\S+\s+)*)(\S+)", re.IGNORECASE | re.MULTILINE)


def with_base(text: str, base: str) -> str:
    """The Containerfile with its first ``FROM`` image replaced by ``base`` (the recipe's
    base for the build architecture, imported under that name)."""
    if not _FROM.search(text):
        raise InvalidRecipe("the Containerfile has no FROM line (write 'FROM base')")
    return _FROM.sub(lambda m: m.group(1) + base, text, count=1)


def check_recipe(r: Recipe, containerfile_text: str, *, source: str = "recipe") -> None:
    """Errors found before any build: empty matrix values, an exclude naming a key or value
    the matrix does not have, a matrix key the Containerfile does not declare as ARG."""
    if containerfile_from(containerfile_text) is None:
        raise InvalidRecipe(f"{source}: the Containerfile has no FROM line (write 'FROM base')")
    args = containerfile_args(containerfile_text)
    for key, values in r.matrix.items():
        if not _NAME.match(key):
            raise InvalidRecipe(f"{source}: matrix key {key!r}: letters, digits, '_' only")
        if not values:
            raise InvalidRecipe(f"{source}: matrix key {key!r} has no values")
        if len(set(values)) != len(values):
            raise InvalidRecipe(f"{source}: matrix key {key!r} repeats a value")
        for v in values:
            if not _NAME.match(v):
                raise InvalidRecipe(
                    f"{source}: matrix value {key}={v!r}: letters, digits, '.', '_', '-' only "
                    "(it is part of image names)"
                )
        if key not in args:
            raise InvalidRecipe(
                f"{source}: matrix key {key!r} is not declared in the Containerfile: add "
                f"'ARG {key}' to it (matrix values arrive as build ARGs)"
            )
    for i, e in enumerate(r.exclude):
        for key, v in e.items():
            if key not in r.matrix:
                raise InvalidRecipe(
                    f"{source}: exclude {i + 1} names {key!r}, which is not a matrix key "
                    f"(matrix keys: {', '.join(r.matrix) or 'none'})"
                )
            if v not in r.matrix[key]:
                raise InvalidRecipe(
                    f"{source}: exclude {i + 1}: {key}={v!r} is not a value of the matrix "
                    f"({key}: {', '.join(r.matrix[key])})"
                )
    if isinstance(r.base, dict) and not r.base:
        raise InvalidRecipe(f"{source}: 'base' names no image")


# ---------------------------------------------------------------------- matrix
def expand(r: Recipe) -> list[dict[str, str]]:
    """Every point of the matrix (in the order written) that no ``exclude`` entry matches."""
    keys = list(r.matrix)
    out = []
    for combo in itertools.product(*(r.matrix[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        if any(all(values[k] == v for k, v in e.items()) for e in r.exclude):
            continue
        out.append(values)
    return out


def variant_name(stax: str, cpu: str, values: Mapping[str, str]) -> str:
    """``solver-x86_64-mpich-none``: the family, the architecture, the matrix values."""
    return "-".join([stax, cpu, *values.values()])


def parse_selection(items: Sequence[str]) -> dict[str, str]:
    """``--variant k=v`` items as a mapping; InvalidRecipe for one without ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidRecipe(f"--variant {item!r}: write KEY=VALUE, e.g. --variant mpi=mpich")
        out[key.strip()] = value.strip()
    return out


def select(
    r: Recipe, variants: list[dict[str, str]], want: Mapping[str, str]
) -> list[dict[str, str]]:
    """The variants whose values match every ``want`` item; InvalidRecipe for a key the matrix
    does not have, a value it does not list, or a choice that is excluded."""
    for key, v in want.items():
        if key not in r.matrix:
            raise InvalidRecipe(
                f"unknown matrix key {key!r} in --variant; the matrix has: "
                f"{', '.join(r.matrix) or 'no keys'}"
            )
        if v not in r.matrix[key]:
            raise InvalidRecipe(
                f"--variant {key}={v}: {v!r} is not a value of {key!r} ({', '.join(r.matrix[key])})"
            )
    out = [x for x in variants if all(x[k] == v for k, v in want.items())]
    if not out:
        chosen = ", ".join(f"{k}={v}" for k, v in want.items())
        raise InvalidRecipe(f"no variant is left: {chosen} is excluded by the recipe")
    return out


def base_for(r: Recipe, cpu: str) -> str:
    """The base image for architecture ``cpu``; InvalidRecipe when the recipe has none."""
    if isinstance(r.base, str):
        return r.base
    cpu = norm_cpu(cpu) or cpu
    if cpu not in r.base:
        raise InvalidRecipe(
            f"the recipe has no base for {cpu} (bases: {', '.join(sorted(r.base))}); add "
            f"'{cpu}: IMAGE' under 'base:'"
        )
    return r.base[cpu]


# ---------------------------------------------------------------------- labels
def parse_os_release(text: str) -> str | None:
    """``PRETTY_NAME`` of an ``/etc/os-release`` (else ``NAME VERSION_ID``), or None."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        try:
            words = shlex.split(v)
        except ValueError:
            words = [v.strip("\"'")]
        fields[k.strip()] = " ".join(words)
    if fields.get("PRETTY_NAME"):
        return fields["PRETTY_NAME"]
    name = " ".join(x for x in (fields.get("NAME"), fields.get("VERSION_ID")) if x)
    return name or None


_GLIBC_RELEASE = re.compile(rb"GNU C Library[^\n\x00]*?version (\d+\.\d+)")
_GLIBC_SYMVER = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.\d+)?\x00")


def glibc_version(libc: bytes) -> str | None:
    """The glibc version of a ``libc.so.6``'s bytes: its banner ("... release version 2.36"),
    else the newest ``GLIBC_2.x`` symbol version; None for anything else (musl, busybox)."""
    m = _GLIBC_RELEASE.search(libc)
    if m:
        return m.group(1).decode()
    vers = {(int(a), int(b)) for a, b in _GLIBC_SYMVER.findall(libc)}
    if not vers:
        return None
    a, b = max(vers)
    return f"{a}.{b}"


def variant_labels(
    r: Recipe,
    values: Mapping[str, str],
    cpu: str,
    *,
    os_name: str | None = None,
    kabi: str | None = None,
) -> dict[str, str]:
    """The ``org.hpe.staxs.*`` labels of a built variant: the recipe's labels, the matrix
    values, cpu, os and kabi (what was measured wins over what was written)."""
    given: dict[str, Any] = {**r.labels, **values, "cpu": cpu}
    if os_name:
        given["os"] = os_name
    if kabi:
        given["kabi"] = kabi
    labels = StaxLabels.parse(given).as_labels()
    # matrix keys that are no known StaX label are still StaX labels (org.hpe.staxs.python)
    for k in list(labels):
        if k in values and "." not in k:
            labels[LABEL_PREFIX + k] = labels.pop(k)
    labels["org.opencontainers.image.title"] = r.stax
    return labels


# ---------------------------------------------------------------------- planning
def prospective_images(
    r: Recipe, variants: list[dict[str, str]], cpu: str
) -> list[tuple[dict[str, str], StaxImage]]:
    """Each variant as the catalog will see it (before the build: no os, no kabi)."""
    return [
        (
            v,
            StaxImage(
                name=variant_name(r.stax, cpu, v),
                family=r.stax,
                reference=variant_name(r.stax, cpu, v),
                labels=StaxLabels.parse(variant_labels(r, v, cpu)),
            ),
        )
        for v in variants
    ]


def for_cluster(
    r: Recipe, variants: list[dict[str, str]], cluster: str, traits: ClusterTraits, cpu: str
) -> dict[str, str]:
    """The variant a cluster's traits fit best (the rule of :func:`core.images.resolve` for a
    family); InvalidRecipe listing each variant and the rule it fails when none fits."""
    if traits.cpu is not None and traits.cpu != cpu:
        raise InvalidRecipe(
            f"cluster {cluster!r} runs {traits.cpu}; this machine builds {cpu} only (build on "
            f"a {traits.cpu} machine)"
        )
    cands = prospective_images(r, variants, cpu)
    fits = [judge(i, cluster, traits, LISTING) for _, i in cands]
    good = [(n, f) for n, f in enumerate(fits) if f.fits]
    if not good:
        raise InvalidRecipe(
            f"no variant of recipe {r.stax!r} fits cluster {cluster!r}",
            details=[f"{f.image.name}: {f.reason()}" for f in fits],
        )

    def rank(item: tuple[int, ImageFit]) -> tuple[int, ...]:
        n, f = item
        lab = f.image.labels
        gpu = lab.gpu or NO_GPU
        return (
            # a machine with GPUs gets a GPU variant, one without a CPU variant
            int((gpu != NO_GPU) == bool(traits.gpu)),
            int(traits.mpi is not None and mpi_family(lab.mpi) == mpi_family(traits.mpi)),
            int(traits.mpi is not None and norm_mpi(lab.mpi) == traits.mpi),
            int(bool(lab.network) and lab.network == traits.network),
            -n,  # then the order of the matrix
        )

    return cands[max(good, key=rank)[0]][0]


def build_key(
    r: Recipe, containerfile_text: str, args: Mapping[str, str], base_digest: str, fmt: str
) -> str:
    """What decides whether a built variant is still current: a hash of the recipe, the
    Containerfile, the build args, the base's digest and the output format."""
    doc = {
        "recipe": r.model_dump(mode="json", exclude={"output", "description"}),
        "containerfile": containerfile_text,
        "args": dict(sorted(args.items())),
        "base": base_digest,
        "format": fmt,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
