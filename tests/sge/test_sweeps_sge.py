"""Sweeps on the project's real Grid Engine, where a sweep is ONE array job (``qsub -t 1-N
-tc CAP``; the engine's sweep tests of ``tests/engine``, taken over with ``cluster`` = the
``sge`` cluster of ``conftest.py``; the packed, ``max_parallel`` and detached tests there are
parametrised over Slurm and Grid Engine)."""

from __future__ import annotations

from ..engine.test_sweeps import (  # noqa: F401
    test_grid_with_failures_then_retry_reruns_only_them,
    test_kill9_engine_mid_sweep_then_adoption_runs_each_instance_once,
)
