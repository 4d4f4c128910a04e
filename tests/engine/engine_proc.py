"""A throw-away engine process for crash tests: submits a workflow, prints its id, keeps
watching until killed. Usage: python engine_proc.py CLUSTER WORKFLOW_JSON [--detach]"""

from __future__ import annotations

import asyncio
import json
import sys

from jupyter_stax.core.models import SubmitOptions
from jupyter_stax.engine.engine import Engine


async def main() -> None:
    cluster, wf = sys.argv[1], json.loads(sys.argv[2])
    detached = "--detach" in sys.argv
    eng = await Engine().start()
    ex = await eng.submit(wf, cluster=cluster, options=SubmitOptions(detached=detached))
    print(ex.id, flush=True)
    if detached:
        await eng.stop()
        return
    await asyncio.sleep(3600)


asyncio.run(main())
