"""A throw-away engine process for crash tests: submits a workflow, prints its id, keeps
watching until killed. Usage: python engine_proc.py CLUSTER WORKFLOW_JSON [--detach]
[--max-array=N] (the cluster's array size limit as if the scheduler said N)."""

from __future__ import annotations

import asyncio
import json
import sys

from jupyter_stax.core.models import SubmitOptions
from jupyter_stax.engine.engine import Engine


async def main() -> None:
    cluster, wf = sys.argv[1], json.loads(sys.argv[2])
    detached = "--detach" in sys.argv
    for arg in sys.argv[3:]:
        if arg.startswith("--max-array="):
            from jupyter_stax.engine import sweeps

            sweeps._MAX_ARRAY[cluster] = int(arg.split("=", 1)[1])
    eng = await Engine().start()
    ex = await eng.submit(wf, cluster=cluster, options=SubmitOptions(detached=detached))
    print(ex.id, flush=True)
    if detached:
        await eng.stop()
        return
    await asyncio.sleep(3600)


asyncio.run(main())
