#!/usr/bin/env bash
# Runs the test suite: every layer (unit, node, e2e, engine; tests/conftest.py),
# or with --fast the unit layer alone (seconds, no root). Other arguments go to
# pytest. Uses the .venv that .ci/run makes, when there is one.
set -euo pipefail
cd "$(dirname "$0")"
if [ -x .venv/bin/python3 ]; then
  export PATH="$PWD/.venv/bin:$PATH"
fi
if [ "${1:-}" = "--fast" ]; then
  shift
  exec python3 -m pytest -ra -m unit tests/unit "$@"
fi
exec python3 -m pytest -ra "$@"
