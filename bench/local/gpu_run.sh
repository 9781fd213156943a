#!/usr/bin/env bash
# The GPU run of issue 17 (items 6 and 7): our batching worker against llama-server
# --parallel N at 1/8/32/64 streams, every layer on the GPU, for the default SmolLM2-135M and
# an 8B-shaped Llama with random weights (synth_gguf.py: Q4_K_M layout, written in seconds).
# Prints engines.py's table (aggregate tok/s, TTFT p50/p99, per-stream tok/s, the batching
# engine's Python share of a step) and the GPU memory each server held; nvidia-smi is
# sampled once a second into $OUT_DIR/nvidia-smi.csv.
#
#   LLAMA_SERVER=/path/to/cuda/llama-server bench/local/gpu_run.sh [OUT_DIR]
#
# Env: STREAMS (1,8,32,64), MAX_TOKENS (128), PER_STREAM (2), MODELS ("default 8b"),
# SHAPE_8B (8b; "tiny" to check this script on a CPU), N_GPU_LAYERS (-1), MODEL_DIR (where
# the synthetic GGUF goes, default /tmp: keep it out of anything copied back), DEFAULT_GGUF
# (the file "default" runs; default: the bundled SmolLM2), DONOR (the synthetic model's
# tokenizer; default: the bundled SmolLM2), SKIP (servers engines.py leaves out, default
# llama_cpp.server,simple).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${OUT:-/tmp/gpu-run}}
mkdir -p "$out"
: "${LLAMA_SERVER:?set LLAMA_SERVER to a llama-server built with CUDA}"
streams=${STREAMS:-1,8,32,64}
models=${MODELS:-default 8b}
model_dir=${MODEL_DIR:-/tmp}
py=${PYTHON:-python}

smi=""
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 \
        > "$out/nvidia-smi.csv" 2>/dev/null &
    smi=$!
fi
trap '[ -n "$smi" ] && kill "$smi" 2>/dev/null || true' EXIT

for model in $models; do
    args=()
    if [ "$model" != default ]; then
        gguf="$model_dir/llama-${SHAPE_8B:-8b}-random.gguf"
        [ -s "$gguf" ] || "$py" "$here/synth_gguf.py" "$gguf" --shape "${SHAPE_8B:-8b}" \
            ${DONOR:+--donor "$DONOR"}
        args=(--model "$gguf")
    elif [ -n "${DEFAULT_GGUF:-}" ]; then
        args=(--model "$DEFAULT_GGUF")
    fi
    echo "=== $model: $(date -u +%H:%M:%S) ===" | tee -a "$out/engines.txt"
    "$py" "$here/engines.py" "${args[@]}" --n-gpu-layers "${N_GPU_LAYERS:--1}" \
        --streams "$streams" --max-tokens "${MAX_TOKENS:-128}" \
        --per-stream "${PER_STREAM:-2}" --skip "${SKIP:-llama_cpp.server,simple}" --paired-rounds 0 \
        --gpu-memory 2>&1 | tee -a "$out/engines.txt"
done
