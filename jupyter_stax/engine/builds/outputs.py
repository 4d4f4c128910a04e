"""A built root file system made into the recipe's output, with its StaX labels written in.

``ch``: a Charliecloud directory image ``OUTPUT/VARIANT`` (labels in ``ch/metadata.json``,
what :class:`~jupyter_stax.engine.image_sources.CharliecloudDir` reads); ``oci``: an OCI image
layout ``OUTPUT/VARIANT`` tagged ``VARIANT`` (labels in the config's ``config.Labels``);
``sif``: ``OUTPUT/VARIANT.sif`` through ``apptainer``/``singularity build`` (labels in the
sandbox's ``/.singularity.d/labels.json``).

What the labels measure comes from the image itself: ``/etc/os-release`` and the glibc of
``libc.so.6`` (:func:`inspect_root`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ...core.errors import StaxError
from ...core.recipe import glibc_version, parse_os_release
from .builders import BuilderMissing
from .files import copy_tree, file_digest

_LIBC = (
    "lib/x86_64-linux-gnu/libc.so.6",
    "lib/aarch64-linux-gnu/libc.so.6",
    "lib/powerpc64le-linux-gnu/libc.so.6",
    "lib64/libc.so.6",
    "lib/libc.so.6",
    "usr/lib64/libc.so.6",
    "usr/lib/libc.so.6",
)


def inside(root: Path, rel: str, hops: int = 20) -> Path | None:
    """``rel`` in the image at ``root``, symbolic links followed as the image sees them
    (absolute targets are relative to ``root``); None when missing or looping."""
    parts = list(PurePosixPath(rel.lstrip("/")).parts)
    cur = root
    while parts and hops > 0:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            cur = cur.parent if cur != root else root
            continue
        nxt = cur / part
        if nxt.is_symlink():
            hops -= 1
            target = os.readlink(nxt)
            if target.startswith("/"):
                cur = root
            parts = list(PurePosixPath(target.lstrip("/")).parts) + parts
            continue
        cur = nxt
    if hops <= 0 or not cur.exists():
        return None
    return cur


@dataclass(frozen=True)
class Measured:
    os: str | None
    kabi: str | None


def inspect_root(root: Path) -> Measured:
    """The image's OS (``/etc/os-release``, else ``/usr/lib/os-release``) and glibc."""
    os_name = None
    for rel in ("etc/os-release", "usr/lib/os-release"):
        f = inside(root, rel)
        if f is not None and f.is_file():
            os_name = parse_os_release(f.read_text(errors="replace"))
            break
    kabi = None
    for rel in _LIBC:
        f = inside(root, rel)
        if f is not None and f.is_file():
            kabi = glibc_version(f.read_bytes())
            if kabi:
                break
    return Measured(os_name, kabi)


def tree_digest(root: Path) -> str:
    """A content digest of an image directory: names, modes, link targets and file bytes."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + dirnames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            h.update(f"{rel}\0{st.st_mode:o}\0".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                with p.open("rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(b"\n")
    return "sha256:" + h.hexdigest()


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += (Path(dirpath) / name).lstat().st_size
            except OSError:
                pass
    return total


def write_ch(root: Path, dest: Path, labels: dict[str, str], arch: str) -> tuple[str, str]:
    """A Charliecloud directory image at ``dest``; its reference and content digest."""
    copy_tree(root, dest)
    meta_file = dest / "ch" / "metadata.json"
    meta: dict[str, object] = {}
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
    meta["labels"] = labels
    meta.setdefault("arch", arch)
    meta_file.parent.mkdir(exist_ok=True)
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    return str(dest), tree_digest(dest)


_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le"}


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    d = layout / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    (d / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_oci(
    root: Path, dest: Path, tag: str, labels: dict[str, str], arch: str
) -> tuple[str, str]:
    """An OCI image layout at ``dest`` with one layer (the root file system but ``ch/``),
    tagged ``tag``; its reference ``oci:DEST:TAG`` and manifest digest."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in sorted(root.iterdir()):
            if item.name != "ch":
                tar.add(item, arcname=item.name, recursive=True)
    data = raw.getvalue()
    layer = _blob(dest, gzip.compress(data, compresslevel=1, mtime=0))
    config = {
        "architecture": _GOARCH.get(arch, arch),
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(data).hexdigest()]},
    }
    cfg = _blob(dest, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }
    man = _blob(dest, json.dumps(manifest, sort_keys=True).encode())
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **man,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (dest / "index.json").write_text(json.dumps(index))
    return f"oci:{dest}:{tag}", str(man["digest"])


def sif_tool() -> str | None:
    return next((t for t in ("apptainer", "singularity") if shutil.which(t)), None)


def sif_problem() -> str | None:
    """Why no SIF can be made here (what to install), or None: a SIF is written by
    ``apptainer build`` (or ``singularity build``) from the built root file system."""
    if sif_tool() is None:
        return (
            "--format sif needs apptainer (or singularity), and neither is installed here: "
            "install Apptainer (Debian 12's archive has no package for it: the .deb of "
            "https://github.com/apptainer/apptainer/releases, or on Ubuntu ppa:apptainer/ppa; "
            "see https://apptainer.org/docs/admin/main/installation.html), or build with "
            "--format ch or --format oci"
        )
    return None


def write_sif(root: Path, dest: Path, labels: dict[str, str], log: Path) -> tuple[str, str]:
    """``apptainer build DEST ROOT`` from a sandbox copy with the labels in
    ``/.singularity.d/labels.json``; its path and file digest."""
    tool = sif_tool()
    if tool is None:
        raise BuilderMissing(sif_problem() or "")
    sandbox = dest.with_suffix(".sandbox")
    copy_tree(root, sandbox)
    (sandbox / ".singularity.d").mkdir(exist_ok=True)
    (sandbox / ".singularity.d" / "labels.json").write_text(json.dumps(labels, indent=2))
    try:
        with log.open("ab") as out:
            p = subprocess.run(
                [tool, "build", "--force", str(dest), str(sandbox)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    if p.returncode != 0:
        raise StaxError(f"{tool} build {dest} failed (exit {p.returncode}); see {log}")

    return str(dest), file_digest(dest)
