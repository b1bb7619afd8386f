#!/usr/bin/env bash
# Unpacks Debian's nginx (the distribution's package, from its package registry)
# into a cache outside the repository and prints the binary's path: the proxy the
# registry's pod runs in front of it (registry/proxy.py), which the tests run with
# the configuration file the program renders (tests/support/registry_server.py).
# Nothing is installed: `apt-get download` and `dpkg -x`, no service, no
# /etc/nginx. The package's libraries (OpenSSL, PCRE2, zlib, libcrypt) are the
# machine's own. With --path, prints the path only.
set -euo pipefail
cache=${REGISTRY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/registry-tests}
root=$cache/nginx-debian
binary=$root/usr/sbin/nginx
if [ "${1:-}" = --path ]; then
  echo "$binary"
  exit 0
fi
if [ ! -x "$binary" ]; then
  work=$(mktemp -d "$cache/nginx-download.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # (apt warns that the download runs as root: _apt may not write into root's cache.)
  if ! (cd "$work" && apt-get download -q nginx >"$work/apt.log" 2>&1); then
    echo "build_nginx.sh: apt-get download nginx failed (apt-get update first?):" >&2
    cat "$work/apt.log" >&2
    exit 1
  fi
  deb=$(find "$work" -maxdepth 1 -name 'nginx_*.deb' | head -1)
  [ -n "$deb" ] || { echo "build_nginx.sh: apt-get download nginx fetched no package" >&2; exit 1; }
  rm -rf "$root.tmp"
  dpkg -x "$deb" "$root.tmp"
  basename "$deb" >"$root.tmp/PACKAGE"
  rm -rf "$root"
  mv "$root.tmp" "$root"
fi
if ldd "$binary" | grep -q "not found"; then
  echo "build_nginx.sh: $binary lacks libraries:" >&2
  ldd "$binary" | grep "not found" >&2
  exit 1
fi
echo "$binary"
