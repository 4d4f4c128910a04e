"""Real Python interpreters of this machine other than the one running the tests (for the
function tasks' version checks): another minor version, or the same one without cloudpickle."""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path


def _version(exe: str) -> tuple[tuple[int, int], bool] | None:
    """(major.minor, cloudpickle importable) of an interpreter, None when it does not run."""
    code = (
        "import sys\ntry:\n    import cloudpickle\n    c = 1\nexcept Exception:\n    c = 0\n"
        "print(sys.version_info[0], sys.version_info[1], c)"
    )
    try:
        out = subprocess.run(
            [exe, "-c", code], capture_output=True, text=True, timeout=30, env={}
        ).stdout.split()
        return (int(out[0]), int(out[1])), out[2] == "1"
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def candidates() -> list[str]:
    found = glob.glob("/root/.pyenv/versions/3.*/bin/python3") + glob.glob("/usr/bin/python3*")
    found += glob.glob("/usr/local/bin/python3*")
    return sorted({p for p in found if Path(p).name.rstrip("0123456789.") == "python"})


def other_minor() -> str | None:
    """A Python 3 whose minor version differs from this one's."""
    here = sys.version_info[:2]
    for exe in candidates():
        v = _version(exe)
        if v is not None and v[0][0] == 3 and v[0] >= (3, 8) and v[0] != here:
            return exe
    return None


def same_minor_without_cloudpickle() -> str | None:
    """A Python of this minor version that cannot import cloudpickle (e.g. Debian's)."""
    here = sys.version_info[:2]
    for exe in candidates():
        v = _version(exe)
        if v is not None and v[0] == here and not v[1]:
            return exe
    return None
