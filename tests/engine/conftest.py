from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.engine.engine import Engine

from ..conftest import SGE_CLUSTER

T = TypeVar("T")


def arun(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def cluster(request: pytest.FixtureRequest, stax_env: Path) -> str:
    """Every engine behaviour test runs on PSI/J's local executor AND the real Slurm."""
    if request.param == "slurm":
        request.getfixturevalue("slurm")
    return str(request.param)


def use_scheduler(request: pytest.FixtureRequest, name: str) -> str:
    """The project's live scheduler ``name`` (``slurm`` or ``sge``) for one test: its fixture
    (up, else skipped, or failed in CI) and, for Grid Engine, the cluster ``sge`` added to the
    test's clusters file (``stax_env`` has ``slurm``). Returns the cluster's name."""
    request.getfixturevalue(name)
    if name == "sge":
        clusters = request.getfixturevalue("stax_env") / "clusters.yaml"
        if "\n  sge:\n" not in clusters.read_text():
            clusters.write_text(clusters.read_text() + SGE_CLUSTER)
    return name


@pytest.fixture
def engine_factory(stax_env: Path) -> Callable[..., Engine]:
    def make(**kw: Any) -> Engine:
        kw.setdefault("clusters", ClusterRegistry.load())
        kw.setdefault("store", stax_env / "state" / "stax.sqlite")
        return Engine(**kw)

    return make
