"""Reading user documents (workflow files, clusters files) into models, with readable errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import InvalidClusterConfig, InvalidWorkflow, StaxError
from .models import Cluster, Workflow
from .validation import validation_messages

M = TypeVar("M", bound=BaseModel)


def parse_yaml(text: str, *, source: str, error: type[StaxError] = InvalidWorkflow) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise error(f"{source} is not valid YAML{where}: {problem}") from None


def to_model(model: type[M], data: Any, *, source: str, error: type[StaxError]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise error(f"{source} is not valid", details=validation_messages(e, data)) from None


def load_workflow(source: str | Path | dict[str, Any]) -> Workflow:
    """A workflow from a YAML/JSON file path, YAML text, or an already parsed mapping."""
    if isinstance(source, dict):
        return to_model(Workflow, source, source="workflow", error=InvalidWorkflow)
    path = Path(".")
    if isinstance(source, Path) or (
        "\n" not in source and source.endswith((".yaml", ".yml", ".json"))
    ):
        path = Path(source)
        try:
            text = path.read_text()
        except OSError as e:
            raise InvalidWorkflow(
                f"cannot read workflow file {str(path)!r}: {e.strerror}"
            ) from None
        label = f"workflow file {str(path)!r}"
    else:
        text, label = str(source), "workflow"
    data = parse_yaml(text, source=label)
    if not isinstance(data, dict):
        raise InvalidWorkflow(f"{label} must be a mapping with 'name' and 'steps'")
    wf = to_model(Workflow, data, source=label, error=InvalidWorkflow)
    if any(s.software is not None for s in wf.steps):
        from .software import inline

        base = path.parent if label != "workflow" else None
        wf = inline(wf, base)
    return wf


def load_clusters_document(text: str, *, source: str) -> list[Cluster]:
    """Clusters from a clusters file: ``clusters: {name: {scheduler: ..., ...}}``."""
    data = parse_yaml(text, source=source, error=InvalidClusterConfig)
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("clusters", {}), dict):
        raise InvalidClusterConfig(
            f"{source} must have the form 'clusters: {{NAME: {{scheduler: slurm, ...}}}}'"
        )
    unknown = set(data) - {"clusters"}
    if unknown:
        raise InvalidClusterConfig(
            f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}; only 'clusters'"
        )
    out = []
    for name, body in (data.get("clusters") or {}).items():
        body = dict(body or {})
        body.setdefault("name", str(name))
        out.append(
            to_model(
                Cluster, body, source=f"{source}: cluster {name!r}", error=InvalidClusterConfig
            )
        )
    return out


def workflow_schema() -> dict[str, Any]:
    """JSON Schema of the workflow file, generated from the models."""
    schema = Workflow.model_json_schema(by_alias=False)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://jupyter-stax.readthedocs.io/schemas/workflow.schema.json"
    return schema


def schema_json() -> str:
    return json.dumps(workflow_schema(), indent=2, sort_keys=True) + "\n"
