"""eFlows4HPC software invocation descriptions (PyCOMPSs ``@software``) as step definitions.

A description is JSON: ``execution`` (or, in the tutorial spelling, ``type`` + ``properties``),
``parameters``, ``prolog``, ``epilog``, ``constraints``, ``container``. Both spellings are read
into :class:`Software`; :func:`render` turns it into the bash script of a step:

* ``binary``: ``[cd DIR] [CONTAINER] BINARY ARGS``
* ``mpi``: ``RUNNER -n N [-ppn P] [FLAGS] [CONTAINER] BINARY ARGS`` (the runner on the host, one
  container per rank)
* ``mpmd_mpi``: one ``RUNNER -n A [-ppn P] PROG1 ARGS : -n B [-ppn P] PROG2 ARGS`` line
* ``prolog`` / ``epilog`` run before / after; a failing prolog stops the step when its
  ``fail_by_exit_value`` is true (the default), a failing epilog only when it is set (default
  false); the program's own exit value fails the step unless its ``fail_by_exit_value`` is false.

``{{param}}`` in any string is a workflow parameter (substituted safely, see
:mod:`.params`); ``$NAME`` / ``${NAME}`` is an environment variable of the node, expanded by
the shell at run time. Every other character is literal.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .containers import ContainerRun, ContainerRuntime, runtime_name
from .errors import InvalidWorkflow
from .images import Bind
from .validation import validation_messages

SoftwareType = Literal["binary", "mpi", "mpmd_mpi"]
_UNSUPPORTED = {
    "task": "a Python function run by PyCOMPSs",
    "workflow": "a PyCOMPSs workflow",
    "ompss": "an OmpSs program",
    "decaf": "a Decaf data flow",
    "multinode": "a PyCOMPSs multinode task",
    "http": "an HTTP call",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


ArgsText = str


def _args(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return str(v) if isinstance(v, (int, float)) else v


class Hook(_Model):
    binary: str
    args: ArgsText = ""
    fail_by_exit_value: bool | None = None

    _a = field_validator("args", mode="before")(classmethod(lambda cls, v: _args(v)))


class Program(_Model):
    binary: str
    processes: int | str = 1
    args: ArgsText = ""

    _a = field_validator("args", mode="before")(classmethod(lambda cls, v: _args(v)))


class Execution(_Model):
    type: SoftwareType
    binary: str | None = None
    args: ArgsText = ""
    working_dir: str | None = None
    runner: str | None = None
    processes: int | str | None = None
    processes_per_node: int | str | None = None
    flags: ArgsText = ""
    programs: list[Program] = Field(default_factory=list)
    fail_by_exit_value: bool | None = None

    _a = field_validator("args", "flags", mode="before")(classmethod(lambda cls, v: _args(v)))


class Processor(_Model):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    processorType: str | None = None  # the description's own spelling
    computingUnits: int | str | None = None


class Constraints(_Model):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    computing_units: int | str | None = None
    memory: str | int | None = None
    processors: list[Processor] = Field(default_factory=list)

    @property
    def gpus(self) -> int:
        n = 0
        for p in self.processors:
            if (p.processorType or "").upper() == "GPU":
                try:
                    n += int(p.computingUnits or 1)
                except ValueError:
                    n += 1
        return n


class Container(_Model):
    engine: str
    image: str
    options: ArgsText = ""

    _a = field_validator("options", mode="before")(classmethod(lambda cls, v: _args(v)))


class Software(_Model):
    """A software invocation description, normalised to the PyCOMPSs source spelling."""

    execution: Execution
    parameters: dict[str, Any] = Field(default_factory=dict)
    prolog: Hook | None = None
    epilog: Hook | None = None
    constraints: Constraints = Field(default_factory=Constraints)
    container: Container | None = None


# tutorial spelling -> source spelling
_TUTORIAL_KEYS = {"params": "args", "ppn": "processes_per_node"}


def _normalise(data: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if "execution" not in out and "type" in out:
        props = dict(out.pop("properties", {}) or {})
        out["execution"] = {"type": out.pop("type"), **props}
    if isinstance(out.get("execution"), Mapping):
        ex = {_TUTORIAL_KEYS.get(k, k): v for k, v in out["execution"].items()}
        if isinstance(ex.get("programs"), list):
            ex["programs"] = [
                {_TUTORIAL_KEYS.get(k, k): v for k, v in p.items()} if isinstance(p, Mapping) else p
                for p in ex["programs"]
            ]
        out["execution"] = ex
    for hook in ("prolog", "epilog"):
        if isinstance(out.get(hook), Mapping):
            out[hook] = {_TUTORIAL_KEYS.get(k, k): v for k, v in out[hook].items()}
    return out


def load_software(source: str | Path | Mapping[str, Any], *, where: str = "software") -> Software:
    """A description from a mapping, a JSON file path or JSON text; one clear error otherwise."""
    label = where
    data: Any
    if isinstance(source, Mapping):
        data = source
    else:
        text = str(source)
        if not text.lstrip().startswith(("{", "[")):
            path = Path(text).expanduser()
            label = f"{where}: description file {str(path)!r}"
            try:
                text = path.read_text()
            except OSError as e:
                raise InvalidWorkflow(
                    f"{where}: cannot read software description {str(path)!r}: {e.strerror}"
                ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidWorkflow(
                f"{label} is not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}"
            ) from None
    if not isinstance(data, Mapping):
        raise InvalidWorkflow(f"{label} must be a JSON object with 'execution' (or 'type')")
    kind = data.get("type") or (
        data.get("execution", {}).get("type")
        if isinstance(data.get("execution"), Mapping)
        else None
    )
    if isinstance(kind, str) and kind.lower() in _UNSUPPORTED:
        raise InvalidWorkflow(
            f"{label}: type {kind!r} ({_UNSUPPORTED[kind.lower()]}) cannot run as a bash step; "
            "jupyter_stax runs 'binary', 'mpi' and 'mpmd_mpi' descriptions"
        )
    if "execution" not in data and "type" not in data:
        raise InvalidWorkflow(f"{label} has no 'execution' (or 'type'): what does it run?")
    norm = _normalise(data)
    try:
        sw = Software.model_validate(norm)
    except ValidationError as e:
        raise InvalidWorkflow(
            f"{label} is not a valid software description", details=validation_messages(e, norm)
        ) from None
    problems = _check(sw)
    if problems:
        raise InvalidWorkflow(f"{label} is not a valid software description", details=problems)
    return sw


def _check(sw: Software) -> list[str]:
    ex = sw.execution
    out = []
    if ex.type in ("binary", "mpi") and not ex.binary:
        out.append(f"execution: a {ex.type} description needs 'binary'")
    if ex.type in ("mpi", "mpmd_mpi") and not ex.runner:
        out.append(f"execution: a {ex.type} description needs 'runner' (mpirun, srun, ...)")
    if ex.type == "mpmd_mpi" and not ex.programs:
        out.append("execution: an mpmd_mpi description needs 'programs'")
    if sw.container is not None:
        from .containers import builtin_runtimes

        name = runtime_name(sw.container.engine)
        if name not in builtin_runtimes() or name == "none":
            out.append(
                f"container: unknown engine {sw.container.engine!r} (use SINGULARITY, "
                "APPTAINER, DOCKER, PODMAN, CHARLIECLOUD, SARUS or SHIFTER)"
            )
    return out


# ---------------------------------------------------------------------- rendering
_VAR_RE = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")
_PLACEHOLDER_RE = re.compile(r"\{\{[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*\}\}")


def word(text: str) -> str:
    """One shell word for ``text``: ``$NAME``/``${NAME}`` and ``{{param}}`` stay live, every
    other character is literal (inside double quotes)."""
    out = ['"']
    pos = 0
    for m in re.finditer(f"{_VAR_RE.pattern}|{_PLACEHOLDER_RE.pattern}", text):
        out.append(_dq(text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_dq(text[pos:]))
    out.append('"')
    return "".join(out)


def _dq(s: str) -> str:
    return re.sub(r'([\\"$`])', r"\\\1", s)


def words(args: str) -> list[str]:
    """An ``args`` string as shell words (split like a shell would, quotes respected)."""
    try:
        parts = shlex.split(args, posix=True)
    except ValueError as e:
        raise InvalidWorkflow(f"software description: cannot split args {args!r}: {e}") from None
    return [word(p) for p in parts]


def _runner_flags(runner: str, n: int | str | None, ppn: int | str | None) -> list[str]:
    out = []
    if n is not None:
        out += ["-n", word(str(n))]
    if ppn is not None:
        if runner.rsplit("/", 1)[-1] == "srun":
            out.append(word(f"--ntasks-per-node={ppn}"))
        else:
            out += ["-ppn", word(str(ppn))]
    return out


def render(
    sw: Software,
    *,
    runtime: ContainerRuntime | None = None,
    binds: tuple[Bind, ...] = (),
    workdir: str | None = None,
    env: tuple[str, ...] = (),
) -> str:
    """The step script for ``sw``. ``runtime`` wraps each program when the description has a
    container (chosen by :func:`container_runtime_name`); ``binds``/``workdir``/``env`` are what
    every container of the step gets."""
    ex = sw.execution
    gpu = "cuda" if sw.constraints.gpus else None

    def wrap(binary: str, args: str, hybrid: bool) -> str:
        cmd = [word(binary), *words(args)]
        if sw.container is None or runtime is None:
            return " ".join(cmd)
        run = ContainerRun(
            image=sw.container.image,
            command=cmd,
            binds=binds,
            workdir=workdir,
            env=env,
            gpu=gpu,
            hybrid=hybrid,
            flags=tuple(shlex.split(sw.container.options)),
        )
        return runtime.render(run)

    lines = ["# rendered from an eFlows4HPC software invocation description"]
    if sw.container is not None and runtime is not None:
        lines += runtime.preamble(
            ContainerRun(image=sw.container.image, command=[], binds=binds, workdir=workdir)
        )
    if sw.prolog is not None:
        p = sw.prolog
        line = " ".join([word(p.binary), *words(p.args)])
        if p.fail_by_exit_value is not False:
            lines += [
                line,
                "_rc=$?",
                'if [ "$_rc" -ne 0 ]; then echo "jupyter_stax: prolog failed with exit '
                'code $_rc" >&2; exit "$_rc"; fi',
            ]
        else:
            lines.append(
                f'{line} || echo "jupyter_stax: prolog failed with exit code $?'
                ' (ignored: fail_by_exit_value is false)" >&2'
            )
    if ex.working_dir:
        lines.append(f"cd {word(ex.working_dir)} || exit 126")
    if ex.type == "binary":
        assert ex.binary
        main = wrap(ex.binary, ex.args, hybrid=False)
    elif ex.type == "mpi":
        assert ex.binary and ex.runner
        head = [
            word(ex.runner),
            *_runner_flags(ex.runner, ex.processes or 1, ex.processes_per_node),
            *words(ex.flags),
        ]
        main = " ".join([*head, wrap(ex.binary, ex.args, hybrid=True)])
    else:
        assert ex.runner
        parts = []
        for prog in ex.programs:
            flags = _runner_flags(ex.runner, prog.processes, ex.processes_per_node)
            parts.append(" ".join([*flags, wrap(prog.binary, prog.args, hybrid=True)]))
        main = " ".join([word(ex.runner), *words(ex.flags), " : ".join(parts)])
    lines += [main, "_stax_rc=$?"]
    if ex.fail_by_exit_value is False:
        lines.append(
            '[ "$_stax_rc" -eq 0 ] || echo "jupyter_stax: program exit code $_stax_rc ignored '
            '(fail_by_exit_value is false)" >&2; _stax_rc=0'
        )
    if sw.epilog is not None:
        e = sw.epilog
        line = " ".join([word(e.binary), *words(e.args)])
        if e.fail_by_exit_value:
            lines += [
                line,
                "_rc=$?",
                'if [ "$_rc" -ne 0 ]; then echo "jupyter_stax: epilog failed with exit '
                'code $_rc" >&2; exit "$_rc"; fi',
            ]
        else:
            lines.append(
                f'{line} || echo "jupyter_stax: epilog failed with exit code $?'
                ' (ignored: fail_by_exit_value is false)" >&2'
            )
    lines.append('exit "$_stax_rc"')
    return "\n".join(lines) + "\n"


def container_runtime_name(sw: Software) -> str | None:
    return runtime_name(sw.container.engine) if sw.container else None


def resources(sw: Software) -> dict[str, Any]:
    """Step resources implied by the description's constraints and process counts."""
    out: dict[str, Any] = {}
    c = sw.constraints
    if isinstance(c.computing_units, int) or (
        isinstance(c.computing_units, str) and c.computing_units.isdigit()
    ):
        out["cpus_per_task"] = int(c.computing_units)
    if c.memory is not None:
        out["memory"] = str(c.memory)
    if c.gpus:
        out["gpus"] = c.gpus
    ex = sw.execution
    counts: list[int | str | None] = (
        [ex.processes] if ex.type == "mpi" else [p.processes for p in ex.programs]
    )
    if ex.type != "binary" and all(isinstance(n, int) for n in counts):
        out["ntasks"] = sum(int(n) for n in counts if n is not None)
        if isinstance(ex.processes_per_node, int) and ex.processes_per_node > 0:
            out["nodes"] = -(-out["ntasks"] // ex.processes_per_node)
    return out


def inline(workflow: Any, base: Path | None = None) -> Any:
    """``workflow`` (a :class:`~jupyter_stax.core.models.Workflow`) with every ``software``
    path replaced by the description it names, read now (relative paths from ``base``, else
    the current directory), so the stored workflow carries it and no later reader needs the
    file."""
    changed = []
    for s in workflow.steps:
        if isinstance(s.software, str) and not s.software.lstrip().startswith("{"):
            path = Path(s.software).expanduser()
            if not path.is_absolute() and base is not None:
                path = base / path
            load_software(str(path), where=f"step {s.name!r}")  # one clear error if bad
            data = json.loads(path.read_text())
            s = s.model_copy(update={"software": data})
        elif isinstance(s.software, str):
            load_software(s.software, where=f"step {s.name!r}")
            s = s.model_copy(update={"software": json.loads(s.software)})
        changed.append(s)
    return workflow.model_copy(update={"steps": changed})


def inline_mapping(data: Mapping[str, Any], base: Path | None = None) -> dict[str, Any]:
    """Like :func:`inline`, for a workflow still in mapping form (what REST clients send)."""
    out = dict(data)
    steps = out.get("steps")
    if not isinstance(steps, list):
        return out
    new = []
    for st in steps:
        if isinstance(st, Mapping) and isinstance(st.get("software"), str):
            text = st["software"]
            where = f"step {st.get('name')!r}"
            if not text.lstrip().startswith(("{", "[")):
                path = Path(text).expanduser()
                if not path.is_absolute() and base is not None:
                    path = base / path
                text = str(path)
            load_software(text, where=where)  # one clear error when it is not usable
            if not text.lstrip().startswith(("{", "[")):
                text = Path(text).read_text()
            st = {**st, "software": json.loads(text)}
        new.append(st)
    out["steps"] = new
    return out
