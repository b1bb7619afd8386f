#!/usr/bin/env bash
# Builds the OCI distribution-spec conformance suite from the Go module proxy,
# pinned by tests/go/conformance/go.mod and go.sum, into a cache outside the
# repository, and prints the binary's path. tests/e2e/test_conformance.py runs
# it against the registry's pod as the program renders it. Seconds once built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module=$here/go/conformance
cache=${REGISTRY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/registry-tests}
binary=$cache/conformance-$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
if [ "${1:-}" = --path ]; then
  echo "$binary"
  exit 0
fi
if [ ! -x "$binary" ]; then
  mkdir -p "$cache/src"
  rm -rf "$cache/src/conformance"
  cp -R "$module" "$cache/src/conformance"
  (cd "$cache/src/conformance" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local \
    go build -o "$binary.tmp" github.com/opencontainers/distribution-spec/conformance)
  mv -f "$binary.tmp" "$binary"
fi
echo "$binary"
