#!/usr/bin/env bash
# Everything a lent GPU is for, in phases (see bench/RESULTS.md for how figures are kept):
#   tests       the CUDA test suite (pytest -m gpu); compiles every kernel class once (CuPy cache)
#   memcheck    one run under compute-sanitizer memcheck
#   suite       the benchmark suite: GPU vs this machine's CPU backend vs phe, plots, % of bound
#   e2e         end-to-end vertical LR 100,000 x 30 on the GPU, the service on the GPU, the CPU
#   service     the service on the GPU: overhead against the library, coalescing of 64 clients
#   acceptance  the independent acceptance check (bench/acceptance.py)
#   bash scripts/gpu_checks.sh [PHASE ...]      (default: all, in that order)
# A device call may run 10 minutes and a session has 15 in all: split the phases over two calls
# where a first run shows they do not fit (each phase's time is printed at the end). phe at
# 100,000 x 30 takes ~390 s on one core, so e2e leaves it out unless HEA_E2E_ENGINES names it;
# the CPU machine's e2e run (bench/results/e2e-cpu.json) has phe and fate_utils on the same data.
# Run from the repository root on the device machine, with .whl (wheels from
# `../shared/tools/device-wheels.sh gmpy2 phe grpcio-health-checking grpcio-reflection`: the
# device has grpcio, protobuf and prometheus-client, not these) and acceptance.py copied into
# the tree. Writes to $OUT.
#   device run: bash scripts/gpu_checks.sh   (carry: .whl; copy ../shared/tools/acceptance.py to bench/)
set -uo pipefail
phases=${*:-tests memcheck suite e2e service acceptance}
for p in $phases; do
  case $p in tests|memcheck|suite|e2e|service|acceptance) ;;
    *) echo "unknown phase: $p (tests memcheck suite e2e service acceptance)" >&2; exit 2 ;; esac
done
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-}
export HEA_CACHE_DIR=/tmp/hea-cache
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
summary=()
status=0
run_phase() {  # name, then the command; records rc and seconds for the summary
  local name=$1 t0=$SECONDS rc
  shift
  "$@"; rc=$?
  summary+=("$name rc=$rc $((SECONDS - t0))s")
  [ $rc -eq 0 ] || status=1
}
# correctness on the device (kernels compile here on first use; CuPy caches them)
phase_tests() { python3 -m pytest -m gpu tests/gpu -q -x -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/pytest-gpu.txt"; }
# memcheck over a small run of every kernel family
phase_memcheck() {
  command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found" | tee "$OUT/memcheck.txt"; return 1; }
  compute-sanitizer --tool memcheck --error-exitcode 3 python3 -m pytest -m gpu tests/gpu -q -k sanitizer_smoke \
    -p no:cacheprovider 2>&1 | tail -20 | tee "$OUT/memcheck.txt"
}
# the suite: GPU, this machine's CPU backend and phe in one run, key sizes 1024-4096, a batch
# sweep; fate_utils and HEU (no Python 3.12 wheels) derived per core from the CPU run committed
# in bench/results/suite-cpu.json, labelled derived; plots and the fraction of the GPU's bound.
# phe runs per value, so its rate does not depend on the batch: 256 values are enough.
phase_suite() {
  local derive=""
  [ -f bench/results/suite-cpu.json ] && derive="--derive-peers bench/results/suite-cpu.json"
  # shellcheck disable=SC2086
  python3 -m accel.cli bench --backends gpu cpu remote:gpu --peers all --bits ${HEA_BENCH_BITS:-1024 2048 3072 4096} \
    --batch ${HEA_BENCH_BATCHES:-1024 8192 65536} --repeats 3 --time-budget ${HEA_BENCH_BUDGET:-30} \
    --peer-max-batch ${HEA_BENCH_PEER_BATCH:-256} --ops "${HEA_BENCH_OPS:-all}" $derive --no-progress \
    --json "$OUT/suite-gpu.json" --plot "$OUT/plots" 2>&1 | tail -150 | tee "$OUT/suite-gpu.txt"
}
# end to end: vertical LR on 100,000 x 30 on the GPU, the service on the GPU, this machine's CPU
phase_e2e() {
  # shellcheck disable=SC2086
  python3 -m bench.e2e --data synthetic:100000x30 --epochs 1 --engines ${HEA_E2E_ENGINES:-accel:gpu accel:remote accel:cpu} \
    --serve-backend gpu --json "$OUT/e2e-gpu.json" 2>&1 | tail -20 | tee "$OUT/e2e-gpu.txt"
}
# the service on the GPU backend: overhead against the library, coalescing of 64 clients
phase_service() {
  python3 -m bench.service_bench --backend gpu --batches 4096,65536 --repeats 3 --seconds 20 \
    --coalesce-op encrypt --json "$OUT/service-gpu-2048.json" 2>&1 | tail -20 | tee "$OUT/service-gpu.txt"
}
# the independent acceptance check
phase_acceptance() {
  [ -f bench/acceptance.py ] || { echo "bench/acceptance.py missing: copy ../shared/tools/acceptance.py"; return 1; }
  python3 bench/acceptance.py --backend gpu --out "$OUT" 2>&1 | tail -20
}
for p in $phases; do run_phase "$p" "phase_$p"; done
printf '%s\n' "${summary[@]}" | tee "$OUT/phases.txt"
exit $status
