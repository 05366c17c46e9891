#!/usr/bin/env bash
# Everything a lent GPU is for, in one device call (see bench/RESULTS.md for how figures are kept):
#   1. the CUDA test suite (pytest -m gpu), 2. one run under compute-sanitizer memcheck,
#   3. the benchmark suite (GPU vs this machine's CPU backend vs peers) and the end-to-end
#   vertical LR, 4. the service on the GPU, 5. the independent acceptance check.
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
# 3. the suite: GPU, this machine's CPU backend and phe in one run, key sizes 1024-4096, a batch
#    sweep; fate_utils and HEU (no Python 3.12 wheels) derived per core from the CPU run committed
#    in bench/results/suite-cpu.json, labelled derived; plots and the fraction of the GPU's bound
derive=""; [ -f bench/results/suite-cpu.json ] && derive="--derive-peers bench/results/suite-cpu.json"
# shellcheck disable=SC2086
python3 -m accel.cli bench --backends gpu cpu remote:gpu --peers all --bits ${HEA_BENCH_BITS:-1024 2048 3072 4096} \
  --batch ${HEA_BENCH_BATCHES:-1024 8192 65536} --repeats 3 --time-budget ${HEA_BENCH_BUDGET:-30} \
  --peer-max-batch 1024 --ops "${HEA_BENCH_OPS:-all}" $derive --no-progress \
  --json "$OUT/suite-gpu.json" --plot "$OUT/plots" 2>&1 | tail -150 | tee "$OUT/suite-gpu.txt" || status=1
# 3b. end to end: vertical LR on 100,000 x 30, phe vs our CPU, GPU and the service on the GPU
python3 -m bench.e2e --data synthetic:100000x30 --epochs 1 --engines ${HEA_E2E_ENGINES:-accel:gpu accel:remote accel:cpu phe} \
  --serve-backend gpu --json "$OUT/e2e-gpu.json" 2>&1 | tail -20 | tee "$OUT/e2e-gpu.txt" || status=1
# 4. the service on the GPU backend: overhead against the library, coalescing of 64 clients
python3 -m bench.service_bench --backend gpu --batches 4096,65536 --repeats 3 --seconds 20 \
  --coalesce-op encrypt --json "$OUT/service-gpu-2048.json" 2>&1 | tail -20 | tee "$OUT/service-gpu.txt" || status=1
# 5. the independent acceptance check
[ -f bench/acceptance.py ] && python3 bench/acceptance.py --backend gpu --out "$OUT" 2>&1 | tail -20 || status=1
exit $status
