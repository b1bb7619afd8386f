# registry storage: the registry's data folder on one node (storage: node),
# made the registry's on create, and removed on delete only when no one
# claims it any more and keepData is false. The program is common.sh and this
# part, joined by registry/node_script.py; like the node-trust program it
# arrives on standard input, its parameters on the command line:
#   STORAGE_ACTION  create or delete
#   STORAGE_PATH    the folder (registry:storagePath)
#   STORAGE_KEEP    true or false (registry:keepData): whether the last delete leaves it
#   STORAGE_CLAIM   who uses it: the stack and how it reaches the node
#                   ("org/project/stack ssh" or "... cluster")
#   STEP_TIMEOUT    seconds a step may wait (for the lock)
#
# The folder is uid 1000's (the registry's container user), so nothing root
# does in it follows a link, and root never changes a file in it: the marker
# that says the folder is the registry's is root's own, made with O_EXCL.
#
# Who claims the folder is kept in root's state, never in the folder itself:
# $STATE_ROOT/storage/<the path, / as %>, one line per claim. A folder's
# removal belongs to the folder: the stack's two ways of reaching a node each
# claim it, so switching between them (a new claim made before the old one is
# dropped) never removes it, and neither does anything that only moves the
# registry elsewhere (another path, another node: the old folder stays).

LOG_TAG="registry storage $STORAGE_PATH"
REGISTRY_UID=1000
MARKER="$STORAGE_PATH/.registry-storage-folder"
# What releases before this one named their marker. Their delete, which
# pulumi-command may still hold for a node, removes a folder that has it:
# create replaces it with MARKER, so that no older delete finds it.
OLD_MARKER="$STORAGE_PATH/.registry-storage"
CLAIMS_DIR="$STATE_ROOT/storage"
CLAIMS="$CLAIMS_DIR/$(printf '%s' "$STORAGE_PATH" | tr / %)"

# marker_ok FILE: FILE is absent, or a plain file with one link, of root's or
# of the registry's user. A hard link to another file (/etc/shadow, where
# fs.protected_hardlinks is off) or a symbolic one is refused, never followed.
marker_ok() {
  local found
  [ -e "$1" ] || [ -L "$1" ] || return 0
  if [ -L "$1" ] || [ ! -f "$1" ]; then
    die "$1 is not a plain file (a link, say); it is not followed. Remove it (rm $1) and run again"
  fi
  found=$(stat -c '%h %u' "$1")
  case $found in
    "1 0" | "1 $REGISTRY_UID") ;;
    *) die "$1 has $(echo "$found" | cut -d' ' -f1) links and owner $(echo "$found" | cut -d' ' -f2); it must be one file of its own, root's or uid $REGISTRY_UID's. Remove it (rm $1) and run again" ;;
  esac
}

claim() {
  local new
  make_own_folder "$STATE_ROOT"
  make_own_folder "$CLAIMS_DIR"
  if [ -L "$CLAIMS" ] || { [ -e "$CLAIMS" ] && [ ! -f "$CLAIMS" ]; }; then die "$CLAIMS is not a plain file; remove it"; fi
  if [ -f "$CLAIMS" ] && grep -qxF -- "$STORAGE_CLAIM" "$CLAIMS"; then return 0; fi
  new="$CLAIMS.new"
  { if [ -f "$CLAIMS" ]; then cat "$CLAIMS"; fi; printf '%s\n' "$STORAGE_CLAIM"; } >"$new" || die "cannot write $new"
  commit "$new" "$CLAIMS" || die "cannot write $CLAIMS"
}

# The claims other than ours, as they are.
other_claims() { if [ -f "$CLAIMS" ]; then grep -vxF -- "$STORAGE_CLAIM" "$CLAIMS" || true; fi; }

storage_create() {
  local p
  p=$STORAGE_PATH
  [ "$(id -u)" -eq 0 ] || die "must run as root (got uid $(id -u))"
  # Nobody else may swap the folder for a link between a check and a change.
  own_folder "${p%/*}"
  if [ -L "$p" ] || { [ -e "$p" ] && [ ! -d "$p" ]; }; then
    die "$p exists and is not a folder; choose another registry:storagePath"
  fi
  marker_ok "$MARKER"
  marker_ok "$OLD_MARKER"
  if [ -d "$p" ] && [ ! -e "$MARKER" ] && [ ! -e "$OLD_MARKER" ] && [ -n "$(ls -A "$p")" ]; then
    die "$p already holds files that are not the registry's; choose another registry:storagePath, or empty it"
  fi
  # Written down before the folder changes: a delete finds the claim even
  # when this run stops half-way.
  claim
  if [ ! -d "$p" ]; then
    # root's alone while it is made, so that nothing is planted in it meanwhile.
    mkdir -p "${p%/*}" && mkdir -m 700 "$p" || die "cannot create $p"
    chown -h 0:0 "$p"
  fi
  if [ ! -e "$MARKER" ]; then
    # O_EXCL (noclobber): a link planted where the marker goes fails the write.
    (set -C && : >"$MARKER") || die "cannot create $MARKER"
    rm -f -- "$OLD_MARKER"
  fi
  chown -h "$REGISTRY_UID:$REGISTRY_UID" "$p"
  chmod 700 "$p"
  log "ready for the registry (uid $REGISTRY_UID)"
}

storage_delete() {
  local p rest
  p=$STORAGE_PATH
  own_folder "$CLAIMS_DIR"
  rest=$(other_claims)
  if [ -f "$CLAIMS" ]; then
    if [ -n "$rest" ]; then
      printf '%s\n' "$rest" >"$CLAIMS.new" || die "cannot write $CLAIMS.new"
      commit "$CLAIMS.new" "$CLAIMS" || die "cannot write $CLAIMS"
      log "kept: still used by $(printf '%s\n' "$rest" | awk '{ printf "%s%s", sep, $0; sep = ", " }')"
      return 0
    fi
    rm -f -- "$CLAIMS"
    rmdir "$CLAIMS_DIR" 2>/dev/null || true
    rmdir "$STATE_ROOT" 2>/dev/null || true
  fi
  if [ "$STORAGE_KEEP" = true ]; then
    log "kept $p (registry:keepData true)"
  elif [ -f "$MARKER" ] || [ -f "$OLD_MARKER" ]; then
    rm -rf -- "$p"
    log "removed $p"
  else
    log "left $p, which is not the registry's"
  fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/registry-storage.XXXXXX") || die "cannot make a temporary directory"
take_lock
own_folder "$STATE_ROOT"
case $STORAGE_ACTION in
  create) storage_create ;;
  delete) storage_delete ;;
  *) die "STORAGE_ACTION must be create or delete, not '$STORAGE_ACTION'" ;;
esac
