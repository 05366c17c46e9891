#!/usr/bin/env bash
# Prepare, on this machine, everything a device call needs, so that the lent GPU's minutes go to
# running checks, not to installing or compiling:
#   .whl/                wheels for the device's Python 3.12 that its image lacks (gmpy2, phe, the
#                        gRPC health/reflection packages, pyelftools)
#   build/kernels-sm90/  every kernel family and size class prebuilt for sm_90, with its manifest
#   bench/acceptance.py  the independent acceptance tool (../shared/tools/acceptance.py; git-ignored)
# Then, through the device tool:
#   run(command="bash scripts/gpu_checks.sh", carry=[".whl", "build/kernels-sm90", "bench/acceptance.py"])
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${HEA_SHARED_TOOLS:-../shared/tools}
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || { echo "prepare_device: $py not found (run ./scripts/test.sh once, or set PYTHON)" >&2; exit 1; }
"$shared/device-wheels.sh" gmpy2 phe grpcio-health-checking==1.62.1 grpcio-reflection==1.62.1 pyelftools
"$py" -m accel.cli kernels build --out build/kernels-sm90 --arch sm_90
cp "$shared/acceptance.py" bench/acceptance.py
echo "prepared: carry .whl build/kernels-sm90 bench/acceptance.py"
