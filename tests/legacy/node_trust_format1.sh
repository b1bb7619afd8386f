# The node script of state format 1, as released before owners were recorded
# (commit 688f976). Kept only so that tests/test_node_changes.py can set a node up
# the way that release did, and prove the current script takes it over.
# shellcheck shell=sh
# registry node trust: makes a node resolve and trust the cluster's registry,
# and undoes exactly that. POSIX sh (dash), run as root.
#
# Parameters, set above this text by registry/node_script.py, every value quoted:
#   REG_NAME REG_PORT  the name and port in image references (image-registry 5000)
#   REG_IP             the Service's clusterIP the name resolves to (create only)
#   REG_RUNTIME        auto | docker | containerd | crio | k3s (create only)
#   REG_CA             the CA certificate, PEM (create only)
#   STEP_TIMEOUT       seconds any one step may take
#
# What it owns, and how delete finds it again:
#   /etc/hosts         a block between "# BEGIN/END registry-node-trust <name>:<port>"
#                      lines; unmanaged lines mapping the name are commented out with
#                      a prefix that delete strips again.
#   every other file   listed in $STATE/manifest before it is written; a file that
#                      was there before is copied to $STATE/backup first and put back
#                      by delete. Directories created are listed and removed if empty.

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
LOCK_FILE=/run/lock/registry-node-trust.lock
CA_NAME="registry-node-trust-$REG_NAME-$REG_PORT.crt"
WORK=""

log() { printf 'registry-node-trust %s: %s\n' "$ID" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() { if [ -n "$WORK" ]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Every external step is bounded: a hung tool fails the run instead of hanging `pulumi up`.
run() {
  rc=0
  timeout "$STEP_TIMEOUT" "$@" || rc=$?
  if [ "$rc" -eq 124 ]; then die "timed out after ${STEP_TIMEOUT}s: $*"; fi
  if [ "$rc" -ne 0 ]; then die "failed with status $rc: $*"; fi
}

have() { command -v "$1" >/dev/null 2>&1; }

take_lock() {
  # Two runs on one node (two stacks, or a retry racing a slow run) take turns.
  mkdir -p "${LOCK_FILE%/*}"
  exec 9>>"$LOCK_FILE"
  if have flock; then
    flock -w "$STEP_TIMEOUT" 9 || die "another run still holds $LOCK_FILE after ${STEP_TIMEOUT}s"
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

# install_file SRC DEST: put SRC's bytes at DEST (mode 644) and own DEST.
# Returns 0 when DEST changed, 1 when it already held those bytes.
install_file() {
  src=$1 dest=$2
  printf '%s\n' "$dest" >>"$WORK/desired" || die "cannot write $WORK/desired"
  ensure_dir "${dest%/*}"
  if ! recorded "file $dest"; then
    if [ -e "$dest" ] || [ -L "$dest" ]; then
      mkdir -p "$STATE/backup"
      cp -P -p "$dest" "$(backup_path "$dest")" || die "cannot back up $dest"
    fi
    record "file $dest"
  fi
  if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest"; then
    return 1
  fi
  tmp=$(mktemp "${dest%/*}/.registry-node-trust.XXXXXX") || die "cannot write in ${dest%/*}"
  if ! { cat "$src" >"$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$dest"; }; then
    rm -f "$tmp"
    die "cannot write $dest"
  fi
  return 0
}

# revert_file DEST: put back what was there before create, or remove DEST.
# Returns 0 when DEST changed.
revert_file() {
  dest=$1
  saved=$(backup_path "$dest")
  if [ -e "$saved" ] || [ -L "$saved" ]; then
    if [ -L "$saved" ] || ! cmp -s "$saved" "$dest" 2>/dev/null; then
      rm -f "$dest"
      cp -P -p "$saved" "$dest" || die "cannot restore $dest"
      rm -f "$saved"
      return 0
    fi
    rm -f "$saved"
    return 1
  fi
  if [ -e "$dest" ] || [ -L "$dest" ]; then
    rm -f "$dest" || die "cannot remove $dest"
    return 0
  fi
  return 1
}

reverse_lines() { awk '{ line[NR] = $0 } END { for (i = NR; i > 0; i--) print line[i] }' "$@"; }

forget() {
  grep -vxF -- "$1" "$MANIFEST" >"$MANIFEST.new" || true
  mv -f "$MANIFEST.new" "$MANIFEST"
}

# ---- /etc/hosts ---------------------------------------------------------------

hosts_file() {
  # A symlinked /etc/hosts is edited at its target.
  readlink -f /etc/hosts 2>/dev/null || printf '/etc/hosts'
}

# Writes $2 over $1 keeping mode and owner; unchanged bytes are not rewritten.
replace_keeping_attrs() {
  target=$1 new=$2
  if cmp -s "$new" "$target"; then return 0; fi
  tmp=$(mktemp "${target%/*}/.hosts.registry-node-trust.XXXXXX") || die "cannot write in ${target%/*}"
  cat "$new" >"$tmp"
  chmod "$(stat -c %a "$target")" "$tmp"
  chown "$(stat -c %u:%g "$target")" "$tmp"
  if ! mv -f "$tmp" "$target" 2>/dev/null; then
    # A bind-mounted file (kind and other container nodes) cannot be replaced
    # by rename (EBUSY): write it in place instead.
    rm -f "$tmp"
    cat "$new" >"$target" || die "cannot write $target"
  fi
}

# The awk program reads the hosts file and prints it with our block (create)
# or without it (delete). Lines are compared without a trailing CR, and lines
# it does not touch are printed byte for byte.
HOSTS_AWK='
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
}'

# POSIX sh has no local variables: each function below names its own.
hosts_filter() {
  hf_mode=$1 hf_file=$2
  hf_eol=""
  if head -n 1 "$hf_file" | grep -q "$(printf '\r')\$"; then hf_eol=$(printf '\r'); fi
  hf_noeol=0
  if [ -s "$hf_file" ] && [ -n "$(tail -c 1 "$hf_file")" ]; then hf_noeol=1; fi
  timeout "$STEP_TIMEOUT" awk -v mode="$hf_mode" -v name="$REG_NAME" -v ip="${REG_IP:-}" -v eol="$hf_eol" \
    -v file_noeol="$hf_noeol" -v begin_mark="$BEGIN_MARK" -v end_mark="$END_MARK" \
    -v disabled_prefix="$DISABLED_PREFIX" -v kept_suffix="$KEPT_SUFFIX" \
    "$HOSTS_AWK" "$hf_file"
}

# filter_hosts MODE FILE: hosts_filter, or die saying why. A block cut short
# (BEGIN without END, awk's exit 3) is refused, not guessed at: the lines
# after it may be the user's.
filter_hosts() {
  fh_rc=0
  hosts_filter "$1" "$2" || fh_rc=$?
  case $fh_rc in
    0) ;;
    3) die "$2 has a '$BEGIN_MARK' line without its '$END_MARK' line; remove the broken block by hand, then run again" ;;
    124) die "timed out after ${STEP_TIMEOUT}s reading $2" ;;
    *) die "cannot read $2 (status $fh_rc)" ;;
  esac
}

check_hosts() {
  ch_file=$(hosts_file)
  [ -f "$ch_file" ] || return 0
  filter_hosts delete "$ch_file" >/dev/null
}

edit_hosts() {
  eh_mode=$1
  eh_file=$(hosts_file)
  [ -f "$eh_file" ] || { [ "$eh_mode" = delete ] && return 0; : >"$eh_file"; }
  filter_hosts "$eh_mode" "$eh_file" >"$WORK/hosts"
  replace_keeping_attrs "$eh_file" "$WORK/hosts"
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

# Sets STORE (debian, rhel or empty) and STORE_FILE, where our CA goes.
find_trust_store() {
  STORE="" STORE_FILE=""
  if have update-ca-certificates && [ -d /usr/local/share/ca-certificates ]; then
    STORE=debian STORE_FILE="/usr/local/share/ca-certificates/$CA_NAME"
  elif have update-ca-trust && [ -d /etc/pki/ca-trust/source/anchors ]; then
    STORE=rhel STORE_FILE="/etc/pki/ca-trust/source/anchors/$CA_NAME"
  fi
}

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
    rhel) run update-ca-trust extract ;;
  esac
}

# update-ca-certificates tells its hooks (the Java keystore's among them) of
# removals listed in ca-certificates.conf only, never of a local certificate
# that went away, and --fresh re-adds without removing. So our removal is
# passed on to them here, on stdin as update-ca-certificates itself does.
notify_ca_hooks() {
  hooks=/etc/ca-certificates/update.d
  [ -d "$hooks" ] || return 0
  for hook in "$hooks"/*; do
    [ -f "$hook" ] && [ -x "$hook" ] || continue
    printf '%s\n' "$1" >"$WORK/hook-input"
    rc=0
    timeout "$STEP_TIMEOUT" "$hook" <"$WORK/hook-input" >/dev/null 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then log "warning: $hook exited with status $rc while removing our CA"; fi
  done
}

# containerd reads certs.d only when the CRI registry config_path is set; the
# live config (defaults merged in) says, for 1.x and 2.x section names alike.
containerd_hosts_dir() {
  config=$(timeout "$STEP_TIMEOUT" containerd config dump 2>/dev/null) ||
    config=$(cat /etc/containerd/config.toml 2>/dev/null) || config=""
  printf '%s\n' "$config" | awk '
    /^[ \t]*\[/ {
      s = $0; gsub(/^[ \t]+|[ \t]+$/, "", s)
      inreg = (s == "[plugins.\"io.containerd.grpc.v1.cri\".registry]" || s == "[plugins.\"io.containerd.cri.v1.images\".registry]")
      next
    }
    inreg && /^[ \t]*config_path[ \t]*=/ {
      v = $0; sub(/^[^=]*=[ \t]*/, "", v); gsub(/^["\047]|["\047][ \t]*$/, "", v)
      split(v, dirs, ":"); print dirs[1]; exit
    }'
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
$BEGIN_MARK
configs:
  "$ID":
    tls:
      ca_file: "$1"
$END_MARK
EOF
}

# The file without our BEGIN..END lines (for files other than /etc/hosts).
remove_block() {
  awk -v b="$BEGIN_MARK" -v e="$END_MARK" '$0 == b { skip = 1 } !skip { print } $0 == e { skip = 0 }' "$1"
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
  check_hosts
  check_k3s
  probe_writable "$STATE_ROOT"
  probe_writable "$(hosts_file)"
  probe_writable /etc
  find_trust_store
  if [ -n "$STORE" ]; then probe_writable "${STORE_FILE%/*}"; fi
  mkdir -p "$STATE"
  : >"$WORK/desired"
  write_ca
}

step_hosts() { edit_hosts create; }

# Flags in $STATE make an interrupted run finish the job next time: a file
# already in place does not skip the refresh or restart it still needs.
step_trust_store() {
  if [ -z "$STORE" ]; then log "no system trust store found (update-ca-certificates or update-ca-trust); skipped"; return 0; fi
  if install_file "$WORK/ca.crt" "$STORE_FILE"; then touch "$STATE/trust-store-pending"; fi
  if [ -e "$STATE/trust-store-pending" ]; then
    refresh_trust_store add
    rm -f "$STATE/trust-store-pending"
    # Running daemons cached the old bundle; one that relies on it restarts below.
    touch "$STATE/trust-store-changed"
  fi
}

step_docker() {
  want_runtime docker || return 0
  # certs.d is read on every pull: no daemon.json edit, no restart.
  install_file "$WORK/ca.crt" "/etc/docker/certs.d/$ID/ca.crt" || true
}

step_containerd() {
  want_runtime containerd || return 0
  dir=$(containerd_hosts_dir)
  if [ -n "$dir" ]; then
    hosts_toml "$dir/$ID/ca.crt" >"$WORK/hosts.toml"
    install_file "$WORK/ca.crt" "$dir/$ID/ca.crt" || true
    install_file "$WORK/hosts.toml" "$dir/$ID/hosts.toml" || true
  else
    # No config_path: containerd only has the system store, which it caches.
    # We leave its config.toml alone (it may hold mirrors/configs, which
    # config_path cannot be mixed with) and restart it once; containers keep running.
    log "containerd has no registry config_path; trusting through the system store"
    record "restart containerd"
  fi
}

step_containers() {
  want_runtime crio || return 0
  install_file "$WORK/ca.crt" "/etc/containers/certs.d/$ID/ca.crt" || true
}

K3S_REGISTRIES=/etc/rancher/k3s/registries.yaml
K3S_CA="/etc/rancher/k3s/registry-node-trust/$ID/ca.crt"

# A registries.yaml of the user's that already has `configs:` would need a
# YAML merge; sh cannot do that safely, so it is refused before any change.
check_k3s() {
  want_runtime k3s || return 0
  file=$K3S_REGISTRIES
  if [ -f "$file" ] && ! recorded "file $file" && ! recorded "block $file" && grep -q '^configs:' "$file"; then
    die "$file already has a 'configs:' section; add \"$ID\" with tls.ca_file $K3S_CA to it by hand, or set this node's runtime to another value"
  fi
}

step_k3s() {
  want_runtime k3s || return 0
  file=$K3S_REGISTRIES
  changed=0
  if install_file "$WORK/ca.crt" "$K3S_CA"; then changed=1; fi
  k3s_registry_entry "$K3S_CA" >"$WORK/entry"
  if [ -f "$file" ] && ! recorded "file $file" && ! recorded "block $file"; then
    record "block $file"
  fi
  if recorded "block $file"; then
    remove_block "$file" >"$WORK/k3s"
    cat "$WORK/entry" >>"$WORK/k3s"
    if ! cmp -s "$WORK/k3s" "$file"; then replace_keeping_attrs "$file" "$WORK/k3s"; changed=1; fi
  elif install_file "$WORK/entry" "$file"; then
    changed=1
  fi
  printf '%s\n' "$file" >>"$WORK/desired"
  if [ "$changed" -eq 1 ]; then touch "$STATE/restart-k3s-pending"; fi
  record "restart k3s"
}

# What an earlier create installed but this one no longer wants (the runtime
# was forced, or containerd's config_path changed) is put back now.
step_converge() {
  grep '^file ' "$MANIFEST" >"$WORK/files" || true
  while IFS= read -r entry; do
    dest=${entry#file }
    if ! grep -qxF -- "$dest" "$WORK/desired"; then
      revert_file "$dest" || true
      forget "$entry"
    fi
  done <"$WORK/files"
  # Directories we made that nothing of ours is in any more, deepest first.
  grep '^dir ' "$MANIFEST" | reverse_lines >"$WORK/dirs" || true
  while IFS= read -r entry; do
    if rmdir "${entry#dir }" 2>/dev/null; then forget "$entry"; fi
  done <"$WORK/dirs"
}

step_restart() {
  if recorded "restart containerd" && [ -e "$STATE/trust-store-changed" ]; then
    restart_service containerd
  fi
  if [ -e "$STATE/restart-k3s-pending" ]; then
    restart_service "$(k3s_unit)"
    rm -f "$STATE/restart-k3s-pending"
  fi
  rm -f "$STATE/trust-store-changed"
}

# ---- delete -------------------------------------------------------------------

undo_all() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (got uid $(id -u))"
  edit_hosts delete
  [ -f "$MANIFEST" ] || { rmdir "$STATE_ROOT" 2>/dev/null || true; return 0; }
  find_trust_store
  # Newest first, so that directories are emptied before they are removed.
  reverse_lines "$MANIFEST" >"$WORK/undo"
  while IFS= read -r entry; do
    case $entry in
      "file "*)
        dest=${entry#file }
        if revert_file "$dest"; then
          if [ "$dest" = "$STORE_FILE" ]; then touch "$STATE/trust-store-removed"; fi
          case $dest in /etc/rancher/k3s/*) touch "$STATE/restart-k3s-pending" ;; esac
        fi ;;
      "block "*)
        dest=${entry#block }
        if [ -f "$dest" ]; then
          remove_block "$dest" >"$WORK/k3s"
          if ! cmp -s "$WORK/k3s" "$dest"; then
            replace_keeping_attrs "$dest" "$WORK/k3s"
            touch "$STATE/restart-k3s-pending"
          fi
        fi ;;
      "dir "*) rmdir "${entry#dir }" 2>/dev/null || true ;;
    esac
    # "restart containerd" stays until the end: the restart below needs it.
    case $entry in "restart "*) ;; *) forget "$entry" ;; esac
  done <"$WORK/undo"
  if [ -e "$STATE/trust-store-removed" ]; then
    refresh_trust_store remove
    # A daemon that trusted us through the cached system store forgets only on restart.
    if recorded "restart containerd"; then restart_service containerd; fi
    rm -f "$STATE/trust-store-removed"
  fi
  if [ -e "$STATE/restart-k3s-pending" ]; then
    restart_service "$(k3s_unit)"
    rm -f "$STATE/restart-k3s-pending"
  fi
  rm -rf "$STATE"
  rmdir "$STATE_ROOT" 2>/dev/null || true
}

begin() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/registry-node-trust.XXXXXX") || die "cannot make a temporary directory"
  take_lock
}
