"""Recipe bases: local images only (no network is assumed), found and fingerprinted before any
build starts.

=====================================  ================================================
``ch:DIR`` or a directory              a root file system directory (a Charliecloud image)
``DIR.tar``, ``.tar.gz``, ``.tgz``     a root file system tarball
``oci:DIR[:TAG]`` or an OCI layout     an OCI image layout; its layers are unpacked into
                                       a directory (once per manifest digest)
=====================================  ================================================

The fingerprint (``digest``) is part of a variant's build key: a changed base rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ...core.recipe import InvalidRecipe
from .files import cached_file_digest, copy_tree

OCI_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Base:
    spec: str
    kind: str  # dir, tar, oci
    path: Path
    digest: str
    tag: str | None = None

    @property
    def import_name(self) -> str:
        """The builder's name for this base (one import per content)."""
        return "stax-base-" + self.digest.split(":", 1)[-1][:16]


def _path(text: str, folder: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else folder / p


def dir_fingerprint(root: Path) -> str:
    """A digest of a directory tree's names, modes, sizes, times and link targets (not its
    contents: cheap on a large base, and any change to a file changes its size or time)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + dirnames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            link = os.readlink(p) if p.is_symlink() else ""
            h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode())
    return "sha256:" + h.hexdigest()


def locate(spec: str, folder: Path, digests: Path | None = None) -> Base:
    """The base ``spec`` names (relative to the recipe's ``folder``); InvalidRecipe when it
    is missing or is no image this module reads. ``digests``: a JSON file that keeps tarballs'
    sha256 by their stat (:func:`~.files.cached_file_digest`)."""
    if spec.startswith("oci:") or (_path(spec, folder) / "oci-layout").is_file():
        return _oci(spec, folder)
    p = _path(spec[3:] if spec.startswith("ch:") else spec, folder)
    if "://" in spec:
        raise InvalidRecipe(
            f"base {spec!r} is a registry image; builds are offline: pull it once into a "
            "local image (ch-image pull, skopeo copy to oci:DIR) and name that"
        )
    if not p.exists():
        raise InvalidRecipe(
            f"base {spec!r} does not exist ({p}); name a root file system directory, a .tar.gz "
            "of one, or an OCI layout (oci:DIR[:TAG])"
        )
    if p.is_dir():
        if not (p / "bin").exists() and not (p / "usr").is_dir():
            raise InvalidRecipe(f"base {spec!r}: {p} is no root file system (no bin/ or usr/)")
        return Base(spec, "dir", p, dir_fingerprint(p))
    if p.name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")):
        return Base(spec, "tar", p, cached_file_digest(p, digests))
    raise InvalidRecipe(f"base {spec!r}: {p} is neither a directory, a tarball nor an OCI layout")


def _oci_manifest(root: Path, tag: str | None, spec: str) -> dict[str, object]:
    try:
        index = json.loads((root / "index.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidRecipe(f"base {spec!r}: cannot read {root}/index.json: {e}") from None
    mans = [m for m in index.get("manifests") or [] if "index" not in str(m.get("mediaType", ""))]
    if tag is not None:
        mans = [m for m in mans if (m.get("annotations") or {}).get(OCI_REF_NAME) == tag]
    if len(mans) != 1:
        tags = [str((m.get("annotations") or {}).get(OCI_REF_NAME)) for m in index["manifests"]]
        what = f"no image tagged {tag!r}" if tag else f"{len(mans)} images"
        raise InvalidRecipe(
            f"base {spec!r}: the OCI layout has {what} (tags: {', '.join(tags)}); name one "
            "as oci:DIR:TAG"
        )
    return dict(mans[0])


def _oci(spec: str, folder: Path) -> Base:
    rest = spec[4:] if spec.startswith("oci:") else spec
    root, tag = _path(rest, folder), None
    if not root.exists() and ":" in rest:
        d, tag = rest.rsplit(":", 1)
        root = _path(d, folder)
    if not (root / "index.json").is_file():
        raise InvalidRecipe(
            f"base {spec!r} does not exist or is no OCI image layout ({root}/index.json missing)"
        )
    m = _oci_manifest(root, tag, spec)
    return Base(spec, "oci", root, str(m["digest"]), tag)


def _blob(root: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    return root / "blobs" / algo / hexd


def unpack_oci(base: Base, into: Path) -> Path:
    """The OCI base's layers unpacked in order into ``into`` (whiteouts applied); done once
    (a finished unpack leaves ``.stax-unpacked``)."""
    done = into / ".stax-unpacked"
    if done.exists():
        return into
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    manifest = json.loads(_blob(base.path, base.digest).read_text())
    for layer in manifest.get("layers") or []:
        with tarfile.open(_blob(base.path, layer["digest"])) as tar:
            members = []
            for m in tar.getmembers():
                name = Path(m.name)
                if name.name.startswith(".wh."):
                    gone = into / name.parent / name.name[4:]
                    if name.name == ".wh..wh..opq":
                        for child in (into / name.parent).glob("*"):
                            shutil.rmtree(child) if child.is_dir() else child.unlink()
                    elif gone.is_dir() and not gone.is_symlink():
                        shutil.rmtree(gone)
                    elif gone.exists() or gone.is_symlink():
                        gone.unlink()
                    continue
                members.append(m)
            tar.extractall(into, members=members, filter="tar")
    done.write_text(base.digest + "\n")
    return into


#: what ch-image expects in an imported directory's ch/metadata.json (it fails on a partial one)
CH_METADATA_KEYS = ("arch", "arg", "cwd", "env", "history", "labels", "shell", "volumes")
_CH_DEFAULTS: dict[str, object] = {
    "arg": {},
    "cwd": "/",
    "env": {},
    "history": [],
    "labels": {},
    "shell": ["/bin/sh", "-c"],
    "volumes": [],
}


def complete_metadata(root: Path) -> bool:
    """True when ``root`` has no ``ch/metadata.json`` or a complete one."""
    f = root / "ch" / "metadata.json"
    if not f.is_file():
        return True
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and all(k in meta for k in CH_METADATA_KEYS)


def staged_with_metadata(root: Path, into: Path, arch: str) -> Path:
    """A copy of ``root`` whose ``ch/metadata.json`` has every key ch-image needs (the given
    ones kept, e.g. labels written by hand); made once per base fingerprint."""

    done = into.with_name(into.name + ".staged")
    if done.exists():
        return into
    done.unlink(missing_ok=True)
    copy_tree(root, into)
    f = into / "ch" / "metadata.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    meta = {**_CH_DEFAULTS, "arch": arch, **meta}
    f.write_text(json.dumps(meta, indent=2))
    done.write_text("")
    return into
