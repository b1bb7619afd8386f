# registry node trust, create: the steps of CREATE_STEPS, in order.

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
  # The system store makes every TLS client of the node trust our CA, for any name
  # it signs: used only where a runtime trusts nothing else (containerd without
  # config_path), or where no runtime was found to trust it in a place of its own.
  STORE_NEEDED=""
  if { want_runtime containerd && [ -z "$CONTAINERD_DIR" ]; } ||
    ! { want_runtime containerd || want_runtime docker || want_runtime crio || want_runtime k3s; }; then
    STORE_NEEDED=1
  fi
  probe_writable "$STATE_ROOT"
  probe_writable "$(hosts_file)"
  probe_writable /etc
  if [ -n "$STORE" ]; then probe_writable "$STORE_DIR"; fi
  mkdir -p "$STATE"
  # An older format's state (before owners were recorded) is taken over.
  if [ -f "$MANIFEST" ] && [ ! -f "$OWNERS" ]; then log "taking over the state of an earlier version"; fi
}

step_hosts() { edit_hosts create; }

# What is owed is written down before the change that owes it: a run killed
# in between is finished by the next one.
step_trust_store() {
  local entry file path sum
  if [ -z "$STORE" ]; then log "no system trust store found ($STORES_LOOKED_AT); skipped"; return 0; fi
  # New certificates first: at no moment does the node trust neither the
  # CA that signed the serving certificate nor the one that will.
  if [ -n "$STORE_NEEDED" ]; then cp "$WORK/cert-sums" "$WORK/store-sums"; else : >"$WORK/store-sums"; fi
  while read -r sum; do
    file=$(store_file "$sum")
    if differs "$WORK/certs/$sum.crt" "$file"; then
      owe refresh
      if [ -z "$CONTAINERD_DIR" ] && want_runtime containerd; then owe restart-containerd; fi
    fi
    install_file "$WORK/certs/$sum.crt" "$file" || true
  done <"$WORK/store-sums"
  if owed refresh; then
    refresh_trust_store add
    paid refresh
  fi
  # Then the certificates no longer in the bundle (rotated out, or an earlier
  # version's single file), and all of them where the store is no longer
  # needed. Stores derived from the bundle (Debian's Java keystore) only drop
  # one when told it went away.
  { grep '^file ' "$MANIFEST" 2>/dev/null || true; } >"$WORK/store-files"
  while IFS= read -r entry; do
    path=${entry#file }
    is_store_file "$path" || continue
    if desired "$path"; then continue; fi
    if [ -e "$path" ]; then
      removing_store_file "$path"
      if [ -z "$CONTAINERD_DIR" ] && want_runtime containerd; then owe restart-containerd; fi
    fi
    revert_file "$path" || true
    forget "$entry"
  done <"$WORK/store-files"
  if owed refresh-remove; then
    refresh_trust_store remove
    paid refresh-remove
    rm -f "$STATE/removed-cas"
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
  local live
  want_runtime k3s || return 0
  k3s_registry_entry "$K3S_CA" >"$WORK/entry"
  # Where k3s's containerd reads hosts.toml live, that is where trust takes effect;
  # registries.yaml carries it over k3s's next start, which needs no restart now.
  live=""
  if [ -d "$K3S_CERTS_D" ]; then
    live=1
    hosts_toml "$K3S_CERTS_D/$ID/ca.crt" >"$WORK/k3s-hosts.toml"
    install_file "$WORK/ca.crt" "$K3S_CERTS_D/$ID/ca.crt" || true
    install_file "$WORK/k3s-hosts.toml" "$K3S_CERTS_D/$ID/hosts.toml" || true
  fi
  if differs "$WORK/ca.crt" "$K3S_CA" && [ -z "$live" ]; then owe restart-k3s; fi
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
    if [ -z "$live" ]; then owe restart-k3s; fi
    replace_keeping_attrs "$K3S_REGISTRIES" "$WORK/k3s"
  fi
  record "restart k3s"
}

# What an earlier create installed but this one no longer wants (the runtime
# was forced, or containerd's config_path changed) is put back now.
step_converge() {
  local entry path
  grep -e '^file ' -e '^block ' "$MANIFEST" >"$WORK/owned" 2>/dev/null || true
  while IFS= read -r entry; do
    path=${entry#* }
    if ! desired "$path"; then
      case $entry in
        "file "*) revert_file "$path" || true ;;
        "block "*) if remove_block "$path"; then owe restart-k3s; fi; forget "created $path" ;;
      esac
      forget "$entry"
    fi
  done <"$WORK/owned"
  # Directories we made that nothing of ours is in any more, deepest first.
  grep '^dir ' "$MANIFEST" | reverse_lines >"$WORK/dirs" || true
  while IFS= read -r entry; do
    if rmdir "${entry#dir }" 2>/dev/null; then forget "$entry"; fi
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
  local dest ip owed src sum
  ip=$(resolved_ip)
  [ "$ip" = "$REG_IP" ] || die "after create, $REG_NAME resolves to '${ip:-nothing}' here, not $REG_IP"
  while read -r src dest; do
    case $src in block) has_block "$dest" || die "after create, $dest lacks our block"; continue ;; esac
    cmp -s "$src" "$dest" || die "after create, $dest does not hold what it should"
  done <"$WORK/desired"
  if [ -n "$STORE" ] && [ -n "$STORE_NEEDED" ]; then
    while read -r sum; do
      bundle_has_cert "$WORK/certs/$sum.crt" || die "after create, $BUNDLE does not hold the registry's CA ($sum)"
    done <"$WORK/cert-sums"
  fi
  for owed in "$STATE"/pending-*; do
    [ -e "$owed" ] && die "after create, still owed: ${owed##*/pending-}"
  done
  return 0
}

step_own() { set_owner add; }

run_create() {
  local step
  for step in $CREATE_STEPS; do
    "$step"
    if [ "${FAIL_AFTER:-}" = "$step" ]; then die "injected failure after $step"; fi
  done
  log "trusted and resolvable as $ID -> $REG_IP"
}
