"""PSI/J executors shipped by jupyter-stax (PSI/J finds this file in the ``psij-descriptors``
namespace directory of every ``sys.path`` entry and loads ``cls`` from the same entry).

``sge``: Grid Engine (Son of Grid Engine, Univa/Altair Grid Engine), see
:mod:`jupyter_stax.psij_sge`. ``gridengine`` is a second descriptor rather than an alias:
PSI/J 0.9's ``aliases`` register under the main name only.

When two copies are on ``sys.path`` (a checkout on PYTHONPATH besides an installed jupyter-stax),
the first one registered wins and this one stays empty: PSI/J would otherwise log "already
registered" on every import.
"""

from packaging.version import Version
from psij.descriptor import Descriptor
from psij.job_executor import JobExecutor

_NAMES = ("sge", "gridengine")
_registered = getattr(JobExecutor, "_executors", {})

__PSI_J_EXECUTORS__ = [
    Descriptor(
        name=name,
        nice_name="Grid Engine",
        version=Version("0.1.0"),
        cls="jupyter_stax.psij_sge.executor.SgeJobExecutor",
    )
    for name in _NAMES
    if name not in _registered
]
