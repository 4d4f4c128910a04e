"""A cluster with a ``host`` is remote: its fields, their validation, its work directory, and
the step records parsed from bytes (shared by the local and the SSH transport)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from jupyter_stax.core import jobscript as js
from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import Cluster


def make(**kw: Any) -> Cluster:
    return Cluster.model_validate({"name": "far", "scheduler": "slurm", **kw})


@pytest.mark.parametrize("host", ["login.example.org", "alice@login", "a_b.c-d@h1", "my-alias",
                                  "127.0.0.1", "svc$@host"])
def test_hosts_accepted(host: str) -> None:
    c = make(host=host, port=2222, identity_file="~/.ssh/k", ssh="openssh", known_hosts="/k")
    assert c.remote and c.host == host and c.port == 2222 and c.ssh == "openssh"


@pytest.mark.parametrize(("fields", "message"), [
    ({"host": "a;rm -rf ~"}, "no spaces, quotes or shell characters"),
    ({"host": "a b"}, "is not [user@]host"),
    ({"host": "$(id)"}, "is not [user@]host"),
    ({"host": "-oProxyCommand=x"}, "is not [user@]host"),
    ({"host": "al'ice@h"}, "is not [user@]host"),
    ({"host": "h", "port": 0}, "greater than or equal to 1"),
    ({"host": "h", "port": 70000}, "less than or equal to 65535"),
    ({"host": "h", "ssh": "putty"}, "'asyncssh' or 'openssh'"),
    ({"port": 22}, "only apply to a remote cluster"),
    ({"identity_file": "~/.ssh/k", "known_hosts": "/k"}, "identity_file, known_hosts only apply"),
    ({"host": "h", "work_dir": "a\nb"}, "single-line path"),
])
def test_bad_remote_entries(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as e:
        make(**fields)
    assert message in str(e.value)


def test_a_remote_workstation_is_a_remote_cluster_without_scheduler() -> None:
    c = make(host="alice@box", scheduler="local")  # steps are processes started over SSH
    assert c.remote and c.scheduler == "local"


def test_local_cluster_is_not_remote() -> None:
    assert not make().remote


@pytest.mark.parametrize(("work_dir", "expect"), [
    (None, "~/stax-runs"), ("/scratch/alice/runs", "/scratch/alice/runs"),
    ("~/x y", "~/x y"), ("runs", "runs"),
])
def test_remote_work_dir_is_a_path_on_the_cluster(work_dir: str | None, expect: str) -> None:
    reg = ClusterRegistry([make(host="h", work_dir=work_dir)], work_dir="/local/default")
    assert str(reg.work_dir(reg.get("far"))) == expect  # never expanded or defaulted here


@pytest.mark.parametrize(("data", "record"), [
    (None, None),
    (b"", None),
    (b"1 42 node1 1700000000.5", None),  # no newline yet: being written
    (b"1 42 node1 1700000000.5\n", js.StartRecord(1, "42", "node1", 1700000000.5)),
    (b"2 42 node1 1700000000,25\n", js.StartRecord(2, "42", "node1", 1700000000.25)),
    (b"1 42 node1\n", None),
    (b"x 42 node1 1.0\n", None),
])
def test_parse_start_record(data: bytes | None, record: js.StartRecord | None) -> None:
    assert js.parse_start_record(data) == record


@pytest.mark.parametrize(("data", "record"), [
    (None, None),
    (b"1 0 1700000001.0\n", js.ExitRecord(1, 0, 1700000001.0)),
    (b"3 137 5\n", js.ExitRecord(3, 137, 5.0)),
    (b"1 skipped 5\n", js.ExitRecord(1, None, 5.0)),
    (b"1 0 5", None),
    (b"1 zero 5\n", None),
    (b"1 0 5 extra\n", None),
])
def test_parse_exit_record(data: bytes | None, record: js.ExitRecord | None) -> None:
    assert js.parse_exit_record(data) == record


def test_file_readers_use_the_parsers(tmp_path: Path) -> None:
    (tmp_path / js.START_RECORD).write_bytes(b"1 7 n 2.0\n")
    (tmp_path / js.EXIT_RECORD).write_bytes(b"1 0 3.0")
    assert js.read_start_record(tmp_path) == js.StartRecord(1, "7", "n", 2.0)
    assert js.read_exit_record(tmp_path) is None
    assert js.read_start_record(tmp_path / "missing") is None
