# registry node trust: makes a node resolve and trust the cluster's registry,
# and undoes exactly that. POSIX sh (dash, bash or busybox ash), run as root.
#
# The program is this folder's parts joined in order by registry/node_script.py:
# base (settings, logging, bounded steps, the lock), state (the manifest, backups,
# pending work, owners), files (/etc/hosts and shared files), trust (trust stores
# and runtimes), create, delete, main.
#
# It arrives on standard input; the command line sets its parameters, every
# value quoted (registry/node_script.py):
#   REG_ACTION         create or delete
#   REG_NAME REG_PORT  the name and port in image references (image-registry 5000)
#   REG_STACK          the stack that asks (organization/project/stack)
#   REG_ENTRY          its node entry (the `name` in registry:nodes)
#   REG_IP             the Service's clusterIP the name resolves to (create only)
#   REG_RUNTIME        auto | docker | containerd | crio | k3s (create only)
#   REG_CA             the CA certificates, one PEM bundle, newest first (create only):
#                      caGeneration N and N-1 during a rotation
#   STEP_TIMEOUT       seconds any one step may take
#   FAIL_AFTER         tests only: a step after which create stops with an error
#   KILL_AFTER_RENAME  tests only: create is killed right after that many renames
#   CREATE_STEPS       the steps of create, in order (registry/node_script.py owns them)
# HOSTS_AWK and BLOCK_AWK, set above this text, are hosts.awk and block.awk.
#
# What it owns, and how delete finds it again:
#   /etc/hosts         a block between "# BEGIN/END registry-node-trust <name>:<port>"
#                      lines; unmanaged lines mapping the name are commented out with
#                      a prefix that delete strips again.
#   registries.yaml    (k3s) a block between the same lines; the rest is the user's.
#   the trust store    one file per CA certificate, named by its fingerprint, so
#                      a rotation adds the new one before the old one goes.
#   every other file   listed in $STATE/manifest before it is written; a file that
#                      was there before is copied to $STATE/backup first and put back
#                      by delete. Directories created are listed and removed if empty.
#   $STATE/owners      one line per stack node entry that uses the endpoint: delete
#                      undoes the changes only when the last one goes.
#   $STATE/pending-*   work a run still owes (a refresh, a restart), written before
#                      the change that makes it necessary: a killed run is finished
#                      by the next one.
#
# Variables: globals are UPPER_CASE; a function's own are `local`, which dash,
# bash and busybox ash all have (POSIX leaves it out: shellcheck SC3043).

set -eu
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

ID="$REG_NAME:$REG_PORT"
TAG="registry-node-trust $ID"
BEGIN_MARK="# BEGIN $TAG"
END_MARK="# END $TAG"
DISABLED_PREFIX="# disabled by $TAG: "
KEPT_SUFFIX=" # kept by $TAG"
STATE_ROOT=/var/lib/registry-node-trust
STATE="$STATE_ROOT/${REG_NAME}_$REG_PORT"
MANIFEST="$STATE/manifest"
OWNERS="$STATE/owners"
OWNER="$REG_STACK $REG_ENTRY"
# Root's own folder on tmpfs: no other user can create, hold or replace the lock.
LOCK_DIR=/run/registry-node-trust
# Trust-store files: $CA_BASE-<16 hex of the certificate's sha256>.crt
# (earlier versions wrote one file, $CA_BASE.crt).
CA_BASE="registry-node-trust-$REG_NAME-$REG_PORT"
K3S_REGISTRIES=/etc/rancher/k3s/registries.yaml
K3S_CA="/etc/rancher/k3s/registry-node-trust/$ID/ca.crt"
WORK=""
RENAMES=0

log() { printf 'registry-node-trust %s: %s\n' "$ID" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() { if [ -n "$WORK" ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Every external step is bounded: a hung tool fails the run instead of hanging `pulumi up`.
run() {
  local rc
  rc=0
  timeout "$STEP_TIMEOUT" "$@" || rc=$?
  if [ "$rc" -eq 124 ]; then die "timed out after ${STEP_TIMEOUT}s: $*"; fi
  if [ "$rc" -ne 0 ]; then die "failed with status $rc: $*"; fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# Every change to a node file ends in written (after a rename, or an in-place
# write); tests kill the run right after the Nth one.
written() {
  RENAMES=$((RENAMES + 1))
  if [ "${KILL_AFTER_RENAME:-0}" -eq "$RENAMES" ]; then kill -9 $$; fi
}

commit() { mv -f "$1" "$2" && written; }

take_lock() {
  local file owner
  if [ -L "$LOCK_DIR" ] || { [ -e "$LOCK_DIR" ] && [ ! -d "$LOCK_DIR" ]; }; then
    die "$LOCK_DIR is not a directory; remove it"
  fi
  mkdir -m 700 "$LOCK_DIR" 2>/dev/null || [ -d "$LOCK_DIR" ] || die "cannot create $LOCK_DIR"
  owner=$(stat -c '%u %a' "$LOCK_DIR")
  case $owner in
    "0 700") ;;
    *) die "$LOCK_DIR must be root's alone (owner 0, mode 700), it is: owner ${owner% *}, mode ${owner#* }; remove it" ;;
  esac
  file="$LOCK_DIR/lock"
  if [ -L "$file" ] || { [ -e "$file" ] && [ ! -f "$file" ]; }; then
    die "$file is not a regular file; remove it"
  fi
  exec 9>>"$file"
  if have flock; then
    # Two runs on one node (two stacks, or a retry racing a slow run) take turns.
    flock -w "$STEP_TIMEOUT" 9 || die "another run still holds $file after ${STEP_TIMEOUT}s"
  fi
}
