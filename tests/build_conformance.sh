#!/usr/bin/env bash
# Builds the OCI distribution-spec conformance suite from the Go module proxy,
# pinned by tests/go/conformance/go.mod and go.sum, into a cache outside the
# repository, and prints the binary's path. tests/e2e/test_conformance.py runs
# it against the registry's pod as the program renders it. Seconds once built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
only_path=()
if [ "${1:-}" = --path ]; then only_path=(--path); fi
exec "$here/go/build.sh" "${only_path[@]}" "$here/go/conformance" conformance github.com/opencontainers/distribution-spec/conformance
