#!/usr/bin/env bash
# Regenerate the checked-in Python stubs of service/proto/heaccel/v1/*.proto.
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
mkdir -p "$OUT"
for proto in service/proto/heaccel/v1/*.proto; do
  "$PY" -m grpc_tools.protoc -I . --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" "$proto"
done
echo "stubs written under $OUT/service/proto/heaccel/v1"
