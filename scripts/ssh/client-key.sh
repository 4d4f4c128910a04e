#!/usr/bin/env bash
# client-key.sh [LOCAL_USER] -- an ed25519 key pair of LOCAL_USER (default: the caller) that the
# remote account of start-sshd.sh accepts, and a known_hosts file with that sshd's host key, both
# in $SSHD_BASE/clients/LOCAL_USER (mode 700, owned by LOCAL_USER). Idempotent. The Jupyter side
# can be root or an unprivileged user: neither gets anything but an SSH key for the remote account.
# Prints:  export STAX_SSH_IDENTITY=... STAX_SSH_KNOWN_HOSTS=...
set -euo pipefail
BASE=${SSHD_BASE:-/tmp/stax-sshd}
RUSER=${STAX_SSH_USER:-stax-remote}
LUSER=${1:-$(id -un)}
die() { printf '[client-key] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it edits $RUSER's authorized_keys)"
getent passwd "$LUSER" >/dev/null || die "no local user $LUSER"
[ -s "$BASE/known_hosts" ] || die "no sshd under $BASE: run start-sshd.sh first"
RHOME=$(getent passwd "$RUSER" | cut -d: -f6)
DIR=$BASE/clients/$LUSER
install -d -m 755 "$BASE/clients"
install -d -m 700 -o "$LUSER" -g "$(id -gn "$LUSER")" "$DIR"
[ -s "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$LUSER@stax-test" -f "$DIR/id_ed25519"
cp "$BASE/known_hosts" "$DIR/known_hosts"
chown "$LUSER:" "$DIR/id_ed25519" "$DIR/id_ed25519.pub" "$DIR/known_hosts"
chmod 600 "$DIR/id_ed25519"
pub=$(cut -d' ' -f1,2 "$DIR/id_ed25519.pub")
grep -qF "$pub" "$RHOME/.ssh/authorized_keys" || echo "$pub $LUSER@stax-test" >>"$RHOME/.ssh/authorized_keys"
cat <<EOT
export STAX_SSH_IDENTITY=$DIR/id_ed25519
export STAX_SSH_KNOWN_HOSTS=$DIR/known_hosts
EOT
