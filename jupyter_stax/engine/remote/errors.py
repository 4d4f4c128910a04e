"""What can go wrong on the way to a remote cluster, one class per cause a user can act on.

Every error names the host and says what to do. ``transient`` tells the engine whether to warn
and retry (the login node is down, refused, slow, or the connection dropped: a scheduler outage,
never a failed step) or to stop and report a configuration problem (host key, authentication,
a host name that does not exist, a bad cluster entry).

:func:`classify_openssh` maps the system ``ssh`` client's stderr (exit status 255) onto the same
classes, so both transports fail the same way.
"""

from __future__ import annotations

import re

from jupyter_stax.core.errors import StaxError


class SSHError(StaxError):
    """Base of the SSH errors. ``host`` is the target as the user wrote it."""

    http_status = 503
    transient = True

    def __init__(
        self, message: str, *, host: str = "", transient: bool | None = None
    ) -> None:
        super().__init__(message)
        self.host = host
        if transient is not None:
            self.transient = transient


class SSHConfigError(SSHError):
    """The cluster entry's SSH settings are wrong (nothing was contacted)."""

    http_status = 400
    transient = False


class SSHHostKeyUnknown(SSHError):
    """known_hosts has no key for the host: never accepted silently."""

    http_status = 502
    transient = False


class SSHHostKeyChanged(SSHError):
    """known_hosts has a different key for the host: a re-installed server or an attack."""

    http_status = 502
    transient = False


class SSHAuthRefused(SSHError):
    """The server refused every key (and the agent's)."""

    http_status = 502
    transient = False


class SSHUnknownHost(SSHError):
    """The host name does not resolve (a typo, or no network: then ``transient``)."""

    http_status = 502
    transient = False


class SSHConnectionRefused(SSHError):
    """Nothing listens on the port (sshd down or restarting)."""


class SSHTimeout(SSHError):
    """No answer in time (connecting, or a remote command that ran too long)."""


class SSHConnectionLost(SSHError):
    """The connection dropped (server restart, network cut, killed session)."""


class SSHRemoteError(SSHError):
    """A helper command on the remote failed (e.g. a directory that cannot be written)."""

    http_status = 502
    transient = False


def host_key_fix(host: str, port: int | None) -> str:
    """The one-line fix for a missing or changed host key."""
    p = f"-p {port} " if port and port != 22 else ""
    return (
        f"check the server's fingerprint with its administrators, then `ssh-keyscan {p}{host} "
        f">> ~/.ssh/known_hosts` (or run `ssh {p}{host}` once and answer yes)"
    )


_FP = re.compile(r"(SHA256:[A-Za-z0-9+/=]+)")

#: (pattern in ssh's stderr, error class, message) -- first match wins
_OPENSSH_TABLE: list[tuple[re.Pattern[str], type[SSHError], str]] = [
    (re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed"),
     SSHHostKeyChanged, "the host key of {host} has CHANGED since it was recorded in known_hosts"),
    (re.compile(r"No \S+ host key is known for|Host key verification failed"),
     SSHHostKeyUnknown, "the host key of {host} is not in known_hosts"),
    (re.compile(r"Permission denied \(|Too many authentication failures"),
     SSHAuthRefused, "authentication refused by {host}"),
    (re.compile(r"Could not resolve hostname|Name or service not known|No address associated"),
     SSHUnknownHost, "unknown host {host}: the name does not resolve"),
    (re.compile(r"Connection refused"),
     SSHConnectionRefused, "connection refused by {host}"),
    (re.compile(r"timed out|Connection timeout"),
     SSHTimeout, "no answer from {host} in time"),
    (re.compile(r"Connection closed|Connection reset|closed by remote host|Broken pipe|"
                r"Shared connection to .* closed|mux_client|kex_exchange_identification|"
                r"Network is unreachable|No route to host|lost connection|"
                r"Control socket connect"),
     SSHConnectionLost, "the connection to {host} was lost"),
]


def classify_openssh(
    stderr: str, host: str, port: int | None, destination: str | None = None
) -> SSHError | None:
    """The error that ssh's stderr (with exit status 255) describes, or None when it names no
    SSH problem (then 255 was the remote command's own exit status)."""
    dest = destination or host
    for pattern, cls, message in _OPENSSH_TABLE:
        if pattern.search(stderr):
            key_name = cls in (SSHHostKeyChanged, SSHHostKeyUnknown)
            text = message.format(host=known_hosts_name(host, port) if key_name else dest)
            if cls is SSHHostKeyChanged:
                fp = _FP.search(stderr)
                text += (f" (it now offers {fp.group(1)})" if fp else "") + (
                    f": if the change is expected, remove the old key with `ssh-keygen -R "
                    f"'{known_hosts_name(host, port)}'`, then " + host_key_fix(host, port)
                )
            elif cls is SSHHostKeyUnknown:
                text += ": " + host_key_fix(host, port)
            elif cls is SSHAuthRefused:
                text += ": " + AUTH_FIX
            elif cls is SSHUnknownHost:
                text += ": check the cluster's `host` (or its Host entry in ~/.ssh/config)"
            last = stderr.strip().splitlines()[-1:] or [""]
            if cls in (SSHConnectionRefused, SSHTimeout, SSHConnectionLost):
                text += f" ({last[0].strip()}); retrying"
            return cls(text, host=dest)
    return None


AUTH_FIX = (
    "check `host` (user@host), `identity_file`, that the key's public half is in the remote "
    "~/.ssh/authorized_keys, and for an encrypted key that it is loaded in ssh-agent (`ssh-add "
    "KEY`): no password or passphrase is ever asked or stored"
)


def known_hosts_name(host: str, port: int | None) -> str:
    """How known_hosts names ``host`` on ``port`` (``[host]:port`` off port 22)."""
    return f"[{host}]:{port}" if port and port != 22 else host
