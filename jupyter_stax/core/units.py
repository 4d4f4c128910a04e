"""Parsing of walltimes and memory sizes in the spellings HPC users type."""

from __future__ import annotations

import re

_TIME_RE = re.compile(r"^(?:(?P<d>\d+)-)?(?P<rest>\d+(?::\d+){0,2})$")
_MEM_RE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<u>[KMGTP]?)(?:i?B)?\s*$", re.IGNORECASE)
_MEM_UNITS = {"": 1024**2, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_walltime(value: str | int | float) -> int:
    """Seconds from a Slurm-style time: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``.

    A bare number is minutes (as in ``sbatch --time``). Raises ValueError with the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"walltime {value!r} is not a time")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"walltime {value!r} must be positive")
        return int(value * 60)
    if not isinstance(value, str):
        raise ValueError(f"walltime {value!r} is not a time; use MM, MM:SS, HH:MM:SS or D-HH:MM:SS")
    m = _TIME_RE.match(value.strip())
    if not m:
        raise ValueError(f"walltime {value!r} is not a time; use MM, MM:SS, HH:MM:SS or D-HH:MM:SS")
    parts = [int(p) for p in m.group("rest").split(":")]
    if m.group("d") is not None:
        days = int(m.group("d"))
        hms = parts + [0] * (3 - len(parts))  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
    elif len(parts) == 1:
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    if seconds <= 0:
        raise ValueError(f"walltime {value!r} must be positive")
    return seconds


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), the least ambiguous form for every scheduler."""
    h, rem = divmod(int(seconds), 3600)
    return f"{h:02d}:{rem // 60:02d}:{rem % 60:02d}"


def parse_memory(value: str | int) -> int:
    """Bytes from ``4G``, ``512M``, ``2GiB``, ``1.5G``; a bare number is MiB (as in ``--mem``)."""
    if isinstance(value, bool):
        raise ValueError(f"memory {value!r} is not a size")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"memory {value!r} must be positive")
        return value * 1024**2
    if not isinstance(value, str):
        raise ValueError(f"memory {value!r} is not a size; use e.g. 512M, 4G or 2GiB")
    m = _MEM_RE.match(value)
    if not m:
        raise ValueError(f"memory {value!r} is not a size; use e.g. 512M, 4G or 2GiB")
    n = float(m.group("n")) * _MEM_UNITS[m.group("u").upper()]
    if n <= 0:
        raise ValueError(f"memory {value!r} must be positive")
    return int(n)
