#!/usr/bin/env bash
# The device check: everything a lent GPU is for, in one call that fits (at most 8 minutes).
# Prepare here first (scripts/prepare_device.sh), then run from the repository root on the device:
#   run(command="bash scripts/gpu_checks.sh", carry=[".whl", "build/kernels-sm90", "bench/acceptance.py"])
# Phases (default: tests acceptance bench; each under its own time limit, printed at the end):
#   tests       pytest -m gpu tests/gpu: every op against the CPU backend (gmpy2), 1024-3072 bits, and
#               the Montgomery-form resident kernels (tests/gpu/test_resident_device.py)
#   acceptance  the independent acceptance check (bench/acceptance.py --backend gpu)
#   bench       he-accel bench at 2048 bits, every op: GPU device-resident and end to end beside the
#               device's CPU backend, in one run (add_mont_device, sum_mont_device: the device-resident
#               add and sum in Montgomery form, issue 15's add target)
#   coop        the bench phase again with HEA_GPU_COOPERATIVE=1: the cooperative kernels' rates
#               (issue 15), beside the bench phase's one-thread ones (opt-in: bash scripts/gpu_checks.sh coop);
#               mul and matvec take signed scalars and entries there, so they include the batch inversion
#   memcheck    compute-sanitizer memcheck on a small run of every kernel family (Firecracker only)
#   suite       the full suite 1024-4096 bits with peers and plots (longer: a call of its own)
# It stops at once, non-zero, with a message in $OUT/FAILED.txt, when a carried wheel does not
# install or import, or when no GPU is seen. Everything it writes goes under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
rm -f "$OUT/FAILED.txt"
fail() { echo "gpu_checks: FAILED: $*" | tee -a "$OUT/FAILED.txt" >&2; exit 1; }
phases=${*:-tests acceptance bench}
for p in $phases; do
  case $p in tests|acceptance|bench|coop|memcheck|suite) ;;
    *) echo "unknown phase: $p (tests acceptance bench coop memcheck suite)" >&2; exit 2 ;; esac
done

# -- environment: carried wheels, the GPU, prebuilt kernels ---------------------------------------------
WHEELS=${HEA_WHEEL_DIR:-.whl}
SITE=${HEA_SITE_DIR:-/tmp/site}
ls "$WHEELS"/*.whl >/dev/null 2>&1 || fail "no wheels in $WHEELS/ (run scripts/prepare_device.sh and carry .whl)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
  || fail "installing the carried wheels failed (built for another Python than $(python3 -V)?)"
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import gmpy2, phe, cupy, grpc, grpc_health, grpc_reflection, elftools, accel.gpu.build" \
  || fail "a package does not import (see above)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt" \
  || fail "nvidia-smi failed: no GPU on this machine"
python3 -c "import cupy, sys; n = cupy.cuda.runtime.getDeviceCount(); print('CUDA devices:', n); sys.exit(n == 0)" \
  || fail "CuPy sees no CUDA device"
export HEA_CACHE_DIR=/tmp/hea-cache
export HEA_KERNEL_DIR=${HEA_KERNEL_DIR:-$PWD/build/kernels-sm90}
python3 - <<'PY' 2>&1 | tee "$OUT/kernels.txt"
import os
from accel.gpu import build
folder = os.environ["HEA_KERNEL_DIR"]
try:
    m = build.read_manifest(folder)
    ok = m["source_digest"] == build.sources_digest()
    print(f"prebuilt kernels {folder}: {len(m['units'])} units, {m['toolkit']}, sources {m['source_digest']}"
          + ("" if ok else f" STALE (these sources are {build.sources_digest()}): the runtime will compile"))
except OSError as e:
    print(f"no prebuilt kernels in {folder} ({e}): the runtime compiles each unit on first use")
PY
git rev-parse --short HEAD > "$OUT/commit.txt" 2>/dev/null || echo unknown > "$OUT/commit.txt"

# -- phases ------------------------------------------------------------------------------------------
summary=()
status=0
run_phase() {  # name, limit in seconds, then the command; records rc and seconds
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  timeout --kill-after=10 "$limit" bash -c "$1"; rc=$?
  [ $rc -eq 124 ] && echo "phase $name: ran past its ${limit} s limit" | tee -a "$OUT/FAILED.txt"
  summary+=("$name rc=$rc $((SECONDS - t0))s (limit ${limit}s)")
  [ $rc -eq 0 ] || status=1
}
phase_tests() {
  python3 -m pytest -m gpu tests/gpu -q -x -p no:cacheprovider --junitxml="$OUT/pytest-gpu.xml" 2>&1 \
    | tail -60 | tee "$OUT/pytest-gpu.txt"; return "${PIPESTATUS[0]}"
}
phase_acceptance() {
  [ -f bench/acceptance.py ] || { echo "bench/acceptance.py missing: carry it (scripts/prepare_device.sh)"; return 1; }
  python3 bench/acceptance.py --backend gpu --out "$OUT" 2>&1 | tail -40 | tee "$OUT/acceptance.txt"
  return "${PIPESTATUS[0]}"
}
phase_bench() {
  python3 -m accel.cli bench --backends gpu cpu --peers none --bits 2048 --batch 4096 65536 --ops all \
    --repeats 3 --time-budget "${HEA_BENCH_BUDGET:-20}" --no-progress --json "$OUT/bench-gpu-2048.json" 2>&1 \
    | tail -80 | tee "$OUT/bench-gpu-2048.txt"; return "${PIPESTATUS[0]}"
}
phase_coop() {
  HEA_GPU_COOPERATIVE=1 python3 -m accel.cli bench --backends gpu --peers none --bits 2048 --batch 4096 65536 \
    --ops all --repeats 3 --time-budget "${HEA_BENCH_BUDGET:-20}" --no-progress \
    --json "$OUT/bench-gpu-coop-2048.json" 2>&1 | tail -80 | tee "$OUT/bench-gpu-coop-2048.txt"
  return "${PIPESTATUS[0]}"
}
phase_memcheck() {
  command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found" | tee "$OUT/memcheck.txt"; return 1; }
  compute-sanitizer --tool memcheck --error-exitcode 3 python3 -m pytest -m gpu tests/gpu -q -k sanitizer_smoke \
    -p no:cacheprovider 2>&1 | tail -20 | tee "$OUT/memcheck.txt"; return "${PIPESTATUS[0]}"
}
phase_suite() {
  local derive=""
  [ -f bench/results/suite-cpu.json ] && derive="--derive-peers bench/results/suite-cpu.json"
  # shellcheck disable=SC2086
  python3 -m accel.cli bench --backends gpu cpu --peers all --bits 1024 2048 3072 4096 --batch 1024 8192 65536 \
    --repeats 3 --time-budget 30 --peer-max-batch 256 --ops all $derive --no-progress \
    --json "$OUT/suite-gpu.json" --plot "$OUT/plots" 2>&1 | tail -150 | tee "$OUT/suite-gpu.txt"
  return "${PIPESTATUS[0]}"
}
export OUT
export -f phase_tests phase_acceptance phase_bench phase_coop phase_memcheck phase_suite
declare -A limit=([tests]=240 [acceptance]=100 [bench]=120 [coop]=120 [memcheck]=200 [suite]=540)
for p in $phases; do run_phase "$p" "${limit[$p]}" "phase_$p"; done
printf '%s\n' "${summary[@]}" | tee "$OUT/phases.txt"
[ $status -eq 0 ] && echo "gpu_checks: all phases passed" || echo "gpu_checks: FAILED (see $OUT/phases.txt)"
exit $status
