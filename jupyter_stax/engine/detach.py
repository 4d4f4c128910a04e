"""A detached submission in a process of its own:
``python -m jupyter_stax.engine.detach < request.json`` prints the submitted execution.

Used by :class:`~jupyter_stax.service.LocalService` when the caller runs an event loop (a
kernel): a detached submission goes through PSI/J, whose batch executors leave a queue-polling
thread behind that keeps polling the scheduler for the jobs, and whose ``_stop`` method shadows
``threading.Thread._stop`` so that every later ``os.fork`` of the process (a ``!command`` in a
notebook) prints an ignored TypeError. In a child process none of that stays in the kernel.

The request: ``{"store", "clusters_file", "workflow", "cluster", "params", "options", "steps"}``.
The answer: ``{"id", "execution"}``, the execution as the submission left it (every step queued),
the same answer a detached submission gives in the caller's process.
Errors come back as ``{"error": class name, "message", "details"}`` on stdout, exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


def main() -> int:
    from ..core.clusters import ClusterRegistry
    from ..core.errors import StaxError
    from ..core.models import SubmitOptions, Workflow
    from .engine import Engine

    req: dict[str, Any] = json.load(sys.stdin)

    async def submit() -> dict[str, Any]:
        clusters = ClusterRegistry.load(req.get("clusters_file"))
        async with Engine(store=req["store"], clusters=clusters, adopt=False) as eng:
            ex = await eng.submit(
                Workflow.model_validate(req["workflow"]),
                req["cluster"],
                req.get("params") or {},
                SubmitOptions.model_validate(req.get("options") or {}),
                req.get("steps"),
            )
        return {"id": ex.id, "execution": ex.model_dump(mode="json")}

    try:
        answer = asyncio.run(submit())
    except StaxError as e:
        print(json.dumps({"error": type(e).__name__, "message": e.message, "details": e.details}))
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
