"""SSHTarget parsing and the OpenSSH stderr classifier: table-driven (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_stax.engine.remote import (
    SSHAuthRefused,
    SSHConfigError,
    SSHConnectionLost,
    SSHConnectionRefused,
    SSHHostKeyChanged,
    SSHHostKeyUnknown,
    SSHTarget,
    SSHTimeout,
    SSHUnknownHost,
)
from jupyter_stax.engine.remote.errors import classify_openssh


@pytest.mark.parametrize(
    ("spec", "kw", "host", "user", "port"),
    [
        ("login.example.org", {}, "login.example.org", None, None),
        ("alice@login.example.org", {"port": "2222"}, "login.example.org", "alice", 2222),
        ("faraway", {}, "faraway", None, None),  # a Host alias of ~/.ssh/config
        ("a.b-c_d@10.0.0.1", {}, "10.0.0.1", "a.b-c_d", None),
        ("bob@::1", {}, "::1", "bob", None),
        ("  bob@host  ", {"port": 22}, "host", "bob", 22),
    ],
)
def test_parse(
    spec: str, kw: dict[str, Any], host: str, user: str | None, port: int | None
) -> None:
    t = SSHTarget.parse(spec, **kw)
    assert (t.host, t.user, t.port, t.ssh) == (host, user, port, "asyncssh")
    assert t.destination == (f"{user}@{host}" if user else host)


@pytest.mark.parametrize(
    ("spec", "kw", "says"),
    [
        ("host;rm -rf ~", {}, "not a host name"),
        ("$(reboot)", {}, "not a host name"),
        ("-oProxyCommand=evil", {}, "not a host name"),  # would be an ssh option
        ("a b", {}, "not a host name"),
        ("`id`@host", {}, "not a user name"),
        ("al ice@host", {}, "not a user name"),
        ("-l@host", {}, "not a user name"),
        ("", {}, "[user@]host"),
        ("host", {"port": 0}, "port must be"),
        ("host", {"port": "ssh"}, "port must be"),
        ("host", {"ssh": "putty"}, "asyncssh or openssh"),
        ("host", {"max_sessions": -1}, "max_sessions"),
        ("host", {"password": "x"}, "unknown SSH settings"),
    ],
)
def test_parse_refuses(spec: str, kw: dict[str, Any], says: str) -> None:
    with pytest.raises(SSHConfigError, match=says.replace("[", r"\[").replace("]", r"\]")) as e:
        SSHTarget.parse(spec, **kw)
    assert not e.value.transient


def test_from_cluster_entry() -> None:
    assert SSHTarget.from_cluster({"scheduler": "slurm"}) is None
    t = SSHTarget.from_cluster({"host": "alice@login", "port": 2200, "ssh": "openssh",
                                "identity_file": "~/.ssh/id_x", "queue": "debug"})
    assert t is not None and (t.user, t.port, t.ssh) == ("alice", 2200, "openssh")
    assert t.identity_file is not None and not t.identity_file.startswith("~")

    class Entry:  # an object with attributes (a pydantic Cluster with a host field)
        host = "login"
        port = None

    t2 = SSHTarget.from_cluster(Entry())
    assert t2 is not None and (t2.host, t2.port) == ("login", None)


CHANGED = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
The fingerprint for the ED25519 key sent by the remote host is
SHA256:abcDEF123+/xyz.
Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.
Host key verification failed.
"""


@pytest.mark.parametrize(
    ("stderr", "cls", "says"),
    [
        (CHANGED, SSHHostKeyChanged, "SHA256:abcDEF123+/xyz"),
        ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict "
         "checking.\nHost key verification failed.\n", SSHHostKeyUnknown, "ssh-keyscan -p 2222"),
        ("alice@127.0.0.1: Permission denied (publickey).\n", SSHAuthRefused, "authorized_keys"),
        ("ssh: Could not resolve hostname nowhere: Name or service not known\n", SSHUnknownHost,
         "does not resolve"),
        ("ssh: connect to host 127.0.0.1 port 1: Connection refused\n", SSHConnectionRefused,
         "retrying"),
        ("Connection timed out during banner exchange\n", SSHTimeout, "in time"),
        ("Shared connection to 127.0.0.1 closed.\n", SSHConnectionLost, "lost"),
        ("Connection closed by 127.0.0.1 port 2222\n", SSHConnectionLost, "lost"),
    ],
)
def test_classify_openssh(stderr: str, cls: type, says: str) -> None:
    e = classify_openssh(stderr, "127.0.0.1", 2222, "alice@127.0.0.1")
    assert type(e) is cls
    assert says in str(e)
    assert e.transient == (cls in (SSHConnectionRefused, SSHTimeout, SSHConnectionLost))


def test_classify_openssh_leaves_a_remote_255_alone() -> None:
    assert classify_openssh("my tool failed\n", "h", None) is None
