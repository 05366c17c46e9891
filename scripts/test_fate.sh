#!/usr/bin/env bash
# The FATE integration suite in its own virtual environment, with FATE 2.x's pins:
#   pyfate 2.2.0 + fate_utils 0.1.0, torch 2.13.0 (CPU), grpcio 1.62.1, protobuf 4.24.4,
#   numpy < 2, pandas < 2.2 (FATE's restricted unpickler rejects pandas 3's Index).
# Runs tests/fate: the plugin against fate_utils and stock FATE (contract, wire interop,
# restricted unpickler), then CoordinatedLR and HeteroSecureBoost stock vs plugin, three
# parties in separate processes each, with the same-model check and the timings written to
# build/fate2-training.json (HEA_FATE_RESULTS=bench/results/fate2-training-cpu.json records them).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HEA_FATE_VENV:-.venv-fate}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q torch==2.13.0            # the CPU build, from this machine's disk
  "$VENV/bin/pip" install -q pyfate==2.2.0 fate_utils==0.1.0 "pandas<2.2" "numpy<2" \
      grpcio==1.62.1 grpcio-tools==1.62.1 grpcio-health-checking==1.62.1 grpcio-reflection==1.62.1 \
      protobuf==4.24.4 gmpy2 phe==1.5.0 scikit-learn prometheus-client pytest hypothesis cryptography
fi
# every run: the editable install's package map follows pyproject (accel.service, accel.bench)
PYTHONWARNINGS="ignore:Editable installation" "$VENV/bin/pip" install -q --no-deps -e .
# FATE 2.x activation through FATE's own configuration: the start-up hook in this venv
"$VENV/bin/python" -m accel.integrations.fate2_activation enable
"$VENV/bin/python" -m pytest -m fate tests/fate "$@"
