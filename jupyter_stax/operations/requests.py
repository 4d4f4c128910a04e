"""The ONE rule for paths on the server named in requests that come over the network.

A REST request never makes the server read a file it names. So, in a workflow sent to
``POST executions``:

* a step's ``software`` is the description itself (a JSON object, or JSON text), never a file
  name: the client reads its own files (:class:`~jupyter_stax.client.RestService` inlines them);
* a step's ``image`` (and the container image of its software description) is a StaX family or
  variant name, or a reference the configured catalogs list (``StaxApp.image_catalogs``: the
  server's admin chose those files), or a registry reference (``docker://...``). A path on the
  server (``/...``, ``./...``, ``~/...``, ``*.sif``, ``oci:``, ``ch:``, ``sif:``) that no
  configured catalog lists is refused (400, ``InvalidWorkflow``).

Data in and out (issue 14): files named for stage-in (``base_dir`` and the steps' notebook-side
``inputs``) and where fetched outputs go (``outputs_dir``, a fetch's ``to``) must lie inside the
server's root directory (``ServerApp.root_dir``: the tree the same authenticated user already
reads and writes through Jupyter's contents API), links resolved; anything else is refused
(:func:`refuse_outside_root`). A submission that names no ``base_dir`` reads from the root.

Local surfaces (the CLI and the kernel on the local store) read the user's own files and are
not subject to this rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..core.errors import BadRequest, Forbidden, InvalidWorkflow
from ..core.images import looks_like_reference
from ..core.models import SubmitOptions, Workflow
from ..core.staging import anchor_and_rest, inside

#: catalog source prefixes that name files on the machine that reads them
_PATH_PREFIXES = ("oci:", "ch:", "sif:")


def is_server_path(name: str) -> bool:
    """``name`` (a step's image) names a file or directory on the machine that resolves it."""
    if "://" in name:
        return False  # docker://, oras://, ...: a registry, not a file here
    return looks_like_reference(name) or name.startswith(_PATH_PREFIXES)


def software_files(wf: Workflow) -> list[str]:
    """Steps whose ``software`` is a file name rather than the description itself."""
    return [
        s.name
        for s in wf.steps
        if isinstance(s.software, str) and not s.software.lstrip().startswith(("{", "["))
    ]


def step_images(wf: Workflow) -> Iterable[tuple[str, str]]:
    """(step, image) for each step's image and its software description's container image."""
    from ..core.software import load_software

    for s in wf.steps:
        if s.image:
            yield s.name, s.image
        if isinstance(s.software, dict):
            try:
                desc = load_software(s.software, where=f"step {s.name!r}")
            except InvalidWorkflow:
                continue  # said when the workflow is checked
            if desc.container is not None and desc.container.image:
                yield s.name, desc.container.image


def refuse_server_paths(wf: Workflow, catalog_names: Callable[[], set[str]]) -> None:
    """InvalidWorkflow (400) when ``wf``, received over the network, names a file on the server
    (see the module). ``catalog_names``: names and references of the configured catalogs'
    images, asked for only when a step names a path."""
    files = software_files(wf)
    if files:
        raise InvalidWorkflow(
            f"step(s) {', '.join(files)}: give the software description itself (a JSON "
            "object), not a file name: the server does not read files named in requests"
        )
    paths = [(step, image) for step, image in step_images(wf) if is_server_path(image)]
    if not paths:
        return
    known = catalog_names()
    refused = [(step, image) for step, image in paths if image not in known]
    if refused:
        raise InvalidWorkflow(
            "the server does not read files named in requests: over the REST API a step's image "
            "is a StaX family or variant of the configured catalogs (see GET images), a "
            "reference they list, or a registry reference (docker://...); ask the server's "
            "admin to add the image to a catalog (StaxApp.image_catalogs)",
            details=[
                f"step {step!r}: image {image!r} is a path on the server" for step, image in refused
            ],
        )


def refuse_outside_root(
    wf: Workflow, options: SubmitOptions, root: str | None, fetched: Iterable[str] = ()
) -> SubmitOptions:
    """``options`` with ``base_dir`` (default: ``root``) when every notebook-side input of
    ``wf`` and, when steps' outputs are fetched (``fetched``: their names), the outputs
    directory lie inside ``root`` (see the module); Forbidden otherwise. Directories that no
    step uses are not checked."""
    if root is None:
        return options
    base = Path(options.base_dir or root)
    if not base.is_absolute():
        raise BadRequest(f"base_dir {options.base_dir!r} must be an absolute path")
    named = []
    if any(s.outputs for s in wf.steps if s.name in set(fetched)):
        out = Path(options.outputs_dir or base / "stax-outputs")
        named.append(("outputs_dir", out if out.is_absolute() else base / out))
    for s in wf.steps:
        for i in s.inputs:
            if isinstance(i, str):
                anchor, _ = anchor_and_rest(i)
                named.append((f"step {s.name!r}: input {i!r}", base / anchor))
    check_inside(root, named)
    return options.model_copy(update={"base_dir": str(base)})


def check_inside(root: str, named: list[tuple[str, Path]]) -> None:
    """Forbidden naming every path of ``named`` that is not inside ``root``."""
    outside = [f"{what}: {p}" for what, p in named if not inside(Path(root), p)]
    if outside:
        raise Forbidden(
            f"the server reads and writes files named in requests only inside its root "
            f"directory {root}; use paths there (or the CLI with --no-server)",
            details=outside,
        )
