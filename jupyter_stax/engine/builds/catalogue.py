"""Built variants added to a catalog file in one step (the ``stax:`` form that
:class:`~jupyter_stax.engine.image_sources.CatalogFile` reads): the user's default catalog
(``stax/images.yaml`` in the Jupyter config directory, created if missing) or another file.

Each variant becomes ``{name, image, digest}`` under its family; its labels are read from the
image itself, where the build wrote them. A variant of the same name is replaced; the file's
other families and variants stay as they were. The family records the recipe file it was built
from (``recipe:``, the last build's), which the catalog hands on with each variant
(``StaxImage.recipe``): the sidebar's "Build for cluster..." starts from it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ...core.documents import parse_yaml
from ...core.errors import StaxError
from ..catalog import DEFAULT_FILE, default_specs
from .run import BuildReport


def default_catalog_file() -> Path:
    from jupyter_core.paths import jupyter_config_dir

    return Path(jupyter_config_dir()) / "stax" / DEFAULT_FILE


def add_variants(report: BuildReport, file: Path, description: str | None = None) -> list[str]:
    """Add the report's built (and cached) variants to ``file``; their names."""
    done = [r for r in report.results if r.status != "failed" and r.reference]
    if not done:
        return []
    data: Any = {}
    if file.exists():
        data = parse_yaml(file.read_text(), source=f"catalog file {str(file)!r}", error=StaxError)
        data = data or {}
    if not isinstance(data, dict) or not isinstance(data.get("stax") or {}, dict):
        raise StaxError(f"catalog file {str(file)!r} is not of the form 'stax: {{FAMILY: ...}}'")
    families = data.setdefault("stax", {}) or {}
    data["stax"] = families
    fam = families.get(report.stax) or {}
    if description and not fam.get("description"):
        fam["description"] = description
    fam["recipe"] = report.recipe  # the family's build recipe: "Build for cluster..." uses it
    variants = [v for v in fam.get("variants") or [] if isinstance(v, dict)]
    names = {r.name for r in done}
    variants = [v for v in variants if v.get("name") not in names]
    for r in done:
        entry: dict[str, str] = {"name": r.name, "image": str(r.reference)}
        if r.digest:
            entry["digest"] = r.digest
        variants.append(entry)
    fam["variants"] = variants
    families[report.stax] = fam
    _write(file, data)
    return [r.name for r in done]


def _write(file: Path, data: Any) -> None:
    import yaml

    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    os.replace(tmp, file)


def visibility_note(file: Path) -> str | None:
    """Why ``jupyter stax images`` would not list what was added to ``file``, or None."""
    specs = default_specs()
    if any(Path(s).expanduser().absolute() == file.absolute() for s in specs):
        return None
    if os.environ.get("JUPYTER_STAX_IMAGES") is not None:
        return (
            f"$JUPYTER_STAX_IMAGES does not name {file}: add it there (specs separated by ';') "
            "to list these variants"
        )
    return (
        f"{file} is not a configured catalog: name it in $JUPYTER_STAX_IMAGES or "
        "c.StaxApp.image_catalogs to list these variants"
    )
