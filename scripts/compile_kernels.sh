#!/usr/bin/env bash
# Compile every kernel family with nvcc for sm_80 and sm_90 (cubin), in parallel: the CI check
# that the CUDA sources build for the GPUs we target. Usage: scripts/compile_kernels.sh [outdir]
# Needs nvcc (no GPU). Each (file, arch) pair is one job; a failure prints nvcc's output.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-nvcc}
OUT=${1:-build/cubin}
ARCHS=${HEA_ARCHS:-"80 90"}
JOBS=${HEA_COMPILE_JOBS:-$(nproc)}
mkdir -p "$OUT"
command -v "$NVCC" >/dev/null || { echo "compile_kernels: $NVCC not found" >&2; exit 127; }
"$NVCC" --version | tail -1
start=$(date +%s)
for f in kernels/*.cu; do for a in $ARCHS; do echo "$f $a"; done; done |
  xargs -P "$JOBS" -n 2 sh -c '
    f=$0; a=$1; name=$(basename "$f" .cu)
    t0=$(date +%s)
    if "'"$NVCC"'" -std=c++17 -arch=sm_$a --cubin -Werror all-warnings -o "'"$OUT"'/$name.sm_$a.cubin" "$f" >"'"$OUT"'/$name.sm_$a.log" 2>&1; then
      echo "ok   $f sm_$a ($(( $(date +%s) - t0 )) s)"
    else
      echo "FAIL $f sm_$a"; cat "'"$OUT"'/$name.sm_$a.log"; exit 255
    fi'
echo "compiled $(ls "$OUT"/*.cubin | wc -l) cubins in $(( $(date +%s) - start )) s"
