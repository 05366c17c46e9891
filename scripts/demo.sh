#!/usr/bin/env bash
# Set up a virtual environment and run the main job: start the gRPC offload service (GPU if
# present, else the CPU fallback; it says which), run a real client round trip against it (keygen, encrypt,
# sums, matvec, decrypt, all checked) and print a metrics snapshot.
#   ./scripts/demo.sh [he-accel service-demo args...]    e.g. --bits 1024 --size 200
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# setuptools notes every editable install of a layout like ours ("Editable installation ...");
# it is information, not a problem, so it does not open the demo.
export PYTHONWARNINGS="ignore:Editable installation"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[service]'
unset PYTHONWARNINGS
exec .venv/bin/he-accel service-demo "$@"
