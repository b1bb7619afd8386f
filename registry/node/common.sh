# registry node programs, common part: settings, logging, bounded steps, the
# lock, and the ownership of the state root. POSIX sh (dash, bash or busybox
# ash), run as root. The node-trust program (base.sh onwards) and the storage
# program (storage.sh) each start with it; each sets LOG_TAG, what its log
# lines start with.
#
# Variables: globals are UPPER_CASE; a function's own are `local`, which dash,
# bash and busybox ash all have (POSIX leaves it out: shellcheck SC3043).

set -eu
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# Root's own, as are all its folders: what is planted there would run as root.
STATE_ROOT=/var/lib/registry-node-trust
# Root's own folder on tmpfs: no other user can create, hold or replace the lock.
LOCK_DIR=/run/registry-node-trust
WORK=""
RENAMES=0

log() { printf '%s: %s\n' "$LOG_TAG" "$*" >&2; }
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

# own_folder DIR: DIR, where it exists, must be a folder (not a link) of
# root's that nobody else may write to: the program reads what it finds
# there (a manifest of files to put back, say) as instructions.
own_folder() {
  local mode owner
  if [ -L "$1" ] || { [ -e "$1" ] && [ ! -d "$1" ]; }; then
    die "$1 is not a folder (a link, say); it is not followed. Remove it and run again"
  fi
  [ -d "$1" ] || return 0
  owner=$(stat -c %u "$1")
  mode=$(stat -c %a "$1")
  # 022: group and others may write (the mode is octal, read so with a leading 0).
  if [ "$owner" != 0 ] || [ $((0$mode & 022)) -ne 0 ]; then
    die "$1 must be root's alone (owner 0, not writable by others), it is: owner $owner, mode $mode; someone else could plant what this program runs as root. Remove it, or make it root's (chown root: $1 && chmod go-w $1), and run again"
  fi
}

# make_own_folder DIR: own_folder, made (root's, mode 755) where it is missing.
make_own_folder() {
  own_folder "$1"
  if [ ! -d "$1" ]; then
    mkdir -m 755 "$1" 2>/dev/null || [ -d "$1" ] || die "cannot create $1"
    own_folder "$1"
  fi
}

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
