#!/usr/bin/env bash
# The prepared accelerator suite (issue 10): one run, <= 8 minutes on one GPU, writes
# device_suite.json and device_suite.md to the folder given (default $OUT, then /tmp/device_suite).
#   benchmarks/device_suite.sh "$OUT"              # on the accelerator
#   benchmarks/device_suite.sh /tmp/suite --tiny   # any CPU, tiny sizes (what CI runs)
# Also: JAXNN_SUITE_TINY=1 selects the tiny sizes; PYTHON picks the interpreter.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-/tmp/device_suite}"
args=()
for arg in "$@"; do
  case "$arg" in
    --*) args+=("$arg") ;;
    *) out="$arg" ;;
  esac
done
if [[ "${JAXNN_SUITE_TINY:-0}" == "1" ]]; then args+=("--tiny"); fi
mkdir -p "$out"
cd "$repo"
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" benchmarks/device_suite.py \
  --out="$out" "${args[@]}"
