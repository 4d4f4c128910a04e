"""What jupyter_stax adds to PSI/J's PBS Pro / OpenPBS executor (``pbs``): job arrays for
sweeps (``qsub -J``). PSI/J's template writes custom attributes ``pbs.KEY`` as ``#PBS -KEY
"VALUE"`` and knows an array's own state (``B``: begun); its status command names the array
(``123[].server``). Not run here (no PBS on the test machine): the generated script is tested.
"""

from __future__ import annotations

NAME = "pbs"

#: PBS Pro's default ``max_array_size`` (server attribute: subjobs of one array)
DEFAULT_MAX_ARRAY_SIZE = 10000


def array_attributes(count: int, cap: int | None) -> dict[str, str]:
    """PSI/J custom attributes of one array of ``count`` subjobs numbered from 0 (``-J 0-E``;
    PBS wants a range of at least two indices, so an array of one asks for two and the second
    finds no instances to run), at most ``cap`` running at once (``%cap``)."""
    if count < 1:
        raise ValueError("an array needs at least one element")
    last = max(1, count - 1)
    spec = f"0-{last}"
    if cap is not None and cap < count:
        spec += f"%{max(1, cap)}"
    return {"pbs.J": spec}
