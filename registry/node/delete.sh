# registry node trust, delete: undo what create did, once the last owner goes.

# ---- delete -------------------------------------------------------------------

# The first certificate of a bundle file, as write_ca names it.
first_cert_sum() {
  awk '/-----BEGIN CERTIFICATE-----/ { inside = 1 } inside { print } /-----END CERTIFICATE-----/ { exit }' "$1" >"$WORK/first.crt"
  cert_sum "$WORK/first.crt"
}

# When the state folder is gone, the files whose names are ours alone are
# still found: our trust-store files, and the certs.d folder whose hosts.toml
# we wrote. A certs.d CA file holding the same CA as one of those is ours too.
undo_without_state() {
  local ca dir file
  find_trust_store
  : >"$WORK/ours"
  if [ -n "$STORE_DIR" ]; then
    for file in "$STORE_DIR/$CA_BASE-"????????????????.crt; do
      if [ -f "$file" ]; then cert_sum "$file" >>"$WORK/ours"; fi
    done
  fi
  for dir in /etc/containerd/certs.d /etc/docker/certs.d /etc/containers/certs.d; do
    if grep -q "^# Written by registry-node-trust for $ID;" "$dir/$ID/hosts.toml" 2>/dev/null && [ -f "$dir/$ID/ca.crt" ]; then
      first_cert_sum "$dir/$ID/ca.crt" >>"$WORK/ours"
    fi
  done
  for dir in /etc/containerd/certs.d /etc/docker/certs.d /etc/containers/certs.d; do
    ca="$dir/$ID/ca.crt"
    [ -f "$ca" ] || continue
    if grep -qxF "$(first_cert_sum "$ca")" "$WORK/ours"; then
      rm -f "$ca" "$dir/$ID/hosts.toml"
      rmdir "$dir/$ID" 2>/dev/null || true
    fi
  done
  if [ -n "$STORE_DIR" ]; then
    mkdir -p "$STATE"
    for file in "$STORE_DIR/$CA_BASE.crt" "$STORE_DIR/$CA_BASE-"????????????????.crt; do
      [ -f "$file" ] || continue
      removing_store_file "$file"
      rm -f "$file"
    done
    if owed refresh-remove; then refresh_trust_store remove; fi
  fi
  if [ -f "$K3S_REGISTRIES" ]; then remove_block "$K3S_REGISTRIES" || true; fi
  rm -f "$K3S_CA"
  rmdir "${K3S_CA%/*}" "${K3S_CA%/*/*}" 2>/dev/null || true
}

undo_all() {
  local dest entry
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
  while IFS= read -r entry; do
    case $entry in
      "file "*)
        dest=${entry#file }
        if is_store_file "$dest" && [ -e "$dest" ]; then removing_store_file "$dest"; fi
        # k3s forgets a CA only at its start, unless its containerd reads certs.d live.
        case $dest in /etc/rancher/k3s/*) [ -e "$dest" ] && [ ! -d "$K3S_CERTS_D" ] && owe restart-k3s ;; esac
        revert_file "$dest" || true ;;
      "block "*)
        if remove_block "${entry#block }" && [ ! -d "$K3S_CERTS_D" ]; then owe restart-k3s; fi ;;
      "dir "*) rmdir "${entry#dir }" 2>/dev/null || true ;;
    esac
    # "restart containerd" stays until the end: the restart below needs it.
    case $entry in "restart "*) ;; *) forget "$entry" ;; esac
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
    log "kept: still used by $(other_owners | awk '{ printf "%s%s (%s)", sep, $1, $2; sep = ", " }')"
    return 0
  fi
  undo_all
  log "removed"
}
