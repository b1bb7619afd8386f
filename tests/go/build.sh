#!/usr/bin/env bash
# Builds one Go binary pinned by a module under tests/go/ (its go.mod and go.sum),
# from the Go module proxy, into a cache outside the repository, and prints its path;
# with --path, prints the path only. The name carries a digest of go.mod and go.sum,
# so a new pin is a new build. Used by tests/build_registry.sh and tests/build_conformance.sh.
#
#   tests/go/build.sh [--path] MODULE_DIR NAME PACKAGE [LDFLAGS]
set -euo pipefail
only_path=""
if [ "${1:-}" = --path ]; then only_path=1; shift; fi
module=$1 name=$2 package=$3 ldflags=${4:-}
cache=${REGISTRY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/registry-tests}
binary=$cache/$name-$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
if [ -n "$only_path" ]; then
  echo "$binary"
  exit 0
fi
if [ ! -x "$binary" ]; then
  src=$cache/src/$(basename "$module")
  mkdir -p "$cache/src"
  rm -rf "$src"
  cp -R "$module" "$src"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local \
    go build -o "$binary.tmp" -ldflags "$ldflags" "$package")
  mv -f "$binary.tmp" "$binary"
fi
echo "$binary"
