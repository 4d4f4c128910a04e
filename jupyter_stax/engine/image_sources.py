"""Where StaX images come from: catalog files, OCI layouts, Charliecloud directories, SIF files
and registries. Each kind is an :class:`ImageSource`; more come as plug-ins (entry-point group
``jupyter_stax.image_sources``, see :mod:`.plugins`).

A source is named by a *spec* string (``StaxApp.image_catalogs``, ``$JUPYTER_STAX_IMAGES``):

==============================  =================================================================
``images.yaml`` (``.yml``,      a catalog file: StaX families and their variants
``.json``)
``oci:DIR[:TAG]`` or a          an OCI image layout, read directly (index.json -> manifest ->
directory with ``oci-layout``   config labels)
``ch:DIR`` or a directory with  a Charliecloud directory image (labels in ``ch/metadata.json``),
``ch/metadata.json``            or a directory of such images
``sif:PATH`` or ``*.sif``       SIF files (a file or a directory of them), through
                                ``apptainer inspect`` / ``singularity inspect`` when installed
``docker://REF``                a registry image, through ``skopeo inspect`` when installed
==============================  =================================================================

A source whose tool is not installed raises :class:`SourceUnavailable`: the catalog reports it
once and goes on with the others.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..core.documents import parse_yaml
from ..core.errors import StaxError
from ..core.images import StaxImage, StaxLabels, norm_cpu
from . import plugins

INSPECT_TIMEOUT = 60.0
OCI_REF_NAME = "org.opencontainers.image.ref.name"
OCI_TITLE = "org.opencontainers.image.title"


class SourceUnavailable(StaxError):
    """The source cannot be read here (a tool is not installed, a path is missing)."""

    http_status = 503


class ImageSource:
    """One catalog source. Subclasses say which specs they read (:meth:`claims`) and list
    their images; :meth:`inspect` reads one image reference (labels and digest)."""

    kind: ClassVar[str] = "?"

    def __init__(self, spec: str, *, base: Path | None = None) -> None:
        self.spec = spec
        self.base = base
        #: problems with single images that were left out (the others are listed)
        self.problems: list[str] = []

    @classmethod
    def claims(cls, spec: str) -> bool:
        raise NotImplementedError

    def images(self) -> list[StaxImage]:
        raise NotImplementedError

    def inspect(self, reference: str) -> StaxImage:
        found = self.images()
        if not found:
            raise SourceUnavailable(f"{reference!r} holds no image")
        return found[0]

    def path(self, text: str) -> Path:
        p = Path(text).expanduser()
        if not p.is_absolute() and self.base is not None:
            p = self.base / p
        return p


def _strip(spec: str, prefix: str) -> str:
    return spec[len(prefix) :] if spec.startswith(prefix) else spec


def _image(
    *,
    name: str,
    family: str | None,
    reference: str,
    labels: Mapping[str, Any] | None,
    source: str,
    kind: str,
    digest: str | None = None,
    arch: str | None = None,
) -> StaxImage:
    lab = StaxLabels.parse(labels)
    if lab.cpu is None and arch:
        lab = lab.model_copy(update={"cpu": norm_cpu(arch)})
    fam = family or (labels or {}).get(OCI_TITLE) or name
    return StaxImage(
        name=name,
        family=str(fam),
        reference=reference,
        digest=digest,
        labels=lab,
        source=source,
        kind=kind,
    )


# ---------------------------------------------------------------------- Charliecloud
class CharliecloudDir(ImageSource):
    """A Charliecloud directory image (``IMG/ch/metadata.json`` holds ``labels`` and ``arch``),
    or a directory whose subdirectories are such images."""

    kind = "charliecloud"

    @classmethod
    def claims(cls, spec: str) -> bool:
        if spec.startswith("ch:"):
            return True
        p = Path(spec).expanduser()
        return (p / "ch" / "metadata.json").is_file()

    def images(self) -> list[StaxImage]:
        root = self.path(_strip(self.spec, "ch:"))
        if not root.is_dir():
            raise SourceUnavailable(f"Charliecloud image directory {str(root)!r} does not exist")
        if (root / "ch").is_dir() or (root / "bin").is_dir():
            return [self._one(root)]
        out = [
            self._one(d)
            for d in sorted(root.iterdir())
            if d.is_dir() and (d / "ch" / "metadata.json").is_file()
        ]
        return out

    def _one(self, d: Path) -> StaxImage:
        meta: dict[str, Any] = {}
        f = d / "ch" / "metadata.json"
        if f.is_file():
            try:
                meta = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise StaxError(f"cannot read Charliecloud metadata {str(f)!r}: {e}") from None
            if not isinstance(meta, dict):
                raise StaxError(f"Charliecloud metadata {str(f)!r} is not a JSON object")
        labels = meta.get("labels") or {}
        return _image(
            name=d.name,
            family=None,
            reference=str(d),
            labels=labels if isinstance(labels, dict) else {},
            source=self.spec,
            kind="dir",
            arch=meta.get("arch") if isinstance(meta.get("arch"), str) else None,
        )


# ---------------------------------------------------------------------- OCI layout
class OciLayout(ImageSource):
    """An OCI image layout on disk: ``index.json`` -> manifest -> config (``config.Labels``),
    read as plain JSON and blobs, no tool needed. Each tagged manifest is one image
    ``oci:DIR:TAG`` with the manifest's digest."""

    kind = "oci"

    @classmethod
    def claims(cls, spec: str) -> bool:
        if spec.startswith("oci:"):
            return True
        return (Path(spec).expanduser() / "oci-layout").is_file()

    def _split(self) -> tuple[Path, str | None]:
        rest = _strip(self.spec, "oci:")
        p = self.path(rest)
        if not p.exists() and ":" in rest:
            d, tag = rest.rsplit(":", 1)
            return self.path(d), tag
        return p, None

    def _blob(self, root: Path, digest: str) -> Any:
        algo, _, hexd = digest.partition(":")
        f = root / "blobs" / algo / hexd
        try:
            return json.loads(f.read_bytes())
        except (OSError, json.JSONDecodeError) as e:
            raise StaxError(f"OCI layout {str(root)!r}: cannot read blob {digest}: {e}") from None

    def images(self) -> list[StaxImage]:
        root, want = self._split()
        if not (root / "index.json").is_file():
            raise SourceUnavailable(f"{str(root)!r} is not an OCI image layout (no index.json)")
        index = self._blob_file(root / "index.json")
        out = []
        for m in self._manifests(root, index):
            tag = (m.get("annotations") or {}).get(OCI_REF_NAME)
            if want is not None and tag != want:
                continue
            manifest = self._blob(root, m["digest"])
            cfg_desc = manifest.get("config") or {}
            config = self._blob(root, cfg_desc["digest"]) if cfg_desc.get("digest") else {}
            labels = (config.get("config") or {}).get("Labels") or {}
            ref = f"oci:{root}:{tag}" if tag else f"oci:{root}@{m['digest']}"
            out.append(
                _image(
                    name=f"{root.name}:{tag}" if tag else f"{root.name}@{m['digest'][:19]}",
                    family=None if labels.get(OCI_TITLE) else root.name,
                    reference=ref,
                    labels=labels,
                    source=self.spec,
                    kind="oci",
                    digest=m["digest"],
                    arch=config.get("architecture"),
                )
            )
        if want is not None and not out:
            raise SourceUnavailable(f"OCI layout {str(root)!r} has no image tagged {want!r}")
        return out

    def _blob_file(self, f: Path) -> Any:
        try:
            return json.loads(f.read_bytes())
        except (OSError, json.JSONDecodeError) as e:
            raise StaxError(f"cannot read {str(f)!r}: {e}") from None

    def _manifests(self, root: Path, index: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in index.get("manifests") or []:
            if "index" in str(m.get("mediaType", "")):
                nested = self._blob(root, m["digest"])
                tag = (m.get("annotations") or {}).get(OCI_REF_NAME)
                for n in nested.get("manifests") or []:
                    n = dict(n)
                    n.setdefault("annotations", {})
                    if tag:
                        n["annotations"] = {OCI_REF_NAME: tag, **n["annotations"]}
                    out.append(n)
            else:
                out.append(m)
        return out


# ---------------------------------------------------------------------- SIF
def parse_sif_inspect(text: str) -> dict[str, str]:
    """Labels from ``apptainer inspect --json --labels`` (or singularity's) output."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StaxError(f"cannot parse the inspect output: {e}") from None
    attrs = (data.get("data") or {}).get("attributes") or {}
    labels = attrs.get("labels") or {}
    if isinstance(labels, str):  # some versions give the labels file's text
        try:
            labels = json.loads(labels)
        except json.JSONDecodeError:
            labels = {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


class SifFiles(ImageSource):
    """SIF images (a file or a directory of ``*.sif``), labels through ``apptainer inspect`` or
    ``singularity inspect``."""

    kind = "sif"
    tools: ClassVar[tuple[str, ...]] = ("apptainer", "singularity")

    @classmethod
    def claims(cls, spec: str) -> bool:
        return spec.startswith("sif:") or spec.endswith(".sif")

    def tool(self) -> str:
        for t in self.tools:
            if shutil.which(t):
                return t
        raise SourceUnavailable(
            f"SIF images in {self.spec!r} are not listed: neither apptainer nor singularity is "
            "installed here (they read SIF labels)"
        )

    def images(self) -> list[StaxImage]:
        p = self.path(_strip(self.spec, "sif:"))
        files = sorted(p.glob("*.sif")) if p.is_dir() else [p]
        tool = self.tool()
        out = []
        for f in files:
            if not f.is_file():
                raise SourceUnavailable(f"SIF file {str(f)!r} does not exist")
            text = _run([tool, "inspect", "--json", "--labels", str(f)])
            out.append(
                _image(
                    name=f.stem,
                    family=None,
                    reference=str(f),
                    labels=parse_sif_inspect(text),
                    source=self.spec,
                    kind="sif",
                )
            )
        return out


# ---------------------------------------------------------------------- registry
def parse_skopeo_inspect(text: str, reference: str, source: str) -> StaxImage:
    """An image from ``skopeo inspect docker://...`` output (Name, Digest, Labels,
    Architecture)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StaxError(f"cannot parse skopeo's output: {e}") from None
    name = str(data.get("Name") or reference)
    repo = name.rsplit("/", 1)[-1]
    return _image(
        name=_strip(reference, "docker://"),
        family=repo.split(":")[0].split("@")[0],
        reference=reference,
        labels=data.get("Labels") or {},
        source=source,
        kind="docker",
        digest=data.get("Digest"),
        arch=data.get("Architecture"),
    )


class Registry(ImageSource):
    """A registry image through ``skopeo inspect docker://REF``."""

    kind = "registry"

    @classmethod
    def claims(cls, spec: str) -> bool:
        return spec.startswith("docker://")

    def images(self) -> list[StaxImage]:
        if not shutil.which("skopeo"):
            raise SourceUnavailable(
                f"registry image {self.spec!r} is not listed: skopeo is not installed here "
                "(it reads registry labels)"
            )
        return [parse_skopeo_inspect(_run(["skopeo", "inspect", self.spec]), self.spec, self.spec)]


def _run(cmd: list[str]) -> str:
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=INSPECT_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SourceUnavailable(f"{' '.join(cmd)} failed: {e}") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SourceUnavailable(f"{' '.join(cmd)} failed (exit {p.returncode}): {last}")
    return p.stdout


# ---------------------------------------------------------------------- catalog file
class CatalogFile(ImageSource):
    """A YAML (or JSON) catalog file::

        stax:
          gromacs:                         # a StaX family
            description: GROMACS 2024
            variants:
              - name: gromacs-x86-cuda     # optional (default: family-cpu-gpu-mpi)
                image: /images/gromacs-cuda.sif
                labels: {cpu: x86_64, gpu: cuda, mpi: mpich, kabi: "2.28"}
              - image: ch:/images/gromacs-arm   # labels read from the image itself
            recipe: /src/gromacs/stax.yaml   # optional: the build recipe of this family

    Labels given here win over the image's own; an image given without labels has them read
    by the source that reads its kind (when available). Relative paths are relative to the
    catalog file. ``recipe`` (written by ``jupyter stax build``) is the family's build recipe:
    each variant carries it (``StaxImage.recipe``), so a client can build the family for
    another cluster.
    """

    kind = "catalog"

    @classmethod
    def claims(cls, spec: str) -> bool:
        return spec.endswith((".yaml", ".yml", ".json")) and "://" not in spec

    def images(self) -> list[StaxImage]:
        f = self.path(self.spec)
        try:
            text = f.read_text()
        except FileNotFoundError:
            raise SourceUnavailable(f"catalog file {str(f)!r} does not exist") from None
        except OSError as e:
            raise StaxError(f"cannot read catalog file {str(f)!r}: {e.strerror}") from None
        where = f"catalog file {str(f)!r}"
        data = parse_yaml(text, source=where, error=StaxError)
        if data is None:
            return []
        if not isinstance(data, dict) or not isinstance(data.get("stax", {}), dict):
            raise StaxError(f"{where} must have the form 'stax: {{FAMILY: {{variants: [...]}}}}'")
        unknown = set(data) - {"stax"}
        if unknown:
            raise StaxError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))}")
        out = []
        for family, body in (data.get("stax") or {}).items():
            body = body or {}
            if not isinstance(body, dict) or not isinstance(body.get("variants", []), list):
                raise StaxError(f"{where}: StaX {family!r} must have 'variants: [...]'")
            bad = set(body) - {"variants", "description", "recipe"}
            if bad:
                raise StaxError(f"{where}: StaX {family!r}: unknown key(s) {', '.join(bad)}")
            recipe = body.get("recipe")
            if recipe is not None and not isinstance(recipe, str):
                raise StaxError(f"{where}: StaX {family!r}: 'recipe' must be a file name")
            for i, v in enumerate(body.get("variants") or []):
                try:
                    img = self._variant(str(family), body.get("description"), i, v, f)
                except SourceUnavailable as e:
                    self.problems.append(e.message)  # this variant only
                    continue
                if recipe:
                    p = Path(recipe).expanduser()
                    img.recipe = str(p if p.is_absolute() else f.parent / p)
                out.append(img)
        return out

    @staticmethod
    def _absolute(ref: str, base: Path) -> str:
        """Relative paths (also after ``oci:``, ``ch:``, ``sif:``) from the catalog's folder."""
        m = re.match(r"^(oci:|ch:|sif:)?(.*)$", ref, re.DOTALL)
        assert m is not None
        prefix, rest = m.group(1) or "", m.group(2)
        if "://" in ref or (not prefix and ":" in rest.split("/")[0]):
            return ref  # a transport reference (docker://, library://, registry:tag)
        p = Path(rest).expanduser()
        return prefix + str(p if p.is_absolute() else base / p)

    def _variant(self, family: str, description: Any, i: int, v: Any, f: Path) -> StaxImage:
        where = f"catalog file {str(f)!r}: StaX {family!r} variant {i + 1}"
        if not isinstance(v, dict) or not isinstance(v.get("image"), str):
            raise StaxError(f"{where} needs 'image: REFERENCE'")
        bad = set(v) - {"name", "image", "labels", "digest", "description"}
        if bad:
            raise StaxError(f"{where}: unknown key(s) {', '.join(sorted(bad))}")
        ref = self._absolute(str(v["image"]), f.parent)
        read: StaxImage | None = None
        cls = source_for(ref, exclude=CatalogFile)
        if cls is not None:
            src = cls(ref)
            try:
                read = src.inspect(ref)
            except SourceUnavailable as e:
                if not v.get("labels"):
                    raise SourceUnavailable(f"{where}: {e.message}") from None
        if read is not None:
            ref = read.reference
        labels = dict(read.labels.as_labels()) if read else {}
        given = v.get("labels") or {}
        if not isinstance(given, dict):
            raise StaxError(f"{where}: 'labels' must be a mapping")
        labels.update(StaxLabels.parse(given).as_labels())
        lab = StaxLabels.parse(labels)
        name = v.get("name") or "-".join(
            [family] + ([x for x in (lab.cpu, lab.gpu, lab.mpi) if x and x != "none"] or [str(i)])
        )
        return StaxImage(
            name=str(name),
            family=family,
            reference=ref,
            digest=v.get("digest") or (read.digest if read else None),
            labels=lab,
            source=self.spec,
            kind=read.kind if read else None,
            description=v.get("description") or description,
        )


BUILTIN_SOURCES: dict[str, type[ImageSource]] = {
    "catalog": CatalogFile,
    "oci": OciLayout,
    "charliecloud": CharliecloudDir,
    "sif": SifFiles,
    "registry": Registry,
}


def source_classes() -> dict[str, type[ImageSource]]:
    """Every image source class by name: the built-in ones, then plug-ins (entry point group
    ``jupyter_stax.image_sources``)."""
    return plugins.classes(plugins.SOURCES_GROUP, ImageSource, BUILTIN_SOURCES, "image source")


def source_for(spec: str, exclude: type[ImageSource] | None = None) -> type[ImageSource] | None:
    """The source class that reads ``spec`` (plug-ins included), or None."""
    for cls in source_classes().values():
        if cls is exclude:
            continue
        try:
            if cls.claims(spec):
                return cls
        except Exception:  # a plug-in's claims() must not break the catalog
            continue
    return None


def env_specs() -> list[str] | None:
    """``$JUPYTER_STAX_IMAGES`` (specs separated by ``;`` or newlines: ``:`` is part of
    ``oci:DIR:TAG`` and ``docker://``), or None when unset."""
    v = os.environ.get(ENV_IMAGES)
    if v is None:
        return None
    return [s.strip() for s in v.replace("\n", ";").split(";") if s.strip()]


ENV_IMAGES = "JUPYTER_STAX_IMAGES"
