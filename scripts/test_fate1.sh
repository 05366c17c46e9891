#!/usr/bin/env bash
# FATE 1.x against FATE 1.x itself, with and without the he-accel plugin (not in CI: FATE 1.x
# is not on a package registry; fetch its source yourself, e.g. tag v1.11.4 of FederatedAI/FATE).
#
#   scripts/test_fate1.sh FATE_SRC        # FATE_SRC: a FATE 1.x tree holding python/ and conf/
#
# 1. FATE's own secureprotol, gradient and packing tests, stock and with the plugin active in
#    every process (scripts/fate1_check/sitecustomize.py);
# 2. a HeteroLR (guest, host, arbiter) and a HeteroSecureBoost (guest, host) job through FATE's
#    standalone engine, stock and with the plugin; the exported models must be identical.
#
# Environment: PYTHON (default python3.8 when found: FATE 1.x's interpreter, else python3),
# HEA_FATE1_VENV (default .venv-fate1, created on first use), HEA_FATE1_BACKEND (default cpu),
# HEA_FATE1_ROWS (rows of the job data, default 200). FATE_SRC itself is not written to: the
# run uses a scratch copy (FATE keeps its standalone tables and sqlite file in its tree).
set -euo pipefail

FATE_SRC=${1:?usage: scripts/test_fate1.sh FATE_SRC (a FATE 1.x source tree)}
FATE_SRC=$(cd "$FATE_SRC" && pwd)
[ -d "$FATE_SRC/python/federatedml" ] && [ -f "$FATE_SRC/conf/service_conf.yaml" ] \
  || { echo "$FATE_SRC has no python/federatedml or conf/service_conf.yaml: not a FATE 1.x tree" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
py38=""  # the first python3.8 that runs (a pyenv shim may exist without 3.8 selected)
for c in $(command -v python3.8 || true) "$HOME"/.pyenv/versions/3.8*/bin/python; do
  if [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 8)' 2>/dev/null; then py38=$c; break; fi
done
PYTHON=${PYTHON:-${py38:-$(command -v python3)}}
VENV=${HEA_FATE1_VENV:-$ROOT/.venv-fate1}
BACKEND=${HEA_FATE1_BACKEND:-cpu}
PER_RUN_TIMEOUT=${HEA_FATE1_TIMEOUT:-900}

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # what federatedml's secureprotol, gradient, packing, LR, SecureBoost and the standalone
  # engine import, at versions with wheels for Python 3.8-3.11 (FATE pins older ones)
  "$VENV/bin/pip" install -q "numpy==1.23.5" "scipy==1.10.1" "scikit-learn==1.2.2" "pandas==1.5.3" \
    "gmpy2>=2.2" pycryptodomex pycryptodome cloudpickle "lmdb==1.3.0; python_version < '3.9'" \
    "lmdb>=1.4; python_version >= '3.9'" "ruamel.yaml<0.18" peewee apsw psutil "protobuf==3.20.3" pyyaml \
    beautifultable requests cachetools python-dotenv filelock shortuuid sortedcontainers joblib
  "$VENV/bin/pip" install -q -e "$ROOT"
fi
PY="$VENV/bin/python"
echo "== $("$PY" --version 2>&1), FATE $(grep -h '^FATE=' "$FATE_SRC/fate.env" 2>/dev/null | cut -d= -f2 || echo '?'), backend $BACKEND"

WORK=$(mktemp -d /tmp/hea-fate1.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp -r "$FATE_SRC/python" "$FATE_SRC/conf" "$WORK/"

export FATE_PROJECT_BASE="$WORK"
export PYTHONPATH="$ROOT/scripts/fate1_check:$WORK/python"
RUN="$ROOT/scripts/fate1_check/run.py"
failures=()

plugin_env() {  # mode -> the variables that switch the plugin on (nothing for stock)
  if [ "$1" = plugin ]; then echo "HEA_FATE1_PLUGIN=$BACKEND"; else echo "HEA_FATE1_PLUGIN="; fi
}

echo "== FATE's own tests"
TESTS=(
  federatedml/secureprotol/test/fate_paillier_test.py
  federatedml/secureprotol/test/fixedpoint_test.py
  federatedml/secureprotol/test/encrypt_mode_test.py
  federatedml/secureprotol/test/encode_test.py
  federatedml/optim/gradient/test/hetero_lr_gradient_test.py
  federatedml/optim/gradient/test/gradient_method_test.py
  federatedml/ensemble/test/gh_packing_compressing_test.py
  federatedml/cipher_compressor/test/packing_tensor_test.py
)
for t in "${TESTS[@]}"; do
  [ -f "$WORK/python/$t" ] || { echo "  $t: not in this FATE version"; continue; }
  for mode in stock plugin; do
    log="$WORK/$(basename "$t" .py).$mode.log"
    start=$SECONDS
    if (cd "$WORK/python" && env $(plugin_env $mode) timeout "$PER_RUN_TIMEOUT" "$PY" "$RUN" unittest "$t") >"$log" 2>&1; then
      echo "  $t [$mode]: ok ($(grep -Eo '^Ran [0-9]+ tests?' "$log" | tail -1), $((SECONDS - start)) s)"
    else
      echo "  $t [$mode]: FAILED (rc $?), last lines:"; tail -n 15 "$log" | sed 's/^/    /'
      failures+=("$t [$mode]")
    fi
  done
done

run_job() {  # algo mode
  local algo=$1 mode=$2 out="$WORK/$1-$2" job="hea$RANDOM$RANDOM" roles=(guest host) pids=() rc=0
  [ "$algo" = lr ] && roles+=(arbiter)
  mkdir -p "$out"
  local start=$SECONDS
  for r in "${roles[@]}"; do
    (cd "$WORK/python" && env $(plugin_env "$mode") HEA_FATE1_TRACE="$out/trace.txt" \
       timeout "$PER_RUN_TIMEOUT" "$PY" "$RUN" party "$algo" "$r" "$job" "$out") >"$out/$r.log" 2>&1 &
    pids+=($!)
  done
  # a party that fails leaves its peers waiting on the federation: stop them at once
  for _ in "${pids[@]}"; do
    if ! wait -n "${pids[@]}" 2>/dev/null; then rc=1; kill "${pids[@]}" 2>/dev/null || true; fi
  done
  if [ $rc -ne 0 ]; then
    echo "  $algo [$mode]: FAILED"; for r in "${roles[@]}"; do echo "   -- $r"; tail -n 12 "$out/$r.log" | sed 's/^/    /'; done
    failures+=("$algo job [$mode]"); return 1
  fi
  local calls=""
  [ -f "$out/trace.txt" ] && calls=", batched calls: $(sort "$out/trace.txt" | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')"
  echo "  $algo [$mode]: ok ($((SECONDS - start)) s$calls)"
}

echo "== jobs on the standalone engine (HeteroLR, HeteroSecureBoost; ${HEA_FATE1_ROWS:-200} rows)"
for algo in lr sbt; do
  ok=1
  for mode in stock plugin; do run_job "$algo" "$mode" || ok=0; done
  if [ $ok = 1 ]; then
    echo "  $algo: models, stock vs plugin:"
    "$PY" "$RUN" compare "$WORK/$algo-stock" "$WORK/$algo-plugin" || failures+=("$algo models differ")
  fi
done

if [ ${#failures[@]} -gt 0 ]; then
  echo "== FAILED: ${failures[*]}"; exit 1
fi
echo "== all passed"
