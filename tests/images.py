"""Tiny labelled StaX images built by the tests themselves, without network.

* :func:`charliecloud_image`: a busybox-static root file system directory with its labels in
  ``ch/metadata.json`` and a marker file ``/etc/stax-marker`` (what a step prints to prove it ran
  inside the image); about 2 MB.
* :func:`oci_layout`: an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256``)
  written as plain JSON and blobs, the labels in the config's ``config.Labels``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
MARKER = "inside-stax-image"
APPLETS = ("sh", "cat", "echo", "ls", "pwd", "env", "hostname", "id", "sleep", "true", "false")

LABELS = {
    "org.hpe.staxs.cpu": "x86_64",
    "org.hpe.staxs.gpu": "none",
    "org.hpe.staxs.mpi": "none",
    "org.hpe.staxs.kabi": "2.36",
    "org.hpe.staxs.os": "BusyBox",
    "org.hpe.staxs.framework": "psij",
    "org.hpe.staxs.platform": "jupyter",
    "org.example.built-by": "jupyter_stax tests",
}


def busybox_available() -> bool:
    return BUSYBOX.exists() and shutil.which("ch-run") is not None


def charliecloud_image(d: Path, labels: dict[str, str] | None = None, marker: str = MARKER) -> Path:
    """A Charliecloud directory image at ``d``."""
    for sub in ("bin", "etc", "ch", "tmp", "dev", "proc", "sys", "home", "mnt", "usr/bin", "root"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, d / "bin" / "busybox")
    for a in APPLETS:
        link = d / "bin" / a
        if not link.exists():
            link.symlink_to("busybox")
    for f in ("passwd", "group", "hosts", "resolv.conf"):  # ch-run binds these
        (d / "etc" / f).touch()
    (d / "etc" / "stax-marker").write_text(marker + "\n")
    (d / "ch" / "metadata.json").write_text(
        json.dumps({"arch": "amd64", "labels": labels if labels is not None else LABELS})
    )
    return d


def _blob(root: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(
    d: Path, labels: dict[str, str] | None = None, tag: str = "latest", arch: str = "amd64"
) -> tuple[Path, str]:
    """An OCI image layout at ``d`` with one image tagged ``tag``; returns it and the
    manifest digest."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = (MARKER + "\n").encode()
        info = tarfile.TarInfo("etc/stax-marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    layer = _blob(d, gzip.compress(raw, mtime=0))
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Labels": labels if labels is not None else LABELS},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }
    cfg = _blob(d, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }
    man = _blob(d, json.dumps(manifest).encode())
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
    (d / "index.json").write_text(json.dumps(index))
    return d, str(man["digest"])
