#!/usr/bin/env bash
# Runs the whole test suite: unit (Pulumi mocks), node scripts over real SSH,
# and end to end with the real registry, skopeo and containerd.
set -euo pipefail
cd "$(dirname "$0")"
exec python3 -m pytest -ra "$@"
