"""Where a remote cluster is and how to reach it: :class:`SSHTarget`, parsed from a cluster entry.

Only what the user wrote is kept; everything else (HostName, User, Port, IdentityFile, ProxyJump,
CertificateFile, UserKnownHostsFile of a ``Host`` alias) comes from ``~/.ssh/config`` when the
connection is opened, as OpenSSH would resolve it. A host or user with characters outside the
plain set is refused here, before anything runs locally or remotely.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import SSHConfigError

#: a DNS name, an IPv4 address, or a Host alias of ~/.ssh/config (no shell or ssh metacharacters,
#: no leading '-' that ssh would read as an option)
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_IPV6 = re.compile(r"^\[?[0-9A-Fa-f:.]+\]?$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")

Client = Literal["asyncssh", "openssh"]
_FIELDS = ("host", "port", "identity_file", "ssh", "known_hosts", "ssh_config", "max_sessions",
           "connect_timeout", "control_path")


@dataclass(frozen=True)
class SSHTarget:
    """One remote login node.

    ``host`` is ``[user@]host`` or a ``Host`` alias; ``port``/``identity_file``/``known_hosts``
    override ``~/.ssh/config`` when set; ``ssh`` picks the client (``asyncssh`` built in, or the
    system ``openssh`` with a ControlMaster, for sites whose login needs the user's own OpenSSH:
    MFA masters, Kerberos). ``max_sessions`` bounds the channels open at once on the one
    connection (keep it below sshd's MaxSessions, default 10). ``control_path`` (openssh) re-uses
    a master the user opened (e.g. after MFA) instead of starting our own.
    """

    host: str
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    ssh: Client = "asyncssh"
    known_hosts: str | None = None
    ssh_config: str | None = None
    max_sessions: int = 8
    connect_timeout: float = 20.0
    control_path: str | None = None

    @property
    def destination(self) -> str:
        """``user@host`` or ``host``, as the user wrote it."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @classmethod
    def parse(cls, spec: str, **kw: Any) -> SSHTarget:
        """``[user@]host`` plus optional fields; :class:`SSHConfigError` when something is off."""
        if not isinstance(spec, str) or not spec.strip():
            raise SSHConfigError("`host` must be [user@]host or a Host alias of ~/.ssh/config")
        spec = spec.strip()
        user, _, host = spec.rpartition("@")
        if not (_HOST.match(host) or (":" in host and _IPV6.match(host))):
            raise SSHConfigError(
                f"host {spec!r}: {host!r} is not a host name, address or ~/.ssh/config alias "
                "(letters, digits, '.', '-', '_' only)", host=spec
            )
        if user and not _USER.match(user):
            raise SSHConfigError(
                f"host {spec!r}: {user!r} is not a user name (letters, digits, '.', '-', '_' "
                "only)", host=spec
            )
        port = kw.pop("port", None)
        if port is not None:
            try:
                port = int(port)
            except (TypeError, ValueError):
                port = -1
            if not 0 < port < 65536:
                raise SSHConfigError(f"host {spec!r}: port must be 1..65535", host=spec)
        client: Client = kw.pop("ssh", None) or "asyncssh"
        if client not in ("asyncssh", "openssh"):
            raise SSHConfigError(
                f"host {spec!r}: `ssh` must be asyncssh or openssh, not {client!r}", host=spec
            )
        sessions = int(kw.pop("max_sessions", None) or 8)
        if sessions < 1:
            raise SSHConfigError(f"host {spec!r}: max_sessions must be >= 1", host=spec)
        paths = {
            k: os.path.expanduser(str(v)) if v else None
            for k in ("identity_file", "known_hosts", "ssh_config", "control_path")
            for v in [kw.pop(k, None)]
        }
        timeout = float(kw.pop("connect_timeout", None) or 20.0)
        if kw:
            raise SSHConfigError(f"host {spec!r}: unknown SSH settings {sorted(kw)}", host=spec)
        return cls(host=host, user=user or None, port=port, ssh=client, max_sessions=sessions,
                   connect_timeout=timeout, **paths)

    @classmethod
    def from_cluster(cls, entry: Mapping[str, Any] | object) -> SSHTarget | None:
        """The target of a cluster entry (a mapping or an object with these attributes), or None
        when it has no ``host`` (a local cluster)."""
        get = entry.get if isinstance(entry, Mapping) else lambda k: getattr(entry, k, None)
        host = get("host")
        if not host:
            return None
        fields = {k: get(k) for k in _FIELDS[1:] if get(k) is not None}
        return cls.parse(host, **fields)
