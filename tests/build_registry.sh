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
only_path=()
if [ "${1:-}" = --path ]; then only_path=(--path); fi
exec "$here/go/build.sh" "${only_path[@]}" "$module" "registry-$version" github.com/distribution/distribution/v3/cmd/registry \
  "-X github.com/distribution/distribution/v3/version.version=$version"
