# registry node trust, state: the manifest, backups, pending work, and owners.

# ---- the manifest -----------------------------------------------------------

# Errors here die explicitly: `set -e` does not apply inside a function called
# as an `if` condition (`if install_file ...`), and a change the manifest does
# not know of is a change delete cannot undo.
record() {
  mkdir -p "$STATE" && touch "$MANIFEST" || die "cannot write $MANIFEST"
  grep -qxF -- "$1" "$MANIFEST" || printf '%s\n' "$1" >>"$MANIFEST" || die "cannot write $MANIFEST"
}

recorded() { [ -f "$MANIFEST" ] && grep -qxF -- "$1" "$MANIFEST"; }

forget() {
  grep -vxF -- "$1" "$MANIFEST" >"$MANIFEST.new" || true
  commit "$MANIFEST.new" "$MANIFEST" || die "cannot write $MANIFEST"
}

owe() { mkdir -p "$STATE" && touch "$STATE/pending-$1" || die "cannot write $STATE/pending-$1"; }
owed() { [ -e "$STATE/pending-$1" ]; }
paid() { rm -f "$STATE/pending-$1"; }

# A run killed between making a temporary file next to its target and renaming
# it over the target leaves the temporary file behind; the next run, under the
# lock, removes those it may have left: our names only, plain files only, in
# the folders of what the manifest lists, of the hosts file and of the state.
sweep_temps() {
  local dir path
  {
    printf '%s\n' "$(dirname "$(hosts_file)")" /etc "$STATE_ROOT" "${STATE_ROOT%/*}"
    if [ -f "$MANIFEST" ]; then
      sed -n 's/^[a-z-]* //p' "$MANIFEST" | while IFS= read -r path; do printf '%s\n' "${path%/*}" "$path"; done
    fi
  } | sort -u | while IFS= read -r dir; do
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    for path in "$dir"/.registry-node-trust.?????? "$dir"/.registry-node-trust-probe.*; do
      if [ -f "$path" ] && [ ! -L "$path" ]; then rm -f -- "$path"; fi
    done
  done
}

backup_path() { printf '%s/backup/%s' "$STATE" "$(printf '%s' "$1" | tr / %)"; }

# A writable directory is proven by writing to it, not by `test -w`: root
# passes `test -w` on a read-only mount in some shells.
probe_writable() {
  local dir probe
  dir=$1
  while [ ! -d "$dir" ]; do dir=${dir%/*}; [ -n "$dir" ] || dir=/; done
  probe="$dir/.registry-node-trust-probe.$$"
  if ! (: >"$probe") 2>/dev/null; then
    die "cannot write to $dir (read-only?); nothing was changed"
  fi
  rm -f "$probe"
}

ensure_dir() {
  [ -d "$1" ] && return 0
  ensure_dir "${1%/*}"
  record "dir $1"
  mkdir "$1" || die "cannot create $1"
}

differs() { ! { [ -f "$2" ] && [ ! -L "$2" ] && cmp -s "$1" "$2"; }; }

# install_file SRC DEST: put SRC's bytes at DEST (mode 644) and own DEST.
# Returns 0 when DEST changed, 1 when it already held those bytes.
install_file() {
  local dest src tmp
  src=$1 dest=$2
  printf '%s %s\n' "$src" "$dest" >>"$WORK/desired" || die "cannot write $WORK/desired"
  ensure_dir "${dest%/*}"
  if ! recorded "file $dest"; then
    if [ -e "$dest" ] || [ -L "$dest" ]; then
      mkdir -p "$STATE/backup"
      cp -P -p "$dest" "$(backup_path "$dest")" || die "cannot back up $dest"
    fi
    record "file $dest"
  fi
  differs "$src" "$dest" || return 1
  tmp=$(mktemp "${dest%/*}/.registry-node-trust.XXXXXX") || die "cannot write in ${dest%/*}"
  if ! { cat "$src" >"$tmp" && chmod 644 "$tmp" && commit "$tmp" "$dest"; }; then
    rm -f "$tmp"
    die "cannot write $dest"
  fi
  return 0
}

# revert_file DEST: put back what was there before create, or remove DEST.
# Returns 0 when DEST changed.
revert_file() {
  local dest saved
  dest=$1
  saved=$(backup_path "$dest")
  if [ -e "$saved" ] || [ -L "$saved" ]; then
    if [ -L "$saved" ] || ! cmp -s "$saved" "$dest" 2>/dev/null; then
      rm -f "$dest"
      cp -P -p "$saved" "$dest" || die "cannot restore $dest"
      written
      rm -f "$saved"
      return 0
    fi
    rm -f "$saved"
    return 1
  fi
  if [ -e "$dest" ] || [ -L "$dest" ]; then
    rm -f "$dest" || die "cannot remove $dest"
    written
    return 0
  fi
  return 1
}

# Exit 0 when this run wants PATH as it is now (a file or block of $WORK/desired).
desired() { awk -v p="$1" '$2 == p { found = 1 } END { exit !found }' "$WORK/desired"; }

reverse_lines() { awk '{ line[NR] = $0 } END { for (i = NR; i > 0; i--) print line[i] }' "$@"; }

# ---- owners -----------------------------------------------------------------

# Sets CA_SUM, the fingerprint owners are compared by.
ca_fingerprint() { CA_SUM=$(sha256sum "$WORK/ca.crt" | cut -d ' ' -f 1); }

# One name leads to one registry: no other owner may use it on another port.
# Another stack may share it only for the same registry (same address and
# CA); a node entry of our own stack may differ (a renamed one, on its way out).
check_owners() {
  local ca entry file ip port stack
  for file in "$STATE_ROOT/$REG_NAME"_*/owners; do
    [ -f "$file" ] || continue
    port=${file%/owners}
    port=${port##*_}
    while read -r stack entry ip ca _; do
      [ -n "$stack" ] || continue
      if [ "$stack $entry" = "$OWNER" ] && [ "$port" = "$REG_PORT" ]; then continue; fi
      if [ "$port" != "$REG_PORT" ]; then
        die "$REG_NAME already names the registry on port $port of stack $stack (node entry $entry); one name cannot lead to two registries. Choose another registry:hostname, or destroy that stack first. Nothing was changed."
      fi
      [ "$stack" != "$REG_STACK" ] || continue
      if [ "$ip" != "$REG_IP" ] || [ "$ca" != "$CA_SUM" ]; then
        die "$ID is already set up for stack $stack (node entry $entry), with $([ "$ip" != "$REG_IP" ] && echo "address $ip" || echo "another CA"). Choose another registry:hostname, or destroy that stack first. Nothing was changed."
      fi
    done <"$file"
  done
}

# The lines of $OWNERS that are not ours, as they are.
other_owners() { if [ -f "$OWNERS" ]; then awk -v me="$OWNER" '$1 " " $2 != me' "$OWNERS"; fi; }

others_own() { other_owners | grep -q ''; }

# set_owner add|drop: our own line in $OWNERS, the others' kept as they are.
set_owner() {
  local new
  new="$OWNERS.new"
  other_owners >"$new" || die "cannot write $new"
  if [ "$1" = add ]; then printf '%s %s %s\n' "$OWNER" "$REG_IP" "$CA_SUM" >>"$new"; fi
  commit "$new" "$OWNERS" || die "cannot write $OWNERS"
}
