"""Fixtures of the SSH tests: the shared test login node (``sshd`` in tests/conftest.py), a
PRIVATE one for the tests that break it (``own_sshd``), and root's client key for both."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from .sshd import Client, Sshd

T = TypeVar("T")


@pytest.fixture(scope="module")
def own_sshd(sshd: Sshd) -> Iterator[Sshd]:
    """An sshd of this test module alone (own base, port and host key): the fault tests kill
    its connections, stop it and change its key without disturbing anyone else."""
    base = tempfile.mkdtemp(prefix="stax-sshd-test-")
    os.chmod(base, 0o755)
    own = Sshd(base).start()
    try:
        yield own
    finally:
        own.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def client(sshd: Sshd) -> Client:
    return sshd.client("root")


@pytest.fixture(scope="module")
def own_client(own_sshd: Sshd) -> Client:
    return own_sshd.client("root")


@pytest.fixture(params=["asyncssh", "openssh"])
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one test body in a fresh event loop (a connection lives in one loop)."""
    return asyncio.run(coro_fn())
