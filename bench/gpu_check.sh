#!/usr/bin/env bash
# Every GPU figure in one command (`make gpu-check`), within 8 minutes on one H100/H200, compile warm-up included.
#
#   bash bench/gpu_check.sh            # on the GPU machine (the `run` tool: see bench/README.md)
#   bash bench/gpu_check.sh --smoke    # the same code paths at tiny sizes on the CPU (< 3 min; tested in CI)
#
# Parts, in this order, each under its own time cap (`timeout`), so that one slow part cannot eat the rest:
#   1 gpu_tests  pytest -m gpu (tests/test_*_gpu.py), output kept
#   2 train      SiT-XL/2 + iREPA / + REPA at batch 32 and the largest batch that fits, SiT-B/2 at batch 256;
#                fp32 eager baseline and the optimised path: images/s, MFU, peak memory
#   3 sample     SDE-250 generation images/s of SiT-XL/2, baseline and optimised, with their tolerance
#   4 adm        ADM evaluation, 10k measured and extrapolated to 50k (marked so in the JSON)
#   5 spatial    spatial metrics throughput;  5 features: feature-extraction throughput
# Writes under $OUT (else bench/out/): one JSON and one log per part, parts.tsv (exit code, seconds, cap),
# gpu_check.json (the summary) and gpu_table.md (the tables for bench/RESULTS.md). Exit code 0 when every part
# succeeded within its cap; the files are written either way.
#
# Environment: PYTHON (default: the first of python3, python that imports torch), OUT, GPU_CHECK_WORK (scratch for
# the ADM shards, default a temp dir; never under OUT, which travels back), GPU_CHECK_VENDOR (pure-Python packages
# used when PYTHON has no pytest; default bench/vendor, made by `make gpu-vendor`).
set -uo pipefail

MODE=full
case "${1:-}" in
  --smoke) MODE=smoke ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--smoke]" >&2; exit 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [ -z "${PYTHON:-}" ]; then  # the first of python3, python that has torch
  PYTHON=python3
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null && "$candidate" -c "import torch" 2>/dev/null; then PYTHON=$candidate; break; fi
  done
fi
VENDOR="${GPU_CHECK_VENDOR:-$REPO/bench/vendor}"
OUT="${OUT:-$REPO/bench/out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/repabench-gpu-check.XXXXXX")}"
mkdir -p "$WORK"
export PYTHONPATH="$REPO:$REPO/bench${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "gpu_check: $PYTHON cannot import torch; set PYTHON to an interpreter that has torch" >&2
  exit 2
fi
if ! "$PYTHON" -c "import pytest" 2>/dev/null; then
  if [ -d "$VENDOR" ]; then
    export PYTHONPATH="$PYTHONPATH:$VENDOR"
    echo "gpu_check: pytest from $VENDOR"
  else
    echo "gpu_check: no pytest here and no bench/vendor (run \`make gpu-vendor\` and carry bench/vendor)" >&2
  fi
fi

if [ "$MODE" = smoke ]; then
  DEVICE=(--device cpu)
  TESTS_CAP=60 TRAIN_CAP=90 SAMPLE_CAP=60 ADM_CAP=90 SPATIAL_CAP=60 FEATURES_CAP=60
  TRAIN_ARGS=(--models SiT-T/2 --latent 16 --encoders effnetlite-cnn-lite0 --encoder-depth 2 --methods irepa repa
              --batch 2 --batch-for SiT-T/2=2 --find-max --max-batch 4 --steps 1 --warmup 1 --threads 1
              --peak-tflops 1 --budget-s 75)
  SAMPLE_ARGS=(--model SiT-T/2 --latent 16 --steps 8 --time-steps 4 --batch 8 --baseline-batch 4 --repeats 1
               --tolerance-batch 4 --peak-tflops 1)
  ADM_ARGS=(--n 8 --extrapolate-to 16 --n-ref 4 --baseline-batch 4 --batch 8 --shard-size 4 --fid-method eigh)
  SPATIAL_ARGS=(--n 16 --baseline-n 4)
  FEATURES_ARGS=(--encoders effnetlite-cnn-lite0 --resolution 64 --n 4 --batch 4 --baseline-batch 2 --threads 1)
else
  DEVICE=()
  # caps sum to 470 s: under 8 minutes with the table
  TESTS_CAP=70 TRAIN_CAP=200 SAMPLE_CAP=70 ADM_CAP=60 SPATIAL_CAP=25 FEATURES_CAP=45
  TRAIN_ARGS=(--models SiT-XL/2 SiT-B/2 --encoders dinov2-vit-b --methods irepa repa
              --batch 32 --batch-for SiT-B/2=256 --find-max SiT-XL/2 --steps 8 --warmup 2 --budget-s 185)
  SAMPLE_ARGS=(--model SiT-XL/2 --steps 250 --time-steps 50 --batch 256 --baseline-batch 32 --repeats 1
               --tolerance-batch 16)
  ADM_ARGS=(--n 10000 --extrapolate-to 50000 --n-ref 10000)
  SPATIAL_ARGS=()
  FEATURES_ARGS=(--encoders dinov2-vit-b --n 2048)
fi

PARTS="$OUT/parts.tsv"
printf 'part\texit_code\tseconds\tcap_s\n' > "$PARTS"
FAILED=0

# run_part NAME CAP_S COMMAND...: output to OUT/NAME.log, exit code and wall time to parts.tsv
run_part() {
  local name="$1" cap="$2"; shift 2
  local began ended rc
  echo "== $name (cap ${cap} s): $*"
  began=$(date +%s.%N)
  timeout --kill-after=10 "$cap" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  ended=$(date +%s.%N)
  local seconds
  seconds=$(awk -v a="$began" -v b="$ended" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$cap" >> "$PARTS"
  if [ "$rc" -ne 0 ]; then
    FAILED=1
    echo "   exit code $rc after $seconds s$( [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo ' (time cap)'); last lines:"
    tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
  else
    echo "   done in $seconds s"
  fi
}

run_part 1_gpu_tests "$TESTS_CAP" "$PYTHON" bench/gpu_tests.py --json "$OUT/1_gpu_tests.json"
run_part 2_train "$TRAIN_CAP" "$PYTHON" bench/bench_train.py "${DEVICE[@]}" "${TRAIN_ARGS[@]}" --json "$OUT/2_train.json"
run_part 3_sample "$SAMPLE_CAP" "$PYTHON" bench/bench_sample.py "${DEVICE[@]}" "${SAMPLE_ARGS[@]}" \
  --json "$OUT/3_sample.json"
run_part 4_adm "$ADM_CAP" "$PYTHON" bench/bench_adm.py "${DEVICE[@]}" "${ADM_ARGS[@]}" --workdir "$WORK/adm" \
  --json "$OUT/4_adm.json"
run_part 5_spatial "$SPATIAL_CAP" "$PYTHON" bench/bench_spatial.py "${DEVICE[@]}" "${SPATIAL_ARGS[@]}" \
  --json "$OUT/5_spatial.json"
run_part 5_features "$FEATURES_CAP" "$PYTHON" bench/bench_features.py "${DEVICE[@]}" "${FEATURES_ARGS[@]}" \
  --json "$OUT/5_features.json"

[ -n "${GPU_CHECK_WORK:-}" ] || rm -rf "$WORK"
if ! "$PYTHON" bench/gpu_table.py "$OUT" --mode "$MODE"; then
  echo "gpu_check: the table could not be written" >&2
  exit 1
fi
echo "gpu_check ($MODE): results in $OUT (gpu_table.md, gpu_check.json, one JSON and log per part)"
exit "$FAILED"
