#!/usr/bin/env bash
# Runs the whole test suite: unit (Pulumi mocks), node scripts over real SSH,
# end to end with the real registry, skopeo and containerd, and the real
# Pulumi engine. Uses the .venv that .ci/run makes, when there is one.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x .venv/bin/python3 ]; then
  export PATH="$PWD/.venv/bin:$PATH"
fi
exec python3 -m pytest -ra "$@"
