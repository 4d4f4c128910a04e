"""Cancel of a local job kills its whole process tree, also when a process in it starts a new
child as soon as one ends (a sweep runner with a free slot did, and its new instance outlived
the cancel)."""

from __future__ import annotations

import subprocess
import uuid

import psutil

from jupyter_stax.engine.backend import _kill_tree

from ..waiting import wait_for


def _marked(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def test_a_tree_that_respawns_its_children_leaves_no_survivor() -> None:
    # `sleep 300.<id>` marks this test's processes; the loop restarts a sleeper each time one
    # ends, at every level of a three-deep tree, so killing children before their parent would
    # leave new ones behind
    marker = f"300.{uuid.uuid4().int % 10**6:06d}"
    loop = f"for i in 1 2 3 4; do sleep {marker} & done; while :; do wait -n; sleep {marker} & done"
    tree = f"bash -c '{loop}' & bash -c '{loop}' & {loop}"
    top = subprocess.Popen(["bash", "-c", tree])
    try:
        wait_for(lambda: len(_marked(marker)) >= 12, 30, "the sleepers to start")
        _kill_tree(top.pid)
        assert top.wait(timeout=30) == -9
        wait_for(lambda: not _marked(marker), 30, "every process of the tree to be gone")
    finally:
        for p in _marked(marker):
            p.kill()


def test_a_pid_that_is_gone_is_nothing_to_kill() -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    _kill_tree(p.pid)  # no error
