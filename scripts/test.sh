#!/usr/bin/env bash
# Set up a virtual environment with the test extra and run the test suite.
#   ./scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# GPU tests need a device; CI has none, so they are deselected here and run with -m gpu there.
exec .venv/bin/python -m pytest -m "not gpu" "$@"
