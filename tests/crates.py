"""Checks of an exported Workflow Run RO-Crate: loaded back with the ``rocrate`` library, every
MUST of the Process Run, Workflow Run and Provenance Run Crate profiles (0.5) that our crates
use, the sizes and sha256 of the files it holds, and no member outside the crate."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from rocrate.rocrate import ROCrate

PROFILES = (
    "https://w3id.org/ro/wfrun/process/0.5",
    "https://w3id.org/ro/wfrun/workflow/0.5",
    "https://w3id.org/ro/wfrun/provenance/0.5",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0",
)
TOOL_TYPES = {"SoftwareApplication", "SoftwareSourceCode", "ComputationalWorkflow"}
ACTIONS = {"CreateAction", "ActivateAction", "UpdateAction"}
#: the profiles' validator's pattern of startTime/endTime (ISO 8601, milliseconds, offset)
TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}(\.\d{3})?\+\d{2}:\d{2})?$")
STATUSES = ("http://schema.org/CompletedActionStatus", "http://schema.org/FailedActionStatus")


def types(e: dict[str, Any] | None) -> set[str]:
    if e is None:
        return set()
    t = e.get("@type", [])
    return {t} if isinstance(t, str) else set(t)


def ids(v: Any) -> list[str]:
    if v is None:
        return []
    return [x["@id"] for x in (v if isinstance(v, list) else [v])]


def zip_members_safe(path: Path) -> list[str]:
    names = zipfile.ZipFile(path).namelist()
    for n in names:
        parts = PurePosixPath(n).parts
        assert not n.startswith("/") and ".." not in parts and "\\" not in n, n
    return names


def check_crate(source: Path) -> dict[str, dict[str, Any]]:
    """Load the crate (zip or directory), check it, and return its graph by @id."""
    if source.suffix == ".zip":
        zip_members_safe(source)
    crate = ROCrate(source)  # the rocrate library reads it back
    root_dir = Path(crate.source)
    meta = json.loads((root_dir / "ro-crate-metadata.json").read_text())
    assert "https://w3id.org/ro/terms/workflow-run/context" in meta["@context"]
    g = {e["@id"]: e for e in meta["@graph"]}
    root = g["./"]
    # Workflow RO-Crate: a license (a URL, or an entity saying none was given)
    lic = root["license"]
    assert isinstance(lic, str) or "CreativeWork" in types(g[lic["@id"]])
    # every profile: the root conformsTo its permalink, a CreativeWork
    assert set(PROFILES) <= set(ids(root["conformsTo"]))
    for p in PROFILES:
        assert "CreativeWork" in types(g[p])
    # Workflow RO-Crate / Workflow Run Crate: the main entity
    main = g[root["mainEntity"]["@id"]]
    assert {"File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"} <= types(main)
    assert "ComputerLanguage" in types(g[main["programmingLanguage"]["@id"]])
    for fp in ids(main.get("input")) + ids(main.get("output")):
        assert "FormalParameter" in types(g[fp]) and g[fp].get("additionalType"), fp
        for ex in ids(g[fp].get("workExample")):
            assert types(g[ex]) & {"PropertyValue", "File", "Dataset", "Collection"}
    # at least one action runs the main entity
    assert any(
        types(e) & ACTIONS and main["@id"] in ids(e.get("instrument")) for e in g.values()
    )
    # Process Run Crate: every action has an instrument that is a tool
    for e in g.values():
        if types(e) & ACTIONS:
            inst = ids(e.get("instrument"))
            assert inst and all(types(g[i]) & TOOL_TYPES for i in inst), e["@id"]
            assert e["actionStatus"] in STATUSES
            if "error" in e:
                assert e["actionStatus"].endswith("FailedActionStatus")
            assert e["@id"] in ids(root.get("mentions")), e["@id"]
            for k in ("startTime", "endTime"):
                assert k not in e or TIME.match(e[k]), (e["@id"], k, e.get(k))
    # Provenance Run Crate
    tools = ids(main.get("hasPart"))
    assert tools, "the workflow must list the tools it ran (hasPart)"
    for t in tools:
        assert types(g[t]) & TOOL_TYPES
        for fp in ids(g[t].get("input")) + ids(g[t].get("output")):
            assert "FormalParameter" in types(g[fp])
        assert any(t in ids(e.get("instrument")) for e in g.values() if types(e) & ACTIONS), t
    assert "HowTo" in types(main)
    for s in ids(main.get("step")):
        assert "HowToStep" in types(g[s])
        assert all(types(g[w]) & TOOL_TYPES for w in ids(g[s]["workExample"]))
        assert str(g[s]["position"]).isdigit()
    for s in ids(main.get("step")):
        for c in ids(g[s].get("connection")):
            assert c in ids(main.get("connection"))
    for c in ids(main.get("connection")):
        assert "ParameterConnection" in types(g[c])
        assert "FormalParameter" in types(g[g[c]["sourceParameter"]["@id"]])
        assert "FormalParameter" in types(g[g[c]["targetParameter"]["@id"]])
    for e in g.values():
        if "ControlAction" in types(e):
            assert all("HowToStep" in types(g[i]) for i in ids(e["instrument"]))
            assert ids(e["object"]) and all(types(g[i]) & ACTIONS for i in ids(e["object"]))
        if "OrganizeAction" in types(e):
            assert all(types(g[i]) & TOOL_TYPES for i in ids(e["instrument"]))
            assert all(types(g[i]) & ACTIONS for i in ids(e["result"]))
            assert all("ControlAction" in types(g[i]) for i in ids(e["object"]))
        if "ContainerImage" in types(e):
            assert e.get("name")
    # every File the crate lists is in it, with the size and sha256 it says
    for e in g.values():
        if "File" in types(e) and e["@id"].startswith("file://"):
            # a staged input or kept output: it stays in the step directory, described with
            # the size and sha256 the staging records have, and is still a part of the crate
            assert int(e["contentSize"]) >= 0 and e.get("contentLocation"), e
            assert e["@id"] in ids(root["hasPart"])
            continue
        if "File" in types(e) and e["@id"] != "ro-crate-metadata.json":
            data = (root_dir / e["@id"]).read_bytes()
            assert int(e["contentSize"]) == len(data), e["@id"]
            assert e["sha256"] == hashlib.sha256(data).hexdigest(), e["@id"]
            assert e["@id"] in ids(root["hasPart"])
    return g
