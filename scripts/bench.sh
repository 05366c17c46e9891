#!/usr/bin/env bash
# Reproduce the benchmark tables and plots on this machine (CPU; a GPU too if one is present):
#   1. the op suite: our CPU backend (1 process and all cores) against phe, fate_utils and HEU,
#      key sizes 1024-4096, a batch sweep, one run -> bench/results/suite-cpu.json, bench/plots/cpu/
#   2. end to end: vertical LR on 100,000 x 30, three processes, phe / fate_utils / ours / the
#      service -> bench/results/e2e-cpu.json
#   3. FATE 2.x CoordinatedLR stock vs plugin, if the FATE venv (.venv-fate) exists
# About 1 h 50 min on the 2-core development machine (suite 80 min at a 20 s budget per combination,
# e2e ~20, FATE ~6). HEA_BENCH_QUICK=1 runs a small version.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[service,bench]'
if [ -n "${HEA_BENCH_QUICK:-}" ]; then tag=${HEA_BENCH_TAG:-quick}; else tag=${HEA_BENCH_TAG:-cpu}; fi
if [ -n "${HEA_BENCH_QUICK:-}" ]; then
  bits="1024 2048"; batches="64 256"; data=synthetic:5000x30; budget=20
else
  bits="1024 2048 3072 4096"; batches="64 256 1024"; data=synthetic:100000x30; budget=20
fi
backends="cpu:1 cpu remote:cpu"
if .venv/bin/python -c "from accel import get_backend; get_backend('gpu')" 2>/dev/null; then backends="gpu cpu:1 cpu remote:gpu"; fi
# shellcheck disable=SC2086
.venv/bin/he-accel bench --backends $backends --peers all --bits $bits --batch $batches --repeats 3 \
  --time-budget "$budget" --json "bench/results/suite-$tag.json" --plot "bench/plots/$tag"
engines="phe fate_utils accel:cpu accel:remote"
case "$backends" in gpu*) engines="$engines accel:gpu" ;; esac
# shellcheck disable=SC2086
.venv/bin/python -m accel.bench.e2e --data "$data" --epochs 1 --engines $engines --serve-backend auto \
  --json "bench/results/e2e-$tag.json"
FATE_VENV=${HEA_FATE_VENV:-.venv-fate}
if [ -x "$FATE_VENV/bin/python" ]; then
  "$FATE_VENV/bin/python" bench/fate2_training.py --epochs 5 --repeats 3 --json "bench/results/fate2-lr-$tag.json"
else
  echo "NOTE: $FATE_VENV not found (./scripts/test_fate.sh builds it): FATE 2.x stock vs plugin not measured"
fi
