"""File helpers shared by the base importer and the output writers (kept apart so that
neither imports the other)."""

from __future__ import annotations

import hashlib
import json
import os
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


def cached_file_digest(f: Path, cache: Path | None) -> str:
    """:func:`file_digest`, remembered in the JSON file ``cache`` under the file's path, size,
    modification time, inode and change time (a base tarball of hundreds of MB is read once, not
    at every build; any change to the file changes one of those)."""
    if cache is None:
        return file_digest(f)
    st = f.stat()
    key = f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    digest = known.get(key)
    if isinstance(digest, str):
        return digest
    digest = file_digest(f)
    known = {k: v for k, v in known.items() if not k.startswith(f"{f.resolve()}\0")}
    known[key] = digest
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + f".{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, cache)
    except OSError:
        pass  # a cache we cannot write: the digest is still right
    return digest


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
