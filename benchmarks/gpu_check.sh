#!/usr/bin/env bash
# The GPU acceptance run: every GPU path of rn50 executed on a real CUDA host, its reports in one folder.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]        (default: ./gpu-check)
#
# Needs rn50 installed with a CUDA build of torch and onnxruntime-gpu (`pip install -e ".[gpu]"` after
# uninstalling onnxruntime). Steps: nvidia-smi, rn50 doctor, pytest -m gpu, rn50 pipeline (export, FP16,
# both INT8 Q/DQ files, parity on CPU and CUDA, profile), parity with the PyTorch reference on CUDA, and
# a profile of ONNX Runtime CUDA (FP32, FP16) and PyTorch CUDA at batch 1, 8, 64 and 256 (Latency, GPU
# Compute Time, CUDA graphs), and benchmarks/bench_ort_cuda_options.py (the CUDA provider's settings compared). Stops at the first failure with its message and a non-zero exit;
# GPU_CHECK_KEEP_GOING=1 runs every step and fails at the end instead. About 5 minutes on an H100.
set -uo pipefail

OUT=$(realpath -m "${1:-gpu-check}")
WORK="$OUT/work"
KEEP_GOING=${GPU_CHECK_KEEP_GOING:-0}
mkdir -p "$OUT/logs"
failed=()

step() {  # step NAME COMMAND...: run, log, time; stop (or note) on failure
    local name=$1
    shift
    local t0=$SECONDS
    echo "== $name: $*"
    "$@" 2>&1 | tee "$OUT/logs/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    if [ "$rc" -ne 0 ]; then
        failed+=("$name (exit $rc)")
        if [ "$KEEP_GOING" != 1 ]; then
            echo "gpu_check: FAILED at $name (exit $rc): $(grep -v '^\s*$' "$OUT/logs/$name.log" | tail -1)" >&2
            collect "$OUT/reports/at-failure"
            exit "$rc"
        fi
    fi
}

collect() {  # collect DEST: the work directory's reports, next to the logs
    mkdir -p "$1"
    for f in "$WORK"/*.md "$WORK"/*.json "$WORK"/*.png "$WORK"/*.html; do
        [ -f "$f" ] && cp "$f" "$1/"
    done
}

step nvidia-smi nvidia-smi
step doctor rn50 doctor
step doctor-json rn50 doctor --json
step pytest-gpu python -m pytest -m gpu -p no:cacheprovider -q
step pipeline rn50 pipeline --out "$WORK" --warmup 0.25 --duration 1
collect "$OUT/reports/pipeline"
step ort-cuda-options python "$(dirname "$0")/bench_ort_cuda_options.py" --out "$WORK" --json "$OUT/ort-cuda-options.json"
step parity-cuda-reference rn50 parity --out "$WORK" --reference-device cuda
collect "$OUT/reports/parity-cuda-reference"
step profile-gpu rn50 profile --out "$WORK" --runtime onnxruntime-cuda,torch-cuda --precision fp32,fp16 \
    --batch 1,8,64,256 --warmup 0.5 --duration 1.5
collect "$OUT/reports/profile-gpu"
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "gpu_check: all steps passed; reports in $OUT/reports/"
