"""Published workflows (the HPCWaaS shape): a developer publishes a named, versioned workflow
with declared inputs and a default cluster; end users trigger it with input values and cannot
change its steps.

Pure: the models (what the store keeps, what ``GET workflows`` answers, the bodies of
``POST workflows`` and ``POST workflows/{name}``), the declaration of inputs from a workflow's
``params`` (and an optional ``inputs:`` block of the published document), and the ONE check of
a trigger's inputs (:func:`check_inputs`): every unknown input, wrong type and missing required
input is listed in one :class:`InvalidInputs` (a 400, and exit status 2 in the CLI like every
other input error). Input values become the execution's
parameters, so they stay data exactly as parameters do (:mod:`.params`: exported as
``STAX_PARAM_<name>``, never pasted into a script).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import BadRequest, InvalidWorkflow
from .models import NAME_RE, PARAM_NAME_RE, ParamValue, SubmitOptions, Workflow

__all__ = [
    "INPUT_TYPES",
    "InputDecl",
    "InvalidInputs",
    "PublishRequest",
    "PublishedSummary",
    "PublishedWorkflow",
    "TriggerRequest",
    "check_inputs",
    "declare_inputs",
    "next_version",
    "parse_input_text",
    "split_document",
]

InputType = Literal["string", "integer", "number", "boolean"]
INPUT_TYPES: tuple[str, ...] = ("string", "integer", "number", "boolean")
#: a version: what a user types after ``@`` (no spaces, slashes or shell syntax)
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}$")
#: the longest text a string input may carry (a value travels in the environment of a job)
MAX_TEXT = 64 * 1024


class InvalidInputs(BadRequest):
    """The inputs of a trigger do not fit the published workflow (unknown, wrong type, missing
    required); nothing was submitted. A 400 like every BadRequest; the CLI exits 2, as for an
    invalid workflow or parameter."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputDecl(_Wire):
    """One declared input of a published workflow (one of its ``params``)."""

    name: str
    type: InputType = Field(description="string, integer, number or boolean")
    required: bool = Field(description="a trigger must give it (it has no default)")
    default: ParamValue = Field(None, description="the value when a trigger gives none")
    description: str | None = None

    def line(self) -> str:
        """``n (integer, default 10): how many numbers``."""
        how = "required" if self.required else f"default {_shown(self.default)}"
        return f"{self.name} ({self.type}, {how})" + (
            f": {self.description}" if self.description else ""
        )


def _shown(v: ParamValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, str) else str(v)


class PublishedWorkflow(_Wire):
    """A published workflow version: its steps are fixed; triggers give inputs only."""

    name: str
    version: str
    description: str | None = None
    inputs: list[InputDecl] = Field(default_factory=list)
    default_cluster: str | None = Field(
        None, description="where a trigger that names no cluster runs (None: the server's)"
    )
    workflow: Workflow
    options: SubmitOptions = Field(
        default_factory=SubmitOptions,
        description="the options every trigger runs with (base_dir: where relative inputs are)",
    )
    published_at: datetime
    versions: list[str] = Field(
        default_factory=list, description="every published version of this name, oldest first"
    )

    def input(self, name: str) -> InputDecl | None:
        return next((i for i in self.inputs if i.name == name), None)


class PublishedSummary(_Wire):
    """One line of ``GET workflows``: the latest version of a published workflow."""

    name: str
    version: str
    versions: list[str]
    description: str | None = None
    inputs: list[InputDecl]
    default_cluster: str | None = None
    steps: int
    published_at: datetime

    @classmethod
    def of(cls, p: PublishedWorkflow) -> PublishedSummary:
        return cls(
            name=p.name,
            version=p.version,
            versions=p.versions or [p.version],
            description=p.description,
            inputs=p.inputs,
            default_cluster=p.default_cluster,
            steps=len(p.workflow.steps),
            published_at=p.published_at,
        )


class InputSpec(_Wire):
    """How a publisher declares an input beyond its default (the ``inputs:`` block)."""

    type: InputType | None = None
    description: str | None = None
    required: bool | None = None
    default: ParamValue = None


class PublishRequest(_Wire):
    """Body of ``POST workflows``: publish a workflow under a name and version."""

    workflow: Workflow | str = Field(
        description="the workflow as an object, or as YAML text (never a server-side path); "
        "YAML text may carry an 'inputs:' block beside the workflow's keys"
    )
    name: str | None = Field(None, description="default: the workflow's name")
    version: str | None = Field(None, description="default: the next integer version")
    cluster: str | None = Field(None, description="the default cluster of its triggers")
    description: str | None = None
    inputs: dict[str, InputSpec] = Field(
        default_factory=dict,
        description="type, description, required and default of inputs, beyond what the "
        "workflow's params say (each must be one of its params or placeholders)",
    )
    options: SubmitOptions = Field(default_factory=SubmitOptions)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError(
                f"workflow name {v!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-'"
            )
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None and not VERSION_RE.match(v):
            raise ValueError(
                f"version {v!r} is not allowed: use 1-32 letters, digits, '_', '.', '+' or '-'"
            )
        return v


class TriggerRequest(_Wire):
    """Body of ``POST workflows/{name}``: inputs only (the steps are the publisher's)."""

    inputs: dict[str, Any] = Field(
        default_factory=dict, description="input values by name, typed as declared"
    )
    cluster: str | None = Field(
        None, description="where to run (default: the workflow's default cluster)"
    )
    version: str | None = Field(None, description="default: the latest version")


# ---------------------------------------------------------------------- declaring
def type_of(v: ParamValue) -> InputType:
    """The input type a default value stands for."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    return "string"


def split_document(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A published document is a workflow file that may also hold ``inputs:`` (declarations)
    and ``description``; returns ``(workflow mapping, inputs mapping)``."""
    wf = dict(data)
    inputs = wf.pop("inputs", None) or {}
    if not isinstance(inputs, Mapping):
        raise InvalidWorkflow(
            "'inputs' must map input names to {type, description, required, default}"
        )
    return wf, dict(inputs)


def declare_inputs(wf: Workflow, specs: Mapping[str, InputSpec]) -> list[InputDecl]:
    """The declared inputs of ``wf``: each workflow parameter (its default gives the type), each
    placeholder without a default (required, string unless declared), refined by ``specs``.
    InvalidWorkflow lists every declaration that does not fit."""
    from .params import placeholders

    names: dict[str, None] = dict.fromkeys(wf.params)
    for s in wf.steps:
        for n in placeholders(s.run):
            if n not in s.params and n not in (s.sweep or {}):  # a step's own values: no input
                names.setdefault(n)
    problems: list[str] = []
    for n in specs:
        if not PARAM_NAME_RE.match(n):
            problems.append(f"input name {n!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        names.setdefault(n)
    out: list[InputDecl] = []
    for n in names:
        spec = specs.get(n) or InputSpec()
        default = wf.params.get(n) if spec.default is None else spec.default
        declared = spec.type or (type_of(default) if default is not None else "string")
        required = default is None if spec.required is None else spec.required
        if default is not None and (err := _type_problem(n, declared, default)):
            problems.append(f"the default of input {err}")
        if not required and default is None:
            problems.append(f"input {n!r} is optional but has no default; give it one")
        out.append(
            InputDecl(
                name=n,
                type=declared,
                required=required,
                default=None if required else default,
                description=spec.description,
            )
        )
    if problems:
        raise InvalidWorkflow(f"the inputs of workflow {wf.name!r} are not valid", details=problems)
    return out


def next_version(versions: list[str]) -> str:
    """The version a publish without ``--version`` gets: one more than the largest integer
    version (``1`` first)."""
    numbers = [int(v) for v in versions if v.isdigit()]
    return str(max(numbers, default=0) + 1)


# ---------------------------------------------------------------------- triggering
def _type_problem(name: str, want: str, v: Any) -> str | None:
    """None when ``v`` is a value of type ``want``, else what is wrong."""
    ok = {
        "string": isinstance(v, str),
        "integer": isinstance(v, int) and not isinstance(v, bool),
        "number": isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": isinstance(v, bool),
    }[want]
    if not ok:
        got = "null" if v is None else type_of(v) if isinstance(v, (str, int, float)) else (
            type(v).__name__ if not isinstance(v, (list, dict)) else
            ("array" if isinstance(v, list) else "object")
        )
        return f"{name!r} must be {_article(want)} {want}, not {got} {_short(v)}"
    if isinstance(v, float) and not math.isfinite(v):
        return f"{name!r} must be a finite number, not {v}"
    if isinstance(v, str):
        if "\x00" in v:
            return f"{name!r} contains a NUL character (a job's environment cannot carry it)"
        if len(v) > MAX_TEXT:
            return f"{name!r} is {len(v):,} characters long; at most {MAX_TEXT:,}"
    return None


def _article(t: str) -> str:
    return "an" if t[0] in "aeiou" else "a"


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_inputs(p: PublishedWorkflow, given: Mapping[str, Any]) -> dict[str, ParamValue]:
    """The parameters of a trigger of ``p`` with the inputs ``given``; InvalidInputs listing
    every unknown input, wrong type and missing required input."""
    problems: list[str] = []
    known = ", ".join(i.name for i in p.inputs) or "none"
    for n in given:
        if p.input(n) is None:
            problems.append(f"unknown input {n!r}; the inputs of {p.name}: {known}")
    params: dict[str, ParamValue] = {}
    for decl in p.inputs:
        if decl.name not in given:
            if decl.required:
                problems.append(f"missing required input {decl.line()}")
            elif decl.default is not None:
                params[decl.name] = decl.default
            continue
        v = given[decl.name]
        if decl.type == "number" and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        err = _type_problem(decl.name, decl.type, v)
        if err:
            problems.append(f"input {err}")
        else:
            params[decl.name] = v
    if problems:
        raise InvalidInputs(
            f"cannot trigger {p.name} (version {p.version}): "
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} with its inputs",
            details=problems,
        )
    return params


def parse_input_text(decl: InputDecl | None, text: str) -> Any:
    """A value typed on a command line (``--input k=v``) as the input's declared type wants it:
    text for a string input, a number or true/false otherwise (left as text when it is not one,
    so that :func:`check_inputs` names the problem). An unknown input: by the rule of
    :func:`~.assignments.parse_value`."""
    from .assignments import parse_value

    if decl is None:
        return parse_value(text)
    if decl.type == "string":
        return text
    v = parse_value(text)
    if decl.type == "number" and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def split_ref(name: str, version: str | None) -> tuple[str, str | None]:
    """``NAME@VERSION`` is NAME at VERSION (unless ``version`` is given)."""
    if version is None and "@" in name:
        name, _, version = name.partition("@")
    return name, version or None
