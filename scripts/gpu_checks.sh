#!/usr/bin/env bash
# Everything a lent GPU is for, in one device call (see bench/RESULTS.md for how figures are kept):
#   1. the CUDA test suite (pytest -m gpu), 2. one run under compute-sanitizer memcheck,
#   3. the throughput table GPU vs this machine's CPU backend, 4. the independent acceptance check.
# Run from the repository root on the device machine, with .whl (wheels from
# `../shared/tools/device-wheels.sh gmpy2 phe grpcio-health-checking grpcio-reflection`: the
# device has grpcio, protobuf and prometheus-client, not these) and acceptance.py copied into
# the tree. Writes to $OUT.
#   device run: bash scripts/gpu_checks.sh   (carry: .whl; copy ../shared/tools/acceptance.py to bench/)
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:${PYTHONPATH:-}
export HEA_CACHE_DIR=/tmp/hea-cache
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
status=0
# 1. correctness on the device (kernels compile here on first use; CuPy caches them)
python3 -m pytest -m gpu tests/gpu -q -x -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/pytest-gpu.txt" || status=1
# 2. memcheck over a small run of every kernel family
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 3 python3 -m pytest -m gpu tests/gpu -q -k sanitizer_smoke \
    -p no:cacheprovider 2>&1 | tail -20 | tee "$OUT/memcheck.txt" || status=1
fi
# 3. throughput, GPU and this machine's CPU backend side by side (same run, same keys' sizes)
# (the CPU's batch is smaller: 16 cores at ~50 textbook encryptions/s each)
for be in gpu cpu; do
  if [ "$be" = gpu ]; then batch=${HEA_BENCH_BATCH:-65536}; else batch=${HEA_CPU_BENCH_BATCH:-2048}; fi
  python3 -m accel.cli bench --backend "$be" --bits 2048 --batch "$batch" --repeats 3 \
    --ops "${HEA_BENCH_OPS:-all}" --json "$OUT/bench-$be-2048.json" 2>&1 | tail -30 | tee "$OUT/bench-$be.txt" || status=1
done
# 4. the service on the GPU backend: overhead against the library, coalescing of 64 clients
python3 -m bench.service_bench --backend gpu --batches 4096,65536 --repeats 3 --seconds 20 \
  --coalesce-op encrypt --json "$OUT/service-gpu-2048.json" 2>&1 | tail -20 | tee "$OUT/service-gpu.txt" || status=1
# 5. the independent acceptance check
[ -f bench/acceptance.py ] && python3 bench/acceptance.py --backend gpu --out "$OUT" 2>&1 | tail -20 || status=1
exit $status
