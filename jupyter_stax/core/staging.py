"""Data in and out of a step: its ``inputs``, ``outputs`` and ``fetch`` fields, the records of
the files moved, and the pure rules every transfer follows. No I/O except :func:`local_inputs`
and :func:`list_local_tree` (reading the notebook side's directories, nothing else).

A step's fields (workflow file, ``%%stax_task --input/--output``, the Python API)::

    inputs:
      - config.json                        # a path on the notebook side (relative: to the
      - data/mesh-*.h5                     #   workflow file, or the notebook's directory);
      - /scratch/big.h5                    #   globs and directories too
      - {from: prepare, path: "parts/*.bin"}   # files of an upstream step (any cluster)
    outputs: ["results/*.csv", "summary.json"]  # kept; fetched back when the step completes
    fetch: auto                                  # or manual (only on request)

Where an input lands in the step directory (the *destination*, always relative):

* a relative path without ``..`` keeps its path: ``data/mesh-1.h5`` -> ``data/mesh-1.h5``;
* anything else (absolute, or with ``..``) lands under the name it has from its *anchor*, the
  directory that holds its first glob component (or its last component): ``/scratch/big.h5``
  -> ``big.h5``, ``../shared/*.json`` -> ``a.json``, ``/data/dir`` (a directory) -> ``dir/...``;
* a ``{from: STEP, path: GLOB}`` file keeps its path in the upstream step's directory.

Patterns (outputs, ``from`` paths) are relative to the step directory: ``*``, ``?`` and ``[...]``
match inside one path component, ``**`` matches any number of components, a pattern that
names a directory takes every file below it. An absolute pattern, a ``..`` component, an empty
one or a NUL byte is refused when the workflow is read. Names are data everywhere (quotes,
spaces, newlines, ``$(...)``, a leading ``-``): no transfer ever hands a name to a shell
unquoted. Symbolic links in a step directory are never followed: a link is not an output (it
is reported and skipped), so no transfer reads outside the step directory.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat as st_mod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

Fetch = Literal["auto", "manual"]
#: what happened to a step's outputs: ``pending`` (to be fetched), ``fetched`` (copied to the
#: notebook side), ``in place`` (the cluster shares this file system: nothing to copy),
#: ``manual`` (fetch: manual, not asked for yet), ``failed`` (see the warning)
FetchState = Literal["pending", "fetched", "in place", "manual", "failed"]

_MAGIC = re.compile(r"[*?\[]")
#: default directory (beside the notebook, or the workflow file) for fetched outputs
OUTPUTS_DIR = "stax-outputs"


class FromStep(BaseModel):
    """Files of an upstream step, matched in its directory (it runs first: ``from`` adds it
    to the step's ``after``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    step: str = Field(validation_alias=AliasChoices("from", "step"), serialization_alias="from")
    path: str = Field(description="a pattern in the upstream step's directory")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        return check_pattern(v, "input")


InputSpec = str | FromStep


def check_input(v: Any) -> Any:
    """A notebook-side input path (non-empty, no NUL: anything else is data), or a mapping
    read as a :class:`FromStep` (with one clear message when it is not one)."""
    if isinstance(v, dict):
        from pydantic import ValidationError

        try:
            return FromStep.model_validate(v)
        except ValidationError as e:
            why = "; ".join(
                f"{'.'.join(str(x) for x in err['loc']) or 'input'}: "
                + (
                    "unknown field (only 'from' and 'path')"
                    if err["type"] == "extra_forbidden"
                    else err["msg"]
                )
                for err in e.errors()
            )
            raise ValueError(f"input {v!r} is not {{from: STEP, path: GLOB}}: {why}") from None
    if isinstance(v, str):
        if not v.strip():
            raise ValueError("an input path is empty")
        if "\0" in v:
            raise ValueError(f"input {v!r} contains a NUL byte")
    return v


def check_pattern(pattern: str, what: str = "output") -> str:
    """``pattern`` when it stays inside a step directory, else ValueError saying why."""
    if not pattern or not pattern.strip():
        raise ValueError(f"an {what} pattern is empty")
    if "\0" in pattern:
        raise ValueError(f"{what} pattern {pattern!r} contains a NUL byte")
    if pattern.startswith("/") or pattern.startswith("~"):
        raise ValueError(
            f"{what} pattern {pattern!r} is absolute: patterns are relative to the step "
            "directory (e.g. 'results/*.csv')"
        )
    parts = pattern.split("/")
    if ".." in parts:
        raise ValueError(
            f"{what} pattern {pattern!r} reaches outside the step directory ('..' is refused)"
        )
    return pattern


# ---------------------------------------------------------------------- records
class FileRecord(BaseModel):
    """One file moved for a step: where it is in the step directory, its size and sha256."""

    model_config = ConfigDict(defer_build=True)

    path: str = Field(description="relative path in the step directory")
    size: int
    sha256: str | None = Field(None, description="None until the file was read (fetch: manual)")
    source: str | None = Field(
        None, description="inputs: where it came from (a notebook-side path, or 'STEP:PATH')"
    )
    local: str | None = Field(None, description="outputs: where it is on the notebook side")


class StepFiles(BaseModel):
    """What moved in and out of a step's current attempt (provenance, and the fetch state)."""

    model_config = ConfigDict(defer_build=True)

    attempt: int = 0
    inputs: list[FileRecord] = Field(default_factory=list)
    outputs: list[FileRecord] = Field(default_factory=list)
    fetch: FetchState | None = None
    fetched_to: str | None = Field(None, description="the directory outputs were fetched to")
    warning: str | None = Field(
        None, description="why outputs are not (all) here, and the command that fetches them"
    )
    notebook: str | None = Field(
        None,
        description="a notebook step: its executed copy here (outputs and errors in place), "
        "beside the original notebook or in the outputs directory",
    )


class FetchedStep(BaseModel):
    """What a fetch did for one step."""

    model_config = ConfigDict(defer_build=True)

    step: str
    cluster: str
    fetch: FetchState | None = None
    directory: str | None = Field(None, description="where the step's files are here")
    files: list[FileRecord] = Field(default_factory=list)
    warning: str | None = None


class FetchResult(BaseModel):
    """The answer of ``jupyter stax fetch`` / ``POST executions/{id}/fetch``."""

    model_config = ConfigDict(defer_build=True)

    execution_id: str
    steps: list[FetchedStep] = Field(default_factory=list)

    def paths(self) -> list[str]:
        """The local path of every file (fetched, or in place)."""
        return [f.local for s in self.steps for f in s.files if f.local]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1000  # type: ignore[assignment]
    return f"{n} B"


def fetch_text(result: FetchResult) -> str:
    """What ``jupyter stax fetch`` and ``%stax fetch`` print."""
    lines = []
    for st in result.steps:
        size = sum(f.size for f in st.files)
        n = len(st.files)
        what = {
            "in place": f"{n} file(s), {_size(size)}, in place (not copied) in {st.directory}",
            "fetched": f"{n} file(s), {_size(size)}, in {st.directory}",
            "failed": "not fetched",
        }.get(st.fetch or "", "nothing fetched")
        lines.append(f"step {st.step} ({st.cluster}): {what}")
        lines += [f"  {f.path}" for f in st.files[:20]]
        if n > 20:
            lines.append(f"  ... and {n - 20} more")
        if st.warning:
            lines.append(f"  note: {st.warning}")
    return "\n".join(lines)


class FetchRequest(BaseModel):
    """``POST executions/{id}/fetch``: which files of which steps, to where."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    step: str | None = Field(None, description="one step (None: every step with outputs)")
    pattern: str | None = Field(
        None, description="a pattern in the step directory (None: the step's outputs)"
    )
    to: str | None = Field(
        None,
        description="directory here (named step: DIR/<path>; every step: DIR/<step>/<path>); "
        "None: <outputs dir>/<id>/<step>/ for remote clusters, in place for the others",
    )
    overwrite: bool = Field(False, description="replace local files that differ")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        return None if v is None else check_pattern(v, "fetch")

    @field_validator("to")
    @classmethod
    def _to(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or "\0" in v):
            raise ValueError("'to' must be a directory path (not empty, no NUL byte)")
        return v


def fetch_request(**fields: Any) -> FetchRequest:
    """A :class:`FetchRequest`, or BadRequest saying what is wrong with it (a pattern that
    leaves the step directory)."""
    from pydantic import ValidationError

    from .errors import BadRequest

    try:
        return FetchRequest(**fields)
    except ValidationError as e:
        raise BadRequest(
            "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
        ) from None


def base_for(source: object) -> str:
    """Where relative inputs of a workflow from ``source`` are read: the workflow file's
    directory, else the current directory (absolute)."""
    text = str(source) if isinstance(source, (str, Path)) else ""
    if text and "\n" not in text and text.endswith((".yaml", ".yml", ".json")):
        return str(Path(text).expanduser().absolute().parent)
    return str(Path.cwd())


# ---------------------------------------------------------------------- matching
def _segment_match(pattern: str, name: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return bool(pattern == name)  # hidden files only by an explicit name, as in a shell
    return fnmatch.fnmatchcase(name, pattern)


def _match_parts(pat: Sequence[str], name: Sequence[str]) -> bool:
    if not pat:
        return not name
    head = pat[0]
    if head == "**":
        return any(_match_parts(pat[1:], name[i:]) for i in range(len(name) + 1))
    return bool(name) and _segment_match(head, name[0]) and _match_parts(pat[1:], name[1:])


def matches(pattern: str, path: str) -> bool:
    """``path`` (relative, '/'-separated) is matched by ``pattern``, or lies below a directory
    that ``pattern`` matches."""
    pat = [p for p in pattern.split("/") if p not in ("", ".")]
    name = [p for p in path.split("/") if p]
    if _match_parts(pat, name):
        return True
    return any(_match_parts(pat, name[:i]) for i in range(1, len(name)))


def select(patterns: Iterable[str], files: Iterable[str]) -> list[str]:
    """The files (relative paths) matched by any of ``patterns``, sorted, each once."""
    pats = list(patterns)
    return sorted({f for f in files if any(matches(p, f) for p in pats)})


def unmatched(patterns: Iterable[str], files: Iterable[str]) -> list[str]:
    """The patterns that match none of ``files``."""
    fs = list(files)
    return [p for p in patterns if not any(matches(p, f) for f in fs)]


# ---------------------------------------------------------------------- step directory listing
@dataclass(frozen=True)
class TreeEntry:
    """One entry of a step directory: relative path, size, kind (``f`` file, ``d`` directory,
    ``l`` symbolic link, ``o`` anything else)."""

    path: str
    size: int
    kind: str


def outputs_of(
    patterns: Sequence[str], tree: Sequence[TreeEntry], ignore: Iterable[str] = ()
) -> tuple[list[TreeEntry], list[str]]:
    """The regular files ``patterns`` match in ``tree`` (sorted by path), and notes about what
    they match but is not taken (symbolic links, special files). ``ignore``: the engine's own
    files of the step directory (scripts, records, logs), never outputs."""
    skip = set(ignore)
    files, notes = [], []
    for e in sorted(tree, key=lambda e: e.path):
        if e.kind == "d" or e.path in skip or not any(matches(p, e.path) for p in patterns):
            continue
        if e.kind == "f":
            files.append(e)
        elif e.kind == "l":
            notes.append(f"{e.path} is a symbolic link: not taken (links are never followed)")
        else:
            notes.append(f"{e.path} is not a regular file: not taken")
    return files, notes


def list_local_tree(root: Path) -> list[TreeEntry]:
    """Every entry below ``root`` (a directory on this machine), links not followed; [] when
    ``root`` is missing."""
    out: list[TreeEntry] = []
    if not root.is_dir() or root.is_symlink():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            try:
                st = p.lstat()
            except OSError:
                continue
            if st_mod.S_ISLNK(st.st_mode):
                kind = "l"
            elif st_mod.S_ISDIR(st.st_mode):
                kind = "d"
            elif st_mod.S_ISREG(st.st_mode):
                kind = "f"
            else:
                kind = "o"
            out.append(TreeEntry(rel, st.st_size if kind == "f" else 0, kind))
    return out


# ---------------------------------------------------------------------- notebook-side inputs
@dataclass(frozen=True)
class LocalInput:
    """A notebook-side file to copy: its path here, its destination in the step directory."""

    source: Path
    dest: str
    size: int


class InputError(ValueError):
    """A notebook-side input is missing or cannot be read (said before anything is submitted)."""


def anchor_and_rest(spec: str) -> tuple[str, str]:
    """Split an input path into the directory it is copied relative to and the rest (which
    becomes its destination): see the module docstring."""
    parts = spec.split("/")
    inside = not spec.startswith(("/", "~")) and ".." not in parts
    if inside:
        return "", "/".join(p for p in parts if p not in ("", "."))
    first_magic = next((i for i, p in enumerate(parts) if _MAGIC.search(p)), len(parts) - 1)
    while first_magic > 0 and parts[first_magic] in ("", "."):
        first_magic -= 1
    anchor = "/".join(parts[:first_magic]) or ("/" if spec.startswith("/") else "")
    return anchor, "/".join(p for p in parts[first_magic:] if p not in ("", "."))


def local_inputs(spec: str, base: Path) -> list[LocalInput]:
    """The files a notebook-side input names (a file, a directory, or a glob), resolved against
    ``base``; InputError when it names nothing readable. Symbolic links are followed (they are
    the user's own files on this side)."""
    anchor_text, rest = anchor_and_rest(spec)
    anchor = Path(os.path.expanduser(anchor_text)) if anchor_text else Path()
    if not anchor.is_absolute():
        anchor = base / anchor
    if not rest:
        raise InputError(f"input {spec!r} names no file")
    out: list[LocalInput] = []
    if not _MAGIC.search(rest):
        p = anchor / rest
        if p.is_file():
            return [LocalInput(p, rest, p.stat().st_size)]
        if p.is_dir():
            out = _dir_files(p, rest)
            if not out:
                raise InputError(f"input {spec!r}: directory {str(p)!r} has no files")
            return out
        if p.exists():
            raise InputError(f"input {spec!r}: {str(p)!r} is not a regular file or directory")
        raise InputError(f"input {spec!r}: no such file ({str(p)!r})")
    if not anchor.is_dir():
        raise InputError(f"input {spec!r}: no such directory ({str(anchor)!r})")
    names = []
    for dirpath, dirnames, filenames in os.walk(anchor, followlinks=True):
        rel_dir = Path(dirpath).relative_to(anchor)
        for n in filenames + dirnames:
            names.append((rel_dir / n).as_posix())
    taken = set()
    for rel in sorted(names):
        if not _match_parts(_parts(rest), rel.split("/")):
            continue
        p = anchor / rel
        if p.is_dir():
            for f in _dir_files(p, rel):
                if f.dest not in taken:
                    taken.add(f.dest)
                    out.append(f)
        elif p.is_file() and rel not in taken:
            taken.add(rel)
            out.append(LocalInput(p, rel, p.stat().st_size))
    if not out:
        raise InputError(f"input {spec!r} matches no file (in {str(anchor)!r})")
    return out


def _parts(pattern: str) -> list[str]:
    return [p for p in pattern.split("/") if p not in ("", ".")]


def _dir_files(d: Path, dest: str) -> list[LocalInput]:
    out = []
    for dirpath, _, filenames in os.walk(d, followlinks=True):
        for n in sorted(filenames):
            p = Path(dirpath) / n
            if p.is_file():
                rel = PurePosixPath(dest) / Path(dirpath).relative_to(d).as_posix() / n
                out.append(LocalInput(p, str(rel).replace("/./", "/"), p.stat().st_size))
    return sorted(out, key=lambda f: f.dest)


def check_destinations(step: str, dests: Iterable[tuple[str, str]]) -> list[str]:
    """Problems with the destinations of a step's inputs (two inputs onto one path)."""
    seen: dict[str, str] = {}
    problems = []
    for dest, source in dests:
        if dest in seen and seen[dest] != source:
            problems.append(
                f"step {step!r}: inputs {seen[dest]!r} and {source!r} both land on {dest!r} in "
                "the step directory; rename one or give them different directories"
            )
        seen.setdefault(dest, source)
    return problems


def inside(root: Path, path: Path) -> bool:
    """``path`` (resolved, links followed) is ``root`` or lies below it (resolved)."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):  # outside, or not a path at all (a NUL byte)
        return False
    return True
