"""Exporting a finished execution as a Workflow Run RO-Crate (zip or directory), written with
the ``rocrate`` library from the pure mapping of :mod:`jupyter_stax.core.crate`.

The files come from the step directories the store records, read by the ONE rule of every
reader of a step's files (:func:`.logs.open_step_file`: only regular files inside the step
directory), copied into a private staging directory while they are hashed, so what the crate
says (size, sha256) is what it holds. A step of a remote cluster keeps its files on the cluster:
they are left out, and its actions say so. A step script that was never written (the step never
ran) is rendered from the stored workflow as the engine would have.

Blocking (file IO): the server calls it on a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from ..core import crate as mapping
from ..core.crate_plan import plan
from ..core.errors import BadRequest, Conflict, StaxError
from ..core.models import Execution
from .logs import open_step_file

if TYPE_CHECKING:
    from ..core.clusters import ClusterRegistry

__all__ = ["build", "crate_file_name", "safe_extract"]

_CHUNK = 1 << 20


def crate_file_name(ex: Execution) -> str:
    """The default name of an execution's crate: ``<workflow>-<id>.crate.zip``."""
    name = ex.workflow.name
    safe = name if mapping.step_segment(0, name) == name else "workflow"
    return f"{safe}-{ex.id}.crate.zip"


def _copy(fd: int, dest: Path) -> mapping.FileFacts:
    h = hashlib.sha256()
    size = 0
    with open(dest, "wb") as out:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return mapping.FileFacts(size=size, sha256=h.hexdigest())


def _facts_of_text(text: str, dest: Path) -> mapping.FileFacts:
    data = text.encode("utf-8")
    dest.write_bytes(data)
    return mapping.FileFacts(size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _rendered_script(ex: Execution, step: str) -> str | None:
    """A step's script as the engine renders it (for a step that never ran: no container plan,
    which only a software step with a container would change)."""
    from ..core.jobscript import render_step_script

    try:
        return render_step_script(ex.workflow.step(step))
    except (KeyError, StaxError, ValueError):
        return None


def stage(
    ex: Execution, staging: Path, remote: Callable[[str], bool]
) -> dict[str, mapping.FileFacts | None]:
    """Copy the files the crate wants into ``staging`` (at their crate paths); what was found
    for each (None: not found, or on a remote cluster)."""
    facts: dict[str, mapping.FileFacts | None] = {}
    for w in mapping.wanted_files(ex):
        dest = staging / PurePosixPath(w.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        step = ex.step(w.step)
        fd = None
        if not remote(step.cluster):
            fd = open_step_file(w.directory, w.name, f"{w.name} of step {w.step!r}")
        if fd is not None:
            try:
                facts[w.path] = _copy(fd, dest)
            finally:
                os.close(fd)
        elif w.kind == "script" and not remote(step.cluster):
            text = _rendered_script(ex, w.step)
            facts[w.path] = None if text is None else _facts_of_text(text, dest)
        else:
            facts[w.path] = None
    return facts


def workflow_document(ex: Execution) -> str:
    """The stored workflow as YAML (what ``jupyter stax run`` accepts again)."""
    doc = ex.workflow.model_dump(mode="json", exclude_defaults=True)
    doc.setdefault("name", ex.workflow.name)
    header = (
        f"# the workflow of jupyter_stax execution {ex.id}, as the store recorded it\n"
        f"# parameters of this run: see ro-crate-metadata.json\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _write(plan: mapping.CratePlan, staging: Path, workflow_file: Path) -> Any:
    from rocrate.model.computerlanguage import ComputerLanguage
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    crate = ROCrate(version="1.1")
    crate.metadata.extra_contexts.append(mapping.WFRUN_CONTEXT)
    lang = None
    staged: list[Any] = []
    for e in plan.entities:
        e = dict(e)
        eid = e.pop("@id")
        cls = ComputerLanguage if eid == mapping.LANGUAGE_ID else ContextEntity
        added = crate.add(cls(crate, eid, properties=e))
        lang = added if eid == mapping.LANGUAGE_ID else lang
        if mapping.is_staged_file(eid):  # a data entity outside the crate: still a part of it
            staged.append(added)
    wf = crate.add_workflow(
        source=workflow_file,
        dest_path=mapping.WORKFLOW_FILE,
        main=True,
        lang=lang,
        properties=dict(plan.workflow),
    )
    wf_facts = _file_facts(workflow_file)
    wf["contentSize"], wf["sha256"] = str(wf_facts.size), wf_facts.sha256
    for path, props in plan.files.items():
        crate.add_file(source=staging / PurePosixPath(path), dest_path=path, properties=props)
    for k, v in plan.root.items():
        crate.root_dataset[k] = v
    for e in staged:
        crate.root_dataset.append_to("hasPart", e)
    return crate


def _file_facts(path: Path) -> mapping.FileFacts:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return mapping.FileFacts(size=size, sha256=h.hexdigest())


def build(
    ex: Execution,
    software: dict[str, str],
    registry: ClusterRegistry | None,
    dest: Path,
    *,
    as_dir: bool = False,
    license: str | None = None,
) -> Path:
    """Write the crate of the final execution ``ex`` to ``dest`` (a zip file, or with
    ``as_dir`` a directory that must not exist or be empty). Conflict while ``ex`` is not final.
    ``license``: the crate's license as the exporter states it (see :func:`.plan`)."""
    mapping.require_final(ex)
    dest = Path(dest).expanduser().absolute()
    if as_dir:
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise Conflict(f"{dest} exists and is not an empty directory; name a new one")
    elif dest.is_dir():
        raise BadRequest(f"{dest} is a directory; name a .zip file to write (or use --dir)")

    def remote(name: str) -> bool:
        if registry is None:
            return False
        try:
            return registry.get(name).remote
        except StaxError:
            return False  # no longer configured: its files are where the store says

    with tempfile.TemporaryDirectory(prefix="stax-crate-") as tmp:
        staging = Path(tmp) / "files"
        staging.mkdir()
        facts = stage(ex, staging, remote)
        workflow_file = Path(tmp) / "workflow.yaml"
        workflow_file.write_text(workflow_document(ex), encoding="utf-8")
        crate_plan = plan(ex, facts, software, datetime.now(timezone.utc), license)
        crate = _write(crate_plan, staging, workflow_file)
        if as_dir:
            dest.mkdir(parents=True, exist_ok=True)
            crate.write(dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            crate.write_zip(part)
            os.replace(part, dest)
    return dest


def safe_extract(zip_path: Path, dest: Path) -> Path:
    """Unpack a crate zip into the new or empty directory ``dest``, refusing any member that
    would land outside it (absolute paths, ``..``) or is not a plain file or directory."""
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise Conflict(f"{dest} exists and is not an empty directory; name a new one")
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.filename.startswith("/") or ".." in parts or "\\" in info.filename:
                raise BadRequest(f"refusing crate member {info.filename!r}: outside the crate")
            mode = (info.external_attr >> 16) & 0o170000
            if mode not in (0, 0o100000, 0o040000):
                raise BadRequest(f"refusing crate member {info.filename!r}: not a plain file")
        dest.mkdir(parents=True, exist_ok=True)
        for info in z.infolist():
            target = dest.joinpath(*PurePosixPath(info.filename).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest
