#!/usr/bin/env bash
# Builds the distribution registry that the default image (registry:3.1.1,
# registry/config/service.py DEFAULT_IMAGE) runs, from the Go module proxy, pinned by
# tests/go/distribution/go.mod and go.sum, into a cache outside the repository,
# and prints the binary's path. Every test layer that runs a registry runs
# this one (tests/support/registry_server.py). CONTRIBUTING.md says how long
# a first build takes; seconds once built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module=$here/go/distribution
version=$(awk '$1 == "require" && $2 == "github.com/distribution/distribution/v3" { print $3 }' "$module/go.mod")
cache=${REGISTRY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/registry-tests}
binary=$cache/registry-$version-$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
if [ "${1:-}" = --path ]; then
  echo "$binary"
  exit 0
fi
if [ ! -x "$binary" ]; then
  mkdir -p "$cache/src"
  rm -rf "$cache/src/distribution"
  cp -R "$module" "$cache/src/distribution"
  (cd "$cache/src/distribution" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local \
    go build -o "$binary.tmp" -ldflags "-X github.com/distribution/distribution/v3/version.version=$version" \
    github.com/distribution/distribution/v3/cmd/registry)
  mv -f "$binary.tmp" "$binary"
fi
echo "$binary"
