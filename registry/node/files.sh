# registry node trust, files: /etc/hosts, and the files we share with their owner.

# ---- /etc/hosts ---------------------------------------------------------------

hosts_file() {
  # A symlinked /etc/hosts is edited at its target.
  readlink -f /etc/hosts 2>/dev/null || printf '/etc/hosts'
}

no_final_newline() { [ -s "$1" ] && [ -n "$(tail -c 1 "$1")" ]; }

# Writes $2 over $1 keeping mode and owner; unchanged bytes are not rewritten.
replace_keeping_attrs() {
  local new target tmp
  target=$1 new=$2
  if cmp -s "$new" "$target"; then return 0; fi
  tmp=$(mktemp "${target%/*}/.registry-node-trust.XXXXXX") || die "cannot write in ${target%/*}"
  cat "$new" >"$tmp"
  chmod "$(stat -c %a "$target")" "$tmp"
  chown "$(stat -c %u:%g "$target")" "$tmp"
  if ! commit "$tmp" "$target" 2>/dev/null; then
    # A bind-mounted file (kind and other container nodes) cannot be replaced
    # by rename (EBUSY): write it in place instead.
    rm -f "$tmp"
    cat "$new" >"$target" || die "cannot write $target"
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
  local eol noeol rc
  eol=""
  if head -n 1 "$2" | grep -q "$(printf '\r')\$"; then eol=$(printf '\r'); fi
  noeol=0
  if no_final_newline "$2"; then noeol=1; fi
  rc=0
  timeout "$STEP_TIMEOUT" awk -v mode="$1" -v name="$REG_NAME" -v ip="${REG_IP:-}" -v eol="$eol" \
    -v file_noeol="$noeol" -v begin_mark="$BEGIN_MARK" -v end_mark="$END_MARK" \
    -v disabled_prefix="$DISABLED_PREFIX" -v kept_suffix="$KEPT_SUFFIX" \
    "$HOSTS_AWK" "$2" || rc=$?
  [ "$rc" -eq 0 ] || filter_failed "$2" "$rc"
}

check_hosts() {
  local file
  file=$(hosts_file)
  [ -f "$file" ] || return 0
  filter_hosts delete "$file" >/dev/null
}

edit_hosts() {
  local file
  file=$(hosts_file)
  if [ ! -f "$file" ]; then
    [ "$1" = delete ] && return 0
    : >"$file"
  fi
  filter_hosts "$1" "$file" >"$WORK/hosts"
  replace_keeping_attrs "$file" "$WORK/hosts"
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
  local noeol rc
  noeol=0
  if no_final_newline "$2"; then noeol=1; fi
  rc=0
  timeout "$STEP_TIMEOUT" awk -v mode="$1" -v begin_mark="$BEGIN_MARK" -v end_mark="$END_MARK" \
    -v entry="$WORK/entry" -v file_noeol="$noeol" "$BLOCK_AWK" "$2" || rc=$?
  [ "$rc" -eq 0 ] || filter_failed "$2" "$rc"
}

has_block() { grep -qxF -e "$BEGIN_MARK" -e "$BEGIN_MARK noeol" "$1"; }

# remove_block FILE: takes our block out of FILE; removes FILE when create
# made it and nothing but our block is left. Returns 0 when FILE changed.
remove_block() {
  local file
  file=$1
  [ -f "$file" ] || return 1
  filter_block delete "$file" >"$WORK/unblocked"
  if recorded "created $file" && [ ! -s "$WORK/unblocked" ]; then
    rm -f "$file" || die "cannot remove $file"
    written
    return 0
  fi
  cmp -s "$WORK/unblocked" "$file" && return 1
  replace_keeping_attrs "$file" "$WORK/unblocked"
  return 0
}
