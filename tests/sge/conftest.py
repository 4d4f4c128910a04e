"""Fixtures of the engine tests on the project's real Grid Engine: ``stax_env`` with an ``sge``
cluster (all.q, 1 s polls), and the ``cluster`` / ``engine_factory`` fixtures that the engine's
own behaviour tests (``tests/engine``) take, set to that cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.engine.engine import Engine

from ..conftest import SGE_CLUSTER


@pytest.fixture
def stax_env(stax_env: Path, sge: str) -> Path:
    """The shared isolated environment, its clusters file extended by an ``sge`` cluster (the
    project's Grid Engine: skipped, or failed in CI, when it is not up)."""
    f = stax_env / "clusters.yaml"
    f.write_text(f.read_text() + SGE_CLUSTER)
    return stax_env


@pytest.fixture
def cluster(stax_env: Path) -> str:
    """The engine's behaviour tests, taken over from ``tests/engine``, run on Grid Engine."""
    return "sge"


@pytest.fixture
def engine_factory(stax_env: Path) -> Callable[..., Engine]:
    def make(**kw: Any) -> Engine:
        kw.setdefault("clusters", ClusterRegistry.load())
        kw.setdefault("store", stax_env / "state" / "stax.sqlite")
        return Engine(**kw)

    return make
