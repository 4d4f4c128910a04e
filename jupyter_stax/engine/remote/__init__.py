"""Remote clusters over SSH: the connection layer under the SSH transport.

A cluster entry with a ``host`` is remote (see :class:`SSHTarget`)::

    faraway:
      scheduler: slurm
      host: alice@login.example.org     # [user@]host, or a Host alias of ~/.ssh/config
      port: 22                          # optional (else ~/.ssh/config, else 22)
      identity_file: ~/.ssh/id_ed25519  # optional (else the agent, ~/.ssh/config, default keys)
      ssh: asyncssh                     # or openssh: the system ssh with a ControlMaster
      known_hosts: ~/.ssh/known_hosts   # optional (else ~/.ssh/config's, else this)

:func:`open_connection` gives the ONE :class:`SSHConnection` of a target; its primitives are
what the transport needs, each ONE exec channel (one round trip, counted in ``stats.execs``):

- ``run(argv, stdin, timeout, cwd, env)`` -> :class:`RunResult` (rc, stdout, stderr): argv runs
  in the account's login shell (the site's PATH, SLURM_CONF, modules), each word quoted;
- ``write_files({path: (bytes, mode)})``: base64 here-documents in one ``sh`` script on stdin,
  each file written beside its target and renamed (atomic), parents made; no SFTP needed;
- ``read_files(paths, max_bytes)`` -> {path: bytes | None}: MANY small files (the start/exit
  records of every running step) in one command, as ONE tar stream (a fixed number of remote
  processes whatever the number of files);
- ``read_from(path, offset, limit)`` -> bytes | None: a log tail from a byte offset;
- ``mkdirs(paths, mode)``, ``remove(paths, recursive)``.

Design choices:

- Two clients behind one class: asyncssh by default (asyncio native, no subprocess per call,
  reads ``~/.ssh/config``: aliases, ProxyJump, certificates, the agent), the system OpenSSH for
  sites that need it (the only way to re-use a ControlMaster the user opened after MFA). The
  package imports asyncssh only when an asyncssh connection is opened.
- ONE connection per target, opened lazily and shared; channels on it are bounded by a
  semaphore below sshd's MaxSessions (default 10: more channels than that break the
  connection); keepalives every 15 s; a dropped connection is re-opened on the next call, with
  exponential backoff (1 s doubling to 30 s) after failed attempts, during which calls fail at
  once with the last (transient) error: a poll loop never hammers a login node that is down.
- A channel the server refuses (over MaxSessions: sshd frees a slot a moment after a channel
  closed) is opened again after a short wait: nothing ran, so this is safe even for ``run``.
  A command that times out closes its channel, so it gives its session slot back.
- ``stats`` counts exec channels (= round trips), connections, failed attempts and refused
  channels, and keeps ``down_since``/``last_error`` for a warning such as "faraway: ssh
  connection lost since 10:02; retrying".
- Errors (:mod:`.errors`) are one class per cause with a ``transient`` flag: refused, timeout,
  dropped connection are transient (the engine warns and retries); unknown or changed host key,
  refused authentication and a bad entry are configuration errors that say what to do.
- Every path and argument is data: quoted with :func:`shlex.quote`, scripts go on stdin to
  ``/bin/sh -s`` (no argument-length limit, same shell whatever the login shell), output is
  framed by markers (a chatty ~/.bashrc cannot corrupt it). Idempotent primitives (reads,
  writes, mkdir, rm) are retried once on a fresh connection when the connection dropped;
  ``run`` is not (``sbatch`` twice would be two jobs).
- Needed on the cluster: ``sh``, coreutils (``base64``, ``head``, ``tail``), ``tar``; nothing
  else. No password or passphrase is ever asked for or stored.

Limits: a login shell must be POSIX-like (sh, bash, zsh, ksh) for ``run``'s quoting (scripts do
not depend on it); ``read_files`` sends whole files and applies ``max_bytes`` locally (meant for
small records; tail logs with ``read_from``).
"""

from __future__ import annotations

from .base import RunResult, SSHConnection, Stats
from .errors import (
    SSHAuthRefused,
    SSHConfigError,
    SSHConnectionLost,
    SSHConnectionRefused,
    SSHError,
    SSHHostKeyChanged,
    SSHHostKeyUnknown,
    SSHRemoteError,
    SSHTimeout,
    SSHUnknownHost,
)
from .target import SSHTarget

__all__ = [
    "RunResult",
    "SSHAuthRefused",
    "SSHConfigError",
    "SSHConnection",
    "SSHConnectionLost",
    "SSHConnectionRefused",
    "SSHError",
    "SSHHostKeyChanged",
    "SSHHostKeyUnknown",
    "SSHRemoteError",
    "SSHTarget",
    "SSHTimeout",
    "SSHUnknownHost",
    "Stats",
    "open_connection",
]


def open_connection(target: SSHTarget, **kw: object) -> SSHConnection:
    """The connection object of ``target`` (nothing is contacted until the first call).
    Keyword arguments go to :class:`SSHConnection` (``backoff``, ``keepalive``, ``timeout``)."""
    if target.ssh == "openssh":
        from .openssh_client import OpenSSHConnection

        return OpenSSHConnection(target, **kw)  # type: ignore[arg-type]
    from .asyncssh_client import AsyncSSHConnection

    return AsyncSSHConnection(target, **kw)  # type: ignore[arg-type]
