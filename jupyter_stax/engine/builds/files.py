"""File helpers shared by the base importer and the output writers (kept apart so that
neither imports the other)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from ...core.errors import StaxError


def file_digest(f: Path) -> str:
    h = hashlib.sha256()
    with f.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def copy_tree(src: Path, dest: Path) -> None:
    """``cp -a`` (keeps links, modes, special files; reflinks where the file system can)."""
    if dest.exists() or dest.is_symlink():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        ["cp", "-a", "--reflink=auto", str(src), str(dest)], capture_output=True, text=True
    )
    if p.returncode != 0:
        raise StaxError(f"cannot copy the built image to {dest}: {p.stderr.strip()}")
