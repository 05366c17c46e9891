#!/usr/bin/env bash
# Regenerate the checked-in Python stubs of service/proto/heaccel/v1/*.proto (package accel.service.proto...).
# grpcio-tools is pinned to 1.62.1 (protoc 25): its output imports under FATE 2.x's pins
# (grpcio 1.62.1, protobuf 4.24.4) and under current grpcio/protobuf releases alike.
# A temporary venv is used unless GEN_PYTHON names a Python that already has the pin.
#   ./scripts/gen_protos.sh [OUTDIR]     (default: the repository itself)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.}
PY=${GEN_PYTHON:-}
if [ -z "$PY" ]; then
  VENV=${GEN_VENV:-build/venv-protoc}
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "grpcio-tools==1.62.1" "protobuf==4.24.4"
  PY="$VENV/bin/python"
fi
"$PY" - <<'PYEOF'
import grpc_tools, sys
from importlib.metadata import version
if version("grpcio-tools") != "1.62.1":
    sys.exit(f"grpcio-tools {version('grpcio-tools')} found; the stubs are generated with 1.62.1")
PYEOF
# The folder service/ is the package accel.service: protoc sees it under that virtual path, so
# that the stubs import each other as accel.service.proto... (their one name; see pyproject).
GEN=$(mktemp -d)
trap 'rm -rf "$GEN"' EXIT
for proto in service/proto/heaccel/v1/*.proto; do
  "$PY" -m grpc_tools.protoc -Iaccel/service=service --python_out="$GEN" --pyi_out="$GEN" --grpc_python_out="$GEN" "$proto"
done
mkdir -p "$OUT/service/proto/heaccel/v1"
cp "$GEN"/accel/service/proto/heaccel/v1/* "$OUT/service/proto/heaccel/v1/"
echo "stubs written under $OUT/service/proto/heaccel/v1"
