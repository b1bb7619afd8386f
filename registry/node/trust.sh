# registry node trust, trust: the CA's files, the system trust stores, and the runtimes.

# ---- trust locations ----------------------------------------------------------

# $WORK/ca.crt: the bundle (certs.d and k3s read every certificate of one
# file). $WORK/certs/<sum>.crt: each certificate on its own, for the system
# store, whose hash links and derived stores (Java's) take one per file;
# $WORK/cert-sums lists the sums.
write_ca() {
  local part sum
  printf '%s\n' "$REG_CA" | sed '/^$/d' >"$WORK/ca.crt"
  mkdir "$WORK/certs"
  awk -v dir="$WORK/certs" '
    /-----BEGIN CERTIFICATE-----/ { n++; file = dir "/part-" n }
    file != "" { print > file }
    /-----END CERTIFICATE-----/ { if (file != "") close(file); file = "" }' "$WORK/ca.crt"
  : >"$WORK/cert-sums"
  for part in "$WORK/certs"/part-*; do
    [ -f "$part" ] || die "REG_CA holds no certificate"
    sum=$(cert_sum "$part")
    mv "$part" "$WORK/certs/$sum.crt"
    printf '%s\n' "$sum" >>"$WORK/cert-sums"
  done
}

cert_sum() { sha256sum "$1" | cut -c 1-16; }

store_file() { printf '%s/%s-%s.crt' "$STORE_DIR" "$CA_BASE" "$1"; }

# Exit 0 for a trust-store file of ours: this version's or an earlier one's.
is_store_file() {
  [ -n "$STORE_DIR" ] || return 1
  case ${1##*/} in
    "$CA_BASE.crt" | "$CA_BASE-"????????????????.crt) [ "${1%/*}" = "$STORE_DIR" ] ;;
    *) return 1 ;;
  esac
}

# A store file about to go is written down first: hooks are told of it once
# the store is refreshed, by this run or by the next if this one is killed.
removing_store_file() {
  printf '%s\n' "$1" >>"$STATE/removed-cas" || die "cannot write $STATE/removed-cas"
  owe refresh-remove
}

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

# Sets STORE (debian, suse, arch, rhel or empty), STORE_DIR, where our CA
# files go, and BUNDLE, the file the store is compiled into.
find_trust_store() {
  STORE="" STORE_DIR="" BUNDLE=""
  if have update-ca-certificates && [ -d /etc/pki/trust/anchors ]; then
    STORE=suse STORE_DIR=/etc/pki/trust/anchors BUNDLE=/var/lib/ca-certificates/ca-bundle.pem
  elif have update-ca-certificates && [ -d /usr/local/share/ca-certificates ]; then
    STORE=debian STORE_DIR=/usr/local/share/ca-certificates BUNDLE=/etc/ssl/certs/ca-certificates.crt
  elif { have trust || have update-ca-trust; } && [ -d /etc/ca-certificates/trust-source/anchors ]; then
    STORE=arch STORE_DIR=/etc/ca-certificates/trust-source/anchors BUNDLE=/etc/ssl/certs/ca-certificates.crt
  elif have update-ca-trust && [ -d /etc/pki/ca-trust/source/anchors ]; then
    STORE=rhel STORE_DIR=/etc/pki/ca-trust/source/anchors BUNDLE=/etc/pki/tls/certs/ca-bundle.crt
  fi
}

STORES_LOOKED_AT="/usr/local/share/ca-certificates, /etc/pki/ca-trust/source/anchors, /etc/pki/trust/anchors, /etc/ca-certificates/trust-source/anchors"

refresh_trust_store() {
  case $STORE in
    debian)
      if [ "$1" = remove ]; then
        # --fresh: without it our symlink in /etc/ssl/certs is left dangling.
        run update-ca-certificates --fresh >/dev/null
        notify_ca_hooks
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
# passed on to them here, on stdin as update-ca-certificates itself does:
# one "-/etc/ssl/certs/<name>.pem" line per file in $STATE/removed-cas.
notify_ca_hooks() {
  local hook hooks rc
  hooks=/etc/ca-certificates/update.d
  [ -d "$hooks" ] && [ -f "$STATE/removed-cas" ] || return 0
  sort -u "$STATE/removed-cas" | sed -e 's|.*/||' -e 's|\.crt$||' -e 's|^|-/etc/ssl/certs/|' -e 's|$|.pem|' >"$WORK/hook-input"
  for hook in "$hooks"/*; do
    [ -f "$hook" ] && [ -x "$hook" ] || continue
    rc=0
    timeout "$STEP_TIMEOUT" "$hook" <"$WORK/hook-input" >/dev/null 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then log "warning: $hook exited with status $rc while removing our CA"; fi
  done
}

# Exit 0 when BUNDLE holds the certificate in file $1 (compared by its base64 body).
bundle_has_cert() {
  [ -f "$BUNDLE" ] || return 1
  awk -v want="$(sed '/^-----/d' "$1" | tr -d '\r\n')" '
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
  local file main pattern
  main=/etc/containerd/config.toml
  [ -f "$main" ] || return 0
  printf '%s\n' "$main"
  awk '
    /^[ \t]*imports[ \t]*=/ { on = 1; sub(/^[^=]*=/, "") }
    on { text = text $0; if ($0 ~ /\]/) exit }
    END { gsub(/[][ \t"\047]/, "", text); n = split(text, parts, ",")
          for (k = 1; k <= n; k++) if (parts[k] != "") print parts[k] }' "$main" |
    while IFS= read -r pattern; do
      case $pattern in /*) ;; *) pattern="/etc/containerd/$pattern" ;; esac
      for file in $pattern; do
        if [ -f "$file" ]; then printf '%s\n' "$file"; fi
      done
    done
}

# containerd reads certs.d only when the CRI registry config_path is set. The
# live config (defaults and imports merged in) says, where containerd can read
# its own file: a 1.x containerd given a version 3 file dumps its defaults
# instead, so a dump of another version than the file's is not believed.
containerd_hosts_dir() {
  local dump file files got want
  files=$(containerd_config_files)
  dump=""
  if dump=$(timeout "$STEP_TIMEOUT" containerd config dump 2>/dev/null); then
    want=$(toml_version /etc/containerd/config.toml 2>/dev/null || true)
    got=$(printf '%s\n' "$dump" | toml_version)
    if [ -z "$want" ] || [ "$want" = "$got" ]; then
      printf '%s\n' "$dump" | awk "$CONFIG_PATH_AWK"
      return 0
    fi
  fi
  if [ -n "$files" ]; then
    printf '%s\n' "$files" | while IFS= read -r file; do cat "$file"; echo; done | awk "$CONFIG_PATH_AWK"
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
