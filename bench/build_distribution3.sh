#!/usr/bin/env bash
# Builds distribution 3.x's registry (what the registry:3 image runs) from the
# Go module proxy, pinned by bench/go/distribution/go.mod and go.sum, into a
# cache outside the repository, and prints the binary's path. About a minute
# on 2 cores; seconds once built. Only the benchmark needs it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module=$here/go/distribution
version=$(awk '$1 == "require" && $2 == "github.com/distribution/distribution/v3" { print $3 }' "$module/go.mod")
cache=${REGISTRY_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/registry-bench}
binary=$cache/registry-$version
if [ ! -x "$binary" ]; then
  mkdir -p "$cache/src"
  rm -rf "$cache/src/distribution"
  cp -R "$module" "$cache/src/distribution"
  (cd "$cache/src/distribution" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local \
    go build -o "$binary" -ldflags "-X github.com/distribution/distribution/v3/version.version=$version" \
    github.com/distribution/distribution/v3/cmd/registry)
fi
echo "$binary"
