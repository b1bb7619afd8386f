# The node program as released before CA rotation (commit 09ae3ad): one trust-store file per
# endpoint, registry-node-trust-<name>-<port>.crt. tests/test_node_changes.py upgrades from it.
HOSTS_AWK='# registry node trust: /etc/hosts with our block (mode=create) or without it
# (mode=delete), read on stdin or from the file named, printed on stdout.
#
# Variables (awk -v): mode, name, ip, eol ("\r" for a CRLF file, else ""),
# file_noeol (1 when the file has no final newline), begin_mark, end_mark,
# disabled_prefix, kept_suffix. Exit status 3: a BEGIN line without its END.
#
# Lines are compared without a trailing CR; lines it does not touch are
# printed byte for byte. Unmanaged lines that map our name are commented out
# with disabled_prefix (and their other names kept on a line ending in
# kept_suffix); delete brings them back.
function bare(s) { sub(/\r$/, "", s); return s }
# Names are whole fields after the address: my-image-registry is not image-registry.
function maps_name(s,    n, f, k) {
  sub(/#.*/, "", s)
  n = split(s, f, " ")
  for (k = 2; k <= n; k++) if (tolower(f[k]) == name) return 1
  return 0
}
# The same line without our name, or "" when no other name is left.
function others(s,    n, f, k, rest) {
  sub(/#.*/, "", s)
  n = split(s, f, " ")
  rest = ""
  for (k = 2; k <= n; k++) if (tolower(f[k]) != name) rest = rest " " f[k]
  return rest == "" ? "" : f[1] rest
}
function emit(s) { out[++count] = s }
# noeol records what create added to a file that had no final newline:
# 1 = "\n", 2 = "\r\n" (a CRLF file), so that delete takes exactly that away.
function our_block() {
  emit(begin_mark (noeol == 1 ? " noeol" : noeol == 2 ? " noeol-crlf" : "") eol)
  emit(ip " " name eol)
  emit(end_mark eol)
}
BEGIN { count = 0; inblock = 0; placed = 0; noeol = 0; lastblockend = 0 }
{
  line = $0; b = bare(line)
  if (b == begin_mark || b == begin_mark " noeol" || b == begin_mark " noeol-crlf") {
    if (inblock) exit 3
    inblock = 1
    if (b == begin_mark " noeol") noeol = 1
    if (b == begin_mark " noeol-crlf") noeol = 2
    next
  }
  if (b == end_mark) {
    if (!inblock) next
    inblock = 0
    if (mode == "create" && !placed) { our_block(); placed = 1 }
    lastblockend = count
    next
  }
  if (inblock) next
  if (index(b, disabled_prefix) == 1) {
    if (mode == "delete") emit(substr(b, length(disabled_prefix) + 1) (line ~ /\r$/ ? "\r" : ""))
    else emit(line)
    next
  }
  if (length(b) > length(kept_suffix) && substr(b, length(b) - length(kept_suffix) + 1) == kept_suffix) {
    if (mode == "create") emit(line)
    next
  }
  if (mode == "create" && b !~ /^[ \t]*#/ && maps_name(b)) {
    cr = (line ~ /\r$/) ? "\r" : ""
    emit(disabled_prefix b cr)
    rest = others(b)
    if (rest != "") emit(rest kept_suffix cr)
    next
  }
  emit(line)
}
END {
  if (inblock) exit 3
  if (mode == "create" && !placed) {
    noeol = file_noeol
    if (noeol && eol == "\r" && out[count] !~ /\r$/) { out[count] = out[count] "\r"; noeol = 2 }
    our_block()
    lastblockend = count
  }
  # A missing final newline stays missing unless our block ends the file;
  # when delete takes away a block that ended it, the newline create had to
  # add goes too.
  final_newline = 1
  if (mode == "delete" && noeol && lastblockend == count && count > 0) {
    final_newline = 0
    if (noeol == 2) sub(/\r$/, "", out[count])
  } else if (file_noeol && lastblockend != count) {
    final_newline = 0
  }
  for (i = 1; i <= count; i++) {
    if (i == count && !final_newline) printf "%s", out[i]
    else printf "%s\n", out[i]
  }
}
'
BLOCK_AWK='# registry node trust: a file we share with its owner (k3s'"'"' registries.yaml),
# with our marked block (mode=create) or without it (mode=delete), read from
# the file named, printed on stdout. Everything outside the block is printed
# byte for byte, final newline or not.
#
# Variables (awk -v): mode, begin_mark, end_mark, entry (create: a file
# holding the block'"'"'s inner lines), file_noeol (1 when the file has no final
# newline). Exit status 3: a BEGIN line without its END, or two BEGIN lines.
#
# create replaces the block where it is, or appends it. Appended to a file
# without a final newline, it adds one and says so on its BEGIN line
# (" noeol"), so that delete takes exactly that newline away again.
BEGIN {
  count = 0; inblock = 0; found = 0; noeol = 0; at = 0
  if (mode == "create") while ((getline line < entry) > 0) inner[++inner_count] = line
}
$0 == begin_mark || $0 == begin_mark " noeol" {
  if (found) exit 3
  inblock = 1; found = 1; at = count
  if ($0 == begin_mark " noeol") noeol = 1
  next
}
$0 == end_mark && inblock { inblock = 0; next }
inblock { next }
{ out[++count] = $0 }
function add_block(    k) {
  lines[++n] = begin_mark (noeol ? " noeol" : "")
  for (k = 1; k <= inner_count; k++) lines[++n] = inner[k]
  lines[++n] = end_mark
}
END {
  if (inblock) exit 3
  if (mode == "create" && !found) { at = count; noeol = (count > 0 && file_noeol) }
  n = 0
  for (i = 1; i <= count; i++) {
    if (mode == "create" && i == at + 1) add_block()
    lines[++n] = out[i]
  }
  if (mode == "create" && at == count) add_block()
  # A block at the end ends the file with a newline (create), or gives the
  # file back its own last byte (delete); elsewhere, the file'"'"'s last line decides.
  if (found && at == count) last_bare = (mode == "delete" && noeol)
  else if (mode == "create" && at == count) last_bare = 0
  else last_bare = file_noeol
  for (i = 1; i <= n; i++) {
    if (i == n && last_bare) printf "%s", lines[i]
    else printf "%s\n", lines[i]
  }
}
'
# shellcheck shell=sh
# registry node trust: makes a node resolve and trust the cluster's registry,
# and undoes exactly that. POSIX sh (dash), run as root.
#
# It arrives on standard input; the command line sets its parameters, every
# value quoted (registry/node_script.py):
#   REG_ACTION         create or delete
#   REG_NAME REG_PORT  the name and port in image references (image-registry 5000)
#   REG_STACK          the stack that asks (organization/project/stack)
#   REG_ENTRY          its node entry (the `name` in registry:nodes)
#   REG_IP             the Service's clusterIP the name resolves to (create only)
#   REG_RUNTIME        auto | docker | containerd | crio | k3s (create only)
#   REG_CA             the CA certificate, PEM (create only)
#   STEP_TIMEOUT       seconds any one step may take
#   FAIL_AFTER         tests only: a step after which create stops with an error
#   KILL_AFTER_RENAME  tests only: create is killed right after that many renames
# HOSTS_AWK and BLOCK_AWK, set above this text, are registry/hosts.awk and block.awk.
#
# What it owns, and how delete finds it again:
#   /etc/hosts         a block between "# BEGIN/END registry-node-trust <name>:<port>"
#                      lines; unmanaged lines mapping the name are commented out with
#                      a prefix that delete strips again.
#   registries.yaml    (k3s) a block between the same lines; the rest is the user's.
#   every other file   listed in $STATE/manifest before it is written; a file that
#                      was there before is copied to $STATE/backup first and put back
#                      by delete. Directories created are listed and removed if empty.
#   $STATE/owners      one line per stack node entry that uses the endpoint: delete
#                      undoes the changes only when the last one goes.
#   $STATE/pending-*   work a run still owes (a refresh, a restart), written before
#                      the change that makes it necessary: a killed run is finished
#                      by the next one.
#
# Variables: globals are UPPER_CASE; POSIX sh has no `local`, so each function
# prefixes its own with its initials.

set -eu
umask 022
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# What a node holds, and what it means. Raising it replaces every node's
# command (old delete, then new create): raise it when an older delete could
# not undo what a newer create leaves, or the reverse.
# shellcheck disable=SC2034  # read by registry/node_script.py for the commands' triggers
STATE_FORMAT=2
CREATE_STEPS="step_prepare step_hosts step_trust_store step_docker step_containerd step_containers step_k3s step_converge step_restart step_verify step_own"

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
CA_NAME="registry-node-trust-$REG_NAME-$REG_PORT.crt"
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
  r_rc=0
  timeout "$STEP_TIMEOUT" "$@" || r_rc=$?
  if [ "$r_rc" -eq 124 ]; then die "timed out after ${STEP_TIMEOUT}s: $*"; fi
  if [ "$r_rc" -ne 0 ]; then die "failed with status $r_rc: $*"; fi
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
  if [ -L "$LOCK_DIR" ] || { [ -e "$LOCK_DIR" ] && [ ! -d "$LOCK_DIR" ]; }; then
    die "$LOCK_DIR is not a directory; remove it"
  fi
  mkdir -m 700 "$LOCK_DIR" 2>/dev/null || [ -d "$LOCK_DIR" ] || die "cannot create $LOCK_DIR"
  tl_owner=$(stat -c '%u %a' "$LOCK_DIR")
  case $tl_owner in
    "0 700") ;;
    *) die "$LOCK_DIR must be root's alone (owner 0, mode 700), it is: owner ${tl_owner% *}, mode ${tl_owner#* }; remove it" ;;
  esac
  tl_file="$LOCK_DIR/lock"
  if [ -L "$tl_file" ] || { [ -e "$tl_file" ] && [ ! -f "$tl_file" ]; }; then
    die "$tl_file is not a regular file; remove it"
  fi
  exec 9>>"$tl_file"
  if have flock; then
    # Two runs on one node (two stacks, or a retry racing a slow run) take turns.
    flock -w "$STEP_TIMEOUT" 9 || die "another run still holds $tl_file after ${STEP_TIMEOUT}s"
  fi
}

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

backup_path() { printf '%s/backup/%s' "$STATE" "$(printf '%s' "$1" | tr / %)"; }

# A writable directory is proven by writing to it, not by `test -w`: root
# passes `test -w` on a read-only mount in some shells.
probe_writable() {
  pw_dir=$1
  while [ ! -d "$pw_dir" ]; do pw_dir=${pw_dir%/*}; [ -n "$pw_dir" ] || pw_dir=/; done
  pw_probe="$pw_dir/.registry-node-trust-probe.$$"
  if ! (: >"$pw_probe") 2>/dev/null; then
    die "cannot write to $pw_dir (read-only?); nothing was changed"
  fi
  rm -f "$pw_probe"
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
  if_src=$1 if_dest=$2
  printf '%s %s\n' "$if_src" "$if_dest" >>"$WORK/desired" || die "cannot write $WORK/desired"
  ensure_dir "${if_dest%/*}"
  if ! recorded "file $if_dest"; then
    if [ -e "$if_dest" ] || [ -L "$if_dest" ]; then
      mkdir -p "$STATE/backup"
      cp -P -p "$if_dest" "$(backup_path "$if_dest")" || die "cannot back up $if_dest"
    fi
    record "file $if_dest"
  fi
  differs "$if_src" "$if_dest" || return 1
  if_tmp=$(mktemp "${if_dest%/*}/.registry-node-trust.XXXXXX") || die "cannot write in ${if_dest%/*}"
  if ! { cat "$if_src" >"$if_tmp" && chmod 644 "$if_tmp" && commit "$if_tmp" "$if_dest"; }; then
    rm -f "$if_tmp"
    die "cannot write $if_dest"
  fi
  return 0
}

# revert_file DEST: put back what was there before create, or remove DEST.
# Returns 0 when DEST changed.
revert_file() {
  rf_dest=$1
  rf_saved=$(backup_path "$rf_dest")
  if [ -e "$rf_saved" ] || [ -L "$rf_saved" ]; then
    if [ -L "$rf_saved" ] || ! cmp -s "$rf_saved" "$rf_dest" 2>/dev/null; then
      rm -f "$rf_dest"
      cp -P -p "$rf_saved" "$rf_dest" || die "cannot restore $rf_dest"
      written
      rm -f "$rf_saved"
      return 0
    fi
    rm -f "$rf_saved"
    return 1
  fi
  if [ -e "$rf_dest" ] || [ -L "$rf_dest" ]; then
    rm -f "$rf_dest" || die "cannot remove $rf_dest"
    written
    return 0
  fi
  return 1
}

reverse_lines() { awk '{ line[NR] = $0 } END { for (i = NR; i > 0; i--) print line[i] }' "$@"; }

# ---- owners -----------------------------------------------------------------

# Sets CA_SUM, the fingerprint owners are compared by.
ca_fingerprint() { CA_SUM=$(sha256sum "$WORK/ca.crt" | cut -d ' ' -f 1); }

# One name leads to one registry: no other owner may use it on another port.
# Another stack may share it only for the same registry (same address and
# CA); a node entry of our own stack may differ (a renamed one, on its way out).
check_owners() {
  for co_file in "$STATE_ROOT/$REG_NAME"_*/owners; do
    [ -f "$co_file" ] || continue
    co_port=${co_file%/owners}
    co_port=${co_port##*_}
    while read -r co_stack co_entry co_ip co_ca _; do
      [ -n "$co_stack" ] || continue
      if [ "$co_stack $co_entry" = "$OWNER" ] && [ "$co_port" = "$REG_PORT" ]; then continue; fi
      if [ "$co_port" != "$REG_PORT" ]; then
        die "$REG_NAME already names the registry on port $co_port of stack $co_stack (node entry $co_entry); one name cannot lead to two registries. Choose another registry:hostname, or destroy that stack first. Nothing was changed."
      fi
      [ "$co_stack" != "$REG_STACK" ] || continue
      if [ "$co_ip" != "$REG_IP" ] || [ "$co_ca" != "$CA_SUM" ]; then
        die "$ID is already set up for stack $co_stack (node entry $co_entry), with $([ "$co_ip" != "$REG_IP" ] && echo "address $co_ip" || echo "another CA"). Choose another registry:hostname, or destroy that stack first. Nothing was changed."
      fi
    done <"$co_file"
  done
}

others_own() { [ -f "$OWNERS" ] && awk -v me="$OWNER" '$1 " " $2 != me { found = 1 } END { exit !found }' "$OWNERS"; }

# set_owner add|drop: our own line in $OWNERS, the others' kept as they are.
set_owner() {
  so_new="$OWNERS.new"
  if [ -f "$OWNERS" ]; then
    awk -v me="$OWNER" '$1 " " $2 != me' "$OWNERS" >"$so_new" || die "cannot write $so_new"
  else
    : >"$so_new"
  fi
  if [ "$1" = add ]; then printf '%s %s %s\n' "$OWNER" "$REG_IP" "$CA_SUM" >>"$so_new"; fi
  commit "$so_new" "$OWNERS" || die "cannot write $OWNERS"
}

# ---- /etc/hosts ---------------------------------------------------------------

hosts_file() {
  # A symlinked /etc/hosts is edited at its target.
  readlink -f /etc/hosts 2>/dev/null || printf '/etc/hosts'
}

no_final_newline() { [ -s "$1" ] && [ -n "$(tail -c 1 "$1")" ]; }

# Writes $2 over $1 keeping mode and owner; unchanged bytes are not rewritten.
replace_keeping_attrs() {
  rk_target=$1 rk_new=$2
  if cmp -s "$rk_new" "$rk_target"; then return 0; fi
  rk_tmp=$(mktemp "${rk_target%/*}/.registry-node-trust.XXXXXX") || die "cannot write in ${rk_target%/*}"
  cat "$rk_new" >"$rk_tmp"
  chmod "$(stat -c %a "$rk_target")" "$rk_tmp"
  chown "$(stat -c %u:%g "$rk_target")" "$rk_tmp"
  if ! commit "$rk_tmp" "$rk_target" 2>/dev/null; then
    # A bind-mounted file (kind and other container nodes) cannot be replaced
    # by rename (EBUSY): write it in place instead.
    rm -f "$rk_tmp"
    cat "$rk_new" >"$rk_target" || die "cannot write $rk_target"
    written
  fi
}

# filter FILE AWK_EXIT_STATUS...: dies saying why an awk filter of FILE failed.
filter_failed() {
  case $2 in
    3) die "$1 has a '$BEGIN_MARK' line without its '$END_MARK' line, or two of them; remove the broken block by hand, then run again" ;;
    124) die "timed out after ${STEP_TIMEOUT}s reading $1" ;;
    *) die "cannot read $1 (status $2)" ;;
  esac
}

# filter_hosts MODE FILE: the hosts file with (create) or without (delete) our
# block, on stdout. A block cut short is refused, not guessed at: the lines
# after it may be the user's.
filter_hosts() {
  fh_eol=""
  if head -n 1 "$2" | grep -q "$(printf '\r')\$"; then fh_eol=$(printf '\r'); fi
  fh_noeol=0
  if no_final_newline "$2"; then fh_noeol=1; fi
  fh_rc=0
  timeout "$STEP_TIMEOUT" awk -v mode="$1" -v name="$REG_NAME" -v ip="${REG_IP:-}" -v eol="$fh_eol" \
    -v file_noeol="$fh_noeol" -v begin_mark="$BEGIN_MARK" -v end_mark="$END_MARK" \
    -v disabled_prefix="$DISABLED_PREFIX" -v kept_suffix="$KEPT_SUFFIX" \
    "$HOSTS_AWK" "$2" || fh_rc=$?
  [ "$fh_rc" -eq 0 ] || filter_failed "$2" "$fh_rc"
}

check_hosts() {
  ch_file=$(hosts_file)
  [ -f "$ch_file" ] || return 0
  filter_hosts delete "$ch_file" >/dev/null
}

edit_hosts() {
  eh_file=$(hosts_file)
  if [ ! -f "$eh_file" ]; then
    [ "$1" = delete ] && return 0
    : >"$eh_file"
  fi
  filter_hosts "$1" "$eh_file" >"$WORK/hosts"
  replace_keeping_attrs "$eh_file" "$WORK/hosts"
}

# The address the first active line of the hosts file gives our name; the
# resolver reads no further.
resolved_ip() {
  awk -v name="$REG_NAME" '
    { sub(/\r$/, ""); sub(/#.*/, "") }
    { for (k = 2; k <= NF; k++) if (tolower($k) == name) { print $1; exit } }' "$(hosts_file)"
}

# ---- files we share -----------------------------------------------------------

# filter_block MODE FILE: FILE with (create, $WORK/entry inside) or without
# our block, everything else byte for byte, on stdout.
filter_block() {
  fb_noeol=0
  if no_final_newline "$2"; then fb_noeol=1; fi
  fb_rc=0
  timeout "$STEP_TIMEOUT" awk -v mode="$1" -v begin_mark="$BEGIN_MARK" -v end_mark="$END_MARK" \
    -v entry="$WORK/entry" -v file_noeol="$fb_noeol" "$BLOCK_AWK" "$2" || fb_rc=$?
  [ "$fb_rc" -eq 0 ] || filter_failed "$2" "$fb_rc"
}

has_block() { grep -qxF -e "$BEGIN_MARK" -e "$BEGIN_MARK noeol" "$1"; }

# remove_block FILE: takes our block out of FILE; removes FILE when create
# made it and nothing but our block is left. Returns 0 when FILE changed.
remove_block() {
  rb_file=$1
  [ -f "$rb_file" ] || return 1
  filter_block delete "$rb_file" >"$WORK/unblocked"
  if recorded "created $rb_file" && [ ! -s "$WORK/unblocked" ]; then
    rm -f "$rb_file" || die "cannot remove $rb_file"
    written
    return 0
  fi
  cmp -s "$WORK/unblocked" "$rb_file" && return 1
  replace_keeping_attrs "$rb_file" "$WORK/unblocked"
  return 0
}

# ---- trust locations ----------------------------------------------------------

write_ca() { printf '%s\n' "$REG_CA" | sed '/^$/d' >"$WORK/ca.crt"; }

want_runtime() {
  if [ "$REG_RUNTIME" = auto ]; then
    case $1 in
      docker) have dockerd || [ -d /etc/docker ] ;;
      containerd) have containerd && ! have k3s ;;
      crio) have crio || have podman || have skopeo || [ -d /etc/containers ] ;;
      k3s) have k3s || [ -d /etc/rancher/k3s ] ;;
      *) return 1 ;;
    esac
  else
    [ "$REG_RUNTIME" = "$1" ]
  fi
}

# Sets STORE (debian, suse, arch, rhel or empty), STORE_FILE, where our CA
# goes, and BUNDLE, the file the store is compiled into.
find_trust_store() {
  STORE="" STORE_FILE="" BUNDLE=""
  if have update-ca-certificates && [ -d /etc/pki/trust/anchors ]; then
    STORE=suse STORE_FILE="/etc/pki/trust/anchors/$CA_NAME" BUNDLE=/var/lib/ca-certificates/ca-bundle.pem
  elif have update-ca-certificates && [ -d /usr/local/share/ca-certificates ]; then
    STORE=debian STORE_FILE="/usr/local/share/ca-certificates/$CA_NAME" BUNDLE=/etc/ssl/certs/ca-certificates.crt
  elif { have trust || have update-ca-trust; } && [ -d /etc/ca-certificates/trust-source/anchors ]; then
    STORE=arch STORE_FILE="/etc/ca-certificates/trust-source/anchors/$CA_NAME" BUNDLE=/etc/ssl/certs/ca-certificates.crt
  elif have update-ca-trust && [ -d /etc/pki/ca-trust/source/anchors ]; then
    STORE=rhel STORE_FILE="/etc/pki/ca-trust/source/anchors/$CA_NAME" BUNDLE=/etc/pki/tls/certs/ca-bundle.crt
  fi
}

STORES_LOOKED_AT="/usr/local/share/ca-certificates, /etc/pki/ca-trust/source/anchors, /etc/pki/trust/anchors, /etc/ca-certificates/trust-source/anchors"

refresh_trust_store() {
  case $STORE in
    debian)
      if [ "$1" = remove ]; then
        # --fresh: without it our symlink in /etc/ssl/certs is left dangling.
        run update-ca-certificates --fresh >/dev/null
        notify_ca_hooks "-/etc/ssl/certs/${CA_NAME%.crt}.pem"
      else
        run update-ca-certificates >/dev/null
      fi ;;
    suse) run update-ca-certificates ;;
    arch) if have update-ca-trust; then run update-ca-trust extract; else run trust extract-compat; fi ;;
    rhel) run update-ca-trust extract ;;
  esac
}

# update-ca-certificates tells its hooks (the Java keystore's among them) of
# removals listed in ca-certificates.conf only, never of a local certificate
# that went away, and --fresh re-adds without removing. So our removal is
# passed on to them here, on stdin as update-ca-certificates itself does.
notify_ca_hooks() {
  nh_hooks=/etc/ca-certificates/update.d
  [ -d "$nh_hooks" ] || return 0
  printf '%s\n' "$1" >"$WORK/hook-input"
  for nh_hook in "$nh_hooks"/*; do
    [ -f "$nh_hook" ] && [ -x "$nh_hook" ] || continue
    nh_rc=0
    timeout "$STEP_TIMEOUT" "$nh_hook" <"$WORK/hook-input" >/dev/null 2>&1 || nh_rc=$?
    if [ "$nh_rc" -ne 0 ]; then log "warning: $nh_hook exited with status $nh_rc while removing our CA"; fi
  done
}

# Exit 0 when BUNDLE holds our CA (compared by its base64 body).
bundle_has_ca() {
  [ -f "$BUNDLE" ] || return 1
  awk -v want="$(sed '/^-----/d' "$WORK/ca.crt" | tr -d '\r\n')" '
    /-----BEGIN CERTIFICATE-----/ { body = ""; inside = 1; next }
    /-----END CERTIFICATE-----/ { if (body == want) found = 1; inside = 0; next }
    inside { sub(/\r$/, ""); body = body $0 }
    END { exit !found }' "$BUNDLE"
}

# The CRI registry's config_path, first folder only, from TOML text on stdin.
# Plugin ids come quoted either way: containerd 1.x prints
# [plugins."io.containerd.grpc.v1.cri".registry], 2.x [plugins.'io.containerd.cri.v1.images'.registry].
CONFIG_PATH_AWK='
  /^[ \t]*\[/ {
    s = $0; gsub(/[ \t"\047]/, "", s)
    inreg = (s == "[plugins.io.containerd.grpc.v1.cri.registry]" || s == "[plugins.io.containerd.cri.v1.images.registry]")
    next
  }
  inreg && /^[ \t]*config_path[ \t]*=/ {
    v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]*(#.*)?$/, "", v); gsub(/^["\047]|["\047]$/, "", v)
    split(v, dirs, ":"); found = dirs[1]
  }
  END { print found }'

toml_version() { awk -F= '/^[ \t]*version[ \t]*=/ { gsub(/[ \t"]/, "", $2); print $2; exit }' "$@"; }

# The files containerd reads its config from: config.toml, then its imports
# (later ones win), globs expanded and relative paths taken from its folder.
containerd_config_files() {
  cf_main=/etc/containerd/config.toml
  [ -f "$cf_main" ] || return 0
  printf '%s\n' "$cf_main"
  awk '
    /^[ \t]*imports[ \t]*=/ { on = 1; sub(/^[^=]*=/, "") }
    on { text = text $0; if ($0 ~ /\]/) exit }
    END { gsub(/[][ \t"\047]/, "", text); n = split(text, parts, ",")
          for (k = 1; k <= n; k++) if (parts[k] != "") print parts[k] }' "$cf_main" |
    while IFS= read -r cf_pattern; do
      case $cf_pattern in /*) ;; *) cf_pattern="/etc/containerd/$cf_pattern" ;; esac
      for cf_file in $cf_pattern; do
        if [ -f "$cf_file" ]; then printf '%s\n' "$cf_file"; fi
      done
    done
}

# containerd reads certs.d only when the CRI registry config_path is set. The
# live config (defaults and imports merged in) says, where containerd can read
# its own file: a 1.x containerd given a version 3 file dumps its defaults
# instead, so a dump of another version than the file's is not believed.
containerd_hosts_dir() {
  chd_files=$(containerd_config_files)
  chd_dump=""
  if chd_dump=$(timeout "$STEP_TIMEOUT" containerd config dump 2>/dev/null); then
    chd_want=$(toml_version /etc/containerd/config.toml 2>/dev/null || true)
    chd_got=$(printf '%s\n' "$chd_dump" | toml_version)
    if [ -z "$chd_want" ] || [ "$chd_want" = "$chd_got" ]; then
      printf '%s\n' "$chd_dump" | awk "$CONFIG_PATH_AWK"
      return 0
    fi
  fi
  if [ -n "$chd_files" ]; then
    printf '%s\n' "$chd_files" | while IFS= read -r chd_file; do cat "$chd_file"; echo; done | awk "$CONFIG_PATH_AWK"
  fi
}

hosts_toml() {
  cat <<EOF
# Written by registry-node-trust for $ID; pulumi destroy removes it.
server = "https://$ID"

[host."https://$ID"]
  capabilities = ["pull", "resolve", "push"]
  ca = "$1"
EOF
}

k3s_registry_entry() {
  cat <<EOF
configs:
  "$ID":
    tls:
      ca_file: "$1"
EOF
}

restart_service() {
  if have systemctl; then run systemctl restart "$1"
  elif have rc-service; then run rc-service "$1" restart
  else log "restart $1 by hand: neither systemctl nor rc-service is here"
  fi
}

k3s_unit() { if have systemctl && systemctl cat k3s-agent >/dev/null 2>&1; then echo k3s-agent; else echo k3s; fi; }

# ---- create -------------------------------------------------------------------

# Everything that can refuse the run does so here, before any change.
step_prepare() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (got uid $(id -u))"
  : >"$WORK/desired"
  write_ca
  ca_fingerprint
  check_owners
  check_hosts
  check_k3s
  find_trust_store
  CONTAINERD_DIR=""
  if want_runtime containerd; then CONTAINERD_DIR=$(containerd_hosts_dir); fi
  if want_runtime containerd && [ -z "$CONTAINERD_DIR" ] && [ -z "$STORE" ]; then
    die "containerd here has no registry config_path, so it trusts only the system store, and no system store was found (looked for $STORES_LOOKED_AT). Set config_path in containerd's config, or install ca-certificates. Nothing was changed."
  fi
  probe_writable "$STATE_ROOT"
  probe_writable "$(hosts_file)"
  probe_writable /etc
  if [ -n "$STORE" ]; then probe_writable "${STORE_FILE%/*}"; fi
  mkdir -p "$STATE"
  # An older format's state (before owners were recorded) is taken over.
  if [ -f "$MANIFEST" ] && [ ! -f "$OWNERS" ]; then log "taking over the state of an earlier version"; fi
}

step_hosts() { edit_hosts create; }

# What is owed is written down before the change that owes it: a run killed
# in between is finished by the next one.
step_trust_store() {
  if [ -z "$STORE" ]; then log "no system trust store found ($STORES_LOOKED_AT); skipped"; return 0; fi
  if differs "$WORK/ca.crt" "$STORE_FILE"; then
    owe refresh
    if [ -z "$CONTAINERD_DIR" ] && want_runtime containerd; then owe restart-containerd; fi
    if recorded "file $STORE_FILE" && [ -f "$STORE_FILE" ]; then
      # Another CA: stores derived from the bundle (Debian's Java keystore)
      # only drop the old one when told it went away.
      owe refresh-remove
      rm -f "$STORE_FILE" || die "cannot remove $STORE_FILE"
      written
    fi
  fi
  if owed refresh-remove; then
    refresh_trust_store remove
    paid refresh-remove
  fi
  install_file "$WORK/ca.crt" "$STORE_FILE" || true
  if owed refresh; then
    refresh_trust_store add
    paid refresh
  fi
}

step_docker() {
  want_runtime docker || return 0
  # certs.d is read on every pull: no daemon.json edit, no restart.
  install_file "$WORK/ca.crt" "/etc/docker/certs.d/$ID/ca.crt" || true
}

step_containerd() {
  want_runtime containerd || return 0
  if [ -n "$CONTAINERD_DIR" ]; then
    hosts_toml "$CONTAINERD_DIR/$ID/ca.crt" >"$WORK/hosts.toml"
    install_file "$WORK/ca.crt" "$CONTAINERD_DIR/$ID/ca.crt" || true
    install_file "$WORK/hosts.toml" "$CONTAINERD_DIR/$ID/hosts.toml" || true
  else
    # No config_path: containerd only has the system store, which it caches.
    # We leave its config.toml alone (it may hold mirrors/configs, which
    # config_path cannot be mixed with) and restart it once; containers keep running.
    log "containerd has no registry config_path; trusting through the system store"
    if ! recorded "restart containerd"; then owe restart-containerd; fi
    record "restart containerd"
  fi
}

step_containers() {
  want_runtime crio || return 0
  install_file "$WORK/ca.crt" "/etc/containers/certs.d/$ID/ca.crt" || true
}

# A registries.yaml that already has `configs:` outside our block would need
# a YAML merge; sh cannot do that safely, so it is refused before any change.
check_k3s() {
  want_runtime k3s || return 0
  [ -f "$K3S_REGISTRIES" ] || return 0
  filter_block delete "$K3S_REGISTRIES" >"$WORK/k3s-theirs"
  if grep -q '^configs:' "$WORK/k3s-theirs"; then
    die "$K3S_REGISTRIES already has a 'configs:' section; add \"$ID\" with tls.ca_file $K3S_CA to it by hand, or set this node's runtime to another value. Nothing was changed."
  fi
}

step_k3s() {
  want_runtime k3s || return 0
  k3s_registry_entry "$K3S_CA" >"$WORK/entry"
  if differs "$WORK/ca.crt" "$K3S_CA"; then owe restart-k3s; fi
  install_file "$WORK/ca.crt" "$K3S_CA" || true
  if [ ! -f "$K3S_REGISTRIES" ]; then
    record "created $K3S_REGISTRIES"
    ensure_dir "${K3S_REGISTRIES%/*}"
    : >"$K3S_REGISTRIES" || die "cannot write $K3S_REGISTRIES"
  fi
  record "block $K3S_REGISTRIES"
  printf 'block %s\n' "$K3S_REGISTRIES" >>"$WORK/desired"
  filter_block create "$K3S_REGISTRIES" >"$WORK/k3s"
  if ! cmp -s "$WORK/k3s" "$K3S_REGISTRIES"; then
    owe restart-k3s
    replace_keeping_attrs "$K3S_REGISTRIES" "$WORK/k3s"
  fi
  record "restart k3s"
}

# What an earlier create installed but this one no longer wants (the runtime
# was forced, or containerd's config_path changed) is put back now.
step_converge() {
  grep -e '^file ' -e '^block ' "$MANIFEST" >"$WORK/owned" 2>/dev/null || true
  while IFS= read -r sc_entry; do
    sc_path=${sc_entry#* }
    if ! awk -v p="$sc_path" '$2 == p { found = 1 } END { exit !found }' "$WORK/desired"; then
      case $sc_entry in
        "file "*) revert_file "$sc_path" || true ;;
        "block "*) if remove_block "$sc_path"; then owe restart-k3s; fi; forget "created $sc_path" ;;
      esac
      forget "$sc_entry"
    fi
  done <"$WORK/owned"
  # Directories we made that nothing of ours is in any more, deepest first.
  grep '^dir ' "$MANIFEST" | reverse_lines >"$WORK/dirs" || true
  while IFS= read -r sc_entry; do
    if rmdir "${sc_entry#dir }" 2>/dev/null; then forget "$sc_entry"; fi
  done <"$WORK/dirs"
}

step_restart() {
  if owed restart-containerd; then
    restart_service containerd
    paid restart-containerd
  fi
  if owed restart-k3s; then
    restart_service "$(k3s_unit)"
    paid restart-k3s
  fi
}

# Success means the node resolves and trusts the registry now, not that
# every step ran.
step_verify() {
  sv_ip=$(resolved_ip)
  [ "$sv_ip" = "$REG_IP" ] || die "after create, $REG_NAME resolves to '${sv_ip:-nothing}' here, not $REG_IP"
  while read -r sv_src sv_dest; do
    case $sv_src in block) has_block "$sv_dest" || die "after create, $sv_dest lacks our block"; continue ;; esac
    cmp -s "$sv_src" "$sv_dest" || die "after create, $sv_dest does not hold what it should"
  done <"$WORK/desired"
  if [ -n "$STORE" ] && ! bundle_has_ca; then die "after create, $BUNDLE does not hold the registry's CA"; fi
  for sv_owed in "$STATE"/pending-*; do
    [ -e "$sv_owed" ] && die "after create, still owed: ${sv_owed##*/pending-}"
  done
  return 0
}

step_own() { set_owner add; }

# ---- delete -------------------------------------------------------------------

# When the state folder is gone, the files whose names are ours alone are
# still found: our trust-store file, and certs.d folders whose hosts.toml we wrote.
undo_without_state() {
  find_trust_store
  for uw_dir in /etc/containerd/certs.d /etc/docker/certs.d /etc/containers/certs.d; do
    uw_ca="$uw_dir/$ID/ca.crt"
    [ -f "$uw_ca" ] || continue
    if { [ -n "$STORE_FILE" ] && cmp -s "$uw_ca" "$STORE_FILE"; } || grep -q "^# Written by registry-node-trust for $ID;" "$uw_dir/$ID/hosts.toml" 2>/dev/null; then
      rm -f "$uw_ca" "$uw_dir/$ID/hosts.toml"
      rmdir "$uw_dir/$ID" 2>/dev/null || true
    fi
  done
  if [ -n "$STORE_FILE" ] && [ -f "$STORE_FILE" ]; then
    rm -f "$STORE_FILE"
    refresh_trust_store remove
  fi
  if [ -f "$K3S_REGISTRIES" ]; then remove_block "$K3S_REGISTRIES" || true; fi
  rm -f "$K3S_CA"
  rmdir "${K3S_CA%/*}" "${K3S_CA%/*/*}" 2>/dev/null || true
}

undo_all() {
  edit_hosts delete
  if [ ! -f "$MANIFEST" ]; then
    undo_without_state
    rm -rf "$STATE"
    rmdir "$STATE_ROOT" 2>/dev/null || true
    return 0
  fi
  find_trust_store
  # Newest first, so that directories are emptied before they are removed.
  reverse_lines "$MANIFEST" >"$WORK/undo"
  while IFS= read -r ua_entry; do
    case $ua_entry in
      "file "*)
        ua_dest=${ua_entry#file }
        if [ "$ua_dest" = "$STORE_FILE" ] && [ -e "$ua_dest" ]; then owe refresh-remove; fi
        case $ua_dest in /etc/rancher/k3s/*) [ -e "$ua_dest" ] && owe restart-k3s ;; esac
        revert_file "$ua_dest" || true ;;
      "block "*)
        if remove_block "${ua_entry#block }"; then owe restart-k3s; fi ;;
      "dir "*) rmdir "${ua_entry#dir }" 2>/dev/null || true ;;
    esac
    # "restart containerd" stays until the end: the restart below needs it.
    case $ua_entry in "restart "*) ;; *) forget "$ua_entry" ;; esac
  done <"$WORK/undo"
  if owed refresh-remove; then
    refresh_trust_store remove
    # A daemon that trusted us through the cached system store forgets only on restart.
    if recorded "restart containerd"; then restart_service containerd; fi
    paid refresh-remove
  fi
  if owed restart-k3s; then
    restart_service "$(k3s_unit)"
    paid restart-k3s
  fi
  rm -rf "$STATE"
  rmdir "$STATE_ROOT" 2>/dev/null || true
}

run_delete() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (got uid $(id -u))"
  if others_own; then
    # Another node entry or stack still uses the endpoint: only our claim goes.
    set_owner drop
    log "kept: still used by $(awk -v me="$OWNER" '$1 " " $2 != me { printf "%s%s (%s)", sep, $1, $2; sep = ", " }' "$OWNERS")"
    return 0
  fi
  undo_all
  log "removed"
}

run_create() {
  for rc_step in $CREATE_STEPS; do
    "$rc_step"
    if [ "${FAIL_AFTER:-}" = "$rc_step" ]; then die "injected failure after $rc_step"; fi
  done
  log "trusted and resolvable as $ID -> $REG_IP"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/registry-node-trust.XXXXXX") || die "cannot make a temporary directory"
take_lock
case $REG_ACTION in
  create) run_create ;;
  delete) run_delete ;;
  *) die "REG_ACTION must be create or delete, not '$REG_ACTION'" ;;
esac
