"""The Python probe of function tasks: before the first batch of tasks goes to a cluster (in
an image), a one-step execution there prints its Python's version and whether cloudpickle
imports (:data:`~jupyter_stax.core.functask.PROBE_SOURCE`). It runs as the tasks will (the
same scheduler, ``$STAX_PYTHON``, the cluster's setup and env, the image), so what it reports
is what the tasks would meet. Once per kernel for each (service, cluster, image) that passed;
a failed probe is not remembered (fix the cluster, and the next call probes again). The tasks
then run the interpreter the probe found (``$STAX_PYTHON`` set to its ``sys.executable``):
the one that was checked, without a wrapper such as pyenv's shim before every task.
"""

from __future__ import annotations

import threading

from ..core import models
from ..core.functask import PROBE_SOURCE, Probe, PythonMismatch, parse_probe, probe_problem
from ..follow import Poll, read_all, wait_final
from ..service import StaxService

__all__ = ["PROBE_WORKFLOW", "ensure_python", "probed_cluster"]

#: the workflow name of probe executions (``%stax list`` shows them)
PROBE_WORKFLOW = "stax-python-probe"
#: seconds a probe may take (queue wait included)
PROBE_TIMEOUT = 600.0

_passed: dict[tuple[str, str | None, str | None], Probe] = {}
#: the cluster each passed probe ran on (a None cluster: the service's default)
_where: dict[tuple[str, str | None, str | None], str] = {}
_lock = threading.Lock()


def ensure_python(
    service: StaxService,
    cluster: str | None,
    image: str | None,
    *,
    timeout: float = PROBE_TIMEOUT,
) -> Probe:
    """What the Python of ``cluster`` (None: the service's default) in ``image`` is, once
    function tasks of this kernel can run there; :class:`PythonMismatch` with the fix
    otherwise."""
    key = (service.describe(), cluster, image)
    with _lock:
        if key in _passed:
            return _passed[key]
    step = models.Step(
        name="probe",
        run=PROBE_SOURCE,
        language="python",
        image=image,
        resources=models.Resources(time="00:05:00"),
    )
    wf = models.Workflow(name=PROBE_WORKFLOW, steps=[step])
    ex = service.submit(wf, cluster=cluster)
    ex = wait_final(service, ex.id, timeout=timeout, poll=Poll(0.1, 1.0))
    where = f"cluster {ex.cluster!r}" + (f" (image {image!r})" if image else "")
    out = "".join(read_all(service, ex.id, "probe", "stdout"))
    probe = parse_probe(out)
    if probe is None:
        err = "".join(read_all(service, ex.id, "probe", "stderr")).strip()
        sr = ex.step("probe")
        why = sr.reason or sr.state.value
        raise PythonMismatch(
            f"function tasks need python3 with cloudpickle on {where}, and the probe of its "
            f"Python (execution {ex.id}) did not answer: {why}"
            + (f"; it said: {err[-500:]}" if err else "")
            + ". Check `python3` there (or STAX_PYTHON in the cluster's env)"
        )
    problem = probe_problem(probe, where)
    if problem is not None:
        raise PythonMismatch(problem)
    with _lock:
        _passed[key] = probe
        _where[key] = ex.cluster
    return probe


def probed_cluster(service: StaxService, cluster: str | None, image: str | None) -> str | None:
    """The name of the cluster a passed probe ran on (``cluster`` None: the service's default
    resolved); None when none passed."""
    with _lock:
        return _where.get((service.describe(), cluster, image))


def forget() -> None:
    """Probe again next time (tests; after changing a cluster's Python)."""
    with _lock:
        _passed.clear()
        _where.clear()

