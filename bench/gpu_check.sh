#!/usr/bin/env bash
# The GPU checks in one command, on a machine with an NVIDIA GPU (under 8 minutes):
#
#     bash bench/gpu_check.sh [FOLDER]        # default bench/results/gpu-<device name>
#
# Writes to FOLDER: device.txt (driver and device, nvidia-smi), tests.txt (the GPU
# tests), gpu.txt/.json (python -m bench.gpu: matmuls against torch.matmul, row sum and
# softmax against copy bandwidth, the strategy table), tune_gpu.txt/.json and .log (the
# tuner's strategy agreement, --quick), gpu_static.txt/.json (python -m bench.gpu_static).
# Each step has its own time limit; a step that fails or runs out of time is reported
# and the others still run. Exits 1 if any step failed.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
if [ -z "$device" ]; then
    echo "bench/gpu_check.sh needs an NVIDIA GPU (nvidia-smi found none)" >&2
    exit 1
fi
out=${1:-bench/results/gpu-$(echo "$device" | tr -cs 'A-Za-z0-9' '-' | sed 's/-*$//')}
mkdir -p "$out"
failed=0

step() {  # step SECONDS FILE COMMAND...: run COMMAND with a time limit, output to FILE
    local seconds=$1 file=$2
    shift 2
    echo "== $* (limit ${seconds}s) -> $out/$file"
    timeout --kill-after=10 "$seconds" "$@" > "$out/$file" 2>&1
    local status=$?
    tail -n 3 "$out/$file"
    if [ "$status" -ne 0 ]; then
        echo "!! exit status $status$([ "$status" -ge 124 ] && echo ' (time limit)')"
        failed=1
    fi
}

step 15 device.txt nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv
step 120 tests.txt python -m pytest tests/test_gpu.py tests/test_runtime_cuda.py \
    tests/test_autotune_gpu.py -q -x -k "not simulator"
step 170 gpu.txt python -m bench.gpu --json "$out/gpu.json"
step 110 tune_gpu.log python -m bench.tune_gpu --quick --out "$out"
step 60 gpu_static.txt python -m bench.gpu_static --json "$out/gpu_static.json"
echo "results in $out"
exit $failed
