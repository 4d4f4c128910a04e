"""Pydantic validation errors as lines a person reads: the one formatter every reader of user
documents and request bodies uses (workflow files, software descriptions, REST bodies)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def validation_messages(err: ValidationError, data: Any) -> list[str]:
    """One line per pydantic error, naming steps by name rather than by index."""
    lines = []
    for e in err.errors():
        parts: list[str] = []
        node = data
        for key in e["loc"]:
            name = None
            if isinstance(node, (dict, list)):
                try:
                    node = node[key]  # type: ignore[index]
                except (KeyError, IndexError, TypeError):
                    node = None
            if isinstance(key, int):
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    name = node["name"]
                parts.append(f"[{name!r}]" if name else f"[{key}]")
            else:
                parts.append(("." if parts else "") + str(key))
        loc = "".join(parts) or "(document)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `jupyter stax schema`)"
        lines.append(f"{loc}: {msg}")
    return lines
