#!/usr/bin/env bash
# Set up a virtual environment and run the main job: a checked end-to-end demo.
#   ./scripts/demo.sh [he-accel demo args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/he-accel demo "$@"
